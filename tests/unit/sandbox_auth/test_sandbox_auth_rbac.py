"""
RBAC as the real server evaluates it, the default policy, 403 messages and
the access reviews (kube-wire 068-072, 074, 076, 079).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sandbox_auth_helpers import MemoryStore

from zope.interface.verify import verifyObject

from clusternet.sandbox._auth_api import Attributes, Decision, IAuthorizer, UserInfo
from clusternet.sandbox.auth import (
    APIError,
    PolicyRule,
    RBACAuthorizer,
    default_rbac_objects,
    forbidden_status,
    handle_self_subject_access_review,
    handle_self_subject_rules_review,
    handle_subject_access_review,
    new_authorizer,
    rule_allows,
)

RBAC = "rbac.authorization.k8s.io"
SA_USER = UserInfo(
    name="system:serviceaccount:wire-37a0a:agent", groups=("system:serviceaccounts",)
)


def _store() -> MemoryStore:
    store = MemoryStore()
    resources = {
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
    }
    for obj in default_rbac_objects():
        store.create(
            f"{RBAC}/{resources[obj['kind']]}", obj["metadata"].get("namespace"), obj
        )
    return store


def _sockets_role(store: MemoryStore) -> None:
    store.create(
        f"{RBAC}/clusterroles",
        None,
        {
            "metadata": {"name": "wire-37a0a-sockets"},
            "rules": [
                {
                    "apiGroups": ["proxies.clusternet.io"],
                    "resources": ["sockets"],
                    "resourceNames": ["abc"],
                    "verbs": ["*"],
                }
            ],
        },
    )
    store.create(
        f"{RBAC}/clusterrolebindings",
        None,
        {
            "metadata": {"name": "wire-37a0a-sockets"},
            "roleRef": {
                "apiGroup": RBAC,
                "kind": "ClusterRole",
                "name": "wire-37a0a-sockets",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "agent", "namespace": "wire-37a0a"}
            ],
        },
    )


def _sar(resource: dict) -> dict:
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "system:serviceaccount:wire-37a0a:agent",
            "groups": ["system:serviceaccounts"],
            "resourceAttributes": resource,
        },
    }


def test_authorizers_provide_the_interface() -> None:
    store = _store()
    assert verifyObject(IAuthorizer, RBACAuthorizer(store))
    assert verifyObject(IAuthorizer, new_authorizer(store))


def test_subject_access_reviews_match_the_recorded_answers() -> None:
    store = _store()
    authorizer = new_authorizer(store)
    create = {
        "group": "proxies.clusternet.io",
        "resource": "sockets",
        "name": "abc",
        "verb": "create",
    }
    denied = handle_subject_access_review(_sar(create), authorizer)
    assert denied == {
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": {
            "resourceAttributes": {
                "verb": "create",
                "group": "proxies.clusternet.io",
                "resource": "sockets",
                "name": "abc",
            },
            "user": "system:serviceaccount:wire-37a0a:agent",
            "groups": ["system:serviceaccounts"],
        },
        "status": {"allowed": False},
    }
    _sockets_role(store)
    allowed = handle_subject_access_review(_sar(create), authorizer)
    assert allowed["status"] == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "wire-37a0a-sockets" of'
        ' ClusterRole "wire-37a0a-sockets" to ServiceAccount "agent/wire-37a0a"',
    }
    proxy = dict(create, verb="get", subresource="proxy")
    assert handle_subject_access_review(_sar(proxy), authorizer)["status"] == {
        "allowed": False,
        "reason": "proxy subresource changed to unsafeproxy",
    }
    other = dict(create, name="xyz")
    assert handle_subject_access_review(_sar(other), authorizer)["status"] == {
        "allowed": False
    }


def test_resource_names_do_not_grant_list_or_unnamed_create() -> None:
    store = _store()
    _sockets_role(store)
    rbac = RBACAuthorizer(store)
    for verb in ("list", "watch", "create"):
        attributes = Attributes(
            user=SA_USER,
            verb=verb,
            resource_request=True,
            api_group="proxies.clusternet.io",
            resource="sockets",
        )
        assert not rbac.authorize(attributes).allowed


def test_role_binding_applies_only_in_its_namespace() -> None:
    store = _store()
    store.create(
        f"{RBAC}/roles",
        "ns1",
        {
            "metadata": {"name": "r"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]}
            ],
        },
    )
    store.create(
        f"{RBAC}/rolebindings",
        "ns1",
        {
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent"}],
        },
    )
    rbac = RBACAuthorizer(store)
    user = UserInfo(name="system:serviceaccount:ns1:agent")

    def can(namespace: str, sub: str = "") -> Decision:
        return rbac.authorize(
            Attributes(
                user=user,
                verb="get",
                resource_request=True,
                resource="pods",
                subresource=sub,
                namespace=namespace,
                name="p",
            )
        )

    assert can("ns1").reason == (
        'RBAC: allowed by RoleBinding "b/ns1" of Role "r" to ServiceAccount "agent/ns1"'
    )
    assert can("ns1", "log").allowed
    assert not can("ns1", "exec").allowed
    assert not can("ns2").allowed


def test_binding_to_a_missing_role_is_reported_on_denial() -> None:
    store = MemoryStore()
    store.create(
        f"{RBAC}/clusterrolebindings",
        None,
        {
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "u"}],
        },
    )
    decision = RBACAuthorizer(store).authorize(
        Attributes(
            user=UserInfo(name="u"), verb="get", resource_request=False, path="/x"
        )
    )
    assert decision == Decision(
        False, 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    )


@pytest.mark.parametrize(
    ("user", "path", "allowed"),
    [
        (
            UserInfo("system:anonymous", groups=("system:unauthenticated",)),
            "/healthz",
            True,
        ),
        (
            UserInfo("system:anonymous", groups=("system:unauthenticated",)),
            "/version",
            True,
        ),
        (
            UserInfo("system:anonymous", groups=("system:unauthenticated",)),
            "/apis",
            False,
        ),
        (UserInfo("u", groups=("system:authenticated",)), "/apis/x/v1", True),
        (UserInfo("u", groups=("system:authenticated",)), "/metrics", False),
        (UserInfo("root", groups=("system:masters",)), "/anything", True),
    ],
)
def test_default_policy_for_non_resource_urls(user, path, allowed) -> None:
    decision = new_authorizer(_store()).authorize(
        Attributes(user=user, verb="get", resource_request=False, path=path)
    )
    assert decision.allowed is allowed


def test_default_policy_lets_anyone_authenticated_ask_about_themselves() -> None:
    user = UserInfo(
        "system:bootstrap:07401b",
        groups=("system:bootstrappers", "system:authenticated"),
    )
    authorizer = new_authorizer(_store())
    for group, resource in [
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ]:
        assert authorizer.authorize(
            Attributes(
                user=user,
                verb="create",
                resource_request=True,
                api_group=group,
                resource=resource,
            )
        ).allowed
    anonymous = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    assert authorizer.authorize(
        Attributes(
            user=anonymous,
            verb="get",
            resource_request=True,
            resource="configmaps",
            namespace="kube-public",
            name="cluster-info",
        )
    ).allowed


def test_forbidden_bodies_match_the_recorded_ones() -> None:
    secrets = Attributes(
        user=SA_USER,
        verb="list",
        resource_request=True,
        resource="secrets",
        namespace="wire-37a0a",
    )
    assert forbidden_status(secrets) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets is forbidden: User "system:serviceaccount:wire-37a0a:agent"'
        ' cannot list resource "secrets" in API group "" in the namespace "wire-37a0a"',
        "reason": "Forbidden",
        "details": {"kind": "secrets"},
        "code": 403,
    }
    crr = Attributes(
        user=UserInfo("system:bootstrap:07401b"),
        verb="create",
        resource_request=True,
        api_group="clusters.clusternet.io",
        resource="clusterregistrationrequests",
    )
    assert forbidden_status(crr)["message"] == (
        "clusterregistrationrequests.clusters.clusternet.io is forbidden: User"
        ' "system:bootstrap:07401b" cannot create resource'
        ' "clusterregistrationrequests" in API group "clusters.clusternet.io"'
        " at the cluster scope"
    )
    assert forbidden_status(crr)["details"] == {
        "group": "clusters.clusternet.io",
        "kind": "clusterregistrationrequests",
    }
    path = Attributes(user=UserInfo("u"), verb="get", resource_request=False, path="/x")
    assert (
        forbidden_status(path)["message"] == 'forbidden: User "u" cannot get path "/x"'
    )


def test_self_subject_access_review_and_rules_review() -> None:
    store = _store()
    _sockets_role(store)
    user = UserInfo(
        SA_USER.name, groups=("system:serviceaccounts", "system:authenticated")
    )
    body = {
        "spec": {
            "resourceAttributes": {
                "verb": "get",
                "group": "proxies.clusternet.io",
                "resource": "sockets",
                "subresource": "proxy",
                "name": "abc",
            }
        }
    }
    review = handle_self_subject_access_review(body, user, new_authorizer(store))
    assert review["kind"] == "SelfSubjectAccessReview"
    assert review["status"] == {"allowed": False}, "authenticated: no unsafeproxy"
    rules = handle_self_subject_rules_review(
        {"spec": {"namespace": "x"}}, user, RBACAuthorizer(store)
    )
    assert {
        "verbs": ["*"],
        "apiGroups": ["proxies.clusternet.io"],
        "resources": ["sockets"],
        "resourceNames": ["abc"],
    } in rules["status"]["resourceRules"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"user": "u"},
            'SubjectAccessReview.authorization.k8s.io "" is invalid:'
            ' spec.resourceAttributes: Invalid value: "null": exactly one of'
            " nonResourceAttributes or resourceAttributes must be specified",
        ),
        (
            {"nonResourceAttributes": {"path": "/x", "verb": "get"}},
            'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user:'
            ' Invalid value: "": at least one of user or group must be specified',
        ),
    ],
)
def test_invalid_subject_access_reviews_are_422(spec, message) -> None:
    with pytest.raises(APIError) as caught:
        handle_subject_access_review({"spec": spec}, new_authorizer(MemoryStore()))
    assert caught.value.code == 422
    assert caught.value.message == message
    assert (
        caught.value.status()["details"]["causes"][0]["reason"] == "FieldValueInvalid"
    )


names = st.sampled_from(["", "a", "b", "pods", "log", "x/y", "*"])
rules = st.builds(
    PolicyRule,
    verbs=st.lists(st.sampled_from(["get", "list", "create", "*"]), max_size=3).map(
        tuple
    ),
    api_groups=st.lists(st.sampled_from(["", "apps", "*"]), max_size=2).map(tuple),
    resources=st.lists(
        st.sampled_from(["pods", "pods/log", "*/log", "*", "deployments"]), max_size=3
    ).map(tuple),
    resource_names=st.lists(st.sampled_from(["a", "b"]), max_size=2).map(tuple),
    non_resource_urls=st.lists(
        st.sampled_from(["/x", "/x/*", "*", "/y"]), max_size=2
    ).map(tuple),
)
attributes = st.builds(
    Attributes,
    user=st.just(UserInfo("u")),
    verb=st.sampled_from(["get", "list", "create", "delete"]),
    resource_request=st.booleans(),
    api_group=st.sampled_from(["", "apps", "batch"]),
    resource=st.sampled_from(["pods", "deployments", "nodes"]),
    subresource=st.sampled_from(["", "log", "scale"]),
    name=st.sampled_from(["", "a", "b", "c"]),
    path=st.sampled_from(["/x", "/x/1", "/y", "/z"]),
)


@given(attributes)
def test_a_rule_of_stars_matches_every_request(attrs) -> None:
    everything = PolicyRule(
        verbs=("*",), api_groups=("*",), resources=("*",), non_resource_urls=("*",)
    )
    assert rule_allows(attrs, everything)


@given(st.lists(rules, max_size=4), rules, attributes)
def test_adding_a_rule_never_removes_access(existing, added, attrs) -> None:
    store = MemoryStore()

    def allowed(rule_list: list[PolicyRule], name: str) -> bool:
        store.create(
            f"{RBAC}/clusterroles",
            None,
            {
                "metadata": {"name": name},
                "rules": [
                    {
                        "verbs": list(r.verbs),
                        "apiGroups": list(r.api_groups),
                        "resources": list(r.resources),
                        "resourceNames": list(r.resource_names),
                        "nonResourceURLs": list(r.non_resource_urls),
                    }
                    for r in rule_list
                ],
            },
        )
        store.create(
            f"{RBAC}/clusterrolebindings",
            None,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "User", "name": name}],
            },
        )
        user_attrs = Attributes(
            **{
                **{
                    k: getattr(attrs, k)
                    for k in (
                        "verb",
                        "resource_request",
                        "api_group",
                        "resource",
                        "subresource",
                        "name",
                        "path",
                    )
                },
                "user": UserInfo(name),
            }
        )
        return RBACAuthorizer(store).authorize(user_attrs).allowed

    before = allowed(existing, "before")
    after = allowed([*existing, added], "after")
    assert after >= before
    assert after == (before or rule_allows(attrs, added))


@given(attributes)
def test_resource_names_restrict_to_named_requests(attrs) -> None:
    rule = PolicyRule(
        verbs=("*",), api_groups=("*",), resources=("*",), resource_names=("a",)
    )
    if attrs.resource_request:
        assert rule_allows(attrs, rule) == (attrs.name == "a")
