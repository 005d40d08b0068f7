"""
Abuse benchmark: a hostile client attacks a running fleet while a well-behaved
client keeps doing small GETs through the parent, to the attacked cluster and to
another one.

    python benchmarks/abuse.py [--attacks verbs,streams,big-heads,slow-heads]
                               [--phase 20] [--keep]

The fleet is L{clusternet.fleet.Fleet} with two children, the hub and the agents
as the ServiceAccounts deploy/ ships. The hostile user is an x509 user of the
parent (O=team) allowed C{sockets/proxy} on every cluster; the well-behaved one
is the parent's admin. Attacks, each bounded in time (C{--phase} seconds) and in
count, loopback only:

- C{verbs}: lower-case C{delete} and C{PROPFIND} through the parent (authorized
  as themselves, answered 405 or 403: nothing reaches a child);
- C{streams}: up to 1,100 watches on one cluster held open (the per-user fair
  share answers 429 past the cap);
- C{big-heads}: 200 connections straight to the hub, each sending an unfinished
  1 MiB request head, then closing;
- C{slow-heads}: 200 connections straight to the hub trickling a head, one byte
  a second.

For each attack one JSON line: the well-behaved client's p50/p99 to the other
cluster and to the attacked one during the attack, with the same measured just
before as the baseline, what the attack got (answers by status), and the hub's
RSS before, during and 10 s after. Goals (the issue's): p99 to the other
cluster at most 2x baseline, the attacked cluster still served, RSS back within
10% of before.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    BenchError,
    Client,
    emit,
    kubeconfig_client,
    percentile,
    process_cpu_seconds,
    process_rss_kib,
    say,
)

from clusternet import pki
from clusternet.fleet import Fleet

ATTACKS = ("verbs", "streams", "big-heads", "slow-heads")
SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


class Measurer:
    """
    The well-behaved client: small GETs through the parent to two clusters,
    in turn, as fast as they answer, until stopped.
    """

    def __init__(self, parent: Path, clusters: dict[str, str]) -> None:
        self._clients = {
            name: kubeconfig_client(parent, prefix=f"{SOCKETS}/{cid}/proxy/direct")
            for name, cid in clusters.items()
        }
        self._samples: dict[str, list[tuple[float, float, int]]] = {
            name: [] for name in clusters
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, client in self._clients.items():
                started = time.monotonic()
                try:
                    status, _ = client.request("GET", "/api/v1/namespaces/default")
                except OSError:
                    status = 0
                    client.close()
                self._samples[name].append(
                    (started, time.monotonic() - started, status)
                )

    def window(self, name: str, start: float, end: float) -> tuple[list[float], int]:
        """
        Latencies of the answered GETs to C{name} started in [start, end), and
        how many failed.
        """
        inside = [s for s in self._samples[name] if start <= s[0] < end]
        return [s[1] for s in inside if s[2] == 200], sum(
            1 for s in inside if s[2] != 200
        )


def tls_context(fleet: Fleet, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    assert fleet.parent is not None
    context = ssl.create_default_context(cafile=str(fleet.parent.data_dir / "ca.crt"))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def attack_verbs(fleet: Fleet, hostile: Client, target: str, deadline: float) -> Any:
    answers: collections.Counter[int] = collections.Counter()
    count = 0
    while time.monotonic() < deadline and count < 3000:
        method = ("delete", "PROPFIND")[count % 2]
        status, body = hostile.request(method, f"{SOCKETS}/{target}/proxy/direct/api")
        answers[status] += 1
        if count == 0:
            say(f"  first answer to {method}: {status} {body[:200]!r}")
        count += 1
    return dict(answers)


def _open_watch(
    host: str, port: int, context: ssl.SSLContext, path: str
) -> tuple[socket.socket | None, int]:
    raw = socket.create_connection((host, port), timeout=20)
    try:
        conn = context.wrap_socket(raw, server_hostname=host)
        conn.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        line = b""
        while not line.endswith(b"\r\n"):
            chunk = conn.recv(1)
            if not chunk:
                return None, 0
            line += chunk
        status = int(line.split()[1])
        return conn, status
    except (OSError, ValueError, IndexError):
        raw.close()
        return None, 0


def attack_streams(
    fleet: Fleet, context: ssl.SSLContext, target: str, deadline: float
) -> Any:
    assert fleet.parent is not None
    host, port = fleet.parent.url.removeprefix("https://").rsplit(":", 1)
    path = f"{SOCKETS}/{target}/proxy/direct/api/v1/configmaps?watch=true"
    held: list[socket.socket] = []
    answers: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    remaining = [1100]

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            conn, status = _open_watch(host, int(port), context, path)
            with lock:
                answers[status] += 1
                if conn is not None:
                    held.append(conn)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()) + 30)
    while time.monotonic() < deadline:
        time.sleep(0.2)
    for conn in held:
        conn.close()
    return dict(answers)


def attack_big_heads(fleet: Fleet, deadline: float) -> Any:
    sockets: list[socket.socket] = []
    context = ssl.create_default_context(cafile=str(fleet.data_dir / "hub-ca.crt"))
    sent = 0
    for _ in range(200):
        if time.monotonic() > deadline:
            break
        try:
            raw = socket.create_connection(("127.0.0.1", fleet.hub_port), timeout=10)
            conn = context.wrap_socket(raw, server_hostname="localhost")
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(15):  # 960 KiB: unfinished, under the 1 MiB limit
                conn.sendall(chunk)
            sent += 1
            sockets.append(conn)
        except OSError:
            continue
    while time.monotonic() < deadline:
        time.sleep(0.2)
    for conn in sockets:
        conn.close()
    return {"connections_with_1MiB_head": sent}


def attack_slow_heads(fleet: Fleet, deadline: float) -> Any:
    context = ssl.create_default_context(cafile=str(fleet.data_dir / "hub-ca.crt"))
    sockets: list[socket.socket] = []
    for _ in range(200):
        try:
            raw = socket.create_connection(("127.0.0.1", fleet.hub_port), timeout=10)
            sockets.append(context.wrap_socket(raw, server_hostname="localhost"))
        except OSError:
            continue
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"b" * 4096
    position = 0
    closed_by_hub = 0
    while time.monotonic() < deadline and sockets:
        alive = []
        for conn in sockets:
            try:
                conn.sendall(head[position : position + 1])
                alive.append(conn)
            except OSError:
                closed_by_hub += 1
        sockets = alive
        position += 1
        time.sleep(1.0)
    for conn in sockets:
        conn.close()
    return {"opened": 200, "closed_by_hub": closed_by_hub}


def run_attack(
    fleet: Fleet,
    measurer: Measurer,
    name: str,
    phase: float,
    hostile: Client,
    context: ssl.SSLContext,
    same: str,
) -> None:
    """
    A quiet stretch (the baseline), the attack, ten quiet seconds; then the
    result lines.
    """
    assert fleet.hub is not None
    hub_pid = fleet.hub.popen.pid
    before_start = time.monotonic()
    time.sleep(min(10.0, phase))
    rss_before = process_rss_kib(hub_pid)
    assert fleet.parent is not None and fleet.parent.process is not None
    parent_pid = fleet.parent.process.popen.pid
    cpu_before = (process_cpu_seconds(hub_pid), process_cpu_seconds(parent_pid))
    start = time.monotonic()
    deadline = start + phase
    say(f"attack {name} for {phase:.0f}s")
    attack: Callable[[], Any] = {
        "verbs": lambda: attack_verbs(fleet, hostile, same, deadline),
        "streams": lambda: attack_streams(fleet, context, same, deadline),
        "big-heads": lambda: attack_big_heads(fleet, deadline),
        "slow-heads": lambda: attack_slow_heads(fleet, deadline),
    }[name]
    peak = [rss_before]

    def sample_rss() -> None:
        while time.monotonic() < deadline + 1:
            peak[0] = max(peak[0], process_rss_kib(hub_pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    got = attack()
    end = time.monotonic()
    # Whose CPU the attack took: the hub's, or the parent's (the sandbox is a
    # Python API server; a real kube-apiserver would take the same load in Go).
    cpu = {
        "hub_cpu_share": round(
            (process_cpu_seconds(hub_pid) - cpu_before[0]) / (end - start), 2
        ),
        "parent_cpu_share": round(
            (process_cpu_seconds(parent_pid) - cpu_before[1]) / (end - start), 2
        ),
    }
    sampler.join(5)
    time.sleep(10.0)
    rss_after = process_rss_kib(hub_pid)
    label = name.replace("-", "_")
    for target in ("other", "same"):
        base, _ = measurer.window(target, before_start, start)
        during, failed = measurer.window(target, start, end)
        if not base or not during:
            raise BenchError(f"no samples for {target} around {name}")
        emit(
            f"abuse_{label}_{target}_cluster_p99",
            percentile(during, 0.99) * 1000,
            "ms",
            percentile(base, 0.99) * 1000,
            p50_ms=round(percentile(during, 0.5) * 1000, 2),
            baseline_p50_ms=round(percentile(base, 0.5) * 1000, 2),
            requests=len(during),
            failed=failed,
        )
    emit(
        f"abuse_{label}_hub_rss_after",
        rss_after / 1024,
        "MiB",
        rss_before / 1024,
        peak_mib=round(peak[0] / 1024, 1),
        attack=got,
        **cpu,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument(
        "--phase", type=float, default=20.0, help="seconds per attack (at most 30)"
    )
    parser.add_argument("--data-dir", help="where the fleet keeps state and logs")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()
    attacks = [a for a in args.attacks.split(",") if a]
    unknown = set(attacks) - set(ATTACKS)
    if unknown or not 1 <= args.phase <= 30:
        parser.error(f"attacks are {', '.join(ATTACKS)}; --phase is 1..30 s")
    made_dir = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="clusternet-bench-abuse-"))
    fleet = Fleet(data_dir, children=2, say=say)
    measurer: Measurer | None = None
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        assert fleet.parent is not None and fleet.hub is not None
        clusters = {
            c["metadata"]["name"]: c["spec"]["clusterId"]
            for c in json.loads(
                fleet.parent_kubectl("get", "mcls", "-A", "-o", "json")
            )["items"]
        }
        same, other = clusters["child-1"], clusters["child-2"]
        # The hostile user: an x509 user of the parent allowed every cluster.
        ca = pki.load_pem_pair(
            (fleet.parent.data_dir / "ca.crt").read_bytes(),
            (fleet.parent.data_dir / "ca.key").read_bytes(),
        )
        mallory = pki.issue_certificate(
            ca, "mallory", organizations=["team"], client=True
        )
        cert, key = data_dir / "mallory.crt", data_dir / "mallory.key"
        cert.write_bytes(mallory.certificate_pem)
        key.write_bytes(mallory.key_pem)
        key.chmod(0o600)
        fleet.parent_kubectl(
            "create",
            "clusterrole",
            "bench-reach",
            "--verb=*",
            "--resource=sockets.proxies.clusternet.io/proxy",
        )
        fleet.parent_kubectl(
            "create",
            "clusterrolebinding",
            "bench-reach",
            "--clusterrole=bench-reach",
            "--group=team",
        )
        # ... and one the attacked child lets read and watch configmaps, so
        # that its watches hold their streams.
        watcher = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "bench-watch"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "bench-watch"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "bench-watch",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "team",
                }
            ],
        }
        fleet.apply(fleet.child_clusters[0], [watcher, binding])
        context = tls_context(fleet, cert, key)
        url = fleet.parent.url
        hostile = Client(url, context)
        measurer = Measurer(fleet.parent.kubeconfig, {"same": same, "other": other})
        measurer.start()
        time.sleep(3.0)  # warm up
        for name in attacks:
            run_attack(fleet, measurer, name, args.phase, hostile, context, same)
        return 0
    except BenchError as e:
        say(f"Error: {e}")
        return 1
    finally:
        if measurer is not None:
            measurer.stop()
        fleet.stop()
        if made_dir and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
