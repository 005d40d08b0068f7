"""
RBAC's privilege-escalation prevention, as the real server's RBAC storage
(C{pkg/registry/rbac/*/policybased}) applies it on every write of a Role,
ClusterRole, RoleBinding or ClusterRoleBinding: nobody grants a permission
they do not hold, unless they may C{escalate} (roles) or C{bind} (bindings),
or are in C{system:masters}.

The coverage test is C{pkg/registry/rbac/validation}'s C{Covers}: each
requested rule is broken into atomic pieces, and each piece must be covered by
one of the rules the requester already holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .._auth_api import Attributes, IAuthorizer, UserInfo
from .._meta import ApiError
from .._store_api import JSONObject, ObjectReader
from ._authn import SYSTEM_MASTERS, aggregate_errors
from ._rbac import PolicyRule, RBACAuthorizer

__all__ = [
    "ESCALATION_CHECKED",
    "breakdown_rule",
    "compact_rules",
    "compact_string",
    "confirm_no_escalation",
    "covers",
    "escalation_message",
    "rule_covers",
]

_RBAC = "rbac.authorization.k8s.io"
_ROLES = f"{_RBAC}/roles"
_CLUSTER_ROLES = f"{_RBAC}/clusterroles"
_ROLE_BINDINGS = f"{_RBAC}/rolebindings"
_CLUSTER_ROLE_BINDINGS = f"{_RBAC}/clusterrolebindings"

#: The resources (store keys) whose writes are checked.
ESCALATION_CHECKED = frozenset(
    {_ROLES, _CLUSTER_ROLES, _ROLE_BINDINGS, _CLUSTER_ROLE_BINDINGS}
)

# What setting an aggregationRule takes: everything (C{fullAuthority}).
_FULL_AUTHORITY = (
    PolicyRule(verbs=("*",), api_groups=("*",), resources=("*",)),
    PolicyRule(verbs=("*",), non_resource_urls=("*",)),
)


# --- Covers -------------------------------------------------------------------


def breakdown_rule(rule: PolicyRule) -> list[PolicyRule]:
    """
    C{BreakdownRule}: one rule per verb, API group, resource and resource name
    (or per verb and non-resource URL).
    """
    pieces: list[PolicyRule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    pieces.extend(
                        PolicyRule(
                            verbs=(verb,),
                            api_groups=(group,),
                            resources=(resource,),
                            resource_names=(name,),
                        )
                        for name in rule.resource_names
                    )
                else:
                    pieces.append(
                        PolicyRule(
                            verbs=(verb,), api_groups=(group,), resources=(resource,)
                        )
                    )
    for url in rule.non_resource_urls:
        for verb in rule.verbs:
            pieces.append(PolicyRule(verbs=(verb,), non_resource_urls=(url,)))
    return pieces


def _has_all(owned: Sequence[str], wanted: Sequence[str]) -> bool:
    return set(wanted) <= set(owned)


def _resources_cover(owned: Sequence[str], wanted: Sequence[str]) -> bool:
    if "*" in owned or _has_all(owned, wanted):
        return True
    for resource in wanted:
        if resource in owned:
            continue
        if "/" not in resource:
            return False
        if "*/" + resource.split("/", 1)[1] not in owned:
            return False
    return True


def _url_covers(owned: str, wanted: str) -> bool:
    if owned == wanted:
        return True
    return owned.endswith("*") and wanted.startswith(owned.rstrip("*"))


def _urls_cover(owned: Sequence[str], wanted: Sequence[str]) -> bool:
    return all(any(_url_covers(o, w) for o in owned) for w in wanted)


def rule_covers(owner: PolicyRule, piece: PolicyRule) -> bool:
    """
    C{ruleCovers}: does one rule the requester holds cover a requested rule?
    """
    verbs = "*" in owner.verbs or _has_all(owner.verbs, piece.verbs)
    groups = "*" in owner.api_groups or _has_all(owner.api_groups, piece.api_groups)
    resources = _resources_cover(owner.resources, piece.resources)
    urls = _urls_cover(owner.non_resource_urls, piece.non_resource_urls)
    if not piece.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or _has_all(
            owner.resource_names, piece.resource_names
        )
    return verbs and groups and resources and names and urls


def covers(
    owner_rules: Iterable[PolicyRule], requested: Iterable[PolicyRule]
) -> tuple[bool, list[PolicyRule]]:
    """
    C{Covers}: whether C{owner_rules} cover every atomic piece of
    C{requested}, and the pieces they do not.
    """
    owned = list(owner_rules)
    uncovered = [
        piece
        for rule in requested
        for piece in breakdown_rule(rule)
        if not any(rule_covers(owner, piece) for owner in owned)
    ]
    return not uncovered, uncovered


def _simple_key(rule: PolicyRule) -> tuple[str, str, str | None] | None:
    if len(rule.resource_names) > 1 or rule.non_resource_urls:
        return None
    if len(rule.api_groups) != 1 or len(rule.resources) != 1:
        return None
    name = rule.resource_names[0] if rule.resource_names else None
    return rule.api_groups[0], rule.resources[0], name


def compact_rules(rules: Iterable[PolicyRule]) -> list[PolicyRule]:
    """
    C{CompactRules}: rules on one group, resource and (at most one) name that
    differ only by verb are merged into one.
    """
    compacted: list[PolicyRule] = []
    simple: dict[tuple[str, str, str | None], PolicyRule] = {}
    for rule in rules:
        key = _simple_key(rule)
        if key is None:
            compacted.append(rule)
        elif key in simple:
            existing = simple[key]
            simple[key] = PolicyRule(
                verbs=existing.verbs + rule.verbs,
                api_groups=existing.api_groups,
                resources=existing.resources,
                resource_names=existing.resource_names,
            )
        else:
            simple[key] = rule
    return compacted + list(simple.values())


def _go_quoted(values: Sequence[str]) -> str:
    """
    A string slice as Go's C{%q} prints it: C{["a" "b"]}.
    """
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def compact_string(rule: PolicyRule) -> str:
    """
    C{CompactString}: C{{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}}.
    """
    parts = []
    for label, values in (
        ("APIGroups", rule.api_groups),
        ("Resources", rule.resources),
        ("NonResourceURLs", rule.non_resource_urls),
        ("ResourceNames", rule.resource_names),
        ("Verbs", rule.verbs),
    ):
        if values:
            parts.append(f"{label}:{_go_quoted(values)}")
    return "{" + ", ".join(parts) + "}"


def escalation_message(
    user: UserInfo, missing: Iterable[PolicyRule], errors: Sequence[str] = ()
) -> str:
    """
    The error C{ConfirmNoEscalation} returns: who, and every missing rule
    (compacted, sorted, one a line).
    """
    descriptions = sorted({compact_string(r) for r in compact_rules(missing)})
    message = (
        f'user "{user.name}" (groups={_go_quoted(user.groups)}) is attempting to'
        " grant RBAC permissions not currently held:\n" + "\n".join(descriptions)
    )
    if errors:
        message += f"; resolution errors: [{aggregate_errors(errors)}]"
    return message


# --- the check on writes ------------------------------------------------------


def _forbidden(plural: str, name: str, message: str) -> ApiError:
    """
    C{apierrors.NewForbidden} for an RBAC resource.
    """
    qualified = f"{plural}.{_RBAC}"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
        text = f'{qualified} "{name}" is forbidden: {message}'
    else:
        text = f"{qualified} is forbidden: {message}"
    details["group"] = _RBAC
    details["kind"] = plural
    return ApiError(403, "Forbidden", text, details)


def _rules(obj: JSONObject | None) -> list[PolicyRule]:
    rules = (obj or {}).get("rules")
    if not isinstance(rules, list):
        return []
    return [PolicyRule.from_json(r) for r in rules]


def _meta(obj: JSONObject) -> JSONObject:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _name(obj: JSONObject) -> str:
    name = _meta(obj).get("name")
    return name if isinstance(name, str) else ""


def _only_gc_fields_change(new: JSONObject, old: JSONObject | None) -> bool:
    """
    C{IsOnlyMutatingGCFields}: nothing but owner references, finalizers (and
    managed fields, self link) differ.
    """
    if old is None:
        return False

    def strip(obj: JSONObject) -> JSONObject:
        meta = {
            k: v
            for k, v in _meta(obj).items()
            if k not in ("ownerReferences", "finalizers", "managedFields", "selfLink")
        }
        return {**obj, "metadata": meta}

    return strip(new) == strip(old)


def _has_aggregation(obj: JSONObject | None) -> bool:
    rule = (obj or {}).get("aggregationRule")
    return isinstance(rule, dict) and bool(rule.get("clusterRoleSelectors"))


class _Check:
    def __init__(
        self,
        authorizer: IAuthorizer,
        reader: ObjectReader,
        user: UserInfo,
        namespace: str,
        request_name: str,
    ) -> None:
        self.authorizer = authorizer
        self.resolver = RBACAuthorizer(reader)
        self.reader = reader
        self.user = user
        self.namespace = namespace
        self.request_name = request_name

    def allowed(self, verb: str, resource: str, namespace: str, name: str) -> bool:
        attributes = Attributes(
            user=self.user,
            verb=verb,
            resource_request=True,
            api_group=_RBAC,
            api_version="*",
            resource=resource,
            namespace=namespace,
            name=name,
        )
        return self.authorizer.authorize(attributes).allowed

    def missing(self, rules: Sequence[PolicyRule]) -> str | None:
        """
        C{ConfirmNoEscalation} in the request's namespace: the message, or
        C{None} when the user holds every rule.
        """
        owned, errors = self.resolver.resolve(self.user, self.namespace)
        ok, uncovered = covers(owned, rules)
        if ok:
            return None
        return escalation_message(self.user, uncovered, errors)

    def role(self, plural: str, new: JSONObject, old: JSONObject | None) -> None:
        if self.allowed("escalate", plural, self.namespace, self.request_name):
            return
        if _only_gc_fields_change(new, old):
            return
        name = _name(new)
        problem = self.missing(_rules(new))
        if problem is not None:
            raise _forbidden(plural, name, problem)
        if plural == "clusterroles" and (
            _has_aggregation(new) or _has_aggregation(old)
        ):
            if self.missing(_FULL_AUTHORITY) is not None:
                raise _forbidden(
                    plural,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                )

    def binding(self, plural: str, new: JSONObject, old: JSONObject | None) -> None:
        ref = new.get("roleRef")
        ref = ref if isinstance(ref, dict) else {}
        kind = ref.get("kind")
        ref_name = str(ref.get("name") or "")
        ref_group = str(ref.get("apiGroup") or "")
        if kind in ("Role", "ClusterRole") and self.allowed_bind(
            kind, ref_group, ref_name
        ):
            return
        if _only_gc_fields_change(new, old):
            return
        problem = self.missing(self.role_reference_rules(kind, ref_name))
        if problem is not None:
            raise _forbidden(plural, _name(new), problem)

    def allowed_bind(self, kind: str, group: str, name: str) -> bool:
        resource = "roles" if kind == "Role" else "clusterroles"
        attributes = Attributes(
            user=self.user,
            verb="bind",
            resource_request=True,
            api_group=group,
            resource=resource,
            namespace=self.namespace,
            name=name,
        )
        return self.authorizer.authorize(attributes).allowed

    def role_reference_rules(self, kind: Any, name: str) -> list[PolicyRule]:
        """
        C{GetRoleReferenceRules}: the rules of the role a binding names.
        """
        if kind == "Role":
            role = self.reader.get(_ROLES, self.namespace or None, name)
            if role is None:
                raise _not_found("roles", name)
            return _rules(role)
        if kind == "ClusterRole":
            role = self.reader.get(_CLUSTER_ROLES, None, name)
            if role is None:
                raise _not_found("clusterroles", name)
            return _rules(role)
        raise ApiError(
            500,
            "",
            f"unsupported role reference kind: {json.dumps(str(kind or ''))}",
        )


def _not_found(plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{plural}.{_RBAC} "{name}" not found',
        {"name": name, "group": _RBAC, "kind": plural},
    )


def confirm_no_escalation(
    authorizer: IAuthorizer,
    reader: ObjectReader,
    user: UserInfo,
    resource: str,
    namespace: str | None,
    request_name: str,
    new: JSONObject,
    old: JSONObject | None,
) -> None:
    """
    Refuse (403 Forbidden, as the real RBAC storage) a create (C{old} is
    C{None}) or update of a Role, ClusterRole, RoleBinding or
    ClusterRoleBinding that grants what C{user} does not hold; other
    resources pass untouched.

    @param authorizer: asked for C{escalate} on the role, or C{bind} on the
        role a binding refers to.
    @param reader: where the roles and bindings that give C{user} its rules
        are read.
    @param namespace: the request's namespace (C{None} or empty for
        cluster-scoped objects).
    @param request_name: the name in the request's URL (empty for a create),
        the name the C{escalate} check is asked for.
    @raise ApiError: 403 when the write would escalate; 404 when a binding
        refers to a role that does not exist.
    """
    if resource not in ESCALATION_CHECKED:
        return
    if SYSTEM_MASTERS in user.groups:
        return
    plural = resource.rpartition("/")[2]
    scoped = namespace or "" if resource in (_ROLES, _ROLE_BINDINGS) else ""
    check = _Check(authorizer, reader, user, scoped, request_name)
    if resource in (_ROLES, _CLUSTER_ROLES):
        check.role(plural, new, old)
    else:
        check.binding(plural, new, old)
