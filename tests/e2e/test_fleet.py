"""
The demo's flow as tests, with real processes: sandbox API servers, twist
clusternet-hub and clusternet-agent, and the real kubectl.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from clusternet.fleet import Fleet

pytestmark = pytest.mark.slow


def eventually(check, timeout: float = 60.0, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(interval)


def through_parent(fleet: Fleet, index: int) -> Path:
    return fleet.child_kubeconfig(fleet.child_clusters[index])


def test_children_are_registered_approved_and_ready(fleet: Fleet) -> None:
    table = fleet.parent_kubectl("get", "clsrr")
    assert table.splitlines()[0].split() == ["NAME", "CLUSTER-ID", "STATUS", "AGE"]
    assert table.count("Approved") == 2
    clusters = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))[
        "items"
    ]
    assert sorted(c["metadata"]["name"] for c in clusters) == ["child-1", "child-2"]
    for cluster in clusters:
        status = cluster["status"]
        assert status["k8sVersion"].startswith("v1.")
        assert status["platform"] == "linux/amd64" or "/" in status["platform"]
        assert status["readyz"] is True and status["healthz"] is True
    wide = fleet.parent_kubectl("get", "mcls", "-A")
    assert "KUBERNETES" in wide and "READYZ" in wide


def test_agents_attach_with_the_tunnel_upgrade_through_the_parent(
    fleet: Fleet,
) -> None:
    kinds = []
    for log in sorted(fleet.data_dir.glob("agent-*.log")):
        kinds += re.findall(r"Tunnel up: \S+ \((\w+)\)", log.read_text())
    assert len(kinds) >= 2 and set(kinds) == {"upgrade"}, kinds


def test_kubectl_reaches_each_child_through_the_parent(fleet: Fleet) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    one, two = through_parent(fleet, 0), through_parent(fleet, 1)
    assert "edge-system" in fleet.run_kubectl(one, "get", "ns")
    fleet.run_kubectl(
        one,
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"from": "parent"},
            }
        ),
    )
    direct_one = fleet.run_kubectl(
        fleet.child_clusters[0].kubeconfig, "get", "cm", name, "-o", "json"
    )
    assert json.loads(direct_one)["data"] == {"from": "parent"}
    missing = fleet.run_kubectl(
        fleet.child_clusters[1].kubeconfig, "get", "cm", name, check=False
    )
    assert "NotFound" in missing or "not found" in missing
    assert name not in fleet.run_kubectl(two, "get", "cm", "-n", "default")
    fleet.run_kubectl(one, "delete", "cm", name, "-n", "default")


def test_watch_through_the_tunnel_sees_changes_as_they_happen(fleet: Fleet) -> None:
    config = through_parent(fleet, 0)
    name = f"watched-{uuid.uuid4().hex[:6]}"
    assert fleet.kubectl is not None
    watch = subprocess.Popen(
        [
            fleet.kubectl,
            "--kubeconfig",
            str(config),
            "get",
            "cm",
            "-n",
            "default",
            "-w",
            "-o",
            "name",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, HOME=str(fleet.data_dir)),
    )
    try:
        time.sleep(1.0)
        fleet.run_kubectl(
            fleet.child_clusters[0].kubeconfig,
            "apply",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default"},
                }
            ),
        )
        assert watch.stdout is not None
        deadline = time.monotonic() + 20
        seen = ""
        while time.monotonic() < deadline:
            line = watch.stdout.readline()
            seen += line
            if name in line:
                break
        assert name in seen, seen
    finally:
        watch.terminate()
        watch.wait(10)


def test_hub_restart_agents_reattach_and_inflight_watches_end(fleet: Fleet) -> None:
    config = through_parent(fleet, 1)
    assert fleet.kubectl is not None and fleet.hub is not None
    watch = subprocess.Popen(
        [fleet.kubectl, "--kubeconfig", str(config), "get", "cm", "-A", "-w"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HOME=str(fleet.data_dir)),
    )
    time.sleep(1.0)
    assert fleet.stop_process(fleet.hub) == 0
    try:
        watch.wait(30)  # the watch ends: it does not hang on a dead hub
    finally:
        if watch.poll() is None:
            watch.kill()
            raise AssertionError("kubectl -w kept hanging after the hub stopped")
    fleet.restart_hub()
    fleet.wait_ready(timeout=90)
    assert "kube-system" in fleet.run_kubectl(config, "get", "ns")


def test_agent_restart_reuses_credentials_and_cluster_id(fleet: Fleet) -> None:
    before_crrs = json.loads(fleet.parent_kubectl("get", "clsrr", "-o", "json"))[
        "items"
    ]
    before_ns = fleet.parent_kubectl("get", "ns", "-o", "name")
    child = fleet.child_clusters[0]
    agent = next(a for a in fleet.agents if a.name == f"agent-{child.name}")
    assert fleet.stop_process(agent) == 0
    fleet.restart_agent(child)
    fleet.wait_ready(timeout=90)
    after_crrs = json.loads(fleet.parent_kubectl("get", "clsrr", "-o", "json"))["items"]
    assert sorted(c["metadata"]["name"] for c in after_crrs) == sorted(
        c["metadata"]["name"] for c in before_crrs
    )
    assert fleet.parent_kubectl("get", "ns", "-o", "name") == before_ns
    assert "kube-system" in fleet.run_kubectl(through_parent(fleet, 0), "get", "ns")


def test_killed_agent_turns_ready_unknown_within_the_grace_period(fleet: Fleet) -> None:
    child = fleet.child_clusters[1]
    agent = next(a for a in fleet.agents if a.name == f"agent-{child.name}")
    fleet.stop_process(agent, signal.SIGKILL)
    killed = time.monotonic()

    def unknown() -> bool:
        mcls = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))[
            "items"
        ]
        for cluster in mcls:
            if cluster["metadata"]["name"] == child.name:
                for condition in cluster["status"].get("conditions", []):
                    if condition["type"] == "Ready":
                        return bool(condition["status"] == "Unknown")
        return False

    eventually(unknown, timeout=60)
    # Grace period 10 s, checks every 5 s, the agent renews every 10 s.
    assert time.monotonic() - killed < 40
    fleet.restart_agent(child)
    fleet.wait_ready(timeout=90)


@pytest.mark.skipif(
    not (
        os.environ.get("CLUSTERNET_E2E_PARENT_KUBECONFIG")
        and os.environ.get("CLUSTERNET_E2E_CHILD_KUBECONFIG")
    ),
    reason="set CLUSTERNET_E2E_PARENT_KUBECONFIG and CLUSTERNET_E2E_CHILD_KUBECONFIG "
    "(and CLUSTERNET_E2E_HUB_HOST, the address the parent reaches this machine at) "
    "to run against real clusters",
)
def test_real_clusters(tmp_path: Path) -> None:
    """
    The same flow against real clusters: the hub and the agent run here as
    local processes, the parent's APIService points at the hub.
    """
    fleet = Fleet(
        tmp_path,
        children=1,
        parent_kubeconfig=Path(os.environ["CLUSTERNET_E2E_PARENT_KUBECONFIG"]),
        child_kubeconfigs=[Path(os.environ["CLUSTERNET_E2E_CHILD_KUBECONFIG"])],
        hub_host=os.environ.get("CLUSTERNET_E2E_HUB_HOST", "localhost"),
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=180)
        assert "kube-system" in fleet.run_kubectl(through_parent(fleet, 0), "get", "ns")
    finally:
        fleet.stop()
