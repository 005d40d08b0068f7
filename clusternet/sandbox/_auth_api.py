"""
The seam between the sandbox's HTTP layer and authentication / authorization.

The HTTP layer builds L{RequestCredentials} for each request and asks an
L{IAuthenticator} who the caller is, then builds L{Attributes} and asks an
L{IAuthorizer} whether they may.  The implementations live in
C{clusternet.sandbox.auth}.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import field, frozen
from cryptography import x509

from zope.interface import Interface

__all__ = [
    "Attributes",
    "AuthenticationError",
    "Decision",
    "IAuthenticator",
    "IAuthorizer",
    "RequestCredentials",
    "UserInfo",
]


@frozen
class UserInfo:
    """
    An authenticated user, as Kubernetes' C{user.Info}.
    """

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(factory=dict)


@frozen
class RequestCredentials:
    """
    What a request presented.

    @ivar headers: header names lowercased -> every value, in order.
    @ivar peer_chain: the client certificate chain the TLS layer verified against
        one of the sandbox's client CAs (leaf first), or empty.
    """

    headers: Mapping[str, tuple[str, ...]]
    peer_chain: tuple[x509.Certificate, ...] = ()
    remote_address: str = ""


class AuthenticationError(Exception):
    """
    Credentials were presented but are not valid (expired, unknown, bad signature):
    the request gets 401, whatever else it carried.  The message is safe to log: it
    never contains the credential.
    """


class IAuthenticator(Interface):
    def authenticate(credentials: RequestCredentials) -> UserInfo | None:
        """
        The user the credentials prove, or C{None} when they carry none this
        authenticator understands.

        @raise AuthenticationError: credentials of its kind that are invalid.
        """


@frozen
class Attributes:
    """
    What a request asks to do, as Kubernetes' C{authorizer.Attributes}.

    For a resource request C{resource_request} is true and C{path} is informative;
    for a non-resource request (C{/version}, C{/healthz}, ...) only C{verb}
    (the lowercased HTTP method, C{get}/C{post}/...) and C{path} matter.
    """

    user: UserInfo
    verb: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@frozen
class Decision:
    allowed: bool
    reason: str = ""


class IAuthorizer(Interface):
    def authorize(attributes: Attributes) -> Decision:
        """
        Whether the request may proceed, with the reason RBAC gives.
        """
