"""
Who is calling the hub, and may they.

Authentication follows the Kubernetes aggregated API server: a request that
arrives through the parent's aggregation layer carries the front-proxy client
certificate (verified against the requestheader CA, its common name checked
against the allowed names) and the user in C{X-Remote-User} / C{X-Remote-Group} /
C{X-Remote-Extra-*}; a request sent straight to the hub may carry a client
certificate signed by the client CA, or a bearer token that the parent checks
through a TokenReview.  Authorization asks the parent with a SubjectAccessReview,
with a short cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from attrs import field, frozen
from cryptography import x509

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from clusternet.hub._tls import CertificateAuthorities

__all__ = [
    "AuthConfig",
    "Authenticator",
    "CachingAuthorizer",
    "Forbidden",
    "IAccessReviewer",
    "ITokenReviewer",
    "RequestAttributes",
    "Unauthorized",
    "User",
]


@frozen
class User:
    """
    An authenticated caller, as Kubernetes' C{user.Info}.
    """

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(factory=dict)

    @property
    def is_master(self) -> bool:
        return "system:masters" in self.groups


class Unauthorized(Exception):
    """
    The request proved no identity (401).  The message never holds a credential.
    """


class Forbidden(Exception):
    """
    The identity may not do what it asked (403).
    """


@frozen
class AuthConfig:
    """
    The trust the hub is configured with; replaced whole when the parent's
    C{extension-apiserver-authentication} ConfigMap changes.
    """

    requestheader_ca: CertificateAuthorities = field(factory=CertificateAuthorities)
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    client_ca: CertificateAuthorities = field(factory=CertificateAuthorities)

    @classmethod
    def from_configmap(cls, data: Mapping[str, str], **overrides: Any) -> AuthConfig:
        """
        Read the parent's C{kube-system/extension-apiserver-authentication} data.
        """

        def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            if not raw:
                return default
            value = json.loads(raw)
            return tuple(str(v) for v in value) if isinstance(value, list) else default

        values: dict[str, Any] = {
            "requestheader_ca": CertificateAuthorities(
                data.get("requestheader-client-ca-file", "").encode()
            ),
            "allowed_names": listed("requestheader-allowed-names", ()),
            "username_headers": listed(
                "requestheader-username-headers", ("X-Remote-User",)
            ),
            "group_headers": listed("requestheader-group-headers", ("X-Remote-Group",)),
            "extra_prefixes": listed(
                "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)
            ),
            "client_ca": CertificateAuthorities(
                data.get("client-ca-file", "").encode()
            ),
        }
        values.update(overrides)
        return cls(**values)


class ITokenReviewer(Interface):
    def review(token: str) -> Deferred[User | None]:
        """
        Ask the parent who a bearer token belongs to (TokenReview); C{None} when
        the token is not valid.
        """


Headers = Callable[[str], Sequence[str]]
"""
Every value of a header, by case-insensitive name.
"""


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _organizations(certificate: x509.Certificate) -> tuple[str, ...]:
    names = certificate.subject.get_attributes_for_oid(
        x509.oid.NameOID.ORGANIZATION_NAME
    )
    return tuple(str(n.value) for n in names)


class Authenticator:
    """
    The hub's authentication chain: front proxy, client certificate, bearer token.

    @ivar config: the current L{AuthConfig}; assign a new one to reload.
    """

    _log = Logger()

    def __init__(
        self,
        config: AuthConfig,
        token_reviewer: ITokenReviewer | None,
        clock: IReactorTime,
        token_cache_seconds: float = 10.0,
    ) -> None:
        self.config = config
        self._tokens = token_reviewer
        self._clock = clock
        self._token_ttl = token_cache_seconds
        self._token_cache: dict[bytes, tuple[float, User | None]] = {}

    def authenticate(
        self,
        chain: tuple[x509.Certificate, ...],
        headers: Headers,
        extra_header_names: Sequence[str],
    ) -> Deferred[User]:
        """
        Who made a request.

        @param chain: the client certificate chain presented over TLS, leaf first.
        @param headers: a header lookup for the request.
        @param extra_header_names: every header name the request carried (to find
            the C{X-Remote-Extra-*} ones).
        @return: a Deferred firing with the L{User} or failing with L{Unauthorized}.
        """
        config = self.config
        if chain:
            if config.requestheader_ca.verify(chain):
                user = self._from_request_headers(chain[0], headers, extra_header_names)
                if user is not None:
                    return succeed(user)
            if config.client_ca.verify(chain):
                leaf = chain[0]
                groups = (*_organizations(leaf), "system:authenticated")
                return succeed(User(name=_common_name(leaf), groups=groups))
        token = self._bearer_token(headers)
        if token is not None:
            return self._review_token(token)
        if chain:
            return _fail(Unauthorized("client certificate not signed by a trusted CA"))
        return _fail(Unauthorized("no credentials: Unauthorized"))

    def _from_request_headers(
        self, leaf: x509.Certificate, headers: Headers, names: Sequence[str]
    ) -> User | None:
        config = self.config
        if config.allowed_names and _common_name(leaf) not in config.allowed_names:
            self._log.warn(
                "Front-proxy certificate {cn} is not among the allowed names",
                cn=_common_name(leaf),
            )
            return None
        username = ""
        for header in config.username_headers:
            values = [v for v in headers(header) if v]
            if values:
                username = values[0]
                break
        if not username:
            return None
        groups: list[str] = []
        for header in config.group_headers:
            groups.extend(v for v in headers(header) if v)
        extra: dict[str, tuple[str, ...]] = {}
        for name in names:
            for prefix in config.extra_prefixes:
                if name.lower().startswith(prefix.lower()) and len(name) > len(prefix):
                    key = unquote(name[len(prefix) :]).lower()
                    extra[key] = extra.get(key, ()) + tuple(headers(name))
        return User(name=username, groups=tuple(groups), extra=extra)

    @staticmethod
    def _bearer_token(headers: Headers) -> str | None:
        for value in headers("Authorization"):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        return None

    def _review_token(self, token: str) -> Deferred[User]:
        if self._tokens is None:
            return _fail(Unauthorized("bearer tokens are not accepted by this hub"))
        key = hashlib.sha256(token.encode("utf-8")).digest()
        now = self._clock.seconds()
        cached = self._token_cache.get(key)
        if cached is not None and cached[0] > now:
            return self._token_result(cached[1])
        reviewed = self._tokens.review(token)

        def remember(user: User | None) -> Deferred[User]:
            self._prune(now)
            self._token_cache[key] = (now + self._token_ttl, user)
            return self._token_result(user)

        return reviewed.addCallback(remember)

    @staticmethod
    def _token_result(user: User | None) -> Deferred[User]:
        if user is None:
            return _fail(Unauthorized("invalid bearer token"))
        return succeed(user)

    def _prune(self, now: float) -> None:
        if len(self._token_cache) > 4096:
            for key in [
                k for k, (expiry, _) in self._token_cache.items() if expiry <= now
            ]:
                del self._token_cache[key]
            while len(self._token_cache) > 4096:
                self._token_cache.pop(next(iter(self._token_cache)))


def _fail(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


@frozen
class RequestAttributes:
    """
    What a request asks the parent's authorizer, as a SubjectAccessReview's
    C{resourceAttributes}.
    """

    verb: str
    resource: str
    name: str
    subresource: str = ""
    group: str = "proxies.clusternet.io"
    version: str = "v1alpha1"

    def describe(self, user: User) -> str:
        """
        The message of the 403 a real API server writes for this request.
        """
        resource = (
            f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        )
        return (
            f'{self.resource} "{self.name}" is forbidden: User "{user.name}" cannot '
            f'{self.verb} resource "{resource}" in API group "{self.group}" at the '
            "cluster scope"
        )


class IAccessReviewer(Interface):
    def review(user: User, attributes: RequestAttributes) -> Deferred[tuple[bool, str]]:
        """
        Ask the parent (SubjectAccessReview) whether C{user} may; fires with
        C{(allowed, reason)}.
        """


@implementer(IAccessReviewer)
class CachingAuthorizer:
    """
    A SubjectAccessReview client with a short positive and negative cache, and
    the C{system:masters} shortcut the real API server has.
    """

    def __init__(
        self,
        reviewer: IAccessReviewer,
        clock: IReactorTime,
        allowed_ttl: float = 10.0,
        denied_ttl: float = 5.0,
    ) -> None:
        self._reviewer = reviewer
        self._clock = clock
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._cache: dict[tuple[Any, ...], tuple[float, tuple[bool, str]]] = {}

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        if user.is_master:
            return succeed((True, "system:masters"))
        key = (
            user.name,
            user.uid,
            user.groups,
            tuple(sorted((k, v) for k, v in user.extra.items())),
            attributes,
        )
        now = self._clock.seconds()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return succeed(cached[1])

        def remember(decision: tuple[bool, str]) -> tuple[bool, str]:
            ttl = self._allowed_ttl if decision[0] else self._denied_ttl
            if len(self._cache) > 8192:
                self._cache.clear()
            self._cache[key] = (self._clock.seconds() + ttl, decision)
            return decision

        return self._reviewer.review(user, attributes).addCallback(remember)

    def require(self, user: User, attributes: RequestAttributes) -> Deferred[None]:
        """
        Fire with C{None} when allowed, fail with L{Forbidden} otherwise.
        """

        def check(decision: tuple[bool, str]) -> None:
            if not decision[0]:
                message = attributes.describe(user)
                if decision[1]:
                    message += f": {decision[1]}"
                raise Forbidden(message)

        return self.review(user, attributes).addCallback(check)
