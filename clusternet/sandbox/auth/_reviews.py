"""
The review APIs as pure handlers: each takes the decoded request body (and the
caller, for the self-reviews) and returns the object the real server answers
with 201, or raises L{APIError}.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .._auth_api import Attributes, AuthenticationError, IAuthorizer, UserInfo
from ._authn import ITokenAuthenticator
from ._errors import bad_request, invalid
from ._objects import format_time
from ._rbac import RBACAuthorizer

__all__ = [
    "handle_local_subject_access_review",
    "handle_self_subject_access_review",
    "handle_self_subject_review",
    "handle_self_subject_rules_review",
    "handle_subject_access_review",
    "handle_token_review",
    "user_info_json",
]

_AUTHN = "authentication.k8s.io"
_AUTHZ = "authorization.k8s.io"

_RESOURCE_FIELDS = (
    "namespace",
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "name",
)


def user_info_json(user: UserInfo) -> dict[str, Any]:
    """
    An C{authentication.k8s.io/v1} C{UserInfo}, empty fields left out.
    """
    result: dict[str, Any] = {"username": user.name}
    if user.uid:
        result["uid"] = user.uid
    if user.groups:
        result["groups"] = list(user.groups)
    if user.extra:
        result["extra"] = {k: list(v) for k, v in user.extra.items()}
    return result


def _object(body: Any, kind: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a {kind} object")
    return body


def _spec(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    return spec


def _string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{field} must be a list of strings")
    return list(value)


def _string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string")
    return value


def _metadata(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    result: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
    result.setdefault("creationTimestamp", None)
    return result


def handle_token_review(
    body: Any, authenticator: ITokenAuthenticator
) -> dict[str, Any]:
    """
    C{POST /apis/authentication.k8s.io/v1/tokenreviews} (kube-wire 066, 067).
    """
    review = _object(body, "TokenReview")
    spec = _spec(review)
    token = _string(spec.get("token"), "spec.token")
    if not token:
        raise bad_request("token is required for TokenReview in authentication")
    audiences = _string_list(spec.get("audiences"), "spec.audiences")
    echo: dict[str, Any] = {"token": token}
    if audiences:
        echo["audiences"] = audiences
    status: dict[str, Any] = {}
    error = ""
    try:
        response = authenticator.authenticate_token(token, tuple(audiences))
    except AuthenticationError as e:
        response, error = None, str(e)
    if response is None:
        status["user"] = {}
        status["error"] = error or "invalid bearer token"
    else:
        status["authenticated"] = True
        status["user"] = user_info_json(response.user)
        if response.audiences:
            status["audiences"] = list(response.audiences)
    return {
        "kind": "TokenReview",
        "apiVersion": f"{_AUTHN}/v1",
        "metadata": _metadata(review),
        "spec": echo,
        "status": status,
    }


def handle_self_subject_review(
    user: UserInfo, now: float | None = None
) -> dict[str, Any]:
    """
    C{POST /apis/authentication.k8s.io/v1/selfsubjectreviews} (kube-wire 073,
    078): who the caller is.
    """
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": f"{_AUTHN}/v1",
        "metadata": {
            "creationTimestamp": format_time(time.time() if now is None else now)
        },
        "status": {"userInfo": user_info_json(user)},
    }


def _go_value(value: Any) -> str:
    if value is None:
        return '"null"'
    return json.dumps(value, sort_keys=True)


def _attributes_spec(
    spec: dict[str, Any],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[tuple[str, str, str]]]:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if resource is not None and not isinstance(resource, dict):
        raise bad_request("spec.resourceAttributes must be an object")
    if non_resource is not None and not isinstance(non_resource, dict):
        raise bad_request("spec.nonResourceAttributes must be an object")
    causes: list[tuple[str, str, str]] = []
    if resource is not None and non_resource is not None:
        causes.append(
            (
                "spec.nonResourceAttributes",
                _go_value(non_resource),
                "cannot be specified in combination with resourceAttributes",
            )
        )
    if resource is None and non_resource is None:
        causes.append(
            (
                "spec.resourceAttributes",
                _go_value(None),
                "exactly one of nonResourceAttributes or resourceAttributes must be"
                " specified",
            )
        )
    clean_resource = None
    if resource is not None:
        clean_resource = {}
        for field in _RESOURCE_FIELDS:
            value = _string(resource.get(field), f"spec.resourceAttributes.{field}")
            if value:
                clean_resource[field] = value
    clean_non_resource = None
    if non_resource is not None:
        clean_non_resource = {}
        for field in ("path", "verb"):
            value = _string(
                non_resource.get(field), f"spec.nonResourceAttributes.{field}"
            )
            if value:
                clean_non_resource[field] = value
    return clean_resource, clean_non_resource, causes


def _attributes(
    user: UserInfo,
    resource: dict[str, Any] | None,
    non_resource: dict[str, Any] | None,
) -> Attributes:
    if resource is not None:
        return Attributes(
            user=user,
            verb=resource.get("verb", ""),
            resource_request=True,
            api_group=resource.get("group", ""),
            api_version=resource.get("version", ""),
            resource=resource.get("resource", ""),
            subresource=resource.get("subresource", ""),
            namespace=resource.get("namespace", ""),
            name=resource.get("name", ""),
        )
    assert non_resource is not None
    return Attributes(
        user=user,
        verb=non_resource.get("verb", ""),
        resource_request=False,
        path=non_resource.get("path", ""),
    )


def _access_status(authorizer: IAuthorizer, attributes: Attributes) -> dict[str, Any]:
    decision = authorizer.authorize(attributes)
    status: dict[str, Any] = {"allowed": decision.allowed}
    if decision.reason:
        status["reason"] = decision.reason
    return status


def _extra(value: Any) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("spec.extra must be an object")
    return {
        str(k): tuple(_string_list(v, f"spec.extra[{k}]")) for k, v in value.items()
    }


def handle_subject_access_review(body: Any, authorizer: IAuthorizer) -> dict[str, Any]:
    """
    C{POST /apis/authorization.k8s.io/v1/subjectaccessreviews} (kube-wire
    068, 071, 072): may the user in the spec do this?
    """
    review = _object(body, "SubjectAccessReview")
    spec = _spec(review)
    username = _string(spec.get("user"), "spec.user")
    groups = _string_list(spec.get("groups"), "spec.groups")
    uid = _string(spec.get("uid"), "spec.uid")
    extra = _extra(spec.get("extra"))
    resource, non_resource, causes = _attributes_spec(spec)
    if not username and not groups:
        causes.append(
            ("spec.user", '""', "at least one of user or group must be specified")
        )
    if causes:
        raise invalid("SubjectAccessReview", _AUTHZ, "", causes)
    user = UserInfo(name=username, uid=uid, groups=tuple(groups), extra=extra)
    echo: dict[str, Any] = {}
    if resource is not None:
        echo["resourceAttributes"] = resource
    if non_resource is not None:
        echo["nonResourceAttributes"] = non_resource
    if username:
        echo["user"] = username
    if groups:
        echo["groups"] = groups
    if extra:
        echo["extra"] = {k: list(v) for k, v in extra.items()}
    if uid:
        echo["uid"] = uid
    return {
        "kind": "SubjectAccessReview",
        "apiVersion": f"{_AUTHZ}/v1",
        "metadata": _metadata(review),
        "spec": echo,
        "status": _access_status(authorizer, _attributes(user, resource, non_resource)),
    }


def handle_local_subject_access_review(
    body: Any, namespace: str, authorizer: IAuthorizer
) -> dict[str, Any]:
    """
    C{POST /apis/authorization.k8s.io/v1/namespaces/<ns>/localsubjectaccessreviews}.
    """
    review = _object(body, "LocalSubjectAccessReview")
    spec = _spec(review)
    resource = spec.get("resourceAttributes")
    if isinstance(resource, dict) and resource.get("namespace", "") != namespace:
        raise bad_request(
            "spec.resourceAttributes.namespace must match namespace:"
            f" {resource.get('namespace', '')}"
        )
    if spec.get("nonResourceAttributes") is not None:
        raise bad_request("disallowed on this kind of request")
    result = handle_subject_access_review(review, authorizer)
    result["kind"] = "LocalSubjectAccessReview"
    result["metadata"].setdefault("namespace", namespace)
    return result


def handle_self_subject_access_review(
    body: Any, user: UserInfo, authorizer: IAuthorizer
) -> dict[str, Any]:
    """
    C{POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews}: may the
    caller do this?  (What C{kubectl auth can-i} asks.)
    """
    review = _object(body, "SelfSubjectAccessReview")
    spec = _spec(review)
    resource, non_resource, causes = _attributes_spec(spec)
    if causes:
        raise invalid("SelfSubjectAccessReview", _AUTHZ, "", causes)
    echo: dict[str, Any] = {}
    if resource is not None:
        echo["resourceAttributes"] = resource
    if non_resource is not None:
        echo["nonResourceAttributes"] = non_resource
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": f"{_AUTHZ}/v1",
        "metadata": _metadata(review),
        "spec": echo,
        "status": _access_status(authorizer, _attributes(user, resource, non_resource)),
    }


def handle_self_subject_rules_review(
    body: Any, user: UserInfo, rbac: RBACAuthorizer
) -> dict[str, Any]:
    """
    C{POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews}: the rules
    the caller has in C{spec.namespace} (C{kubectl auth can-i --list}).
    """
    review = _object(body, "SelfSubjectRulesReview")
    spec = _spec(review)
    namespace = _string(spec.get("namespace"), "spec.namespace")
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for rule in rbac.rules_for(user, namespace):
        if rule.non_resource_urls:
            non_resource_rules.append(
                {
                    "verbs": list(rule.verbs),
                    "nonResourceURLs": list(rule.non_resource_urls),
                }
            )
        if rule.resources:
            entry: dict[str, Any] = {
                "verbs": list(rule.verbs),
                "apiGroups": list(rule.api_groups),
                "resources": list(rule.resources),
            }
            if rule.resource_names:
                entry["resourceNames"] = list(rule.resource_names)
            resource_rules.append(entry)
    return {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": f"{_AUTHZ}/v1",
        "metadata": _metadata(review),
        "spec": {"namespace": namespace} if namespace else {},
        "status": {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        },
    }
