"""
Trust at bootstrap, never blind: which CA the agent trusts for the parent's API
server before it has credentials.

Three ways, in this order:

 1. C{--cluster-reg-parent-ca-file}: that bundle.
 2. Otherwise the CA is discovered as C{kubeadm join} does: one anonymous GET of
    C{kube-public/cluster-info} over TLS I{without} verifying the server (only to
    read it), then the detached JWS C{data["jws-kubeconfig-<token-id>"]} over
    C{data.kubeconfig} is checked with the bootstrap token (HS256, compared in
    constant time). Only when it verifies are the CA (C{certificate-authority-data})
    and the server URL of that kubeconfig taken, and the server must be the parent
    URL we were given (scheme, host and port). A man in the middle cannot forge the
    signature without the token's secret.
 3. C{--cluster-reg-insecure-skip-tls-verify}: no verification, with a warning on
    every start.

The anonymous GET runs on the reactor through L{twisted.web.client.Agent} with
L{UnverifiedTLSPolicy}: an C{IPolicyForHTTPS} that skips certificate verification,
used for this one request only (see L{unverified_agent}); nothing else in the agent
uses it. It never blocks the reactor and sends no credentials.

The HMAC key is the token's I{secret} part, as Kubernetes' bootstrap signer
(C{k8s.io/cluster-bootstrap/token/jws.ComputeDetachedSignature}) and C{kubeadm join}
use it; the JWS header carries C{"kid": "<token-id>"}. Checked against a real
kube-apiserver's signed cluster-info (kube-wire 087).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from attrs import field, frozen
from cryptography import x509
from OpenSSL import SSL

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IReactorTime,
)
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    PotentialDataLoss,
    ResponseDone,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IPolicyForHTTPS, IResponse
from zope.interface import implementer

__all__ = [
    "CLUSTER_INFO_PATH",
    "BootstrapError",
    "ClusterInfo",
    "ClusterInfoUnavailable",
    "JWSError",
    "ParentTrust",
    "ParentTrustResolver",
    "UnverifiedTLSPolicy",
    "b64url_decode",
    "b64url_encode",
    "cluster_info_from_configmap",
    "fetch_cluster_info",
    "parse_bootstrap_token",
    "same_server",
    "unverified_agent",
    "verify_detached_jws",
]

CLUSTER_INFO_PATH = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
JWS_KEY_PREFIX = "jws-kubeconfig-"
# cluster-info is a few KiB; anything much larger is not what we asked for.
MAX_CLUSTER_INFO_BYTES = 1024 * 1024
# A JWS longer than this is refused before decoding.
_MAX_JWS_LENGTH = 4096

_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")


class BootstrapError(Exception):
    """
    The parent's CA could not be established; the message says why.
    """


class ClusterInfoUnavailable(BootstrapError):
    """
    C{kube-public/cluster-info} could not be read (connection, HTTP status, body):
    worth retrying later.
    """


class JWSError(BootstrapError):
    """
    A detached JWS that is malformed or does not verify with the token.
    """


# --- JWS ------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """
    Unpadded base64url (RFC 7515 section 2).
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """
    Decode unpadded base64url strictly: padding, stray characters and non-canonical
    trailing bits are refused.

    @raise JWSError: C{text} is not canonical unpadded base64url.
    """
    if not isinstance(text, str) or "=" in text or len(text) % 4 == 1:
        raise JWSError("malformed base64url")
    try:
        raw = text.encode("ascii")
        decoded = base64.b64decode(
            raw.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(raw) % 4),
            validate=True,
        )
    except (UnicodeEncodeError, binascii.Error):
        raise JWSError("malformed base64url") from None
    if b64url_encode(decoded) != text:
        raise JWSError("malformed base64url")
    return decoded


def parse_bootstrap_token(token: str) -> tuple[str, str]:
    """
    Split a bootstrap token C{<id>.<secret>} ([a-z0-9]{6}.[a-z0-9]{16}).

    @raise BootstrapError: it does not have that form (the value is never echoed).
    """
    match = _TOKEN.match(token) if isinstance(token, str) else None
    if match is None:
        raise BootstrapError(
            "the bootstrap token does not have the form [a-z0-9]{6}.[a-z0-9]{16}"
        )
    return match.group(1), match.group(2)


def verify_detached_jws(jws: str, content: bytes, token: str) -> None:
    """
    Check the detached compact JWS C{jws} (C{<b64url header>..<b64url signature>})
    over C{content} with the bootstrap C{token}: header C{alg} HS256 (and C{kid},
    when present, the token ID), HMAC-SHA256 keyed with the token secret over
    C{b64url(header) + "." + b64url(content)}, compared in constant time.

    @raise JWSError: malformed, another algorithm or key ID, or a wrong signature.
    """
    token_id, secret = parse_bootstrap_token(token)
    if not isinstance(jws, str) or len(jws) > _MAX_JWS_LENGTH:
        raise JWSError("the signature is not a compact JWS")
    parts = jws.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise JWSError("the signature is not a detached compact JWS (header..sig)")
    header_b64, _, signature_b64 = parts
    try:
        header = json.loads(b64url_decode(header_b64))
    except (JWSError, ValueError, RecursionError):
        raise JWSError("the JWS header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise JWSError("the JWS header is not a JSON object")
    if header.get("alg") != "HS256":
        raise JWSError(
            f"the JWS algorithm {str(header.get('alg'))[:20]!r} is not HS256"
        )
    if "kid" in header and header["kid"] != token_id:
        raise JWSError("the JWS was made for another token ID")
    signature = b64url_decode(signature_b64)
    signing_input = (header_b64 + "." + b64url_encode(content)).encode("ascii")
    expected = hmac.new(secret.encode("ascii"), signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise JWSError("the signature does not verify with the bootstrap token")


# --- cluster-info -----------------------------------------------------------------


@frozen
class ClusterInfo:
    """
    What a verified cluster-info tells: the API server URL and its CA bundle.
    """

    server: str
    ca_pem: bytes = field(repr=False)


def _ca_bundle(pem: bytes, where: str) -> bytes:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise BootstrapError(f"{where} holds no PEM certificate") from None
    if not certificates:
        raise BootstrapError(f"{where} holds no PEM certificate")
    return pem


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _server_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("http", "https") or not host:
        return None
    try:
        host = str(ipaddress.ip_address(host))  # canonical form of IPv6 literals
    except ValueError:
        pass
    return (scheme, host, port if port is not None else _default_port(scheme))


def same_server(a: str, b: str) -> bool:
    """
    Whether URLs C{a} and C{b} name the same server: scheme, host (case-insensitive,
    IP literals canonical) and port (default 443 for https, 80 for http).
    """
    key_a, key_b = _server_key(a), _server_key(b)
    return key_a is not None and key_a == key_b


def cluster_info_from_configmap(
    configmap: Mapping[str, Any], token: str, parent_url: str
) -> ClusterInfo:
    """
    Verify the C{kube-public/cluster-info} ConfigMap with the bootstrap C{token} and
    take the CA and server from its kubeconfig.

    @raise JWSError: no signature for this token, or it does not verify.
    @raise BootstrapError: the kubeconfig is unusable, or names another server
        than C{parent_url}.
    """
    token_id, _ = parse_bootstrap_token(token)
    data = configmap.get("data") if isinstance(configmap, Mapping) else None
    if not isinstance(data, Mapping):
        raise BootstrapError("cluster-info has no data")
    kubeconfig = data.get("kubeconfig")
    if not isinstance(kubeconfig, str) or not kubeconfig:
        raise BootstrapError("cluster-info has no kubeconfig")
    try:
        content = kubeconfig.encode("utf-8")
    except UnicodeEncodeError:
        raise BootstrapError("the kubeconfig in cluster-info is not UTF-8") from None
    jws = data.get(JWS_KEY_PREFIX + token_id)
    if not isinstance(jws, str) or not jws:
        raise JWSError(
            f"cluster-info carries no signature for token ID {token_id}: the token "
            "does not exist, has expired or is not marked usage-bootstrap-signing"
        )
    verify_detached_jws(jws, content, token)
    # Signed: now its content may be believed.
    try:
        config = yaml.safe_load(kubeconfig)
    except Exception:
        # Not only YAMLError: PyYAML also raises ValueError (2001-02-30),
        # AttributeError ("!!timestamp x") and RecursionError (deep nesting).
        raise BootstrapError("the kubeconfig in cluster-info is not YAML") from None
    clusters = config.get("clusters") if isinstance(config, dict) else None
    if not isinstance(clusters, list) or not clusters:
        raise BootstrapError("the kubeconfig in cluster-info has no cluster")
    cluster = clusters[0].get("cluster") if isinstance(clusters[0], dict) else None
    if not isinstance(cluster, dict):
        raise BootstrapError("the kubeconfig in cluster-info has no cluster")
    server = cluster.get("server")
    ca_b64 = cluster.get("certificate-authority-data")
    if not isinstance(server, str) or not isinstance(ca_b64, str):
        raise BootstrapError(
            "the kubeconfig in cluster-info lacks server or certificate-authority-data"
        )
    try:
        ca_pem = base64.b64decode(ca_b64, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise BootstrapError(
            "certificate-authority-data in cluster-info is not base64"
        ) from None
    _ca_bundle(ca_pem, "certificate-authority-data in cluster-info")
    if not same_server(server, parent_url):
        raise BootstrapError(
            f"cluster-info is signed for server {server[:200]}, not the parent URL "
            f"{parent_url}: refusing to trust its CA"
        )
    return ClusterInfo(server=server, ca_pem=ca_pem)


# --- the one unverified GET -------------------------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        self._context = CertificateOptions().getContext()  # verify=False

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        try:
            ipaddress.ip_address(self._hostname)
        except ValueError:
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class UnverifiedTLSPolicy:
    """
    An C{IPolicyForHTTPS} that does not verify the server's certificate. Only for
    the anonymous read of C{cluster-info}, whose content is verified by its JWS.
    """

    def creatorForNetloc(
        self, hostname: bytes, port: int
    ) -> IOpenSSLClientConnectionCreator:
        return _UnverifiedCreator(hostname.decode("ascii"))


def unverified_agent(reactor: Any, connect_timeout: float = 10.0) -> IAgent:
    """
    An L{Agent} with L{UnverifiedTLSPolicy} and no connection reuse, for
    L{fetch_cluster_info}.
    """
    return Agent(
        reactor,
        contextFactory=UnverifiedTLSPolicy(),
        connectTimeout=connect_timeout,
        pool=HTTPConnectionPool(reactor, persistent=False),
    )


class _BoundedBody(Protocol):
    def __init__(self, done: Deferred[bytes], limit: int) -> None:
        self._done = done
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(
                ClusterInfoUnavailable(f"cluster-info is over {self._limit} bytes")
            )
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(
                ClusterInfoUnavailable(
                    f"reading cluster-info failed: {reason.getErrorMessage()}"
                )
            )


def _read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_BoundedBody(done, limit))
    return done


async def fetch_cluster_info(
    agent: IAgent, clock: IReactorTime, parent_url: str, timeout: float = 30.0
) -> dict[str, Any]:
    """
    GET C{kube-public/cluster-info} from the parent anonymously (no credentials are
    sent) and decode it. The result is untrusted until verified with
    L{cluster_info_from_configmap}.

    @raise ClusterInfoUnavailable: no answer, an HTTP error, or not a ConfigMap.
    """
    url = parent_url.rstrip("/") + CLUSTER_INFO_PATH
    request = agent.request(
        b"GET",
        url.encode("ascii"),
        Headers({b"Accept": [b"application/json"], b"User-Agent": [b"clusternet"]}),
    )
    request.addTimeout(timeout, clock)
    try:
        response = await request
    except CancelledError:
        raise
    except Exception as e:
        raise ClusterInfoUnavailable(
            f"cannot read cluster-info from {parent_url}: {_describe(e)}"
        ) from None
    body_d = _read_body(response, MAX_CLUSTER_INFO_BYTES)
    body_d.addTimeout(timeout, clock)
    try:
        body = await body_d
    except (ClusterInfoUnavailable, CancelledError):
        raise
    except Exception as e:
        raise ClusterInfoUnavailable(
            f"reading cluster-info from {parent_url} failed: {_describe(e)}"
        ) from None
    if response.code != 200:
        raise ClusterInfoUnavailable(
            f"GET {CLUSTER_INFO_PATH} on {parent_url} answered {response.code}"
            + (
                ": anonymous access to cluster-info denied"
                if response.code in (401, 403)
                else ""
            )
        )
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        raise ClusterInfoUnavailable("cluster-info is not JSON") from None
    if not isinstance(decoded, dict) or decoded.get("kind") != "ConfigMap":
        raise ClusterInfoUnavailable("cluster-info is not a ConfigMap")
    return decoded


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:300]


# --- the decision -----------------------------------------------------------------


@frozen
class ParentTrust:
    """
    How to verify the parent while bootstrapping.

    @ivar ca_pem: the CA bundle to trust, or C{None} (plain http, or insecure).
    @ivar insecure_skip_tls_verify: verification is off (the operator asked for it).
    @ivar source: C{ca-file}, C{cluster-info}, C{insecure} or C{plain-http}.
    """

    ca_pem: bytes | None = field(repr=False)
    insecure_skip_tls_verify: bool
    source: str


class ParentTrustResolver:
    """
    Decide how to trust the parent at C{parent_url} (see the module docstring).

    @param agent: for the discovery GET (see L{unverified_agent}); needed only when
        neither C{ca_file} nor C{insecure_skip_tls_verify} is given.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        parent_url: str,
        bootstrap_token: str | None,
        ca_file: str | None = None,
        insecure_skip_tls_verify: bool = False,
        agent: IAgent | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._clock = clock
        self.parent_url = parent_url
        self._token = bootstrap_token
        self.ca_file = ca_file
        self.insecure_skip_tls_verify = insecure_skip_tls_verify
        self._agent = agent
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<ParentTrustResolver {self.parent_url} ca_file={self.ca_file!r}>"

    def resolve(self) -> Deferred[ParentTrust]:
        """
        The trust to use, or a failure with L{BootstrapError}
        (L{ClusterInfoUnavailable} when a retry may help).
        """
        return Deferred.fromCoroutine(self._resolve())

    async def _resolve(self) -> ParentTrust:
        parent_url = self.parent_url
        if self.ca_file:
            try:
                pem = Path(self.ca_file).read_bytes()
            except OSError as e:
                raise BootstrapError(
                    f"cannot read {self.ca_file}: {e.strerror}"
                ) from None
            return ParentTrust(_ca_bundle(pem, self.ca_file), False, "ca-file")
        if self.insecure_skip_tls_verify:
            self._log.warn(
                "--cluster-reg-insecure-skip-tls-verify: the parent {url} is NOT "
                "verified while bootstrapping; anyone on the path can impersonate it",
                url=parent_url,
            )
            return ParentTrust(None, True, "insecure")
        if urlsplit(parent_url).scheme.lower() == "http":
            self._log.warn(
                "The parent URL {url} is plain http: nothing is encrypted or verified",
                url=parent_url,
            )
            return ParentTrust(None, False, "plain-http")
        if not self._token:
            raise BootstrapError(
                "no parent CA: pass --cluster-reg-parent-ca-file, or a bootstrap "
                "token to discover it from cluster-info"
            )
        if self._agent is None:
            raise BootstrapError("CA discovery needs an HTTP agent")
        configmap = await fetch_cluster_info(
            self._agent, self._clock, parent_url, self._timeout
        )
        info = cluster_info_from_configmap(configmap, self._token, parent_url)
        self._log.info(
            "Trusting the parent CA from cluster-info of {url}: its signature with "
            "the bootstrap token verified",
            url=parent_url,
        )
        return ParentTrust(info.ca_pem, False, "cluster-info")
