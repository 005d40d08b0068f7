# ruff: noqa: E501  (long expected messages, kept verbatim)
"""
RBAC's privilege-escalation prevention: the C{Covers} check, the message of
C{ConfirmNoEscalation}, and the C{escalate} / C{bind} exemptions on writes of
Roles, ClusterRoles and their bindings.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sandbox_auth_helpers import MemoryStore

from clusternet.sandbox._auth_api import UserInfo
from clusternet.sandbox._meta import ApiError
from clusternet.sandbox.auth import (
    PolicyRule,
    breakdown_rule,
    compact_rules,
    compact_string,
    confirm_no_escalation,
    covers,
    default_rbac_objects,
    escalation_message,
    new_authorizer,
    rule_covers,
)

RBAC = "rbac.authorization.k8s.io"
ROLES = f"{RBAC}/roles"
CLUSTER_ROLES = f"{RBAC}/clusterroles"
ROLE_BINDINGS = f"{RBAC}/rolebindings"
CLUSTER_ROLE_BINDINGS = f"{RBAC}/clusterrolebindings"
DEV = UserInfo(
    name="system:serviceaccount:dev:developer",
    groups=(
        "system:serviceaccounts",
        "system:serviceaccounts:dev",
        "system:authenticated",
    ),
)
ADMIN = UserInfo(name="kubernetes-admin", groups=("system:masters",))


# --- Covers -------------------------------------------------------------------

_words = st.sampled_from(["get", "list", "create", "a", "b", "pods", "x/y", ""])
_names = st.lists(_words, max_size=3, unique=True).map(tuple)
_resource_rules = st.builds(
    PolicyRule,
    verbs=st.lists(
        st.sampled_from(["get", "list", "watch", "create", "delete", "*"]),
        min_size=1,
        max_size=3,
        unique=True,
    ).map(tuple),
    api_groups=st.lists(
        st.sampled_from(["", "apps", RBAC, "*"]), min_size=1, max_size=2, unique=True
    ).map(tuple),
    resources=st.lists(
        st.sampled_from(["pods", "secrets", "pods/log", "*/scale", "*"]),
        min_size=1,
        max_size=3,
        unique=True,
    ).map(tuple),
    resource_names=st.lists(
        st.sampled_from(["a", "b", "c"]), max_size=2, unique=True
    ).map(tuple),
)
_url_rules = st.builds(
    PolicyRule,
    verbs=st.lists(
        st.sampled_from(["get", "post", "*"]), min_size=1, max_size=2, unique=True
    ).map(tuple),
    non_resource_urls=st.lists(
        st.sampled_from(["/healthz", "/metrics", "/api/*", "*"]),
        min_size=1,
        max_size=2,
        unique=True,
    ).map(tuple),
)
_rules = st.lists(st.one_of(_resource_rules, _url_rules), max_size=4)


@given(_rules)
def test_a_rule_set_always_covers_itself(rules: list[PolicyRule]) -> None:
    assert covers(rules, rules) == (True, [])


@given(_rules, st.data())
def test_removing_a_verb_from_the_owner_uncovers_a_rule_with_that_verb(
    rules: list[PolicyRule], data: Any
) -> None:
    """
    Without the verb (and without C{*}, which would still cover it), a piece
    asking for that verb is not covered.
    """
    verb = data.draw(st.sampled_from(["get", "list", "create", "post"]))
    owner = [
        PolicyRule(
            verbs=tuple(v for v in r.verbs if v not in (verb, "*")),
            api_groups=r.api_groups,
            resources=r.resources,
            resource_names=r.resource_names,
            non_resource_urls=r.non_resource_urls,
        )
        for r in rules
    ]
    wanted = [
        PolicyRule(
            verbs=(verb,),
            api_groups=r.api_groups,
            resources=r.resources,
            resource_names=r.resource_names,
            non_resource_urls=r.non_resource_urls,
        )
        for r in rules
    ]
    ok, missing = covers(owner, wanted)
    expected = [p for r in wanted for p in breakdown_rule(r)]
    assert missing == expected
    assert ok is (not expected)


def test_breakdown_is_one_verb_group_resource_and_name_per_piece() -> None:
    rule = PolicyRule(
        verbs=("get", "list"),
        api_groups=("", "apps"),
        resources=("pods",),
        resource_names=("a", "b"),
    )
    pieces = breakdown_rule(rule)
    assert len(pieces) == 8
    assert PolicyRule(("list",), ("apps",), ("pods",), ("b",)) in pieces
    urls = breakdown_rule(
        PolicyRule(verbs=("get", "post"), non_resource_urls=("/healthz",))
    )
    assert urls == [
        PolicyRule(verbs=("get",), non_resource_urls=("/healthz",)),
        PolicyRule(verbs=("post",), non_resource_urls=("/healthz",)),
    ]


@pytest.mark.parametrize(
    ("owner", "piece", "covered"),
    [
        # * in the owner covers anything.
        (
            PolicyRule(("*",), ("*",), ("*",)),
            PolicyRule(("get",), ("",), ("secrets",)),
            True,
        ),
        (PolicyRule(("*",), ("*",), ("*",)), PolicyRule(("*",), ("*",), ("*",)), True),
        # A * asked for is covered only by *.
        (
            PolicyRule(("get", "list"), ("",), ("pods",)),
            PolicyRule(("*",), ("",), ("pods",)),
            False,
        ),
        (
            PolicyRule(("get",), ("",), ("pods", "secrets")),
            PolicyRule(("get",), ("",), ("*",)),
            False,
        ),
        (
            PolicyRule(("get",), ("", "apps"), ("pods",)),
            PolicyRule(("get",), ("*",), ("pods",)),
            False,
        ),
        # Resource names: none in the owner covers every name; names asked
        # for are covered by the same names; all names only by all names.
        (
            PolicyRule(("get",), ("",), ("pods",)),
            PolicyRule(("get",), ("",), ("pods",), ("a",)),
            True,
        ),
        (
            PolicyRule(("get",), ("",), ("pods",), ("a", "b")),
            PolicyRule(("get",), ("",), ("pods",), ("a",)),
            True,
        ),
        (
            PolicyRule(("get",), ("",), ("pods",), ("a",)),
            PolicyRule(("get",), ("",), ("pods",), ("b",)),
            False,
        ),
        (
            PolicyRule(("get",), ("",), ("pods",), ("a",)),
            PolicyRule(("get",), ("",), ("pods",)),
            False,
        ),
        # Subresources: */scale covers deployments/scale, not deployments.
        (
            PolicyRule(("get",), ("apps",), ("*/scale",)),
            PolicyRule(("get",), ("apps",), ("deployments/scale",)),
            True,
        ),
        (
            PolicyRule(("get",), ("apps",), ("*/scale",)),
            PolicyRule(("get",), ("apps",), ("deployments",)),
            False,
        ),
        (
            PolicyRule(("get",), ("",), ("pods",)),
            PolicyRule(("get",), ("",), ("pods/log",)),
            False,
        ),
        # Non-resource URLs: a trailing * matches a prefix.
        (
            PolicyRule(("get",), non_resource_urls=("/api/*",)),
            PolicyRule(("get",), non_resource_urls=("/api/v1",)),
            True,
        ),
        (
            PolicyRule(("get",), non_resource_urls=("*",)),
            PolicyRule(("get",), non_resource_urls=("/metrics",)),
            True,
        ),
        (
            PolicyRule(("get",), non_resource_urls=("/api",)),
            PolicyRule(("get",), non_resource_urls=("/api/v1",)),
            False,
        ),
        # A resource rule does not cover a URL, nor a URL rule a resource.
        (
            PolicyRule(("*",), ("*",), ("*",)),
            PolicyRule(("get",), non_resource_urls=("/healthz",)),
            False,
        ),
        (
            PolicyRule(("*",), non_resource_urls=("*",)),
            PolicyRule(("get",), ("",), ("pods",)),
            False,
        ),
    ],
)
def test_rule_covers(owner: PolicyRule, piece: PolicyRule, covered: bool) -> None:
    assert rule_covers(owner, piece) is covered


def test_compact_rules_merges_verbs_of_one_resource() -> None:
    pieces = breakdown_rule(PolicyRule(("get", "list"), ("",), ("secrets", "pods")))
    assert sorted(compact_string(r) for r in compact_rules(pieces)) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}',
    ]


def test_compact_string_as_go_prints_it() -> None:
    assert (
        compact_string(PolicyRule(("get",), ("apps",), ("deployments",), ("web",)))
        == '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["get"]}'
    )
    assert (
        compact_string(PolicyRule(("get",), non_resource_urls=("/healthz",)))
        == '{NonResourceURLs:["/healthz"], Verbs:["get"]}'
    )


def test_escalation_message_has_the_real_shape() -> None:
    """
    As a real v1.32 server words it (groups as Go's %q of a slice).
    """
    missing = [PolicyRule(("*",), ("",), ("*",))]
    assert escalation_message(DEV, missing) == (
        'user "system:serviceaccount:dev:developer" (groups=["system:serviceaccounts" "system:serviceaccounts:dev" "system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["*"], Verbs:["*"]}'
    )
    assert escalation_message(DEV, missing, ["e1", "e2"]).endswith(
        "; resolution errors: [[e1, e2]]"
    )


# --- the check on writes ------------------------------------------------------


def _store() -> MemoryStore:
    store = MemoryStore()
    plural = {
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
    }
    for obj in default_rbac_objects():
        store.create(
            f"{RBAC}/{plural[obj['kind']]}", obj["metadata"].get("namespace"), obj
        )
    return store


def _grant(
    store: MemoryStore,
    name: str,
    rules: list[dict[str, Any]],
    namespace: str | None = "dev",
) -> None:
    """
    Give the developer C{rules}: in C{namespace} (a Role and RoleBinding) or
    cluster-wide (C{None}).
    """
    subject = {"kind": "ServiceAccount", "name": "developer", "namespace": "dev"}
    if namespace is None:
        store.create(CLUSTER_ROLES, None, {"metadata": {"name": name}, "rules": rules})
        store.create(
            CLUSTER_ROLE_BINDINGS,
            None,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [subject],
            },
        )
        return
    store.create(ROLES, namespace, {"metadata": {"name": name}, "rules": rules})
    store.create(
        ROLE_BINDINGS,
        namespace,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
            "subjects": [subject],
        },
    )


def _role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "rules": rules}


SECRETS_GET = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
WRITE_ROLES = [
    {
        "apiGroups": [RBAC],
        "resources": ["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
        "verbs": ["create", "update", "patch"],
    }
]


def _check(
    store: MemoryStore,
    resource: str,
    new: dict[str, Any],
    *,
    namespace: str | None = "dev",
    name: str = "",
    old: dict[str, Any] | None = None,
    user: UserInfo = DEV,
) -> None:
    confirm_no_escalation(
        new_authorizer(store), store, user, resource, namespace, name, new, old
    )


def test_a_role_granting_what_the_user_lacks_is_forbidden() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES)
    with pytest.raises(ApiError) as caught:
        _check(store, ROLES, _role("reader", SECRETS_GET))
    error = caught.value
    assert error.code == 403
    assert error.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'roles.rbac.authorization.k8s.io "reader" is forbidden: user "system:serviceaccount:dev:developer" (groups=["system:serviceaccounts" "system:serviceaccounts:dev" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}',
        "reason": "Forbidden",
        "details": {"name": "reader", "group": RBAC, "kind": "roles"},
        "code": 403,
    }


def test_a_role_within_what_the_user_holds_is_allowed() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES + SECRETS_GET)
    _check(store, ROLES, _role("reader", SECRETS_GET))


def test_rules_held_in_another_namespace_do_not_count() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES)
    _grant(store, "elsewhere", SECRETS_GET, namespace="prod")
    with pytest.raises(ApiError):
        _check(store, ROLES, _role("reader", SECRETS_GET))


def test_a_cluster_role_needs_the_rules_cluster_wide() -> None:
    """
    Rules held through a RoleBinding do not let one create a ClusterRole.
    """
    store = _store()
    _grant(store, "writer", WRITE_ROLES + SECRETS_GET, namespace=None)
    _check(store, CLUSTER_ROLES, _role("reader", SECRETS_GET), namespace=None)
    store2 = _store()
    _grant(store2, "writer", WRITE_ROLES, namespace=None)
    _grant(store2, "local", SECRETS_GET)
    with pytest.raises(ApiError) as caught:
        _check(store2, CLUSTER_ROLES, _role("reader", SECRETS_GET), namespace=None)
    assert caught.value.message.startswith(
        'clusterroles.rbac.authorization.k8s.io "reader" is forbidden: '
    )


def test_escalate_on_roles_lets_a_user_grant_anything() -> None:
    store = _store()
    _grant(
        store,
        "writer",
        [
            *WRITE_ROLES,
            {"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["escalate"]},
        ],
    )
    _check(
        store,
        ROLES,
        _role("all", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    )


def test_escalate_is_asked_for_the_name_on_the_url() -> None:
    """
    An update names the role; a create has no name yet (as the real server's
    request info).
    """
    store = _store()
    _grant(
        store,
        "writer",
        [
            *WRITE_ROLES,
            {
                "apiGroups": [RBAC],
                "resources": ["roles"],
                "resourceNames": ["reader"],
                "verbs": ["escalate"],
            },
        ],
    )
    old = _role("reader", [])
    _check(store, ROLES, _role("reader", SECRETS_GET), name="reader", old=old)
    with pytest.raises(ApiError):
        _check(store, ROLES, _role("reader", SECRETS_GET))


def test_system_masters_are_never_checked() -> None:
    store = _store()
    _check(store, ROLES, _role("reader", SECRETS_GET), user=ADMIN)


def test_other_resources_are_not_checked() -> None:
    store = _store()
    _check(store, "/configmaps", {"metadata": {"name": "x"}, "rules": SECRETS_GET})


def test_an_update_touching_only_gc_fields_is_not_checked() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES)
    old = {"metadata": {"name": "reader", "resourceVersion": "5"}, "rules": SECRETS_GET}
    new = {
        "metadata": {
            "name": "reader",
            "resourceVersion": "5",
            "finalizers": ["x"],
            "ownerReferences": [{"name": "o"}],
        },
        "rules": SECRETS_GET,
    }
    _check(store, ROLES, new, name="reader", old=old)
    changed = {**new, "metadata": {**new["metadata"], "labels": {"a": "b"}}}
    with pytest.raises(ApiError):
        _check(store, ROLES, changed, name="reader", old=old)


def test_an_aggregation_rule_takes_cluster_admin() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES, namespace=None)
    aggregated = {
        "metadata": {"name": "agg"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]},
        "rules": [],
    }
    with pytest.raises(ApiError) as caught:
        _check(store, CLUSTER_ROLES, aggregated, namespace=None)
    assert caught.value.message == (
        'clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have'
        " cluster-admin privileges to use the aggregationRule"
    )


def _binding(kind: str, role: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role},
        "subjects": [{"kind": "User", "name": "someone"}],
    }


def test_binding_a_role_with_rules_the_user_lacks_is_forbidden() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES)
    store.create(ROLES, "dev", _role("reader", SECRETS_GET))
    with pytest.raises(ApiError) as caught:
        _check(store, ROLE_BINDINGS, _binding("Role", "reader"))
    assert caught.value.code == 403
    assert caught.value.message == (
        'rolebindings.rbac.authorization.k8s.io "b" is forbidden: user "system:serviceaccount:dev:developer" (groups=["system:serviceaccounts" "system:serviceaccounts:dev" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}'
    )


def test_binding_is_allowed_with_bind_or_with_the_rules_held() -> None:
    store = _store()
    _grant(
        store,
        "writer",
        [
            *WRITE_ROLES,
            {
                "apiGroups": [RBAC],
                "resources": ["clusterroles"],
                "resourceNames": ["view-secrets"],
                "verbs": ["bind"],
            },
        ],
    )
    store.create(CLUSTER_ROLES, None, _role("view-secrets", SECRETS_GET))
    store.create(CLUSTER_ROLES, None, _role("other-secrets", SECRETS_GET))
    _check(store, ROLE_BINDINGS, _binding("ClusterRole", "view-secrets"))
    with pytest.raises(ApiError):
        _check(store, ROLE_BINDINGS, _binding("ClusterRole", "other-secrets"))
    _grant(store, "secrets", SECRETS_GET)
    _check(store, ROLE_BINDINGS, _binding("ClusterRole", "other-secrets"))


def test_cluster_role_binding_asks_bind_at_the_cluster_scope() -> None:
    """
    C{bind} granted in a namespace lets one bind there, not cluster-wide.
    """
    store = _store()
    _grant(
        store,
        "writer",
        [
            *WRITE_ROLES,
            {"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["bind"]},
        ],
    )
    store.create(CLUSTER_ROLES, None, _role("view-secrets", SECRETS_GET))
    _check(store, ROLE_BINDINGS, _binding("ClusterRole", "view-secrets"))
    with pytest.raises(ApiError) as caught:
        _check(
            store,
            CLUSTER_ROLE_BINDINGS,
            _binding("ClusterRole", "view-secrets"),
            namespace=None,
        )
    assert caught.value.message.startswith(
        'clusterrolebindings.rbac.authorization.k8s.io "b" is forbidden: user '
    )


def test_binding_a_missing_role_is_not_found() -> None:
    store = _store()
    _grant(store, "writer", WRITE_ROLES)
    with pytest.raises(ApiError) as caught:
        _check(store, ROLE_BINDINGS, _binding("Role", "nothing"))
    assert caught.value.code == 404
    assert caught.value.message == 'roles.rbac.authorization.k8s.io "nothing" not found'
