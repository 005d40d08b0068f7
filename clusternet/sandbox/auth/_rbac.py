"""
Authorization as the real kube-apiserver does it: the privileged
C{system:masters} group, then RBAC (Roles and ClusterRoles through their
bindings, read from the store on every request) behind the browser-safe proxy
guard the reference server applies, plus the 403 message the server writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from attrs import frozen

from zope.interface import implementer

from .._auth_api import Attributes, Decision, IAuthorizer, UserInfo
from .._store_api import ObjectReader
from ._authn import ALL_AUTHENTICATED, SYSTEM_MASTERS, aggregate_errors
from ._objects import metadata

__all__ = [
    "BrowserSafeAuthorizer",
    "PolicyRule",
    "PrivilegedGroupAuthorizer",
    "RBACAuthorizer",
    "UnionAuthorizer",
    "applies_to_user",
    "forbidden_message",
    "forbidden_status",
    "new_authorizer",
    "rule_allows",
]

_RBAC = "rbac.authorization.k8s.io"
_ROLES = f"{_RBAC}/roles"
_CLUSTER_ROLES = f"{_RBAC}/clusterroles"
_ROLE_BINDINGS = f"{_RBAC}/rolebindings"
_CLUSTER_ROLE_BINDINGS = f"{_RBAC}/clusterrolebindings"


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str))


@frozen
class PolicyRule:
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, rule: Any) -> PolicyRule:
        if not isinstance(rule, dict):
            return cls()
        return cls(
            verbs=_strings(rule.get("verbs")),
            api_groups=_strings(rule.get("apiGroups")),
            resources=_strings(rule.get("resources")),
            resource_names=_strings(rule.get("resourceNames")),
            non_resource_urls=_strings(rule.get("nonResourceURLs")),
        )


def _verb_matches(rule: PolicyRule, verb: str) -> bool:
    return any(v == "*" or v == verb for v in rule.verbs)


def _group_matches(rule: PolicyRule, group: str) -> bool:
    return any(g == "*" or g == group for g in rule.api_groups)


def _resource_matches(rule: PolicyRule, combined: str, subresource: str) -> bool:
    for resource in rule.resources:
        if resource == "*" or resource == combined:
            return True
        if not subresource:
            continue
        if (
            len(resource) == len(subresource) + 2
            and resource.startswith("*/")
            and resource.endswith(subresource)
        ):
            return True
    return False


def _name_matches(rule: PolicyRule, name: str) -> bool:
    if not rule.resource_names:
        return True
    return name in rule.resource_names


def _url_matches(rule: PolicyRule, path: str) -> bool:
    for url in rule.non_resource_urls:
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(attributes: Attributes, rule: PolicyRule) -> bool:
    """
    RBAC's C{RuleAllows}: does one rule grant the request?
    """
    if attributes.resource_request:
        combined = attributes.resource
        if attributes.subresource:
            combined = f"{attributes.resource}/{attributes.subresource}"
        return (
            _verb_matches(rule, attributes.verb)
            and _group_matches(rule, attributes.api_group)
            and _resource_matches(rule, combined, attributes.subresource)
            and _name_matches(rule, attributes.name)
        )
    return _verb_matches(rule, attributes.verb) and _url_matches(rule, attributes.path)


def _service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def applies_to_user(user: UserInfo, subject: Any, namespace: str) -> bool:
    """
    RBAC's C{appliesToUser} for one binding subject.
    """
    if not isinstance(subject, dict):
        return False
    kind = subject.get("kind")
    name = subject.get("name")
    if not isinstance(name, str):
        return False
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        if not isinstance(sa_namespace, str) or not sa_namespace:
            return False
        return user.name == _service_account_username(sa_namespace, name)
    return False


def _describe_subject(subject: dict[str, Any], binding_namespace: str) -> str:
    kind = subject.get("kind", "")
    name = subject.get("name", "")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f'{kind} "{name}/{namespace}"'
    return f'{kind} "{name}"'


@implementer(IAuthorizer)
class RBACAuthorizer:
    """
    RBAC over the store's Roles, ClusterRoles and their bindings, evaluated per
    request exactly as C{plugin/pkg/auth/authorizer/rbac}: ClusterRoleBindings
    first, then the RoleBindings of the request's namespace; the reason names
    the binding that allowed it; a binding to a missing role is reported in
    the reason of a denial.
    """

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader

    def _role_rules(
        self, role_ref: Any, binding_namespace: str
    ) -> tuple[list[PolicyRule], str | None]:
        if not isinstance(role_ref, dict):
            return [], "invalid roleRef"
        kind = role_ref.get("kind")
        name = str(role_ref.get("name", ""))
        if kind == "ClusterRole":
            role = self._reader.get(_CLUSTER_ROLES, None, name)
            if role is None:
                return [], f'clusterrole.rbac.authorization.k8s.io "{name}" not found'
        elif kind == "Role" and binding_namespace:
            role = self._reader.get(_ROLES, binding_namespace, name)
            if role is None:
                return [], f'role.rbac.authorization.k8s.io "{name}" not found'
        else:
            return [], f"unsupported role reference kind: {kind!r}"
        rules = role.get("rules")
        if not isinstance(rules, list):
            return [], None
        return [PolicyRule.from_json(r) for r in rules], None

    def _visit(
        self, user: UserInfo, namespace: str
    ) -> Iterator[tuple[str | None, PolicyRule | None, str | None]]:
        """
        (source description, rule, error) for every rule that applies to the
        user, as C{VisitRulesFor}.
        """
        for binding in self._reader.list(_CLUSTER_ROLE_BINDINGS):
            subject = _first_applying(binding, user, "")
            if subject is None:
                continue
            rules, error = self._role_rules(binding.get("roleRef"), "")
            if error:
                yield None, None, error
                continue
            ref = binding.get("roleRef", {})
            source = (
                f'ClusterRoleBinding "{metadata(binding).get("name", "")}" of'
                f' {ref.get("kind", "")} "{ref.get("name", "")}" to'
                f" {_describe_subject(subject, '')}"
            )
            for rule in rules:
                yield source, rule, None
        if not namespace:
            return
        for binding in self._reader.list(_ROLE_BINDINGS, namespace):
            subject = _first_applying(binding, user, namespace)
            if subject is None:
                continue
            rules, error = self._role_rules(binding.get("roleRef"), namespace)
            if error:
                yield None, None, error
                continue
            ref = binding.get("roleRef", {})
            source = (
                f'RoleBinding "{metadata(binding).get("name", "")}/{namespace}" of'
                f' {ref.get("kind", "")} "{ref.get("name", "")}" to'
                f" {_describe_subject(subject, namespace)}"
            )
            for rule in rules:
                yield source, rule, None

    def authorize(self, attributes: Attributes) -> Decision:
        errors: list[str] = []
        for source, rule, error in self._visit(attributes.user, attributes.namespace):
            if error is not None:
                errors.append(error)
                continue
            assert rule is not None
            if rule_allows(attributes, rule):
                return Decision(True, f"RBAC: allowed by {source}")
        if errors:
            return Decision(False, "RBAC: " + aggregate_errors(errors))
        return Decision(False, "")

    def rules_for(self, user: UserInfo, namespace: str) -> list[PolicyRule]:
        """
        Every rule that applies to C{user} in C{namespace} (what a
        SelfSubjectRulesReview lists).
        """
        return [r for _, r, _ in self._visit(user, namespace) if r is not None]

    def resolve(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[PolicyRule], list[str]]:
        """
        L{rules_for} with the errors met on the way (bindings to missing
        roles), as C{RulesFor} returns both.
        """
        rules: list[PolicyRule] = []
        errors: list[str] = []
        for _, rule, error in self._visit(user, namespace):
            if error is not None:
                errors.append(error)
            elif rule is not None:
                rules.append(rule)
        return rules, errors


def _first_applying(
    binding: dict[str, Any], user: UserInfo, namespace: str
) -> dict[str, Any] | None:
    subjects = binding.get("subjects")
    if not isinstance(subjects, list):
        return None
    for subject in subjects:
        if applies_to_user(user, subject, namespace):
            return subject
    return None


@implementer(IAuthorizer)
class PrivilegedGroupAuthorizer:
    """
    Members of C{system:masters} (or the groups given) may do anything.
    """

    def __init__(self, groups: Sequence[str] = (SYSTEM_MASTERS,)) -> None:
        self._groups = frozenset(groups)

    def authorize(self, attributes: Attributes) -> Decision:
        if self._groups.intersection(attributes.user.groups):
            return Decision(True, "")
        return Decision(False, "")


@implementer(IAuthorizer)
class BrowserSafeAuthorizer:
    """
    A proxy request (verb or subresource C{proxy}) from a caller outside
    C{system:authenticated} is asked of the delegate as C{unsafeproxy}, with
    the reason saying so when it is denied (kube-wire 072).
    """

    def __init__(
        self,
        delegate: IAuthorizer,
        authenticated_groups: Sequence[str] = (ALL_AUTHENTICATED,),
    ) -> None:
        self._delegate = delegate
        self._groups = frozenset(authenticated_groups)

    def authorize(self, attributes: Attributes) -> Decision:
        if not attributes.resource_request:
            return self._delegate.authorize(attributes)
        proxy_verb = attributes.verb == "proxy"
        proxy_sub = attributes.subresource == "proxy"
        if not (proxy_verb or proxy_sub) or self._groups.intersection(
            attributes.user.groups
        ):
            return self._delegate.authorize(attributes)
        changed = Attributes(
            user=attributes.user,
            verb="unsafeproxy" if proxy_verb else attributes.verb,
            resource_request=True,
            api_group=attributes.api_group,
            api_version=attributes.api_version,
            resource=attributes.resource,
            subresource="unsafeproxy" if proxy_sub else attributes.subresource,
            namespace=attributes.namespace,
            name=attributes.name,
            path=attributes.path,
        )
        decision = self._delegate.authorize(changed)
        if decision.allowed:
            return decision
        reason = decision.reason
        if proxy_verb:
            reason = (
                reason + ", " if reason else ""
            ) + "proxy verb changed to unsafeproxy"
        if proxy_sub:
            reason = (
                reason + ", " if reason else ""
            ) + "proxy subresource changed to unsafeproxy"
        return Decision(False, reason)


@implementer(IAuthorizer)
class UnionAuthorizer:
    """
    The first authorizer that allows wins; otherwise a denial whose reason joins
    every reason given (one a line), as C{authorizerunion}.
    """

    def __init__(self, *authorizers: IAuthorizer) -> None:
        self._authorizers = authorizers

    def authorize(self, attributes: Attributes) -> Decision:
        reasons: list[str] = []
        for authorizer in self._authorizers:
            decision = authorizer.authorize(attributes)
            if decision.allowed:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        return Decision(False, "\n".join(reasons))


def new_authorizer(reader: ObjectReader) -> IAuthorizer:
    """
    The sandbox's authorizer: C{system:masters}, then browser-safe RBAC.
    """
    return UnionAuthorizer(
        PrivilegedGroupAuthorizer(), BrowserSafeAuthorizer(RBACAuthorizer(reader))
    )


def forbidden_message(attributes: Attributes, reason: str = "") -> str:
    """
    The C{message} of the 403 Status the real server writes (kube-wire 074, 076,
    079).
    """
    username = attributes.user.name
    if not attributes.resource_request:
        message = f'User "{username}" cannot {attributes.verb} path "{attributes.path}"'
    else:
        resource = attributes.resource
        if attributes.subresource:
            resource = f"{resource}/{attributes.subresource}"
        if attributes.namespace:
            message = (
                f'User "{username}" cannot {attributes.verb} resource "{resource}"'
                f' in API group "{attributes.api_group}" in the namespace'
                f' "{attributes.namespace}"'
            )
        else:
            message = (
                f'User "{username}" cannot {attributes.verb} resource "{resource}"'
                f' in API group "{attributes.api_group}" at the cluster scope'
            )
    if reason:
        message = f"{message}: {reason}"
    group = attributes.api_group if attributes.resource_request else ""
    resource_name = attributes.resource if attributes.resource_request else ""
    if not group and not resource_name:
        return f"forbidden: {message}"
    qualified = f"{resource_name}.{group}" if group else resource_name
    if attributes.name and attributes.resource_request:
        return f'{qualified} "{attributes.name}" is forbidden: {message}'
    return f"{qualified} is forbidden: {message}"


def forbidden_status(attributes: Attributes, reason: str = "") -> dict[str, Any]:
    """
    The whole 403 Status object (kube-wire 074, 079).
    """
    details: dict[str, Any] = {}
    if attributes.resource_request:
        if attributes.name:
            details["name"] = attributes.name
        if attributes.api_group:
            details["group"] = attributes.api_group
        if attributes.resource:
            details["kind"] = attributes.resource
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": forbidden_message(attributes, reason),
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }
