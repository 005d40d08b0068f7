"""
Another tunnel as a peer of the tunnel benchmark: any program that forwards
a local TCP port to a target through a tunnel of its own (for example a
small harness around rancher/remotedialer, the Go tunnel of the original
Clusternet, with its hub and agent in two processes).

    python benchmarks/tunnel.py --peer 'remotedialer=/opt/rdbench -target {target}'

The command is split like a shell line; C{{target}} becomes the target
server's C{host:port}.  The program must print the TCP port it listens on
(on 127.0.0.1) as the first line of its stdout, forward every connection
to the target, and exit when its stdin closes (so that it never outlives
the benchmark).  Its CPU is counted over its whole process tree.

Synchronous and stdlib only, like C{_ssh.py}: call it from a thread
(C{deferToThread}) or before the reactor starts.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from pathlib import Path

#: Seconds a peer may take to print its port.
START_TIMEOUT = 30.0

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def parse_peer(text: str) -> tuple[str, list[str]]:
    """
    C{"NAME=COMMAND"} into the name and the argument vector.

    @raise ValueError: with a one-line reason.
    """
    name, sep, command = text.partition("=")
    if not sep or not _NAME.fullmatch(name):
        raise ValueError(
            f"--peer {text!r}: expected NAME=COMMAND, NAME in lower case "
            "letters, digits, '-' and '_'"
        )
    argv = shlex.split(command)
    if not argv:
        raise ValueError(f"--peer {name}: the command is empty")
    if not any("{target}" in arg for arg in argv):
        raise ValueError(f"--peer {name}: the command has no {{target}}")
    return name, argv


def tree_cpu_seconds(pid: int) -> float:
    """
    User + system CPU time of process C{pid} and of all its descendants
    alive now (Linux: /proc/PID/task/TID/children).
    """
    total = 0.0
    stack = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        tasks = Path(f"/proc/{current}/task")
        try:
            for child_list in tasks.glob("*/children"):
                stack.extend(int(c) for c in child_list.read_text().split())
        except OSError:
            continue
    return total


class PeerForward:
    """
    One running peer: C{start} returns its local port, C{stop} ends it.
    """

    def __init__(self, name: str, argv: list[str], target: str) -> None:
        self.name = name
        self.argv = [arg.replace("{target}", target) for arg in argv]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        line: list[bytes] = []
        assert self.process.stdout is not None
        reader = threading.Thread(
            target=lambda: line.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(START_TIMEOUT)
        text = line[0].strip() if line else b""
        if not text.isdigit():
            self.stop()
            why = "timed out" if not line else f"printed {text[:80]!r}"
            raise RuntimeError(f"peer {self.name} did not print its port: {why}")
        return int(text)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            pass
        # It runs in a session of its own: none of its children outlive it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
