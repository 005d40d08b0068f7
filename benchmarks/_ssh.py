"""
An OpenSSH peer for the tunnel benchmark: an C{sshd} of our own on loopback
(its own host key, client key, authorized_keys and config in a temporary
directory) and an C{ssh -N -L} local port forward through it.

    with SSHForward(target_port) as forward:
        ...  # connect to 127.0.0.1:forward.local_port

Synchronous and stdlib only: call it from a thread (C{deferToThread}) or
before the reactor starts.  C{python benchmarks/_ssh.py} runs a self-check:
echo round trips and a 64 MiB download through the forward (both ciphers)
and directly.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

#: Bytes of a child's stderr quoted in an error.
_TAIL_BYTES = 2000


def _sshd_path() -> str | None:
    """
    The absolute path of C{sshd} (it re-executes itself, so it must be
    absolute), or C{None} when it is not installed.
    """
    found = shutil.which("sshd")
    if found is None and os.access("/usr/sbin/sshd", os.X_OK):
        found = "/usr/sbin/sshd"
    return None if found is None else os.path.abspath(found)


def ssh_available() -> str | None:
    """
    C{None} when C{sshd}, C{ssh} and C{ssh-keygen} are usable here, else a
    one-line reason (for example C{"sshd not installed"}).
    """
    if _sshd_path() is None:
        return "sshd not installed"
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if os.geteuid() == 0:
        try:
            _privsep_dir()
        except OSError as e:
            return f"cannot create /run/sshd: {e}"
    return None


def _privsep_dir() -> None:
    """
    Create sshd's privilege separation directory, which it insists on when
    it runs as root (Debian creates it only when the system service starts,
    and we never start that service).
    """
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def _free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and
    close: someone else may take it in between, which is rare enough here).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _connects(port: int) -> bool:
    """
    Whether a TCP connection to 127.0.0.1:C{port} is accepted now.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path) -> str:
    """
    The last few lines a child wrote to its log file C{path}.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-_TAIL_BYTES:].decode("utf-8", "replace").strip()


def _end(child: subprocess.Popen[bytes]) -> None:
    """
    Terminate C{child}: SIGTERM, up to 5 s, then SIGKILL and wait.
    """
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)


def _children(pid: int) -> list[int]:
    """
    The processes whose parent is C{pid}, zombies included (Linux: from
    /proc).
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


class SSHForward:
    """
    An C{sshd} on 127.0.0.1 (a random free port, its own temporary
    directory: host key, client key, authorized_keys, sshd_config) and
    C{ssh -N -L <local>:127.0.0.1:<target_port>} through it.

    @ivar local_port: the forwarded port on 127.0.0.1 once L{start} returned,
        else 0.
    @ivar sshd_port: the port C{sshd} listens on once L{start} began, else 0.
    """

    def __init__(self, target_port: int, cipher: str | None = None) -> None:
        """
        @param target_port: the port on 127.0.0.1 that the forward reaches.
        @param cipher: passed to C{ssh -c} (for example
            C{"chacha20-poly1305@openssh.com"} or C{"aes128-gcm@openssh.com"});
            C{None} keeps OpenSSH's default choice.
        """
        self.target_port = target_port
        self.cipher = cipher
        self.local_port = 0
        self.sshd_port = 0
        self._dir: Path | None = None
        self._sshd: subprocess.Popen[bytes] | None = None
        self._ssh: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> int:
        """
        Write the keys and config, run C{sshd} and C{ssh}, and wait until a
        TCP connection to the forwarded port is accepted.  On failure every
        child started so far is stopped and the temporary directory removed.

        @param timeout: seconds for the whole start, keys included.
        @return: the local forwarded port on 127.0.0.1.
        @raise RuntimeError: sshd or ssh is missing, exited, or was not ready
            within C{timeout}; the message ends with their stderr tails.
        """
        if self._dir is not None:
            raise RuntimeError("SSHForward already started")
        reason = ssh_available()
        if reason is not None:
            raise RuntimeError(reason)
        deadline = time.monotonic() + timeout
        self._dir = Path(tempfile.mkdtemp(prefix="clusternet-ssh-"))
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise
        return self.local_port

    def _start(self, deadline: float) -> None:
        """
        The steps of L{start}, which cleans up when one raises.
        """
        assert self._dir is not None
        tmp = self._dir
        host_key, client_key = tmp / "host_ed25519", tmp / "client_ed25519"
        for key in (host_key, client_key):
            self._keygen(key, deadline)
        (tmp / "authorized_keys").write_bytes(
            client_key.with_suffix(".pub").read_bytes()
        )
        os.chmod(tmp / "authorized_keys", 0o600)

        self.sshd_port = _free_port()
        config = tmp / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress 127.0.0.1:{self.sshd_port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
                    f"PidFile {tmp / 'sshd.pid'}",
                    # Run as whoever we are, root or not: no PAM, no checks
                    # of the owners and modes of home and key files.
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin yes",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "AllowTcpForwarding yes",
                    "UseDNS no",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            _privsep_dir()
        sshd = _sshd_path()
        assert sshd is not None
        self._sshd = self._spawn(
            [sshd, "-D", "-e", "-f", str(config)], tmp / "sshd.log"
        )
        self._wait_listening(self.sshd_port, deadline, "sshd")

        self.local_port = _free_port()
        command = [
            "ssh",
            "-N",
            "-F",
            "/dev/null",
            "-L",
            f"127.0.0.1:{self.local_port}:127.0.0.1:{self.target_port}",
            "-p",
            str(self.sshd_port),
            "-i",
            str(client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "Compression=no",
        ]
        if self.cipher is not None:
            command += ["-c", self.cipher]
        command += ["-l", getpass.getuser(), "127.0.0.1"]
        self._ssh = self._spawn(command, tmp / "ssh.log")
        self._wait_listening(self.local_port, deadline, "ssh")

    def _keygen(self, path: Path, deadline: float) -> None:
        """
        Write a fresh ed25519 key pair without a passphrase to C{path} and
        C{path}.pub.
        """
        result = subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "bench",
                "-f",
                str(path),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(0.1, deadline - time.monotonic()),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"ssh-keygen exited with {result.returncode}: "
                + result.stderr.decode("utf-8", "replace").strip()
            )

    def _spawn(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        """
        Run C{command} with stdout and stderr going to the file C{log} (a
        file, not a pipe, so a chatty child never blocks on a full pipe).
        """
        with open(log, "wb") as out:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _wait_listening(self, port: int, deadline: float, what: str) -> None:
        """
        Poll a TCP connect to 127.0.0.1:C{port} every 50 ms until it is
        accepted, a child exits, or C{deadline} passes.
        """
        while True:
            for name, child in (("sshd", self._sshd), ("ssh", self._ssh)):
                if child is not None and child.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {child.returncode} while waiting"
                        f" for {what}" + self._logs()
                    )
            if _connects(port):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{what} not accepting on 127.0.0.1:{port} in time" + self._logs()
                )
            time.sleep(0.05)

    def _logs(self) -> str:
        """
        The stderr tails of sshd and ssh, for an error message.
        """
        if self._dir is None:
            return ""
        parts = []
        for name in ("sshd", "ssh"):
            tail = _tail(self._dir / f"{name}.log")
            if tail:
                parts.append(f"\n--- {name} stderr ---\n{tail}")
        return "".join(parts)

    def stop(self) -> None:
        """
        Terminate C{ssh}, then C{sshd}'s per-connection children, then
        C{sshd} (each SIGTERM, 5 s, then SIGKILL), and remove the temporary
        directory.  Idempotent.

        The order matters: sshd's per-connection children are in their own
        sessions; one that outlives the listening sshd is re-parented to
        PID 1, and an init that does not reap (as in some containers) keeps
        it as a zombie for good.  So sshd stays up until it has reaped them.
        """
        ssh, self._ssh = self._ssh, None
        sshd, self._sshd = self._sshd, None
        if ssh is not None:
            _end(ssh)
        if sshd is not None:
            if sshd.poll() is None:
                # Closing the client ends its connection child; wait for
                # sshd to reap it, then press any that linger.
                for sig in (None, signal.SIGTERM, signal.SIGKILL):
                    pids = _children(sshd.pid)
                    if sig is not None:
                        for pid in pids:
                            with contextlib.suppress(OSError):
                                os.kill(pid, sig)
                    deadline = time.monotonic() + 5.0
                    while pids and time.monotonic() < deadline:
                        time.sleep(0.05)
                        pids = _children(sshd.pid)
                    if not pids:
                        break
            _end(sshd)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.local_port = 0

    def __enter__(self) -> SSHForward:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- self-check: python benchmarks/_ssh.py ------------------------------------


def _self_check() -> None:
    """
    Echo round trips (1,000 x 1 byte, p50) and a 64 MiB download through
    the forward for both ciphers and directly, printed one line each.
    """
    import statistics
    import struct
    import threading

    mib = 1024 * 1024
    chunk = b"\xa5" * mib

    def serve(conn: socket.socket) -> None:
        # The benchmark's source protocol: b"E" echoes, b"B" + u64 size
        # sends that many bytes then closes.
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mode = conn.recv(1)
            if mode == b"E":
                while data := conn.recv(65536):
                    conn.sendall(data)
            elif mode == b"B":
                header = b""
                while len(header) < 8 and (more := conn.recv(8 - len(header))):
                    header += more
                (remaining,) = struct.unpack("!Q", header)
                while remaining > 0:
                    n = min(remaining, mib)
                    conn.sendall(chunk[:n])
                    remaining -= n

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    target = listener.getsockname()[1]

    def measure(label: str, port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"E")
            times = []
            for _ in range(1000):
                start = time.perf_counter()
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    raise RuntimeError("echo broke")
                times.append((time.perf_counter() - start) * 1e6)
        size = 64 * mib
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            buffer = bytearray(mib)
            received = 0
            start = time.perf_counter()
            s.sendall(b"B" + struct.pack("!Q", size))
            while received < size:
                n = s.recv_into(buffer)
                if n == 0:
                    break
                received += n
            elapsed = time.perf_counter() - start
        if received != size:
            raise RuntimeError(f"got {received} of {size} bytes")
        print(
            f"{label:32s} echo p50 {statistics.median(times):8.1f} us"
            f"   bulk 64 MiB {size / mib / elapsed:8.1f} MiB/s",
            flush=True,
        )

    reason = ssh_available()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    measure("direct", target)
    for cipher in ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com"):
        with SSHForward(target, cipher) as forward:
            measure(f"ssh -L {cipher}", forward.local_port)
    listener.close()


if __name__ == "__main__":
    _self_check()
