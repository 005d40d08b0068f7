"""
Issue 6's security matrix against the real parent's RBAC, with real processes:
each request is refused with the right status and nothing reaches the child.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.fleet import Fleet

pytestmark = pytest.mark.slow
SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    fleet = Fleet(
        tmp_path_factory.mktemp("security"), children=2, say=lambda line: None
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet
    finally:
        fleet.stop()


def ids(fleet: Fleet) -> dict[str, str]:
    items = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))["items"]
    return {i["metadata"]["name"]: i["spec"]["clusterId"] for i in items}


def request(
    fleet: Fleet,
    path: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    port: int | None = None,
    cafile: Path | None = None,
) -> tuple[int, Any]:
    assert fleet.parent is not None
    if port is None:
        server = yaml.safe_load(fleet.parent.kubeconfig.read_text())["clusters"][0][
            "cluster"
        ]["server"]
        port = int(server.rsplit(":", 1)[1])
    context = ssl.create_default_context(
        cafile=str(cafile or fleet.parent.data_dir / "ca.crt")
    )
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, timeout=30
    )
    connection.request("GET", path, headers=all_headers)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body


def sa_token(fleet: Fleet, name: str) -> str:
    fleet.parent_kubectl("create", "serviceaccount", name, "-n", "default")
    return fleet.parent_kubectl("create", "token", name, "-n", "default").strip()


def test_no_credentials_are_refused(fleet: Fleet) -> None:
    cluster = ids(fleet)["child-1"]
    code, body = request(fleet, f"{SOCKETS}/{cluster}/proxy/direct/api/v1/namespaces")
    # The parent allows anonymous requests (for cluster-info); the hub refuses them.
    assert code in (401, 403), body
    assert body["kind"] == "Status"


def test_a_user_without_sockets_rbac_is_forbidden_and_rbac_is_per_cluster(
    fleet: Fleet,
) -> None:
    clusters = ids(fleet)
    token = sa_token(fleet, "viewer")
    code, body = request(
        fleet, f"{SOCKETS}/{clusters['child-1']}/proxy/direct/api/v1/namespaces", token
    )
    assert code == 403, body
    assert 'cannot get resource "sockets/proxy"' in body["message"]
    rules = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reach-child-1"},
        "rules": [
            {
                "apiGroups": ["proxies.clusternet.io"],
                "resources": ["sockets/proxy"],
                "resourceNames": [clusters["child-1"]],
                "verbs": ["get"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "reach-child-1"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "reach-child-1",
        },
        "subjects": [
            {"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}
        ],
    }
    fleet.parent_kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([rules, binding]))
    # The hub caches denials for 5 s.
    import time

    deadline = time.monotonic() + 20
    while True:
        code, body = request(
            fleet, f"{SOCKETS}/{clusters['child-1']}/proxy/direct/version", token
        )
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 200, body
    assert body["gitVersion"].startswith("v1.")
    # The child decides what the parent's user may do there: impersonated, with no
    # RBAC in the child, the service account may not list namespaces.
    code, body = request(
        fleet, f"{SOCKETS}/{clusters['child-1']}/proxy/direct/api/v1/namespaces", token
    )
    assert code == 403
    assert "system:serviceaccount:default:viewer" in body["message"]
    assert "namespaces" in body["message"]
    code, body = request(
        fleet, f"{SOCKETS}/{clusters['child-2']}/proxy/direct/version", token
    )
    assert code == 403, body
    assert "sockets/proxy" in body["message"]


def test_cluster_a_agent_cannot_attach_as_cluster_b(fleet: Fleet) -> None:
    clusters = ids(fleet)
    child_a = fleet.child_clusters[0]
    secret = json.loads(
        fleet.run_kubectl(
            child_a.kubeconfig,
            "get",
            "secret",
            "parent-cluster",
            "-n",
            "edge-system",
            "-o",
            "json",
        )
    )
    token = base64.b64decode(secret["data"]["token"]).decode()
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Sec-WebSocket-Protocol": "clusternet-tunnel.v1",
    }
    code, body = request(fleet, f"{SOCKETS}/{clusters['child-2']}", token, upgrade)
    assert code == 403, body
    assert "sockets" in body["message"]


def test_forged_remote_user_without_the_front_proxy_certificate_is_401(
    fleet: Fleet,
) -> None:
    clusters = ids(fleet)
    code, body = request(
        fleet,
        f"{SOCKETS}/{clusters['child-1']}/proxy/direct/api/v1/namespaces",
        headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
        port=fleet.hub_port,
        cafile=fleet.data_dir / "hub-ca.crt",
    )
    assert code == 401, body
