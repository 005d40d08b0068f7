"""
Request authenticators, as the real kube-apiserver chains them: front-proxy
request headers, x509 client certificates, bearer tokens (static, service-account,
bootstrap) from C{Authorization} or the WebSocket sub-protocol, then anonymous.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Interface, implementer

from .._auth_api import (
    AuthenticationError,
    IAuthenticator,
    RequestCredentials,
    UserInfo,
)
from ._jose import JOSEError, b64url_decode

__all__ = [
    "ALL_AUTHENTICATED",
    "ALL_UNAUTHENTICATED",
    "ANONYMOUS_USER",
    "CREDENTIAL_ID_KEY",
    "SYSTEM_MASTERS",
    "BearerTokenAuthenticator",
    "ITokenAuthenticator",
    "RequestHeaderAuthenticator",
    "StaticTokenAuthenticator",
    "TokenResponse",
    "UnionAuthenticator",
    "WebSocketProtocolAuthenticator",
    "X509Authenticator",
    "aggregate_errors",
    "parse_token_file",
]

ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"
SYSTEM_MASTERS = "system:masters"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"

_BEARER_PROTOCOL_PREFIX = "base64url.bearer.authorization.k8s.io."


@frozen
class TokenResponse:
    """
    Who a token proves, and for which audiences it was accepted (empty when the
    authenticator does not deal in audiences).
    """

    user: UserInfo
    audiences: tuple[str, ...] = ()


class ITokenAuthenticator(Interface):
    def authenticate_token(
        token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        """
        The user C{token} proves, or C{None} when it is not a token of this kind.
        C{audiences} are the ones asked for (a TokenReview's C{spec.audiences});
        empty means the server's own.

        @raise AuthenticationError: a token of this kind that is not valid.
        """


def aggregate_errors(messages: Sequence[str]) -> str:
    """
    Several error messages as Go's C{utilerrors.NewAggregate} prints them.
    """
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _now(clock: IReactorTime) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(clock.seconds(), datetime.UTC)


def _header(credentials: RequestCredentials, name: str) -> tuple[str, ...]:
    return tuple(credentials.headers.get(name.lower(), ()))


def _first_header(credentials: RequestCredentials, name: str) -> str:
    values = _header(credentials, name)
    return values[0] if values else ""


def _describe(cert: x509.Certificate) -> str:
    try:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        names = []
    cn = str(names[0].value) if names else ""
    return f"CN={cn},SN={cert.serial_number}"


def _within_validity(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def verify_client_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> None:
    """
    Check that C{chain[0]} is a client certificate issued, directly or through
    intermediates of C{chain}, by one of C{roots}, and valid at C{now}.

    @raise AuthenticationError: it is not.
    """
    leaf = chain[0]
    prefix = f"verifying certificate {_describe(leaf)} failed: "
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    except ValueError:
        raise AuthenticationError(prefix + "x509: malformed extensions") from None
    if usages is not None and not (
        ExtendedKeyUsageOID.CLIENT_AUTH in usages
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
    ):
        raise AuthenticationError(
            prefix + "x509: certificate specifies an incompatible key usage"
        )
    current = leaf
    intermediates = list(chain[1:])
    for _ in range(len(chain) + 1):
        if not _within_validity(current, now):
            raise AuthenticationError(
                prefix + "x509: certificate has expired or is not yet valid"
            )
        for root in roots:
            if current == root or _issued_by(current, root):
                if _within_validity(root, now):
                    return
        parent = next(
            (
                c
                for c in intermediates
                if c != current and _is_ca(c) and _issued_by(current, c)
            ),
            None,
        )
        if parent is None:
            break
        intermediates.remove(parent)
        current = parent
    raise AuthenticationError(prefix + "x509: certificate signed by unknown authority")


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


@implementer(IAuthenticator)
class X509Authenticator:
    """
    Client certificates rooted in the client CA: user = CN, groups = the O values,
    extra C{authentication.kubernetes.io/credential-id: X509SHA256=<leaf sha256>}.
    """

    def __init__(
        self, client_cas: Sequence[x509.Certificate], clock: IReactorTime
    ) -> None:
        self._roots = tuple(client_cas)
        self._clock = clock

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        chain = credentials.peer_chain
        if not chain:
            return None
        verify_client_chain(chain, self._roots, _now(self._clock))
        leaf = chain[0]
        name = _common_name(leaf)
        if not name:
            return None
        groups = tuple(
            str(a.value)
            for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        )
        fingerprint = hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()
        return UserInfo(
            name=name,
            groups=groups,
            extra={CREDENTIAL_ID_KEY: ("X509SHA256=" + fingerprint,)},
        )


@implementer(IAuthenticator)
class RequestHeaderAuthenticator:
    """
    The front-proxy (aggregation layer) scheme: a client certificate rooted in
    the front-proxy CA, whose CN is in C{allowed_names} when that is not empty,
    vouches for the user named in C{X-Remote-User}, groups in every
    C{X-Remote-Group} value and extras in C{X-Remote-Extra-<key>} (key lowercased
    and percent-decoded).  The headers of any other caller are never read.
    """

    def __init__(
        self,
        front_proxy_cas: Sequence[x509.Certificate],
        clock: IReactorTime,
        *,
        allowed_names: Sequence[str] = (),
        username_headers: Sequence[str] = ("X-Remote-User",),
        group_headers: Sequence[str] = ("X-Remote-Group",),
        extra_prefixes: Sequence[str] = ("X-Remote-Extra-",),
    ) -> None:
        self._roots = tuple(front_proxy_cas)
        self._clock = clock
        self._allowed = tuple(allowed_names)
        self._user_headers = tuple(username_headers)
        self._group_headers = tuple(group_headers)
        self._extra_prefixes = tuple(extra_prefixes)

    def authentication_headers(self) -> tuple[str, ...]:
        """
        The header names (and prefixes) the server should strip from requests
        before passing them on, as the real server's C{ClearAuthenticationHeaders}.
        """
        return self._user_headers + self._group_headers + self._extra_prefixes

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        chain = credentials.peer_chain
        if not chain:
            return None
        verify_client_chain(chain, self._roots, _now(self._clock))
        if self._allowed:
            cn = _common_name(chain[0])
            if cn not in self._allowed:
                raise AuthenticationError(
                    f"x509: subject with cn={cn} is not in the allowed list"
                )
        name = ""
        for header in self._user_headers:
            name = _first_header(credentials, header)
            if name:
                break
        if not name:
            return None
        groups = tuple(
            value
            for header in self._group_headers
            for value in _header(credentials, header)
            if value
        )
        extra: dict[str, tuple[str, ...]] = {}
        for prefix in self._extra_prefixes:
            lowered = prefix.lower()
            for header, values in credentials.headers.items():
                if not header.lower().startswith(lowered):
                    continue
                key = _unescape_extra_key(header.lower()[len(prefix) :])
                extra[key] = extra.get(key, ()) + tuple(values)
        return UserInfo(name=name, groups=groups, extra=extra)


_PCT = re.compile(r"%(?![0-9a-fA-F]{2})")


def _unescape_extra_key(encoded: str) -> str:
    """
    Go's C{url.PathUnescape}, falling back to the raw key when it is malformed.
    """
    if _PCT.search(encoded):
        return encoded
    try:
        return urllib.parse.unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return urllib.parse.unquote(encoded, errors="surrogateescape")


@implementer(ITokenAuthenticator)
class StaticTokenAuthenticator:
    """
    A fixed mapping of tokens to users, as C{--token-auth-file}.
    """

    def __init__(self, tokens: Mapping[str, UserInfo]) -> None:
        self._tokens = dict(tokens)

    def authenticate_token(
        self, token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        user = self._tokens.get(token)
        if user is None:
            return None
        return TokenResponse(user)


def parse_token_file(text: str) -> dict[str, UserInfo]:
    """
    The CSV of C{--token-auth-file}: C{token,user,uid[,"group1,group2"]}, lines
    starting with C{#} ignored.

    @raise ValueError: a line with fewer than three fields or a repeated token.
    """
    import csv
    import io

    tokens: dict[str, UserInfo] = {}
    reader = csv.reader(io.StringIO(text))
    for number, row in enumerate(reader, start=1):
        if not row or (row[0].startswith("#")):
            continue
        if len(row) < 3:
            raise ValueError(f"token file line {number}: needs token,user,uid")
        token, name, uid = (f.strip() for f in row[:3])
        if not token or not name:
            raise ValueError(f"token file line {number}: empty token or user")
        if token in tokens:
            raise ValueError(f"token file line {number}: duplicate token")
        groups: tuple[str, ...] = ()
        if len(row) > 3 and row[3].strip():
            groups = tuple(g.strip() for g in row[3].split(",") if g.strip())
        tokens[token] = UserInfo(name=name, uid=uid, groups=groups)
    return tokens


@implementer(ITokenAuthenticator)
class _TokenUnion:
    def __init__(self, authenticators: Sequence[ITokenAuthenticator]) -> None:
        self._authenticators = tuple(authenticators)

    def authenticate_token(
        self, token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        errors: list[str] = []
        for authenticator in self._authenticators:
            try:
                response = authenticator.authenticate_token(token, audiences)
            except AuthenticationError as e:
                errors.append(str(e))
                continue
            if response is not None:
                return response
        if errors:
            raise AuthenticationError(aggregate_errors(errors))
        return None


@implementer(IAuthenticator)
class BearerTokenAuthenticator:
    """
    C{Authorization: Bearer <token>}: a token no authenticator accepts is a 401
    ("invalid bearer token"), never anonymous.
    """

    def __init__(self, tokens: ITokenAuthenticator) -> None:
        self._tokens = tokens

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        value = _first_header(credentials, "authorization").strip()
        if not value:
            return None
        parts = value.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer":
            return None
        token = parts[1]
        if not token:
            return None
        response = self._tokens.authenticate_token(token, ())
        if response is None:
            raise AuthenticationError("invalid bearer token")
        return response.user


def _is_websocket(credentials: RequestCredentials) -> bool:
    connection = ",".join(_header(credentials, "connection")).lower()
    tokens = {t.strip() for t in connection.split(",")}
    upgrade = _first_header(credentials, "upgrade").strip().lower()
    return "upgrade" in tokens and upgrade == "websocket"


@implementer(IAuthenticator)
class WebSocketProtocolAuthenticator:
    """
    A bearer token in the WebSocket sub-protocol
    C{base64url.bearer.authorization.k8s.io.<base64url token>}, as browsers and
    the real server's clients send it.
    """

    def __init__(self, tokens: ITokenAuthenticator) -> None:
        self._tokens = tokens

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        if not _is_websocket(credentials):
            return None
        token = ""
        seen = False
        others: list[str] = []
        for header in _header(credentials, "sec-websocket-protocol"):
            for protocol in header.split(","):
                protocol = protocol.strip()
                if not protocol.startswith(_BEARER_PROTOCOL_PREFIX):
                    others.append(protocol)
                    continue
                if seen:
                    raise AuthenticationError(
                        "multiple base64.bearer.authorization tokens specified"
                    )
                seen = True
                try:
                    raw = b64url_decode(protocol[len(_BEARER_PROTOCOL_PREFIX) :])
                except JOSEError:
                    raise AuthenticationError(
                        "invalid base64.bearer.authorization token encoding"
                    ) from None
                try:
                    token = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise AuthenticationError(
                        "invalid base64.bearer.authorization token"
                    ) from None
        if token and not others:
            raise AuthenticationError("missing additional subprotocol")
        if not token:
            return None
        response = self._tokens.authenticate_token(token, ())
        if response is None:
            raise AuthenticationError("invalid bearer token")
        return response.user


def _with_authenticated(user: UserInfo) -> UserInfo:
    if user.name == ANONYMOUS_USER:
        return user
    if ALL_AUTHENTICATED in user.groups or ALL_UNAUTHENTICATED in user.groups:
        return user
    return UserInfo(
        name=user.name,
        uid=user.uid,
        groups=(*user.groups, ALL_AUTHENTICATED),
        extra=user.extra,
    )


@implementer(IAuthenticator, ITokenAuthenticator)
class UnionAuthenticator:
    """
    Every way in, in the real server's order: front-proxy headers, client
    certificate, bearer token (C{Authorization}, then WebSocket sub-protocol; the
    token authenticators in the order given, typically static, service-account,
    bootstrap); C{system:authenticated} added to whoever succeeds.  When nothing
    matches: anonymous (C{system:anonymous}, group C{system:unauthenticated}) if
    enabled and no credential failed, else C{None} (the server answers 401).

    @raise AuthenticationError: credentials were presented, none succeeded and
        at least one was invalid.
    """

    _log = Logger()

    def __init__(
        self,
        *,
        front_proxy: IAuthenticator | None = None,
        client_certificates: IAuthenticator | None = None,
        tokens: Sequence[ITokenAuthenticator] = (),
        anonymous: bool = False,
    ) -> None:
        self._tokens = _TokenUnion(tokens)
        chain: list[IAuthenticator] = []
        if front_proxy is not None:
            chain.append(front_proxy)
        if client_certificates is not None:
            chain.append(client_certificates)
        if tokens:
            chain.append(BearerTokenAuthenticator(self._tokens))
            chain.append(WebSocketProtocolAuthenticator(self._tokens))
        self._chain = tuple(chain)
        self.anonymous = anonymous

    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        errors: list[str] = []
        for authenticator in self._chain:
            try:
                user = authenticator.authenticate(credentials)
            except AuthenticationError as e:
                errors.append(str(e))
                continue
            if user is not None:
                return _with_authenticated(user)
        if errors:
            message = aggregate_errors(errors)
            self._log.debug(
                "Authentication failed from {peer}: {error}",
                peer=credentials.remote_address,
                error=message,
            )
            raise AuthenticationError(message)
        if self.anonymous:
            return UserInfo(name=ANONYMOUS_USER, groups=(ALL_UNAUTHENTICATED,))
        return None

    def authenticate_token(
        self, token: str, audiences: tuple[str, ...]
    ) -> TokenResponse | None:
        """
        What a TokenReview asks: the token alone, through the token
        authenticators, with C{system:authenticated} added.
        """
        response = self._tokens.authenticate_token(token, audiences)
        if response is None:
            return None
        return TokenResponse(_with_authenticated(response.user), response.audiences)
