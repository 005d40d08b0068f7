"""
A child cannot lie about another: a ManagedCluster written in child-1's
dedicated namespace that claims child-2's cluster ID with a forged status
(v9.9.9, Ready=True) is ignored by the hub's health controller, by
C{kubectl get sockets} and by C{clusternet get clusters}, with real processes.

The forgery is written as the parent's admin, standing in for child-1's own
credentials, which today may create ManagedClusters in child-1's namespace.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.fleet import Fleet
from tests.support.parent import eventually

pytestmark = pytest.mark.slow

FORGED_VERSION = "v9.9.9"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("trust-managedclusters")
    fleet = Fleet(
        data,
        children=2,
        say=lambda line: None,
        status_frequency="5s",
        lease_grace="10s",
    )
    try:
        fleet.start()
        fleet.wait_ready(120)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        fleet.stop()


def registered(fleet: Fleet) -> dict[str, dict[str, str]]:
    """
    Each child's cluster ID, dedicated namespace and ManagedCluster name, as
    the hub wrote them in its registration request.
    """
    crrs = json.loads(fleet.parent_kubectl("get", "clsrr", "-o", "json"))["items"]
    return {
        crr["spec"]["clusterName"]: {
            "id": crr["spec"]["clusterId"],
            "namespace": crr["status"]["dedicatedNamespace"],
            "name": crr["status"]["managedClusterName"],
        }
        for crr in crrs
    }


def managed_clusters(fleet: Fleet) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        fleet.parent_kubectl("get", "mcls", "-A", "-o", "json")
    )["items"]
    return items


def managed_cluster(fleet: Fleet, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        fleet.parent_kubectl("get", "mcls", name, "-n", namespace, "-o", "json")
    )
    return found


def ready(mcls: dict[str, Any]) -> dict[str, Any]:
    for condition in (mcls.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def get_clusters(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    assert fleet.parent is not None
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "clusternet",
            "get",
            "clusters",
            "--kubeconfig",
            str(fleet.parent.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def hub_warnings(fleet: Fleet, namespace: str, name: str) -> list[str]:
    assert fleet.hub is not None
    pattern = re.compile(
        rf"Ignoring ManagedCluster {re.escape(namespace)}/{re.escape(name)}\b"
    )
    return [
        line for line in fleet.hub.log.read_text().splitlines() if pattern.search(line)
    ]


@pytest.fixture(scope="module")
def forgery(fleet: Fleet) -> dict[str, Any]:
    """
    child-1's namespace gets a ManagedCluster named as child-2's, claiming
    child-2's ID, with a forged status: the details of both.
    """
    children = registered(fleet)
    one, two = children["child-1"], children["child-2"]
    forged = {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ManagedCluster",
        "metadata": {
            "name": two["name"],
            "namespace": one["namespace"],
            "labels": {
                "clusters.clusternet.io/cluster-id": two["id"],
                "clusters.clusternet.io/cluster-name": "child-2",
                "clusternet.io/created-by": "clusternet-agent",
            },
        },
        "spec": {"clusterId": two["id"], "clusterType": "EdgeClusterSelfProvisioned"},
    }
    fleet.parent_kubectl("create", "-f", "-", stdin=json.dumps(forged))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "status": {
            "k8sVersion": FORGED_VERSION,
            "platform": "linux/amd64",
            "healthz": True,
            "readyz": True,
            "livez": True,
            "lastObservedTime": now,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ClusterReady",
                    "message": "forged",
                    "lastTransitionTime": now,
                }
            ],
        }
    }
    fleet.parent_kubectl(
        "patch",
        "mcls",
        two["name"],
        "-n",
        one["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    return {"one": one, "two": two, "namespace": one["namespace"], "name": two["name"]}


def test_the_forgery_exists_as_written(fleet: Fleet, forgery: dict[str, Any]) -> None:
    mcls = managed_cluster(fleet, forgery["namespace"], forgery["name"])
    assert mcls["spec"]["clusterId"] == forgery["two"]["id"]
    assert mcls["status"]["k8sVersion"] == FORGED_VERSION
    assert ready(mcls)["status"] == "True"


def test_get_clusters_does_not_list_the_forgery(
    fleet: Fleet, forgery: dict[str, Any]
) -> None:
    result = get_clusters(fleet)
    assert result.returncode == 0, result.stderr
    assert FORGED_VERSION not in result.stdout
    header, *rows = result.stdout.splitlines()
    assert header.split()[-1] == "TUNNEL"  # verified: no VERIFIED column
    cells = [row.split() for row in rows]
    assert sorted((c[1], c[2]) for c in cells) == sorted(
        [
            (forgery["one"]["id"], forgery["one"]["namespace"]),
            (forgery["two"]["id"], forgery["two"]["namespace"]),
        ]
    )
    assert not [c for c in cells if c[2] == forgery["namespace"] and c[0] != "child-1"]
    warning = f"ignoring ManagedCluster {forgery['namespace']}/{forgery['name']}"
    assert warning in result.stderr
    assert forgery["two"]["id"] in result.stderr


def test_kubectl_get_sockets_is_unaffected(
    fleet: Fleet, forgery: dict[str, Any]
) -> None:
    assert fleet.parent is not None
    listed = json.loads(
        fleet.eventually_kubectl(
            fleet.parent.kubeconfig, "get", "sockets", "-o", "json"
        )
    )
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == sorted(
        [forgery["one"]["id"], forgery["two"]["id"]]
    )
    table = fleet.parent_kubectl("get", "sockets").strip().splitlines()
    assert len(table) == 3
    assert {line.split()[0] for line in table[1:]} == {
        forgery["one"]["id"],
        forgery["two"]["id"],
    }


def test_the_hub_ignores_the_forgery_and_says_so_once(
    fleet: Fleet, forgery: dict[str, Any]
) -> None:
    eventually(
        lambda: hub_warnings(fleet, forgery["namespace"], forgery["name"]),
        retry_on=(Exception,),
    )
    # No heartbeat Lease of child-2 exists in child-1's namespace: were the
    # forgery checked, it would turn Unknown after the 10 s grace period.
    time.sleep(20)
    mcls = managed_cluster(fleet, forgery["namespace"], forgery["name"])
    assert ready(mcls)["status"] == "True"
    assert ready(mcls)["message"] == "forged"
    assert mcls["status"]["k8sVersion"] == FORGED_VERSION
    genuine = managed_cluster(
        fleet, forgery["two"]["namespace"], forgery["two"]["name"]
    )
    assert ready(genuine)["status"] == "True"
    assert genuine["status"]["k8sVersion"] != FORGED_VERSION
    fleet.parent_kubectl(
        "patch",
        "mcls",
        forgery["name"],
        "-n",
        forgery["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"platform": "linux/arm64"}}),
    )
    time.sleep(6)
    assert len(hub_warnings(fleet, forgery["namespace"], forgery["name"])) == 1


def test_a_dead_child_turns_unknown_whatever_the_forgery_says(
    fleet: Fleet, forgery: dict[str, Any]
) -> None:
    """
    Last in the module: child-2's agent stops. Its genuine ManagedCluster turns
    Ready=Unknown; the forgery stays as written and is still not listed.
    """
    child = next(c for c in fleet.child_clusters if c.name == "child-2")
    agent = next(a for a in fleet.agents if a.name == "agent-child-2")
    fleet.stop_process(agent)
    try:
        two = forgery["two"]
        eventually(
            lambda: (
                ready(managed_cluster(fleet, two["namespace"], two["name"])).get(
                    "status"
                )
                == "Unknown"
            ),
            timeout=60,
            retry_on=(Exception,),
        )
        forged = managed_cluster(fleet, forgery["namespace"], forgery["name"])
        assert ready(forged)["status"] == "True"
        result = get_clusters(fleet)
        (row,) = [r.split() for r in result.stdout.splitlines() if two["id"] in r]
        assert row[2] == two["namespace"] and row[3] == "Unknown"
        assert FORGED_VERSION not in result.stdout
    finally:
        fleet.restart_agent(child)
