"""
Proxy benchmark over a real fleet: small GET latency and requests/s, and bulk
GET throughput, through the whole chain

    parent sandbox -> aggregation -> hub -> tunnel -> agent -> child sandbox

against the same requests sent directly to the child sandbox and through
C{kubectl proxy} in front of the child (when kubectl is installed), all in
the same run.

    python benchmarks/proxy.py [--count 300] [--bulk-mib 8] [--keep]

The fleet is L{clusternet.fleet.Fleet} (one parent, the hub, one child and its
agent, each a real process).  Every client holds one persistent HTTPS (or,
for kubectl proxy, HTTP) connection and sends requests one after another.
The latency runs are interleaved in rounds (direct, chain, kubectl proxy,
again...) so that noise from other work on the machine hits every path
alike.  Prints one JSON object per line on stdout (name, value, unit,
baseline = the direct request); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    BenchError,
    Client,
    emit,
    free_port,
    kubeconfig_client,
    percentile,
    process_cpu_seconds,
    process_rss_kib,
    say,
)

from clusternet.fleet import GROUP_PATH, Fleet
from clusternet.fleet import FleetError as DemoError

NAMESPACE = "clusternet-bench"
SMALL = "bench-small"
SMALL_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{SMALL}"
BULK_PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps?labelSelector=bench%3Dbulk"
# Real API servers refuse ConfigMaps over 1 MiB: stay well under.
BULK_OBJECT_BYTES = 900 * 1024
MiB = 1024 * 1024


class Target:
    """
    One way to reach the child: a client and what it has measured.
    """

    def __init__(self, name: str, client: Client, small_path: str = SMALL_PATH) -> None:
        self.name = name
        self.client = client
        self.small_path = small_path
        self.latencies: list[float] = []
        self.busy = 0.0
        self.bulk_bytes = 0
        self.bulk_seconds = 0.0
        # CPU seconds each fleet process spent during this path's timed GETs.
        self.cpu: dict[str, float] = {}

    def get(self, path: str) -> bytes:
        status, body = self.client.request("GET", path)
        if status != 200:
            raise BenchError(f"{self.name}: GET {path}: {status} {body[:300]!r}")
        return body


def set_up_child(child: Client, bulk_mib: int) -> int:
    """
    Create the namespace, the small ConfigMap and the bulk ConfigMaps in the
    child; return how many bulk objects there are.
    """
    status, body = child.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    if status not in (201, 409):
        raise BenchError(f"creating namespace {NAMESPACE}: {status} {body[:300]!r}")
    objects: list[tuple[str, dict[str, str], dict[str, str]]] = [
        (SMALL, {"k": "v"}, {})
    ]
    count = max(1, -(-bulk_mib * MiB // BULK_OBJECT_BYTES))
    for index in range(count):
        # Incompressible text, as real payloads are.
        text = base64.b64encode(os.urandom(BULK_OBJECT_BYTES * 3 // 4)).decode()
        objects.append((f"bench-bulk-{index}", {"blob": text}, {"bench": "bulk"}))
    for name, data, labels in objects:
        status, body = child.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": labels},
                "data": data,
            },
        )
        if status not in (201, 409):
            raise BenchError(f"creating configmap {name}: {status} {body[:300]!r}")
    return count


def parent_user(kubeconfig: Path) -> str:
    """
    The user name of the parent kubeconfig's client certificate (its CN).
    """
    config = yaml.safe_load(kubeconfig.read_text())
    user = config["users"][0]["user"]
    pem = base64.b64decode(user["client-certificate-data"])
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value)


def grant_parent_user(child: Client, user: str) -> None:
    """
    Let the parent's admin act in the child: in the agent's default identity
    mode (impersonate) the child sees the parent user without
    C{system:masters}, which it never passes on.  A binding in the child is
    how an operator gives a parent user rights there.
    """
    status, body = child.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "clusternet-bench-parent-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
            ],
        },
    )
    if status not in (201, 409):
        raise BenchError(f"binding {user} to cluster-admin: {status} {body[:300]!r}")


def start_kubectl_proxy(
    kubectl: str, kubeconfig: Path, data_dir: Path
) -> tuple[subprocess.Popen[bytes], Client]:
    """
    C{kubectl proxy} on a free loopback port in front of the child; wait
    until it answers.
    """
    port = free_port()
    log = (data_dir / "kubectl-proxy.log").open("ab")
    process = subprocess.Popen(
        [
            kubectl,
            "proxy",
            f"--port={port}",
            "--address=127.0.0.1",
            f"--kubeconfig={kubeconfig}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, HOME=str(data_dir)),
        start_new_session=True,
    )
    log.close()
    client = Client(f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"kubectl proxy exited; see {data_dir}/kubectl-proxy.log")
        try:
            if client.request("GET", "/version")[0] == 200:
                client.reconnects = 0  # refused while it was starting
                return process, client
        except OSError:
            client.close()
        time.sleep(0.1)
    stop(process)
    raise BenchError("kubectl proxy did not answer within 20s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cluster_id(parent: Client) -> str:
    clusters = parent.get_json("/apis/clusters.clusternet.io/v1beta1/managedclusters")[
        "items"
    ]
    if len(clusters) != 1:
        raise BenchError(f"expected one ManagedCluster, found {len(clusters)}")
    return str(clusters[0]["spec"]["clusterId"])


def latency_rounds(
    targets: list[Target],
    count: int,
    warmup: int,
    rounds: int,
    deadline: float,
    pids: dict[str, int],
) -> None:
    for target in targets:
        for _ in range(warmup):
            target.get(target.small_path)
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for target in targets:
            cpu_before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
            started_round = time.perf_counter()
            for _ in range(per_round):
                if time.monotonic() > deadline:
                    raise BenchError("out of time budget during the latency runs")
                started = time.perf_counter()
                target.get(target.small_path)
                target.latencies.append(time.perf_counter() - started)
            target.busy += time.perf_counter() - started_round
            for name, pid in pids.items():
                spent = process_cpu_seconds(pid) - cpu_before[name]
                target.cpu[name] = target.cpu.get(name, 0.0) + spent


def bulk_runs(
    targets: list[Target], repeat: int, objects: int, deadline: float
) -> None:
    sizes: dict[str, int] = {}
    targets = [t for t in targets if t.small_path == SMALL_PATH]
    for target in targets:
        body = target.get(BULK_PATH)  # warm-up, and a check of the answer
        items = len(json.loads(body)["items"])
        if items != objects:
            raise BenchError(f"{target.name}: bulk list had {items} of {objects}")
        sizes[target.name] = len(body)
    for _ in range(repeat):
        for target in targets:
            if time.monotonic() > deadline:
                raise BenchError("out of time budget during the bulk runs")
            started = time.perf_counter()
            body = target.get(BULK_PATH)
            target.bulk_seconds += time.perf_counter() - started
            target.bulk_bytes += len(body)


def report(targets: dict[str, Target], count: int, bulk_repeat: int) -> None:
    direct = targets["direct"]
    others = [t for name, t in targets.items() if name != "direct"]
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        base = percentile(direct.latencies, fraction) * 1000
        for target in others:
            value = percentile(target.latencies, fraction) * 1000
            emit(
                f"proxy_small_get_{label}_{target.name}",
                value,
                "ms",
                base,
                ratio=round(value / base, 2),
                samples=len(target.latencies),
            )
    for target in others:
        # What clusternet's own processes (the hub and the agents) spend per
        # request; the sandboxes stand in for API servers.
        per_request = {
            name: round(seconds * 1000 / len(target.latencies), 3)
            for name, seconds in target.cpu.items()
        }
        ours = sum(v for k, v in per_request.items() if k == "hub" or "agent" in k)
        emit(
            f"proxy_small_get_cpu_{target.name}",
            ours,
            "ms/request",
            None,
            what="CPU of the hub and agent processes per small GET",
            **{f"cpu_ms_{k.replace('-', '_')}": v for k, v in per_request.items()},
        )
    base_rate = len(direct.latencies) / direct.busy
    for target in others:
        rate = len(target.latencies) / target.busy
        emit(
            f"proxy_small_get_rate_{target.name}",
            rate,
            "req/s",
            base_rate,
            ratio=round(rate / base_rate, 3),
            samples=len(target.latencies),
        )
    base_bulk = direct.bulk_bytes / MiB / direct.bulk_seconds
    for target in others:
        if not target.bulk_seconds:
            continue
        value = target.bulk_bytes / MiB / target.bulk_seconds
        emit(
            f"proxy_bulk_get_{target.name}",
            value,
            "MiB/s",
            base_bulk,
            ratio=round(value / base_bulk, 3),
            body_mib=round(target.bulk_bytes / bulk_repeat / MiB, 2),
            requests=bulk_repeat,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="small GETs per path")
    parser.add_argument(
        "--warmup", type=int, default=30, help="small GETs per path before timing"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the small GETs"
    )
    parser.add_argument(
        "--bulk-mib", type=int, default=8, help="size of the bulk list (MiB)"
    )
    parser.add_argument("--bulk-repeat", type=int, default=5, help="bulk GETs per path")
    parser.add_argument(
        "--budget", type=float, default=240.0, help="time limit in seconds"
    )
    parser.add_argument(
        "--no-kubectl-proxy", action="store_true", help="skip the kubectl proxy path"
    )
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra flag for the agent, such as --agent-arg=--tunnel-transport="
        "websocket (repeatable)",
    )
    parser.add_argument("--data-dir", help="where the fleet keeps state and logs")
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dir (logs) afterwards"
    )
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000 or args.rounds < 1 or args.bulk_repeat < 1:
        parser.error("--count, --rounds and --bulk-repeat must be positive")
    deadline = time.monotonic() + args.budget
    made_dir = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="clusternet-bench-proxy-"))
    fleet = Fleet(data_dir, children=1, say=say, agent_args=args.agent_arg)
    kubectl_proxy: subprocess.Popen[bytes] | None = None
    clients: list[Client] = []
    failed = False
    try:
        fleet.start()
        fleet.wait_ready(timeout=max(10.0, min(120.0, deadline - time.monotonic())))
        assert fleet.parent is not None
        child = fleet.child_clusters[0]
        parent = kubeconfig_client(fleet.parent.kubeconfig)
        clients.append(parent)
        chain_prefix = f"{GROUP_PATH}/sockets/{cluster_id(parent)}/proxy/direct"
        direct = kubeconfig_client(child.kubeconfig)
        chain = kubeconfig_client(fleet.parent.kubeconfig, prefix=chain_prefix)
        clients += [direct, chain]
        say(f"Creating the benchmark objects in {child.name} ({args.bulk_mib} MiB)")
        objects = set_up_child(direct, args.bulk_mib)
        grant_parent_user(direct, parent_user(fleet.parent.kubeconfig))
        targets = {
            "direct": Target("direct", direct),
            "chain": Target("chain", chain),
            # The parent's aggregation layer and the hub alone: a small
            # document the hub answers itself (no tunnel, no child).
            "parent_to_hub": Target("parent_to_hub", parent, GROUP_PATH),
        }
        if fleet.kubectl and not args.no_kubectl_proxy:
            kubectl_proxy, proxy_client = start_kubectl_proxy(
                fleet.kubectl, child.kubeconfig, data_dir
            )
            clients.append(proxy_client)
            targets["kubectl_proxy"] = Target("kubectl_proxy", proxy_client)
        else:
            say("kubectl is not installed: no kubectl proxy path")
        say(
            f"Small GETs: {args.count} per path after {args.warmup} warm-up, "
            f"{args.rounds} rounds over {', '.join(targets)}"
        )
        latency_rounds(
            list(targets.values()),
            args.count,
            args.warmup,
            args.rounds,
            deadline,
            {p.name: p.popen.pid for p in fleet.processes},
        )
        say(f"Bulk GETs: {objects} ConfigMaps in one list, {args.bulk_repeat} times")
        bulk_runs(list(targets.values()), args.bulk_repeat, objects, deadline)
        report(targets, args.count, args.bulk_repeat)
        rss: dict[str, Any] = {
            p.name: round(process_rss_kib(p.popen.pid) / 1024, 1)
            for p in fleet.processes
        }
        emit(
            "proxy_fleet_rss_hub",
            rss.get("hub", 0.0),
            "MiB",
            None,
            **{f"rss_mib_{k.replace('-', '_')}": v for k, v in rss.items()},
        )
        reconnects = {t.name: t.client.reconnects for t in targets.values()}
        if any(reconnects.values()):
            say(f"connections were reopened (keep-alive broken?): {reconnects}")
        return 0
    except (BenchError, DemoError, OSError) as error:
        say(f"benchmark failed: {error}; logs kept in {data_dir}")
        failed = True
        return 1
    finally:
        for client in clients:
            client.close()
        if kubectl_proxy is not None:
            stop(kubectl_proxy)
        fleet.stop()
        if made_dir and not args.keep and not failed:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif args.keep:
            say(f"logs kept in {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
