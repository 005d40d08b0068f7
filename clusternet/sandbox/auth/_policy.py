"""
The bootstrap RBAC policy of a real server that matters to the sandbox, as
objects the server seeds into its store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["default_rbac_objects"]

_API_VERSION = "rbac.authorization.k8s.io/v1"
_GROUP = "rbac.authorization.k8s.io"


def _meta(
    name: str, namespace: str | None = None, *, defaults: bool = True
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if defaults:
        meta["labels"] = {"kubernetes.io/bootstrapping": "rbac-defaults"}
        meta["annotations"] = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
    return meta


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": _API_VERSION,
        "kind": "ClusterRole",
        "metadata": _meta(name),
        "rules": rules,
    }


def _cluster_binding(
    name: str, role: str, subjects: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": _API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": _GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _group(name: str) -> dict[str, Any]:
    return {"apiGroup": _GROUP, "kind": "Group", "name": name}


def _user(name: str) -> dict[str, Any]:
    return {"apiGroup": _GROUP, "kind": "User", "name": name}


_PUBLIC_INFO = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def default_rbac_objects() -> list[dict[str, Any]]:
    """
    ClusterRoles, Roles and their bindings to seed, roles before bindings:
    C{cluster-admin} (C{system:masters}), C{system:discovery},
    C{system:basic-user}, C{system:public-info-viewer} (also for
    unauthenticated callers), C{system:monitoring}, C{system:auth-delegator},
    C{kube-system/extension-apiserver-authentication-reader}, and kubeadm's
    anonymous read of C{kube-public/cluster-info}.
    """
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                {"verbs": ["*"], "nonResourceURLs": ["*"]},
            ],
        ),
        _cluster_role(
            "system:discovery",
            [
                {
                    "verbs": ["get"],
                    "nonResourceURLs": [
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/healthz",
                        "/livez",
                        "/openapi",
                        "/openapi/*",
                        "/readyz",
                        "/version",
                        "/version/",
                    ],
                }
            ],
        ),
        _cluster_role(
            "system:basic-user",
            [
                {
                    "verbs": ["create"],
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": [
                        "selfsubjectaccessreviews",
                        "selfsubjectrulesreviews",
                    ],
                },
                {
                    "verbs": ["create"],
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                },
            ],
        ),
        _cluster_role(
            "system:public-info-viewer",
            [{"verbs": ["get"], "nonResourceURLs": list(_PUBLIC_INFO)}],
        ),
        _cluster_role(
            "system:monitoring",
            [
                {
                    "verbs": ["get"],
                    "nonResourceURLs": [
                        "/healthz",
                        "/healthz/*",
                        "/livez",
                        "/livez/*",
                        "/metrics",
                        "/metrics/slis",
                        "/readyz",
                        "/readyz/*",
                    ],
                }
            ],
        ),
        _cluster_role(
            "system:auth-delegator",
            [
                {
                    "verbs": ["create"],
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                },
                {
                    "verbs": ["create"],
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                },
            ],
        ),
        {
            "apiVersion": _API_VERSION,
            "kind": "Role",
            "metadata": _meta(
                "extension-apiserver-authentication-reader", "kube-system"
            ),
            "rules": [
                {
                    "verbs": ["get", "list", "watch"],
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["extension-apiserver-authentication"],
                }
            ],
        },
        {
            "apiVersion": _API_VERSION,
            "kind": "Role",
            "metadata": _meta(
                "kubeadm:bootstrap-signer-clusterinfo", "kube-public", defaults=False
            ),
            "rules": [
                {
                    "verbs": ["get"],
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["cluster-info"],
                }
            ],
        },
        _cluster_binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
        _cluster_binding(
            "system:discovery", "system:discovery", [_group("system:authenticated")]
        ),
        _cluster_binding(
            "system:basic-user", "system:basic-user", [_group("system:authenticated")]
        ),
        _cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [_group("system:authenticated"), _group("system:unauthenticated")],
        ),
        _cluster_binding(
            "system:monitoring", "system:monitoring", [_group("system:monitoring")]
        ),
        {
            "apiVersion": _API_VERSION,
            "kind": "RoleBinding",
            "metadata": _meta(
                "kubeadm:bootstrap-signer-clusterinfo", "kube-public", defaults=False
            ),
            "roleRef": {
                "apiGroup": _GROUP,
                "kind": "Role",
                "name": "kubeadm:bootstrap-signer-clusterinfo",
            },
            "subjects": [_user("system:anonymous")],
        },
    ]
