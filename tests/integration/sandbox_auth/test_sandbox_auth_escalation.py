# ruff: noqa: E501  (long expected messages, kept verbatim)
"""
RBAC's privilege-escalation prevention in a running sandbox: a ServiceAccount
that may write Roles and bindings still cannot grant what it does not hold,
unless it may C{escalate} / C{bind}, through every write verb (create, PUT,
merge / JSON / strategic patch, server-side apply) and through kubectl.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.sandbox import KUBECTL, Sandbox, running_sandbox

pytestmark = pytest.mark.slow

NS = "esc"
RBAC = "rbac.authorization.k8s.io"
ROLES = f"/apis/{RBAC}/v1/namespaces/{NS}/roles"
ROLE_BINDINGS = f"/apis/{RBAC}/v1/namespaces/{NS}/rolebindings"
CLUSTER_ROLES = f"/apis/{RBAC}/v1/clusterroles"
CLUSTER_ROLE_BINDINGS = f"/apis/{RBAC}/v1/clusterrolebindings"
SECRETS_GET = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
MISSING = '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
_names = itertools.count(1)


GROUPS = (
    '["system:serviceaccounts" "system:serviceaccounts:esc" "system:authenticated"]'
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("escalation")
    with running_sandbox(directory / "data") as running:
        yield running


@pytest.fixture(scope="module")
def admin(sandbox: Sandbox) -> Any:
    api = sandbox.client()
    client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        NS, {"metadata": {"name": "secret-reader"}, "rules": SECRETS_GET}
    )
    rbac.create_cluster_role(
        {"metadata": {"name": "esc-secret-reader"}, "rules": SECRETS_GET}
    )
    return api


class Account:
    """
    A ServiceAccount in C{esc} holding C{rules} in that namespace and
    C{cluster_rules} cluster-wide, and its token.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        admin: Any,
        rules: list[dict[str, Any]],
        cluster_rules: list[dict[str, Any]] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.name = f"sa{next(_names)}"
        self.user = f"system:serviceaccount:{NS}:{self.name}"
        core = client.CoreV1Api(admin)
        rbac = client.RbacAuthorizationV1Api(admin)
        core.create_namespaced_service_account(NS, {"metadata": {"name": self.name}})
        subject = {"kind": "ServiceAccount", "name": self.name, "namespace": NS}
        role_name = f"{self.name}-rights"
        if cluster_rules:
            rbac.create_cluster_role(
                {"metadata": {"name": role_name}, "rules": cluster_rules}
            )
            rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": role_name},
                    "roleRef": {
                        "apiGroup": RBAC,
                        "kind": "ClusterRole",
                        "name": role_name,
                    },
                    "subjects": [subject],
                }
            )
        if rules:
            rbac.create_namespaced_role(
                NS, {"metadata": {"name": role_name}, "rules": rules}
            )
            rbac.create_namespaced_role_binding(
                NS,
                {
                    "metadata": {"name": role_name},
                    "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role_name},
                    "subjects": [subject],
                },
            )
        request = core.create_namespaced_service_account_token(
            self.name, NS, {"spec": {"audiences": []}}
        )
        self.token = request.status.token

    def request(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        return self.sandbox.raw(
            method,
            path,
            body=body,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": content_type,
            },
        )

    def forbidden(self, resource: str, name: str) -> str:
        return (
            f'{resource}.{RBAC} "{name}" is forbidden: user "{self.user}" (groups={GROUPS}) '
            f"is attempting to grant RBAC permissions not currently held:\n{MISSING}"
        )


def _rules(resources: list[str], verbs: list[str]) -> list[dict[str, Any]]:
    return [{"apiGroups": [RBAC], "resources": resources, "verbs": verbs}]


WRITE = ["create", "get", "update", "patch"]


def _role(name: str, rules: list[dict[str, Any]] = SECRETS_GET) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": name},
        "rules": rules,
    }


def _binding(name: str, kind: str, role: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
        "subjects": [{"kind": "User", "name": "someone"}],
    }


# --- Roles ----------------------------------------------------------------------


def test_create_role_granting_what_one_lacks_is_403(
    sandbox: Sandbox, admin: Any
) -> None:
    account = Account(sandbox, admin, _rules(["roles"], ["create"]))
    code, body = account.request("POST", ROLES, _role("grab-secrets"))
    assert code == 403, body
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": account.forbidden("roles", "grab-secrets"),
        "reason": "Forbidden",
        "details": {"name": "grab-secrets", "group": RBAC, "kind": "roles"},
        "code": 403,
    }
    names = client.RbacAuthorizationV1Api(admin).list_namespaced_role(NS).items
    assert "grab-secrets" not in [r.metadata.name for r in names]


def test_create_role_with_escalate_is_allowed(sandbox: Sandbox, admin: Any) -> None:
    account = Account(sandbox, admin, _rules(["roles"], ["create", "escalate"]))
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    code, body = account.request("POST", ROLES, _role("all-of-it", everything))
    assert code == 201, body
    assert body["rules"] == everything


def test_create_role_within_what_one_holds_is_allowed(
    sandbox: Sandbox, admin: Any
) -> None:
    account = Account(sandbox, admin, _rules(["roles"], ["create"]) + SECRETS_GET)
    code, body = account.request("POST", ROLES, _role("holds-it"))
    assert code == 201, body


def test_every_update_verb_is_checked(sandbox: Sandbox, admin: Any) -> None:
    """
    PUT, merge / JSON / strategic patch and server-side apply all refuse to
    add a rule the caller lacks, and all pass with C{escalate}.
    """
    plain = Account(sandbox, admin, _rules(["roles"], WRITE))
    escalating = Account(sandbox, admin, _rules(["roles"], [*WRITE, "escalate"]))
    name = f"upd-{plain.name}"
    code, body = plain.request("POST", ROLES, _role(name, []))
    assert code == 201, body
    path = f"{ROLES}/{name}"
    attempts: list[tuple[str, Any, str]] = [
        ("PUT", _role(name), "application/json"),
        ("PATCH", {"rules": SECRETS_GET}, "application/merge-patch+json"),
        (
            "PATCH",
            [{"op": "add", "path": "/rules/-", "value": SECRETS_GET[0]}],
            "application/json-patch+json",
        ),
        ("PATCH", {"rules": SECRETS_GET}, "application/strategic-merge-patch+json"),
    ]
    for method, patch, content_type in attempts:
        code, body = plain.request(method, path, patch, content_type)
        assert (code, body.get("message")) == (
            403,
            plain.forbidden("roles", name),
        ), content_type
    apply_path = f"{path}?fieldManager=esc-test&force=true"
    code, body = plain.request(
        "PATCH", apply_path, _role(name), "application/apply-patch+yaml"
    )
    assert (code, body["message"]) == (403, plain.forbidden("roles", name))
    # Apply that would create the role is checked too.
    created = f"{ROLES}/new-{plain.name}?fieldManager=esc-test"
    code, body = plain.request(
        "PATCH", created, _role(f"new-{plain.name}"), "application/apply-patch+yaml"
    )
    assert (code, body["message"]) == (
        403,
        plain.forbidden("roles", f"new-{plain.name}"),
    )
    for method, patch, content_type in attempts:
        code, body = escalating.request(method, path, patch, content_type)
        assert code == 200, (content_type, body)
    code, body = escalating.request(
        "PATCH", apply_path, _role(name), "application/apply-patch+yaml"
    )
    assert code == 200, body


def test_cluster_role_needs_the_rules_cluster_wide(
    sandbox: Sandbox, admin: Any
) -> None:
    """
    Holding the rule in one namespace is not enough for a ClusterRole;
    C{escalate} granted cluster-wide is.
    """
    cluster_writer = Account(
        sandbox, admin, SECRETS_GET, cluster_rules=_rules(["clusterroles"], ["create"])
    )
    name = f"cr-{cluster_writer.name}"
    cluster_role = {**_role(name), "kind": "ClusterRole"}
    code, body = cluster_writer.request("POST", CLUSTER_ROLES, cluster_role)
    assert (code, body["message"]) == (
        403,
        cluster_writer.forbidden("clusterroles", name),
    )
    escalating = Account(
        sandbox, admin, [], _rules(["clusterroles"], ["create", "escalate"])
    )
    code, body = escalating.request("POST", CLUSTER_ROLES, cluster_role)
    assert code == 201, body


# --- bindings -------------------------------------------------------------------


def test_binding_a_role_one_lacks_is_403(sandbox: Sandbox, admin: Any) -> None:
    account = Account(sandbox, admin, _rules(["rolebindings"], ["create"]))
    code, body = account.request(
        "POST", ROLE_BINDINGS, _binding("grab", "Role", "secret-reader")
    )
    assert code == 403, body
    assert body["message"] == account.forbidden("rolebindings", "grab")
    assert body["details"] == {"name": "grab", "group": RBAC, "kind": "rolebindings"}


def test_binding_with_bind_is_allowed(sandbox: Sandbox, admin: Any) -> None:
    account = Account(
        sandbox,
        admin,
        [
            *_rules(["rolebindings"], ["create"]),
            {
                "apiGroups": [RBAC],
                "resources": ["roles"],
                "resourceNames": ["secret-reader"],
                "verbs": ["bind"],
            },
        ],
    )
    code, body = account.request(
        "POST", ROLE_BINDINGS, _binding(f"b-{account.name}", "Role", "secret-reader")
    )
    assert code == 201, body
    # bind on that one role only: another ClusterRole with the same rules is
    # still refused.
    code, body = account.request(
        "POST",
        ROLE_BINDINGS,
        _binding(f"c-{account.name}", "ClusterRole", "esc-secret-reader"),
    )
    assert (code, body["message"]) == (
        403,
        account.forbidden("rolebindings", f"c-{account.name}"),
    )


def test_binding_what_one_holds_is_allowed(sandbox: Sandbox, admin: Any) -> None:
    account = Account(
        sandbox, admin, _rules(["rolebindings"], ["create"]) + SECRETS_GET
    )
    code, body = account.request(
        "POST",
        ROLE_BINDINGS,
        _binding(f"h-{account.name}", "ClusterRole", "esc-secret-reader"),
    )
    assert code == 201, body


def test_cluster_role_binding_needs_bind_cluster_wide(
    sandbox: Sandbox, admin: Any
) -> None:
    local_bind = Account(
        sandbox,
        admin,
        _rules(["clusterroles"], ["bind"]),
        _rules(["clusterrolebindings"], ["create"]),
    )
    binding = {
        **_binding(f"crb-{local_bind.name}", "ClusterRole", "esc-secret-reader"),
        "kind": "ClusterRoleBinding",
    }
    code, body = local_bind.request("POST", CLUSTER_ROLE_BINDINGS, binding)
    # bind held in a namespace does not count for a ClusterRoleBinding.
    assert (code, body["message"]) == (
        403,
        local_bind.forbidden("clusterrolebindings", f"crb-{local_bind.name}"),
    )
    cluster_bind = Account(
        sandbox,
        admin,
        [],
        _rules(["clusterrolebindings"], ["create"])
        + _rules(["clusterroles"], ["bind"]),
    )
    binding["metadata"]["name"] = f"crb-{cluster_bind.name}"
    code, body = cluster_bind.request("POST", CLUSTER_ROLE_BINDINGS, binding)
    assert code == 201, body
    no_bind = Account(sandbox, admin, [], _rules(["clusterrolebindings"], ["create"]))
    binding["metadata"]["name"] = f"crb-{no_bind.name}"
    code, body = no_bind.request("POST", CLUSTER_ROLE_BINDINGS, binding)
    assert (code, body["message"]) == (
        403,
        no_bind.forbidden("clusterrolebindings", f"crb-{no_bind.name}"),
    )


def test_admin_is_never_checked(sandbox: Sandbox, admin: Any) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    rbac.create_cluster_role(
        {"metadata": {"name": "esc-everything"}, "rules": everything}
    )
    rbac.create_namespaced_role_binding(
        NS, _binding("admin-binds", "ClusterRole", "esc-everything")
    )


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_shows_the_real_message(
    sandbox: Sandbox, admin: Any, tmp_path: Path
) -> None:
    account = Account(sandbox, admin, _rules(["roles"], ["create"]))
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "sandbox",
                        "cluster": {
                            "server": sandbox.url,
                            "certificate-authority": str(sandbox.data_dir / "ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": account.token}}],
                "contexts": [
                    {
                        "name": "sa",
                        "context": {
                            "cluster": "sandbox",
                            "user": "sa",
                            "namespace": NS,
                        },
                    }
                ],
                "current-context": "sa",
            }
        )
    )
    result = sandbox.kubectl(
        "--kubeconfig",
        str(kubeconfig),
        "create",
        "role",
        "kubectl-reader",
        "--verb=get",
        "--resource=secrets",
        check=False,
    )
    assert result.returncode != 0
    assert (
        'roles.rbac.authorization.k8s.io "kubectl-reader" is forbidden: user '
        f'"{account.user}"' in result.stderr
    ), result.stderr
    assert "is attempting to grant RBAC permissions not currently held" in result.stderr
    assert MISSING in result.stderr
