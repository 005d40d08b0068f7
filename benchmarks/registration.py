"""
Registration benchmark: N agents registering at once against one hub and one
parent; time from agent start to its ClusterRegistrationRequest Approved
(p50/p90/p99), and time from SIGKILL of one agent to its ManagedCluster
Ready=Unknown.

    python benchmarks/registration.py [--agents 50] [--grace 10s] [--keep]

The parent, the hub and one child sandbox are L{clusternet.fleet.Fleet}'s (its
own agent registers the child first, before the clock starts).  N child
sandboxes would not fit on a small machine, so the N agents share that one
child: each has its own --cluster-id (a UUID), --parent-secret
(parent-cluster-<i> in edge-system) and --leader-elect=false, which makes it a
separate cluster to the parent.  They run as the child's clusternet-agent
ServiceAccount, with the RBAC that deploy/agent ships.  All N are started
within a few milliseconds of one another; the parent is polled every --poll
seconds (the resolution of the times).
Prints one JSON object per line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    BenchError,
    Client,
    emit,
    kubeconfig_client,
    mem_available_kib,
    percentile,
    process_rss_kib,
    say,
)

from clusternet.duration import parse_duration
from clusternet.fleet import BOOTSTRAP_TOKEN, GROUP_PATH, Fleet
from clusternet.fleet import FleetError as DemoError

CRRS = "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests"
MCLS = "/apis/clusters.clusternet.io/v1beta1/managedclusters"
SOCKETS = f"{GROUP_PATH}/sockets"


class Agent:
    """
    One benchmark agent: its identity, process and the times it reached
    each step (seconds after its process started).
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.cluster_id = str(uuid.uuid4())
        self.name = f"bench-{index}"
        self.process: Any = None
        self.started = 0.0
        self.seen: float | None = None
        self.approved: float | None = None
        self.attached: float | None = None
        self.ready: float | None = None


def ready_status(mcls: dict[str, Any]) -> tuple[str, str]:
    for condition in (mcls.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")), str(
                condition.get("reason", "")
            )
    return "Unknown", "NoCondition"


def poll(
    parent: Client, agents: dict[str, Agent], deadline: float, every: float
) -> None:
    """
    Poll the parent until every agent is approved, attached and Ready, or
    the deadline passes.
    """
    last = ""
    while time.monotonic() < deadline:
        now = time.monotonic()
        for crr in parent.get_json(CRRS)["items"]:
            agent = agents.get(crr["spec"].get("clusterId", ""))
            if agent is None:
                continue
            if agent.seen is None:
                agent.seen = now - agent.started
            result = (crr.get("status") or {}).get("result")
            if result == "Approved" and agent.approved is None:
                agent.approved = now - agent.started
            elif result in ("Denied", "Failed"):
                raise BenchError(
                    f"{agent.name}: {result}: {crr['status'].get('errorMessage')}"
                )
        for item in parent.get_json(SOCKETS).get("items", []):
            agent = agents.get(item["metadata"]["name"])
            if agent is not None and agent.attached is None:
                agent.attached = now - agent.started
        for mcls in parent.get_json(MCLS)["items"]:
            agent = agents.get(mcls["spec"].get("clusterId", ""))
            if agent is not None and agent.ready is None:
                if ready_status(mcls)[0] == "True":
                    agent.ready = now - agent.started
        counts = (
            sum(a.approved is not None for a in agents.values()),
            sum(a.attached is not None for a in agents.values()),
            sum(a.ready is not None for a in agents.values()),
        )
        line = "  approved {}/{n}, tunnel up {}/{n}, Ready {}/{n}".format(
            *counts, n=len(agents)
        )
        if line != last:
            say(f"{line} ({now - min(a.started for a in agents.values()):.1f}s)")
            last = line
        if all(count == len(agents) for count in counts):
            return
        for agent in agents.values():
            if not agent.process.alive():
                raise BenchError(f"agent {agent.name} exited; see {agent.process.log}")
        time.sleep(max(0.0, every - (time.monotonic() - now)))


def time_to_unknown(
    fleet: Fleet, parent: Client, agent: Agent, grace: float, every: float
) -> tuple[float, float, str]:
    """
    Wait for C{agent} to renew its heartbeat Lease, SIGKILL it at once, then
    poll its ManagedCluster until Ready is no longer True.  Killing right
    after a renewal makes the result the worst case a user sees (the grace
    period plus the hub's detection delay), not a random point in the
    renewal interval.  Returns seconds from the kill, seconds from the
    renewal (as the parent's clock wrote it) and the new status/reason.
    """

    def mcls() -> dict[str, Any]:
        for item in parent.get_json(MCLS)["items"]:
            if item["spec"].get("clusterId") == agent.cluster_id:
                return dict(item)
        raise BenchError(f"no ManagedCluster for {agent.name}")

    if ready_status(mcls())[0] != "True":
        raise BenchError(f"{agent.name} is not Ready before the kill")
    namespace = mcls()["metadata"]["namespace"]
    lease_path = (
        f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/"
        f"clusternet-{agent.cluster_id}"
    )

    def renewed() -> str:
        return str(parent.get_json(lease_path)["spec"].get("renewTime") or "")

    first = renewed()
    deadline = time.monotonic() + 30
    while (last := renewed()) == first:
        if time.monotonic() > deadline:
            raise BenchError(f"{agent.name} did not renew its Lease within 30s")
        time.sleep(0.05)
    killed = time.monotonic()
    fleet.stop_process(agent.process, signal.SIGKILL)
    renewal = datetime.datetime.fromisoformat(last.replace("Z", "+00:00"))
    deadline = killed + grace + 60
    while time.monotonic() < deadline:
        now = time.monotonic()
        status, reason = ready_status(mcls())
        if status != "True":
            since = datetime.datetime.now(datetime.UTC) - renewal
            return now - killed, since.total_seconds(), f"{status}/{reason}"
        time.sleep(max(0.0, every - (time.monotonic() - now)))
    raise BenchError(f"{agent.name} still Ready {grace + 60:.0f}s after SIGKILL")


def agent_argv(fleet: Fleet, child_kubeconfig: Path, agent: Agent) -> list[str]:
    assert fleet.parent is not None
    return [
        *fleet._twist,
        "--log-format=text",
        "clusternet-agent",
        f"--kubeconfig={child_kubeconfig}",
        f"--cluster-reg-parent-url={fleet.parent.url}",
        f"--cluster-reg-token={BOOTSTRAP_TOKEN}",
        f"--cluster-reg-name={agent.name}",
        f"--cluster-id={agent.cluster_id}",
        # The agents share the child's edge-system, as deploy/agent sets it up,
        # each with a Secret of its own for the parent's credentials.
        "--cluster-reg-namespace=edge-system",
        f"--parent-secret=parent-cluster-{agent.index}",
        "--leader-elect=false",
        "--cluster-status-update-frequency=30s",
        "--cluster-status-collect-frequency=10s",
        "--kube-threads=4",
    ]


def report(agents: list[Agent], fleet: Fleet, grace: str) -> None:
    n = len(agents)
    # (attribute, name in the output, percentiles shown)
    steps = (
        ("seen", "crr_created", ("p50",)),
        ("approved", "approved", ("p50", "p90", "p99")),
        ("attached", "tunnel_up", ("p50", "p99")),
        ("ready", "ready", ("p50", "p99")),
    )
    fractions = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
    for attribute, step, labels in steps:
        samples = [
            getattr(a, attribute) for a in agents if getattr(a, attribute) is not None
        ]
        for label in labels:
            emit(
                f"registration_time_to_{step}_{label}",
                percentile(samples, fractions[label]),
                "s",
                None,
                agents=n,
                reached=len(samples),
            )
    pending = [a.approved - a.seen for a in agents if a.approved and a.seen]
    emit(
        "registration_crr_seen_to_approved_p50",
        percentile(pending, 0.5),
        "s",
        None,
        agents=n,
        note="from the first poll that shows the CRR to the first that shows it "
        "Approved: the hub's approval work, without process start-up",
    )
    rss = [process_rss_kib(a.process.popen.pid) / 1024 for a in agents]
    others = {
        p.name: round(process_rss_kib(p.popen.pid) / 1024, 1)
        for p in fleet.processes
        if not p.name.startswith("agent-bench-")
    }
    emit(
        "registration_agent_rss_mean",
        sum(rss) / len(rss),
        "MiB",
        None,
        max_mib=round(max(rss), 1),
        total_mib=round(sum(rss), 1),
        agents=n,
        **{f"rss_mib_{k.replace('-', '_')}": v for k, v in others.items()},
        lease_grace=grace,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50, help="agents started at once")
    parser.add_argument(
        "--grace",
        default="10s",
        help="the hub's --cluster-lease-grace-period (default 10s)",
    )
    parser.add_argument(
        "--poll", type=float, default=0.25, help="seconds between polls of the parent"
    )
    parser.add_argument(
        "--budget", type=float, default=300.0, help="time limit in seconds"
    )
    parser.add_argument("--data-dir", help="where the fleet keeps state and logs")
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dir (logs) afterwards"
    )
    args = parser.parse_args()
    if not 1 <= args.agents <= 500 or args.poll <= 0:
        parser.error("--agents must be 1..500 and --poll positive")
    grace = parse_duration(args.grace)
    started = time.monotonic()
    deadline = started + args.budget
    made_dir = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="clusternet-bench-reg-"))
    fleet = Fleet(data_dir, children=1, say=say, lease_grace=args.grace)
    parent: Client | None = None
    failed = False
    try:
        fleet.start()
        fleet.wait_ready(timeout=max(10.0, min(120.0, deadline - time.monotonic())))
        assert fleet.parent is not None
        parent = kubeconfig_client(fleet.parent.kubeconfig)
        child = fleet.child_clusters[0]
        memory_before = mem_available_kib()
        agents = [Agent(index) for index in range(args.agents)]
        say(
            f"Starting {args.agents} agents at once against {child.name} "
            f"(fleet up after {time.monotonic() - started:.0f}s)"
        )
        for agent in agents:
            argv = agent_argv(fleet, fleet.agent_kubeconfig(child), agent)
            agent.started = time.monotonic()
            agent.process = fleet._start(f"agent-{agent.name}", argv)
        poll(
            parent, {a.cluster_id: a for a in agents}, deadline - grace - 70, args.poll
        )
        memory_used = (memory_before - mem_available_kib()) / 1024
        report(agents, fleet, args.grace)
        emit(
            "registration_memory_used",
            memory_used,
            "MiB",
            None,
            agents=args.agents,
            note="drop of the machine's MemAvailable after all agents started",
        )
        say(
            f"SIGKILL {agents[0].name} right after a heartbeat; "
            "waiting for its Ready to leave True"
        )
        seconds, since_renewal, state = time_to_unknown(
            fleet, parent, agents[0], grace, args.poll
        )
        emit(
            "registration_kill_to_ready_unknown",
            seconds,
            "s",
            None,
            lease_grace=args.grace,
            since_last_renewal_s=round(since_renewal, 3),
            became=state,
        )
        emit(
            "registration_wall_time",
            time.monotonic() - started,
            "s",
            None,
            agents=args.agents,
        )
        return 0
    except (BenchError, DemoError, OSError) as error:
        say(f"benchmark failed: {error}; logs kept in {data_dir}")
        failed = True
        return 1
    finally:
        if parent is not None:
            parent.close()
        # SIGTERM to every agent at once: Fleet.stop waits for one after another.
        for process in fleet.processes:
            if process.name.startswith("agent-bench-") and process.alive():
                process.popen.send_signal(signal.SIGTERM)
        fleet.stop()
        if made_dir and not args.keep and not failed:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif args.keep:
            say(f"logs kept in {data_dir}")


if __name__ == "__main__":
    sys.exit(main())
