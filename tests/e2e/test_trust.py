"""
The trust issue's attacks, run against a fleet that runs as the shipped
identities: what the shared bootstrap token or one cluster's credentials can
get, a second agent claiming a cluster ID, a forged approval, and what a
made-up cluster may do in the parent; and credentials rotated under a watch.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet.fleet import BOOTSTRAP_TOKEN, Cluster, Fleet
from clusternet.sealing import (
    generate_key,
    open_sealed,
    public_key_pem,
    sealing_context,
)
from tests.support.parent import eventually, parent_request

pytestmark = pytest.mark.slow

CRRS = "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests"
SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("trust")
    fleet = Fleet(
        data,
        children=2,
        say=lambda line: None,
        status_frequency="3s",
        lease_grace="10s",
        agent_args=["--credential-check-frequency=2s"],
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


def request(
    fleet: Fleet,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    return parent_request(fleet, method, path, token=token, body=body, headers=headers)


def clusters(fleet: Fleet) -> dict[str, str]:
    items = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))
    return {i["metadata"]["name"]: i["spec"]["clusterId"] for i in items["items"]}


def agent_token(fleet: Fleet, child: Cluster) -> str:
    secret = json.loads(
        fleet.cluster_kubectl(
            child, "get", "secret", "parent-cluster", "-n", "edge-system", "-o", "json"
        )
    )
    return base64.b64decode(secret["data"]["token"]).decode()


UPGRADE = {"Connection": "Upgrade", "Upgrade": "clusternet-tunnel.v1"}


def test_no_parent_token_of_another_cluster_can_be_read_or_used(fleet: Fleet) -> None:
    ids = clusters(fleet)
    b = ids["child-2"]
    # With the shared bootstrap token: the request is readable, its token is not.
    code, crr = request(fleet, "GET", f"{CRRS}/clusternet-{b}", BOOTSTRAP_TOKEN)
    assert code == 200, crr
    status = crr["status"]
    assert not status.get("token")
    sealed = status["sealedToken"]
    for guess in (sealed, sealed.removeprefix("v1.")):
        code, _ = request(fleet, "GET", f"{SOCKETS}/{b}", guess, headers=UPGRADE)
        assert code == 401
    # Nor does the bootstrap token attach B's tunnel.
    code, body = request(
        fleet, "GET", f"{SOCKETS}/{b}", BOOTSTRAP_TOKEN, headers=UPGRADE
    )
    assert code == 403, body
    # With cluster A's own credentials: B's request is not even readable.
    a_token = agent_token(fleet, fleet.child_clusters[0])
    code, body = request(fleet, "GET", f"{CRRS}/clusternet-{b}", a_token)
    assert code == 403, body
    code, body = request(fleet, "GET", f"{SOCKETS}/{b}", a_token, headers=UPGRADE)
    assert code == 403, body
    # A's credentials read nothing else of the parent's either.
    for path in ("/api/v1/secrets", "/api/v1/namespaces/kube-system/secrets"):
        code, _ = request(fleet, "GET", path, a_token)
        assert code == 403


def test_a_second_agent_claiming_a_cluster_id_gets_nothing(fleet: Fleet) -> None:
    ids = clusters(fleet)
    a = ids["child-1"]
    victim = fleet.child_clusters[0]
    marker = f"genuine-{uuid.uuid4().hex[:6]}"
    fleet.cluster_kubectl(victim, "create", "configmap", marker, "-n", "default")
    via_parent = fleet.child_kubeconfig(victim)
    thief_name = f"thief-{uuid.uuid4().hex[:4]}"
    fleet._agent_args_for = lambda f, c: (
        [f"--cluster-id={a}"] if c.name == thief_name else []
    )
    thief = fleet.add_child(thief_name)
    try:
        log = fleet.data_dir / f"agent-{thief.name}.log"
        eventually(
            lambda: log.exists() and "with another key" in log.read_text(), timeout=60
        )
        # Meanwhile and after, A's requests reach A's own child, without a gap.
        for _ in range(10):
            seen = fleet.run_kubectl(via_parent, "get", "cm", "-n", "default")
            assert marker in seen
            time.sleep(0.5)
        text = log.read_text()
        assert "Tunnel up" not in text and "Registered" not in text
        # Whoever runs that child sees why in its edge-system.
        events = fleet.cluster_kubectl(
            thief, "get", "events", "-n", "edge-system", "-o", "json"
        )
        reasons = {e["reason"] for e in json.loads(events)["items"]}
        assert "RegistrationKeyConflict" in reasons
    finally:
        agent = next(p for p in fleet.agents if p.name == f"agent-{thief.name}")
        fleet.stop_process(agent)
        fleet.child_clusters.remove(thief)
        fleet.children -= 1


def _made_up_request(fleet: Fleet, cluster_id: str, key_pem: str) -> dict[str, Any]:
    body = {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": f"clusternet-{cluster_id}"},
        "spec": {
            "clusterId": cluster_id,
            "clusterName": f"made-up-{cluster_id[:4]}",
            "clusterType": "EdgeClusterSelfProvisioned",
            "publicKey": key_pem,
        },
        "status": {
            "result": "Approved",
            "dedicatedNamespace": "kube-system",
            "token": base64.b64encode(b"attacker-token").decode(),
        },
    }
    code, created = request(fleet, "POST", CRRS, BOOTSTRAP_TOKEN, body)
    assert code == 201, created
    return dict(created)


def test_a_pre_approved_request_is_not_believed(fleet: Fleet) -> None:
    key = generate_key()
    cluster_id = str(uuid.uuid4())
    created = _made_up_request(fleet, cluster_id, public_key_pem(key))
    # The status sent on create is dropped (as a real server does) ...
    assert created.get("status", {}).get("result") != "Approved"
    # ... and one written afterwards by someone else is not believed either.
    forged = {"status": {"result": "Approved", "dedicatedNamespace": "kube-system"}}
    fleet.parent_kubectl(
        "patch",
        "clsrr",
        f"clusternet-{cluster_id}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(forged),
    )

    def rewritten() -> dict[str, Any] | None:
        _code, crr = request(
            fleet, "GET", f"{CRRS}/clusternet-{cluster_id}", BOOTSTRAP_TOKEN
        )
        status = crr.get("status") or {}
        ns = status.get("dedicatedNamespace", "")
        return (
            crr if ns.startswith("clusternet-") and status.get("sealedToken") else None
        )

    crr = eventually(rewritten, timeout=30)
    assert crr["status"]["dedicatedNamespace"] != "kube-system"


def test_a_made_up_cluster_gets_a_restricted_namespace_and_no_pods(
    fleet: Fleet,
) -> None:
    key = generate_key()
    cluster_id = str(uuid.uuid4())
    _made_up_request(fleet, cluster_id, public_key_pem(key))

    def approved() -> dict[str, Any] | None:
        _code, crr = request(
            fleet, "GET", f"{CRRS}/clusternet-{cluster_id}", BOOTSTRAP_TOKEN
        )
        return crr if (crr.get("status") or {}).get("sealedToken") else None

    crr = eventually(approved, timeout=30)
    namespace = crr["status"]["dedicatedNamespace"]
    token = open_sealed(
        key,
        crr["status"]["sealedToken"],
        sealing_context(cluster_id, crr["metadata"]["uid"]),
    ).decode()
    ns = json.loads(fleet.parent_kubectl("get", "ns", namespace, "-o", "json"))
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": namespace},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {"privileged": True},
                    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                }
            ],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        },
    }
    code, body = request(
        fleet, "POST", f"/api/v1/namespaces/{namespace}/pods", token, pod
    )
    assert code == 403, body
    for resource in ("secrets", "serviceaccounts", "roles"):
        group = "apis/rbac.authorization.k8s.io/v1" if resource == "roles" else "api/v1"
        code, _ = request(
            fleet, "GET", f"/{group}/namespaces/{namespace}/{resource}", token
        )
        assert code == 403, resource


def test_rotated_credentials_under_a_watch(fleet: Fleet) -> None:
    """
    An operator asks for a new token of cluster A (the old one is revoked at
    once): the agent takes the next one, a watch through the parent may end
    once, and the next request works; the cluster stays Ready.
    """
    child = fleet.child_clusters[1]
    ids = clusters(fleet)
    old = agent_token(fleet, child)
    via_parent = fleet.child_kubeconfig(child)
    assert fleet.kubectl is not None
    watch = subprocess.Popen(
        [fleet.kubectl, "--kubeconfig", str(via_parent), "get", "cm", "-A", "-w"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HOME=str(fleet.data_dir)),
    )
    try:
        fleet.parent_kubectl(
            "annotate",
            "clsrr",
            f"clusternet-{ids[child.name]}",
            "--overwrite",
            f"clusters.clusternet.io/rotate-credentials={uuid.uuid4().hex}",
        )
        eventually(lambda: agent_token(fleet, child) != old, timeout=60)
        code, _ = request(fleet, "GET", f"{CRRS}/clusternet-{ids[child.name]}", old)
        assert code == 401  # revoked
        assert "kube-system" in fleet.run_kubectl(via_parent, "get", "ns")
        eventually(
            lambda: fleet.cluster_states().get(child.name) == "Ready, tunnel up",
            timeout=30,
        )
        log = (fleet.data_dir / f"agent-{child.name}.log").read_text()
        assert "Using the parent's new token" in log
    finally:
        watch.terminate()
        watch.wait(10)


def test_manual_approval_waits_for_an_operator(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data: Path = tmp_path_factory.mktemp("manual")
    fleet = Fleet(
        data,
        children=1,
        say=lambda line: None,
        status_frequency="3s",
        hub_args=["--cluster-approval=manual"],
    )
    try:
        fleet.start()

        def waiting() -> bool:
            return fleet.cluster_states().get("child-1") == "Pending"

        eventually(waiting, timeout=30)
        table = fleet.parent_kubectl("get", "clsrr")
        assert "Pending" in table
        assert fleet.parent is not None
        time.sleep(3)  # nothing happens by itself
        assert waiting()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "clusternet",
                "approve",
                "child-1",
                "--kubeconfig",
                str(fleet.parent.kubeconfig),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "Approved" in result.stdout
        fleet.wait_ready(timeout=60)
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-3000:]}")
        raise
    finally:
        fleet.stop()
