"""
The life cycle of a registration with real processes: status reported at the
configured frequency, two agent replicas with one leader and a failover, and a
cluster that registers while the hub is down, approved once it is back.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.fleet import Fleet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("lifecycle")
    fleet = Fleet(
        data,
        children=1,
        say=lambda line: None,
        status_frequency="3s",
        lease_grace="10s",
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-3000:]}")
        raise
    finally:
        fleet.stop()


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.3)


def managed_cluster(fleet: Fleet, name: str) -> dict[str, Any]:
    items = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))["items"]
    return next(i for i in items if i["metadata"]["name"] == name)


def attached(fleet: Fleet) -> set[str]:
    raw = fleet.parent_kubectl(
        "get", "--raw", "/apis/proxies.clusternet.io/v1alpha1/sockets"
    )
    return {i["metadata"]["name"] for i in json.loads(raw)["items"]}


def leader(fleet: Fleet, child: Any) -> str:
    lease = json.loads(
        fleet.run_kubectl(
            child.kubeconfig,
            "get",
            "lease",
            "self-cluster",
            "-n",
            "edge-system",
            "-o",
            "json",
        )
    )
    return str(lease["spec"].get("holderIdentity") or "")


def test_status_is_reported_at_the_configured_frequency(fleet: Fleet) -> None:
    name = fleet.child_clusters[0].name
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(seen) < 3:
        seen.add(managed_cluster(fleet, name)["status"]["lastObservedTime"])
        time.sleep(0.5)
    # Every 3 s: at least three distinct reports within 15 s.
    assert len(seen) >= 3, seen


def test_two_replicas_elect_one_leader_and_the_standby_takes_over(fleet: Fleet) -> None:
    child = fleet.child_clusters[0]
    cluster_id = managed_cluster(fleet, child.name)["spec"]["clusterId"]
    first = next(a for a in fleet.agents if a.name == f"agent-{child.name}")
    standby = fleet.start_agent_replica(child, "b")
    time.sleep(4)
    assert standby.alive() and first.alive()
    holder = leader(fleet, child)
    assert holder
    assert attached(fleet) == {cluster_id}
    crrs = fleet.parent_kubectl("get", "clsrr", "-o", "name").split()
    fleet.stop_process(first, signal.SIGKILL)
    killed = time.monotonic()
    eventually(lambda: leader(fleet, child) not in ("", holder), timeout=40)
    took_over = time.monotonic() - killed
    fleet.wait_ready(timeout=60)
    assert cluster_id in attached(fleet)
    # Within the lease duration (15 s) plus one retry period; no second request.
    assert took_over < 25, took_over
    assert fleet.parent_kubectl("get", "clsrr", "-o", "name").split() == crrs


def test_a_cluster_registering_while_the_hub_is_down_is_approved_after_restart(
    fleet: Fleet,
) -> None:
    assert fleet.hub is not None
    assert fleet.stop_process(fleet.hub) == 0
    late = fleet.add_child("child-late")

    def pending() -> bool:
        items = json.loads(fleet.parent_kubectl("get", "clsrr", "-o", "json"))["items"]
        return any(
            i["spec"].get("clusterName") == late.name
            and not (i.get("status") or {}).get("result")
            for i in items
        )

    eventually(pending, timeout=60)
    time.sleep(2)
    assert pending(), "nothing may approve while the hub is down"
    fleet.restart_hub()
    fleet.wait_ready(timeout=90)
    namespaces = [
        n
        for n in fleet.parent_kubectl("get", "ns", "-o", "name").split()
        if n.startswith("namespace/clusternet-") and n != "namespace/clusternet-system"
    ]
    assert len(namespaces) == 2  # one per cluster, never a second one
