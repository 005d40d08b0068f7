# ruff: noqa: E501  (long expected messages, kept verbatim)
"""
Authentication and authorization of a running sandbox process, through the
official Python client, kubectl and plain HTTPS.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from clusternet.pki import issue_certificate, load_pem_pair
from clusternet.sandbox.auth import verify_cluster_info_jws
from tests.support.sandbox import KUBECTL, Sandbox, running_sandbox

pytestmark = pytest.mark.slow

STATIC_TOKEN = "static-token-of-bob-0123456789"
TOKEN_ID, TOKEN_SECRET = "abcdef", "0123456789abcdef"
BOOTSTRAP_TOKEN = f"{TOKEN_ID}.{TOKEN_SECRET}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("authsandbox")
    tokens = directory / "tokens.csv"
    tokens.write_text(
        f'# token,user,uid,"groups"\n{STATIC_TOKEN},bob,uid-bob,"team-a,team-b"\n'
    )
    with running_sandbox(
        directory / "data", ["--anonymous-auth", "--token-auth-file", str(tokens)]
    ) as running:
        yield running


@pytest.fixture(scope="module")
def admin(sandbox: Sandbox) -> Any:
    return sandbox.client()


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def bootstrap_token(admin: Any) -> str:
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    client.CoreV1Api(admin).create_namespaced_secret(
        "kube-system",
        {
            "metadata": {"name": f"bootstrap-token-{TOKEN_ID}"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": TOKEN_ID,
                "token-secret": TOKEN_SECRET,
                "expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:clusternet:register-cluster-token",
            },
        },
    )
    return BOOTSTRAP_TOKEN


def test_admin_kubeconfig_is_system_masters(admin: Any) -> None:
    review = client.AuthenticationV1Api(admin).create_self_subject_review({})
    assert review.status.user_info.username == "kubernetes-admin"
    assert "system:masters" in review.status.user_info.groups


def test_bootstrap_token_authenticates_with_the_python_client(
    sandbox: Sandbox, bootstrap_token: str
) -> None:
    api = sandbox.token_client(bootstrap_token)
    review = client.AuthenticationV1Api(api).create_self_subject_review({})
    info = review.status.user_info
    assert info.username == f"system:bootstrap:{TOKEN_ID}"
    assert info.groups == [
        "system:bootstrappers",
        "system:bootstrappers:clusternet:register-cluster-token",
        "system:authenticated",
    ]


def test_wrong_token_is_401_even_with_anonymous_enabled(sandbox: Sandbox) -> None:
    code, body = sandbox.raw(
        "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer abcdef.wrong"}
    )
    assert code == 401
    assert body["reason"] == "Unauthorized"


def test_cluster_info_carries_a_jws_anyone_can_read_and_verify(
    sandbox: Sandbox, bootstrap_token: str
) -> None:
    path = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

    def signed() -> Any:
        code, body = sandbox.raw("GET", path)
        assert code == 200, body
        return body if f"jws-kubeconfig-{TOKEN_ID}" in body["data"] else None

    body = eventually(signed)
    kubeconfig = body["data"]["kubeconfig"]
    assert f"server: {sandbox.url}" in kubeconfig
    jws = body["data"][f"jws-kubeconfig-{TOKEN_ID}"]
    assert verify_cluster_info_jws(kubeconfig, jws, bootstrap_token)
    assert not verify_cluster_info_jws(kubeconfig, jws, f"{TOKEN_ID}.ffffffffffffffff")


def test_anonymous_is_forbidden_elsewhere_with_the_real_403(sandbox: Sandbox) -> None:
    code, body = sandbox.raw("GET", "/api/v1/namespaces/kube-public/configmaps")
    assert code == 403
    assert body["message"] == (
        'configmaps is forbidden: User "system:anonymous" cannot list resource '
        '"configmaps" in API group "" in the namespace "kube-public"'
    )
    assert body["details"] == {"kind": "configmaps"}


def test_service_account_tokens_pass_a_token_review(admin: Any) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": "robots"}})
    account = core.create_namespaced_service_account(
        "robots", {"metadata": {"name": "r2"}}
    )
    core.create_namespaced_secret(
        "robots",
        {
            "metadata": {
                "name": "r2-token",
                "annotations": {"kubernetes.io/service-account.name": "r2"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )

    def filled() -> Any:
        secret = core.read_namespaced_secret("r2-token", "robots")
        return (secret.data or {}).get("token")

    import base64

    legacy = base64.b64decode(eventually(filled)).decode()
    requested = core.create_namespaced_service_account_token(
        "r2", "robots", {"spec": {"expirationSeconds": 3600}}
    )
    assert requested.kind == "TokenRequest"
    authn = client.AuthenticationV1Api(admin)
    for token in (legacy, requested.status.token):
        review = authn.create_token_review({"spec": {"token": token}})
        assert review.status.authenticated is True
        assert review.status.user.username == "system:serviceaccount:robots:r2"
        assert review.status.user.uid == account.metadata.uid
        assert review.status.user.groups == [
            "system:serviceaccounts",
            "system:serviceaccounts:robots",
            "system:authenticated",
        ]
    bad = authn.create_token_review({"spec": {"token": legacy[:-4] + "AAAA"}})
    assert not bad.status.authenticated
    assert bad.status.error


def test_rbac_resource_names_on_sockets_through_subject_access_reviews(
    admin: Any,
) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "socket-c1"},
            "rules": [
                {
                    "apiGroups": ["proxies.clusternet.io"],
                    "resources": ["sockets", "sockets/proxy"],
                    "resourceNames": ["c1"],
                    "verbs": ["*"],
                }
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "socket-c1-alice"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "socket-c1",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "alice",
                }
            ],
        }
    )
    authz = client.AuthorizationV1Api(admin)

    def review(name: str, subresource: str = "") -> Any:
        attributes = {
            "group": "proxies.clusternet.io",
            "resource": "sockets",
            "verb": "get",
            "name": name,
        }
        if subresource:
            attributes["subresource"] = subresource
        return authz.create_subject_access_review(
            {
                "spec": {
                    "user": "alice",
                    "groups": ["system:authenticated"],
                    "resourceAttributes": attributes,
                }
            }
        ).status

    allowed = review("c1")
    assert allowed.allowed is True
    assert allowed.reason == (
        'RBAC: allowed by ClusterRoleBinding "socket-c1-alice" of ClusterRole '
        '"socket-c1" to User "alice"'
    )
    assert review("c1", "proxy").allowed is True
    assert review("c2").allowed is False
    assert review("c2", "proxy").allowed is False


def test_static_token_user_is_denied_then_allowed_by_a_binding(
    sandbox: Sandbox, admin: Any
) -> None:
    bob = sandbox.token_client(STATIC_TOKEN)
    info = client.AuthenticationV1Api(bob).create_self_subject_review({})
    assert info.status.user_info.username == "bob"
    assert info.status.user_info.uid == "uid-bob"
    assert info.status.user_info.groups == ["team-a", "team-b", "system:authenticated"]
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(bob).list_namespaced_config_map("default")
    assert denied.value.status == 403

    def can(verb: str, resource: str) -> bool:
        review = client.AuthorizationV1Api(bob).create_self_subject_access_review(
            {
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": resource,
                        "namespace": "default",
                    }
                }
            }
        )
        return bool(review.status.allowed)

    assert not can("list", "configmaps")
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "team-a-view"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "team-a",
                }
            ],
        },
    )
    assert can("list", "configmaps")
    client.CoreV1Api(bob).list_namespaced_config_map("default")
    with pytest.raises(ApiException) as elsewhere:
        client.CoreV1Api(bob).list_namespaced_config_map("kube-system")
    assert elsewhere.value.status == 403


def test_kubectl_auth_can_i(sandbox: Sandbox) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    try:
        from clusternet.sandbox import _protobuf  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        pytest.skip("protobuf request bodies (kubectl auth can-i) are not decoded yet")
    assert sandbox.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


def test_a_client_presenting_leaf_and_ca_is_the_leaf_user(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    ca = load_pem_pair(
        (sandbox.data_dir / "ca.crt").read_bytes(),
        (sandbox.data_dir / "ca.key").read_bytes(),
    )
    carol = issue_certificate(ca, "carol", organizations=["ops"], client=True)
    chain = tmp_path / "carol-chain.crt"
    chain.write_bytes(carol.certificate_pem + ca.certificate_pem)
    key = tmp_path / "carol.key"
    key.write_bytes(carol.key_pem)
    code, body = sandbox.raw(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        cert=(chain, key),
    )
    assert code == 201, body
    info = body["status"]["userInfo"]
    assert info["username"] == "carol"
    assert info["groups"] == ["ops", "system:authenticated"]


def test_impersonation_needs_the_impersonate_verb(sandbox: Sandbox, admin: Any) -> None:
    as_alice = {"Authorization": f"Bearer {STATIC_TOKEN}", "Impersonate-User": "alice"}
    code, body = sandbox.raw(
        "GET", "/api/v1/namespaces/default/configmaps", headers=as_alice
    )
    assert code == 403
    assert body["message"] == (
        'users "alice" is forbidden: User "bob" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    )
    code, body = sandbox.raw(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        headers={"Authorization": f"Bearer {STATIC_TOKEN}", "Impersonate-Group": "x"},
    )
    assert code == 400
    assert (
        body["message"]
        == "requested [Impersonate-Group=x] without impersonating a user"
    )
    client.RbacAuthorizationV1Api(admin).create_cluster_role(
        {
            "metadata": {"name": "impersonate-alice"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "resourceNames": ["alice"],
                    "verbs": ["impersonate"],
                }
            ],
        }
    )
    client.RbacAuthorizationV1Api(admin).create_cluster_role_binding(
        {
            "metadata": {"name": "bob-impersonates-alice"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "impersonate-alice",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}
            ],
        }
    )
    code, body = sandbox.raw(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers=as_alice,
    )
    assert code == 201, body
    assert body["status"]["userInfo"] == {
        "username": "alice",
        "groups": ["system:authenticated"],
    }


def _needs_kubectl() -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")


def test_kubectl_create_token_gives_a_token_the_server_accepts(
    sandbox: Sandbox,
) -> None:
    """
    kubectl sends the TokenRequest as protobuf to serviceaccounts/<name>/token.
    """
    _needs_kubectl()
    sandbox.kubectl("create", "namespace", "tokens")
    sandbox.kubectl("create", "serviceaccount", "r3", "-n", "tokens")
    token = sandbox.kubectl(
        "create", "token", "r3", "-n", "tokens", "--duration=10m"
    ).stdout.strip()
    review = client.AuthenticationV1Api(
        sandbox.token_client(token)
    ).create_self_subject_review({"apiVersion": "authentication.k8s.io/v1"})
    assert review.status.user_info.username == "system:serviceaccount:tokens:r3"
    printed = sandbox.kubectl(
        "create", "token", "r3", "-n", "tokens", "--audience=api", "-o", "json"
    ).stdout
    answer = json.loads(printed)
    assert (answer["kind"], answer["spec"]["audiences"]) == ("TokenRequest", ["api"])


def test_python_client_token_request_with_kind_and_api_version(admin: Any) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": "tokens-py"}})
    core.create_namespaced_service_account("tokens-py", {"metadata": {"name": "r4"}})
    request = client.AuthenticationV1TokenRequest(
        api_version="authentication.k8s.io/v1",
        kind="TokenRequest",
        spec=client.V1TokenRequestSpec(audiences=["x"], expiration_seconds=600),
    )
    answer = core.create_namespaced_service_account_token("r4", "tokens-py", request)
    assert (answer.kind, answer.spec.audiences) == ("TokenRequest", ["x"])
    assert answer.status.token.count(".") == 2
    with pytest.raises(ApiException) as wrong:
        core.create_namespaced_service_account_token(
            "r4", "tokens-py", {"apiVersion": "v1", "kind": "ServiceAccount"}
        )
    assert wrong.value.status == 400
    assert "must be of type TokenRequest" in json.loads(wrong.value.body)["message"]


def test_kubectl_auth_can_i_as_another_user_answers_for_that_user(
    sandbox: Sandbox,
) -> None:
    _needs_kubectl()

    def can_i(*args: str) -> tuple[int, str]:
        result = sandbox.kubectl("auth", "can-i", *args, check=False)
        return result.returncode, result.stdout.strip()

    assert can_i("get", "configmaps", "-n", "default") == (0, "yes")
    assert can_i("get", "configmaps", "-n", "default", "--as=dora") == (1, "no")
    assert can_i("*", "*", "--as=dora") == (1, "no")
    sandbox.kubectl(
        "create", "role", "cm-reader", "-n", "default",
        "--verb=get", "--verb=list", "--resource=configmaps",
    )  # fmt: skip
    sandbox.kubectl(
        "create", "rolebinding", "dora-reads", "-n", "default",
        "--role=cm-reader", "--user=dora",
    )  # fmt: skip
    assert can_i("get", "configmaps", "-n", "default", "--as=dora") == (0, "yes")
    assert can_i("delete", "configmaps", "-n", "default", "--as=dora") == (1, "no")
    assert can_i("get", "configmaps", "-n", "kube-system", "--as=dora") == (1, "no")
    assert can_i(
        "delete", "secrets", "-n", "kube-system", "--as=dora",
        "--as-group=system:masters",
    ) == (0, "yes")  # fmt: skip
    listed = sandbox.kubectl("auth", "can-i", "--list", "-n", "default", "--as=dora")
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert ["configmaps", "[]", "[]", "[get", "list]"] in rows
    assert not any(row[0] == "*.*" for row in rows)


def test_kubectl_auth_whoami_as_another_user(sandbox: Sandbox) -> None:
    _needs_kubectl()
    shown = sandbox.kubectl(
        "auth", "whoami", "--as=dora", "--as-group=devs", "-o", "json"
    ).stdout
    assert json.loads(shown)["status"]["userInfo"] == {
        "username": "dora",
        "groups": ["devs", "system:authenticated"],
    }
    own = json.loads(sandbox.kubectl("auth", "whoami", "-o", "json").stdout)
    assert own["status"]["userInfo"]["username"] == "kubernetes-admin"


def test_an_impersonated_service_account_has_its_groups_only_when_none_are_asked(
    sandbox: Sandbox, admin: Any
) -> None:
    """
    As the real impersonation filter: a service account's groups are added
    only when the request names no groups (never twice).
    """
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "impersonate-robots"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts", "groups"],
                    "verbs": ["impersonate"],
                }
            ],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "bob-impersonates-robots"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "impersonate-robots",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}
            ],
        }
    )
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    account = "system:serviceaccount:robots:r9"
    for groups, expected in (
        (
            [],
            ["system:serviceaccounts", "system:serviceaccounts:robots"],
        ),
        (["system:serviceaccounts"], ["system:serviceaccounts"]),
        (["crew"], ["crew"]),
    ):
        headers = {
            "Authorization": f"Bearer {STATIC_TOKEN}",
            "Impersonate-User": account,
        }
        if groups:
            (headers["Impersonate-Group"],) = groups
        code, body = sandbox.raw(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            body=review,
            headers=headers,
        )
        assert code == 201, body
        assert body["status"]["userInfo"]["groups"] == [
            *expected,
            "system:authenticated",
        ]
