"""
Parent users of every kind reach a child through the parent, in every identity
mode, with the hub and the agents running as the ServiceAccounts and RBAC that
deploy/ ships; and the harness is honest: take a rule the agent needs out of
the shipped RBAC and the flow fails as on a real cluster.

What the child sees is asked of the child itself: a SelfSubjectReview sent
through the parent answers with the user the child authenticated.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from clusternet import pki
from clusternet.apis import RBAC_AUTOUPDATE_ANNOTATION
from clusternet.fleet import Cluster, Fleet, shipped_objects
from tests.support.parent import eventually, parent_request

pytestmark = pytest.mark.slow

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
AGENT_USER = "system:serviceaccount:edge-system:clusternet-agent"
ROLE_REF_CLUSTER = str(uuid.uuid4())


def _kubectl_proxy(fleet: Fleet, child: Cluster) -> list[str]:
    """
    The child of the C{none} mode is an http endpoint, as C{kubectl proxy}
    (with the agent's own ServiceAccount) is: the agent adds no credentials.
    """
    assert fleet.kubectl is not None
    port = _free_port()
    proxy = subprocess.Popen(
        [
            fleet.kubectl,
            "--kubeconfig",
            str(fleet.agent_kubeconfig(child)),
            "proxy",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    PROXIES.append(proxy)
    server = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/version")
            if connection.getresponse().status == 200:
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    config = fleet.data_dir / f"{child.name}-http.kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return ["--identity-mode=none", f"--kubeconfig={config}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROXIES: list[subprocess.Popen[bytes]] = []


def agent_args(fleet: Fleet, child: Cluster) -> Sequence[str]:
    if child.name == "child-token":
        return ["--identity-mode=token"]
    if child.name == "child-none":
        return _kubectl_proxy(fleet, child)
    if child.name == "child-roleref":
        return [f"--cluster-id={ROLE_REF_CLUSTER}"]
    return []


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("identities")
    fleet = Fleet(
        data,
        children=1,
        say=lambda line: None,
        status_frequency="5s",
        lease_grace="10s",
        agent_args_for=agent_args,
    )
    try:
        fleet.start()
        fleet.add_child("child-token")
        fleet.add_child("child-none")
        fleet.wait_ready(timeout=120)
        _grant_parent_users(fleet)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-3000:]}")
        raise
    finally:
        fleet.stop()
        for proxy in PROXIES:
            proxy.terminate()
            proxy.wait(10)


def _grant_parent_users(fleet: Fleet) -> None:
    """
    In the parent: the team's users and a ServiceAccount may use every
    cluster's sockets/proxy.
    """
    assert fleet.parent is not None
    fleet.parent_kubectl("create", "serviceaccount", "parent-user", "-n", "default")
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "e2e-reach-children"},
        "rules": [
            {
                "apiGroups": ["proxies.clusternet.io"],
                "resources": ["sockets/proxy"],
                "verbs": ["*"],
            },
            # clusternet kubeconfig finds a cluster's ID by its name.
            {
                "apiGroups": ["clusters.clusternet.io"],
                "resources": ["managedclusters"],
                "verbs": ["get", "list"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "e2e-reach-children"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "e2e-reach-children",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "team"},
            {"kind": "ServiceAccount", "name": "parent-user", "namespace": "default"},
        ],
    }
    fleet.apply(fleet.parent, [role, binding])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runner", "namespace": "default"},
        "spec": {
            "serviceAccountName": "parent-user",
            "containers": [{"name": "c", "image": "example.invalid/runner"}],
        },
    }
    fleet.apply(fleet.parent, [pod])


# -- the parent's users -------------------------------------------------------------


class ParentUser:
    """
    How one kind of parent user authenticates to the parent.
    """

    def __init__(
        self,
        name: str,
        cert: tuple[Path, Path] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cert = cert
        self.token = token
        self.headers = dict(headers or {})

    def request(
        self,
        fleet: Fleet,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        return parent_request(
            fleet,
            method,
            path,
            token=self.token,
            cert=self.cert,
            body=body,
            headers=dict(self.headers, **(headers or {})),
        )


def _certificate_id(cert_file: Path) -> str:
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = certificate.public_bytes(Encoding.DER)
    return "X509SHA256=" + hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def users(fleet: Fleet) -> dict[str, ParentUser]:
    assert fleet.parent is not None
    data = fleet.parent.data_dir
    ca = pki.load_pem_pair(
        (data / "ca.crt").read_bytes(), (data / "ca.key").read_bytes()
    )
    alice = pki.issue_certificate(ca, "alice", organizations=["team"], client=True)
    alice_crt, alice_key = fleet.data_dir / "alice.crt", fleet.data_dir / "alice.key"
    alice_crt.write_bytes(alice.certificate_pem)
    alice_key.write_bytes(alice.key_pem)
    token = fleet.parent_kubectl(
        "create", "token", "parent-user", "-n", "default"
    ).strip()
    bound = fleet.parent_kubectl(
        "create",
        "token",
        "parent-user",
        "-n",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=runner",
    ).strip()
    return {
        "x509-admin": ParentUser(
            "x509-admin", cert=(data / "admin.crt", data / "admin.key")
        ),
        "x509-team": ParentUser("x509-team", cert=(alice_crt, alice_key)),
        "service-account": ParentUser("service-account", token=token),
        "bound-token": ParentUser("bound-token", token=bound),
        "front-proxy": ParentUser(
            "front-proxy",
            cert=(data / "front-proxy-client.crt", data / "front-proxy-client.key"),
            headers={
                "X-Remote-User": "frank",
                "X-Remote-Group": "team",
                "X-Remote-Extra-Acme.com%2fproject": "p1",
                "X-Remote-Extra-Authentication.kubernetes.io%2fcredential-id": (
                    "X509SHA256=0011"
                ),
            },
        ),
    }


def cluster_id(fleet: Fleet, name: str) -> str:
    items = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))
    for item in items["items"]:
        if item["metadata"]["name"] == name:
            return str(item["spec"]["clusterId"])
    raise AssertionError(f"no ManagedCluster {name}")


def whoami(
    fleet: Fleet,
    user: ParentUser,
    child: str,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """
    The user the child sees for C{user}'s request through the parent.
    """
    path = f"{SOCKETS}/{cluster_id(fleet, child)}/proxy/direct{SSR}"
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, answer = eventually(
        lambda: _accepted(user.request(fleet, "POST", path, body, headers))
    )
    assert code == 201, answer
    info: dict[str, Any] = answer["status"]["userInfo"]
    return info


def _accepted(result: tuple[int, Any]) -> tuple[int, Any] | None:
    # The hub caches a denial for a few seconds after RBAC changes.
    return None if result[0] == 403 and "sockets" in str(result[1]) else result


# -- impersonate ------------------------------------------------------------------


def test_an_x509_admin_is_impersonated_without_system_masters(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    assert fleet.parent is not None
    seen = whoami(fleet, users["x509-admin"], "child-1")
    assert seen["username"] == "kubernetes-admin"
    assert "system:masters" not in seen.get("groups", [])
    assert seen["extra"] == {
        CREDENTIAL_ID: [_certificate_id(fleet.parent.data_dir / "admin.crt")]
    }


def test_an_x509_team_user_keeps_their_groups_and_the_childs_rbac_applies(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    seen = whoami(fleet, users["x509-team"], "child-1")
    assert seen["username"] == "alice"
    assert "team" in seen["groups"]
    assert seen["extra"][CREDENTIAL_ID][0].startswith("X509SHA256=")
    # No RBAC for alice in the child: listing namespaces there is refused.
    path = f"{SOCKETS}/{cluster_id(fleet, 'child-1')}/proxy/direct/api/v1/namespaces"
    code, body = users["x509-team"].request(fleet, "GET", path)
    assert code == 403, body
    assert 'User "alice" cannot list resource "namespaces"' in body["message"]


def test_a_service_account_token_user(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    seen = whoami(fleet, users["service-account"], "child-1")
    assert seen["username"] == "system:serviceaccount:default:parent-user"
    assert sorted(seen["groups"]) == [
        "system:authenticated",
        "system:serviceaccounts",
        "system:serviceaccounts:default",
    ]
    assert seen["extra"][CREDENTIAL_ID][0].startswith("JTI=")


def test_a_bound_token_user_keeps_the_pod_extras(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    seen = whoami(fleet, users["bound-token"], "child-1")
    assert seen["username"] == "system:serviceaccount:default:parent-user"
    assert seen["extra"][POD_NAME] == ["runner"]
    assert len(seen["extra"][POD_UID]) == 1
    assert seen["extra"][CREDENTIAL_ID][0].startswith("JTI=")


def test_a_front_proxy_user_keeps_the_kubernetes_extras_only(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    seen = whoami(fleet, users["front-proxy"], "child-1")
    assert seen["username"] == "frank"
    assert "team" in seen["groups"]
    # acme.com/project is not among the agent's --impersonate-extras.
    assert seen["extra"] == {CREDENTIAL_ID: ["X509SHA256=0011"]}


def test_kubectl_through_the_parent_as_a_team_user(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    """
    C{clusternet kubeconfig} from a non-admin parent kubeconfig, then plain
    kubectl.
    """
    assert fleet.parent is not None
    parent = yaml.safe_load(fleet.parent.kubeconfig.read_text())
    cert, key = users["x509-team"].cert or (Path(), Path())
    parent["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    alice_parent = fleet.data_dir / "alice-parent.kubeconfig"
    alice_parent.write_text(yaml.safe_dump(parent))
    out = fleet.data_dir / "alice-child-1.kubeconfig"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clusternet",
            "kubeconfig",
            "child-1",
            "--kubeconfig",
            str(alice_parent),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(fleet.run_kubectl(out, "auth", "whoami", "-o", "json"))
    assert answer["status"]["userInfo"]["username"] == "alice"
    denied = fleet.run_kubectl(out, "get", "ns", check=False)
    assert 'User "alice" cannot list resource "namespaces"' in denied


# -- token --------------------------------------------------------------------------


def test_token_mode_every_kind_of_parent_user_brings_a_child_token(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    child = next(c for c in fleet.child_clusters if c.name == "child-token")
    fleet.cluster_kubectl(
        child, "create", "serviceaccount", "deployer", "-n", "default"
    )
    token = fleet.cluster_kubectl(
        child, "create", "token", "deployer", "-n", "default"
    ).strip()
    impersonate = {
        "Impersonate-User": "clusternet",
        "Impersonate-Extra-Clusternet-Token": token,
    }
    for user in users.values():
        seen = whoami(fleet, user, "child-token", impersonate)
        assert seen["username"] == "system:serviceaccount:default:deployer", user.name
    # Without a child token the agent says what to set.
    path = f"{SOCKETS}/{cluster_id(fleet, 'child-token')}/proxy/direct/api"
    code, body = users["x509-team"].request(fleet, "GET", path)
    assert code == 401, body
    assert "clusternet-token" in body["message"]


# -- none ---------------------------------------------------------------------------


def test_none_mode_passes_no_identity(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    for user in users.values():
        seen = whoami(fleet, user, "child-none")
        # The http endpoint's own credentials (kubectl proxy, as the agent's
        # ServiceAccount), whoever the parent user is.
        assert seen["username"] == AGENT_USER, user.name


# -- the harness is honest ------------------------------------------------------------


def test_without_the_userextras_rule_the_child_refuses_as_a_real_server_does(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    child = fleet.child_clusters[0]
    shipped = [
        o
        for o in shipped_objects("deploy/agent/clusternet_agent_rbac.yaml")
        if o["kind"] == "ClusterRole"
    ]
    (role,) = shipped
    narrowed = dict(
        role,
        rules=[
            r
            for r in role["rules"]
            if not any(x.startswith("userextras/") for x in r.get("resources", []))
        ],
    )
    assert narrowed["rules"] != role["rules"]
    fleet.apply(child, [narrowed])
    try:
        path = f"{SOCKETS}/{cluster_id(fleet, child.name)}/proxy/direct/api"
        code, body = users["x509-admin"].request(fleet, "GET", path)
        assert code == 403, body
        assert (
            'cannot impersonate resource "userextras/'
            'authentication.kubernetes.io/credential-id"'
        ) in body["message"]
        assert AGENT_USER in body["message"]
    finally:
        fleet.apply(child, shipped)
    code, body = users["x509-admin"].request(fleet, "GET", path)
    assert code == 200, body


def test_a_binding_whose_role_ref_changed_is_replaced_with_the_shipped_rbac(
    fleet: Fleet,
) -> None:
    """
    The approver replaces a binding it owns whose roleRef differs (roleRef is
    immutable): that takes C{delete} on bindings, which deploy/hub grants.
    """
    name = f"clusternet-{ROLE_REF_CLUSTER}"
    stale = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "annotations": {RBAC_AUTOUPDATE_ANNOTATION: "true"},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "view",
        },
        "subjects": [],
    }
    assert fleet.parent is not None
    fleet.apply(fleet.parent, [stale])
    fleet.add_child("child-roleref")
    fleet.wait_ready(timeout=90)
    binding = json.loads(
        fleet.parent_kubectl("get", "clusterrolebinding", name, "-o", "json")
    )
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"], binding


# -- fresh credentials ------------------------------------------------------------


def test_rotated_and_revoked_tokens_of_the_hub_and_agents_are_picked_up(
    fleet: Fleet, users: dict[str, ParentUser]
) -> None:
    """
    The hub and the agents run from kubeconfigs with a C{tokenFile}: each token
    is replaced and the old one revoked (as when a Pod's projected token
    rotates); requests through the parent keep working, with no restart.
    """
    before = {p.name: p.popen.pid for p in fleet.processes}
    fleet.renew_tokens(force=True, revoke=True)

    # A user the hub has not seen, so that no cached review answers for it: the
    # hub reviews it with its new token, the agent impersonates it with its own.
    newcomer = ParentUser(
        "newcomer",
        cert=users["front-proxy"].cert,
        headers={
            "X-Remote-User": f"new-{uuid.uuid4().hex[:6]}",
            "X-Remote-Group": "team",
        },
    )

    def served() -> Any:
        code, body = newcomer.request(fleet, "POST", ssr, review)
        return body if code == 201 else None

    ssr = f"{SOCKETS}/{cluster_id(fleet, 'child-1')}/proxy/direct{SSR}"
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    body = eventually(served, timeout=20)
    seen = body["status"]["userInfo"]
    assert seen["username"] == newcomer.headers["X-Remote-User"]
    assert {p.name: p.popen.pid for p in fleet.processes} == before
    assert all(p.alive() for p in fleet.processes)
