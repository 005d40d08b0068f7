"""
Impersonation as the real server's C{WithImpersonation} filter does it:
C{Impersonate-User}, C{Impersonate-Group} (repeated), C{Impersonate-Uid} and
C{Impersonate-Extra-<key>} (what C{kubectl --as/--as-group/--as-uid} sends),
each authorized with the verb C{impersonate} on C{users} (or
C{serviceaccounts}), C{groups}, C{uids} and C{userextras/<key>}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from clusternet.apis.status import status_object
from clusternet.sandbox._auth_api import Attributes, IAuthorizer, UserInfo
from clusternet.sandbox.auth._rbac import forbidden_status

__all__ = [
    "IMPERSONATE_EXTRA_PREFIX",
    "ImpersonationRefused",
    "impersonate",
    "impersonation_requested",
]

IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"
IMPERSONATE_EXTRA_PREFIX = "impersonate-extra-"
_AUTHN_GROUP = "authentication.k8s.io"
_SA_PREFIX = "system:serviceaccount:"
_ANONYMOUS = "system:anonymous"
_AUTHENTICATED = "system:authenticated"
_UNAUTHENTICATED = "system:unauthenticated"


class ImpersonationRefused(Exception):
    """
    The request may not impersonate what it asked for: answer C{status}.
    """

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status.get("message", ""))
        self.status = status


def impersonation_requested(headers: Mapping[str, tuple[str, ...]]) -> bool:
    return any(name.startswith("impersonate-") for name in headers)


def impersonate(
    user: UserInfo,
    headers: Mapping[str, tuple[str, ...]],
    authorizer: IAuthorizer,
) -> UserInfo:
    """
    The user a request acts as: C{user} itself when it asks for no
    impersonation, else the impersonated user once every part is authorized.

    @param headers: header names lowercased -> values.
    @raise ImpersonationRefused: 400 for incomplete headers, 403 (the real
        Status) when C{user} may not impersonate a part.
    """
    if not impersonation_requested(headers):
        return user
    users = [v for v in headers.get(IMPERSONATE_USER, ()) if v]
    groups = [v for v in headers.get(IMPERSONATE_GROUP, ()) if v]
    uids = [v for v in headers.get(IMPERSONATE_UID, ()) if v]
    extras: dict[str, list[str]] = {}
    for name, values in headers.items():
        if name.startswith(IMPERSONATE_EXTRA_PREFIX):
            key = unquote(name[len(IMPERSONATE_EXTRA_PREFIX) :]).lower()
            extras.setdefault(key, []).extend(values)
    requested = [f"Impersonate-Group={g}" for g in groups]
    requested += [f"Impersonate-Uid={u}" for u in uids]
    requested += [f"Impersonate-Extra-{k}={v}" for k, vs in extras.items() for v in vs]
    if not users:
        if not requested:
            return user
        raise ImpersonationRefused(
            status_object(
                400,
                f"requested [{' '.join(requested)}] without impersonating a user",
            )
        )
    if len(users) > 1 or len(uids) > 1:
        raise ImpersonationRefused(
            status_object(400, "only one user and uid may be impersonated")
        )
    name = users[0]
    checks: list[Attributes] = []
    result_groups: list[str] = []
    if name.startswith(_SA_PREFIX) and name.count(":") == 3:
        namespace, account = name[len(_SA_PREFIX) :].split(":", 1)
        checks.append(
            _check(user, "serviceaccounts", name=account, namespace=namespace)
        )
        if not groups:
            # A service account's groups are a fixed mapping, added only when
            # none are asked for (as the real server's impersonation filter).
            result_groups += [
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
            ]
    else:
        checks.append(_check(user, "users", name=name))
    for group in groups:
        checks.append(_check(user, "groups", name=group))
        result_groups.append(group)
    for uid in uids:
        checks.append(_check(user, "uids", name=uid, group=_AUTHN_GROUP))
    for key, extra_values in extras.items():
        for value in extra_values:
            checks.append(
                _check(
                    user, "userextras", name=value, group=_AUTHN_GROUP, subresource=key
                )
            )
    for attributes in checks:
        decision = authorizer.authorize(attributes)
        if not decision.allowed:
            raise ImpersonationRefused(forbidden_status(attributes, decision.reason))
    if name == _ANONYMOUS:
        if _UNAUTHENTICATED not in result_groups:
            result_groups.append(_UNAUTHENTICATED)
    elif _AUTHENTICATED not in result_groups:
        result_groups.append(_AUTHENTICATED)
    return UserInfo(
        name=name,
        uid=uids[0] if uids else "",
        groups=tuple(result_groups),
        extra={k: tuple(v) for k, v in extras.items()},
    )


def _check(
    user: UserInfo,
    resource: str,
    *,
    name: str,
    namespace: str = "",
    group: str = "",
    subresource: str = "",
) -> Attributes:
    return Attributes(
        user=user,
        verb="impersonate",
        resource_request=True,
        api_group=group,
        api_version="",
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )
