"""
Which credentials reach the child API server for a request from the parent.

The hub authenticates the parent's user and passes the identity inside the tunnel
as C{X-Remote-User}, C{X-Remote-Group} and C{X-Remote-Extra-*} headers (the tunnel
is the hub's alone, so the agent can trust them).  The agent then applies one of
three modes:

C{impersonate} (default)
    The agent's own child credentials, plus C{Impersonate-User} /
    C{Impersonate-Group} / C{Impersonate-Extra-*} for the parent identity.  Groups
    are mapped by a table; C{system:masters} is never forwarded unless
    C{allow_masters} is set, and the groups Kubernetes adds by itself
    (C{system:authenticated}, C{system:unauthenticated}) are left out.

C{token}
    The caller brings credentials for the child in their parent kubeconfig, as the
    Go original's users do: user extra C{clusternet-token} (a bearer token) or
    C{clusternet-certificate} + C{clusternet-privatekey} (base64 PEM).  The agent's
    own credentials are not used.

C{none}
    No credentials at all: for an http child such as C{kubectl proxy}.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, unquote

from attrs import field, frozen

__all__ = [
    "IDENTITY_MODES",
    "KUBERNETES_EXTRAS",
    "ChildCredentials",
    "IdentityError",
    "IdentityPolicy",
    "ParentIdentity",
    "parent_identity",
]

IDENTITY_MODES = ("impersonate", "token", "none")

# The user extras a Kubernetes API server sets by itself: the credential ID of
# x509 users and tokens, and the pod and node of bound service-account tokens.
# deploy/agent/clusternet_agent_rbac.yaml grants impersonating exactly these.
KUBERNETES_EXTRAS = (
    "authentication.kubernetes.io/credential-id",
    "authentication.kubernetes.io/node-name",
    "authentication.kubernetes.io/node-uid",
    "authentication.kubernetes.io/pod-name",
    "authentication.kubernetes.io/pod-uid",
)

_IMPLICIT_GROUPS = frozenset({"system:authenticated", "system:unauthenticated"})
_CREDENTIAL_EXTRAS = frozenset(
    {"clusternet-token", "clusternet-certificate", "clusternet-privatekey"}
)


class IdentityError(Exception):
    """
    The request cannot be given credentials in this mode (answered as 401/403).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@frozen
class ParentIdentity:
    """
    The parent's user, as the hub passed it.
    """

    user: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(factory=dict)


def parent_identity(
    headers: Mapping[str, Sequence[str]], extra_prefix: str = "x-remote-extra-"
) -> ParentIdentity | None:
    """
    Read the identity the hub put in a tunnelled request (header names
    lowercased).  C{None} when there is no user.
    """
    users = [u for u in headers.get("x-remote-user", ()) if u]
    if not users:
        return None
    groups = tuple(g for g in headers.get("x-remote-group", ()) if g)
    extra: dict[str, tuple[str, ...]] = {}
    for name, values in headers.items():
        if name.startswith(extra_prefix) and len(name) > len(extra_prefix):
            key = unquote(name[len(extra_prefix) :]).lower()
            extra[key] = extra.get(key, ()) + tuple(values)
    return ParentIdentity(users[0], groups, extra)


@frozen
class ChildCredentials:
    """
    What to add to a request towards the child.

    @ivar use_agent_credentials: send with the agent's own token or client
        certificate (from its child kubeconfig).
    @ivar headers: headers to set (C{Impersonate-*}, C{Authorization}).
    @ivar client_pem: a client certificate and key (PEM) to present instead of
        the agent's, for the token mode's certificate form.
    """

    use_agent_credentials: bool
    headers: tuple[tuple[str, str], ...] = ()
    client_pem: bytes | None = field(default=None, repr=False)


def _extra_keys(keys: Iterable[str] | None) -> frozenset[str] | None:
    return None if keys is None else frozenset(k.lower() for k in keys)


@frozen
class IdentityPolicy:
    """
    The agent's configured mode and group mapping.

    @ivar extras: the user extras (lower-case keys) passed on as
        C{Impersonate-Extra-*} in impersonate mode; C{None} passes every extra
        but the token mode's credentials.  Others are left out.
    """

    mode: str = "impersonate"
    group_map: Mapping[str, str] = field(factory=dict)
    allow_masters: bool = False
    extras: frozenset[str] | None = field(
        default=frozenset(KUBERNETES_EXTRAS),
        converter=_extra_keys,
    )

    def credentials(self, identity: ParentIdentity | None) -> ChildCredentials:
        if self.mode == "none":
            return ChildCredentials(use_agent_credentials=False)
        if identity is None:
            raise IdentityError(401, "the request carries no parent identity")
        if self.mode == "token":
            return self._token(identity)
        return self._impersonate(identity)

    def _impersonate(self, identity: ParentIdentity) -> ChildCredentials:
        headers = [("Impersonate-User", identity.user)]
        seen: set[str] = set()
        for group in identity.groups:
            mapped = self.group_map.get(group, group)
            if not mapped or mapped in _IMPLICIT_GROUPS or mapped in seen:
                continue
            if mapped == "system:masters" and not self.allow_masters:
                continue
            seen.add(mapped)
            headers.append(("Impersonate-Group", mapped))
        for key, values in sorted(identity.extra.items()):
            if key in _CREDENTIAL_EXTRAS:
                continue  # credentials are never turned into impersonated extras
            if self.extras is not None and key not in self.extras:
                continue
            for value in values:
                headers.append((f"Impersonate-Extra-{quote(key, safe='')}", value))
        return ChildCredentials(use_agent_credentials=True, headers=tuple(headers))

    @staticmethod
    def _token(identity: ParentIdentity) -> ChildCredentials:
        tokens = identity.extra.get("clusternet-token", ())
        if tokens:
            return ChildCredentials(
                use_agent_credentials=False,
                headers=(("Authorization", f"Bearer {tokens[0]}"),),
            )
        certificates = identity.extra.get("clusternet-certificate", ())
        keys = identity.extra.get("clusternet-privatekey", ())
        if certificates and keys:
            try:
                pem = base64.b64decode(certificates[0], validate=True) + b"\n"
                pem += base64.b64decode(keys[0], validate=True)
            except (binascii.Error, ValueError):
                raise IdentityError(
                    400, "clusternet-certificate / clusternet-privatekey are not base64"
                ) from None
            return ChildCredentials(use_agent_credentials=False, client_pem=pem)
        raise IdentityError(
            401,
            "this child takes the caller's own credentials: set the user extra "
            "clusternet-token (or clusternet-certificate and clusternet-privatekey) "
            "in your parent kubeconfig's impersonation settings",
        )
