"""
The agent's C{direct} target: an HTTP server inside each tunnel stream that
proxies to the child API server the agent is configured for.

The hub passes the parent user in C{X-Remote-*} headers (trusted: only the hub
opens streams on the tunnel); the identity mode decides what the child sees
(L{clusternet.agent._identity}).  Requests made with the agent's own
credentials share a pool of persistent connections to the child.

The agent's bearer token is never copied: each request takes the current value
of the configuration's L{ITokenSource}, which a L{TokenRefresher} reloads on a
thread every few seconds (a rotated token file is seen within
L{TOKEN_CHECK_INTERVAL}) and at once when the child answers 401 to it.

Every request is counted in the agent's C{clusternet_agent_requests_total},
C{clusternet_agent_request_duration_seconds} and
C{clusternet_agent_longrunning_requests} (docs/metrics.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
)
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.server import Request

from clusternet.agent._identity import (
    ChildCredentials,
    IdentityError,
    IdentityPolicy,
    parent_identity,
)
from clusternet.health import RequestMetrics
from clusternet.kube import (
    TOKEN_CHECK_INTERVAL,
    ConnectionInfo,
    ITokenSource,
    TokenRefresher,
)
from clusternet.proxy import (
    ProxyError,
    ProxyResource,
    ReverseProxy,
    Route,
    StreamingRequest,
    StreamingSite,
)
from clusternet.tunnel import tcp_endpoint

__all__ = ["ChildProxyResource", "DirectServer", "direct_server"]

# What the hub or a user may have sent that must never reach the child as is.
STRIP = (b"authorization", b"x-remote-*", b"impersonate-*")


class ChildProxyResource(ProxyResource):
    """
    Forward each request to the child API server with the identity mode's
    credentials.

    @param token: keeps C{child.token} current (by default one that reloads
        only after a 401, on the reactor's thread pool).
    @param metrics: where each request is counted, if anywhere.
    """

    _log = Logger()

    def __init__(
        self,
        proxy: ReverseProxy,
        child: ConnectionInfo,
        identity: IdentityPolicy,
        token: TokenRefresher | None = None,
        metrics: RequestMetrics | None = None,
    ) -> None:
        super().__init__(proxy)
        self._child = child
        self._identity = identity
        self._metrics = metrics
        if token is None and child.token is not None:
            token = TokenRefresher(proxy.reactor, child.token)
        self._token = token
        parts = urlsplit(child.server)
        self._secure = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._secure else 80)
        self._host_header = parts.netloc.encode("idna")
        self._base = parts.path.rstrip("/").encode("utf-8")
        self._agent_endpoint = self._endpoint(self._agent_pem())

    def renderStreaming(self, request: StreamingRequest) -> None:
        if self._metrics is not None:
            self._metrics.observe(request)
        super().renderStreaming(request)

    def render(self, request: Request) -> int:
        if self._metrics is not None:
            self._metrics.observe(request)
        return super().render(request)

    def _agent_pem(self) -> bytes | None:
        if self._child.client_cert_pem and self._child.client_key_pem:
            return self._child.client_cert_pem + b"\n" + self._child.client_key_pem
        return None

    def _endpoint(self, client_pem: bytes | None) -> IStreamClientEndpoint:
        reactor = self.proxy.reactor
        plain = tcp_endpoint(reactor, self._host, self._port)
        if not self._secure:
            return plain
        if self._child.insecure_skip_tls_verify:
            options: Any = CertificateOptions(verify=False)
            if client_pem:
                client = PrivateCertificate.loadPEM(client_pem)
                options = CertificateOptions(
                    privateKey=client.privateKey.original,
                    certificate=client.original,
                    verify=False,
                )
        else:
            trust = (
                Certificate.loadPEM(self._child.ca_pem) if self._child.ca_pem else None
            )
            client_certificate = (
                PrivateCertificate.loadPEM(client_pem) if client_pem else None
            )
            name = self._child.tls_server_name or self._host
            options = optionsForClientTLS(
                name, trustRoot=trust, clientCertificate=client_certificate
            )
        return wrapClientTLS(options, plain)

    def route(self, request: Request) -> Route:
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setdefault(name.decode("latin-1").lower(), []).extend(
                v.decode("latin-1") for v in values
            )
        try:
            credentials: ChildCredentials = self._identity.credentials(
                parent_identity(headers)
            )
        except IdentityError as e:
            raise ProxyError(e.code, str(e)) from None
        set_headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1"), value.encode("utf-8"))
            for name, value in credentials.headers
        ]
        if credentials.use_agent_credentials:
            endpoint = self._agent_endpoint
            pool_key: Any = ("agent",)
            token = self._token.current() if self._token is not None else None
            if token:
                set_headers.append((b"Authorization", f"Bearer {token}".encode()))
                request.notifyFinish().addBoth(self._answered, request)
        elif credentials.client_pem is not None:
            try:
                endpoint = self._endpoint(credentials.client_pem)
            except Exception:
                raise ProxyError(
                    400,
                    "the client certificate or key in the user extras is not valid PEM",
                ) from None
            pool_key = ("user", hashlib.sha256(credentials.client_pem).hexdigest())
        else:
            endpoint = self._endpoint(None)
            pool_key = ("anonymous",) if not set_headers else None
        merged: dict[bytes, list[bytes]] = {}
        for name, value in set_headers:
            merged.setdefault(name, []).append(value)
        return Route(
            endpoint=endpoint,
            path=self._base + request.uri,
            host=self._host_header,
            set_headers=merged,
            strip_headers=STRIP,
            pool_key=pool_key,
        )

    def _answered(self, result: Failure | None, request: Request) -> None:
        """
        A request with the agent's token is over: if the child refused the
        token, reload it now so that the next request has a fresh one (this one
        is not retried).
        """
        if request.code == 401 and self._token is not None:
            self._log.debug("The child answered 401 to the agent's token: reloading it")
            self._token.refresh()


class DirectServer:
    """
    Makes, per tunnel session, the factory of protocols serving C{direct}
    streams; owns the pool of connections to the child and keeps the child
    tokens current (checked every C{token_check_interval} seconds on a thread
    of C{threadpool}, the reactor's by default).

    @ivar request_metrics: the C{clusternet_agent_*} request metrics of every
        session's requests, for the agent's registry.
    """

    def __init__(
        self,
        reactor: Any,
        token_check_interval: float = TOKEN_CHECK_INTERVAL,
        threadpool: Any = None,
    ) -> None:
        self._reactor = reactor
        self._token_check_interval = token_check_interval
        self._threadpool = threadpool
        self._refreshers: dict[ITokenSource, TokenRefresher] = {}
        self.proxy = ReverseProxy(reactor, forwarded_headers=False)
        self.request_metrics = RequestMetrics(
            "clusternet_agent", reactor, what="to the child API server (direct)"
        )

    def _refresher(self, source: ITokenSource) -> TokenRefresher:
        refresher = self._refreshers.get(source)
        if refresher is None:
            refresher = TokenRefresher(
                self._reactor,
                source,
                interval=self._token_check_interval,
                threadpool=self._threadpool,
            )
            refresher.start()
            self._refreshers[source] = refresher
        return refresher

    def __call__(
        self, child: ConnectionInfo, identity: IdentityPolicy
    ) -> Callable[[], IProtocol]:
        token = self._refresher(child.token) if child.token is not None else None
        site = StreamingSite(
            ChildProxyResource(
                self.proxy, child, identity, token, metrics=self.request_metrics
            ),
            reactor=self._reactor,
            access_log=LogLevel.debug,
        )
        site.displayTracebacks = False
        site.noisy = False

        def protocol() -> IProtocol:
            built = site.buildProtocol(None)
            assert built is not None
            return built

        return protocol

    def close(self) -> Deferred[None]:
        """
        Close the idle connections to the child and stop reloading tokens.
        """
        refreshers = list(self._refreshers.values())
        self._refreshers.clear()
        stopped = [refresher.stop() for refresher in refreshers]
        done = gatherResults([self.proxy.close(), *stopped])
        return done.addCallback(lambda _: None)


def direct_server(reactor: Any) -> DirectServer:
    return DirectServer(reactor)
