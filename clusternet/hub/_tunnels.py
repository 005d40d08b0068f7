"""
Agents attaching their tunnels, and the hub's side of every stream it opens.

An attach is an upgrade of C{GET .../sockets/<cluster-id>}, already
authenticated and authorized by L{clusternet.hub.HubResource}: to the tunnel's
own protocol (C{Upgrade: clusternet-tunnel.v1}, raw frames; what agents ask
for first) or to WebSocket.  This module takes the connection over, runs a
L{TunnelSession} on it and keeps it in the L{SocketRegistry} while it lives.

Streams the hub opens name their target with a small convention the agent's
acceptor understands (docs/tunnel-protocol.md, "Targets"):

C{direct}
    the child API server the agent is configured for; the agent terminates HTTP
    and applies its identity mode;
C{tls:<host>:<port>}
    the agent dials TLS to the target with its own trust, the hub speaks plain
    HTTP inside the stream;
C{<host>:<port>}
    a plain TCP connection.
"""

from __future__ import annotations

import io
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from clusternet.hub._auth import User
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._routes import Route
from clusternet.tunnel import (
    Role,
    SessionConfig,
    TunnelClosed,
    TunnelMetrics,
    TunnelSession,
    TunnelWebSocketServerFactory,
    is_tunnel_upgrade,
    take_over,
)

__all__ = ["DIRECT_TARGET", "TunnelAttach", "stream_target"]

DIRECT_TARGET = "direct"


def stream_target(route: Route) -> str:
    """
    The OPEN target for a proxy route.
    """
    if route.scheme == "direct":
        return DIRECT_TARGET
    host = route.host
    if ":" not in host.rsplit("]", 1)[-1]:
        host = f"{host}:{443 if route.scheme == 'https' else 80}"
    return f"tls:{host}" if route.scheme == "https" else host


class TunnelAttach:
    """
    Take over an authorized attach request and run a tunnel session on it.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        registry: SocketRegistry,
        metrics: TunnelMetrics | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        self._reactor = reactor
        self._registry = registry
        self.metrics = metrics if metrics is not None else TunnelMetrics()
        self._config = config

    def __call__(self, request: Request, user: User, cluster_id: str) -> Any:
        peer = request.getClientAddress()
        address = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        forwarded = request.getHeader(b"x-forwarded-for")
        if forwarded:
            address = forwarded.decode("latin-1").split(",")[0].strip()

        def accept(upgrade: ConnectionRequest | None) -> TunnelSession:
            return self.session_for(cluster_id, address, user.name)

        if is_tunnel_upgrade(request):
            take_over(request, accept(None))
            return NOT_DONE_YET
        factory = TunnelWebSocketServerFactory(accept, self._reactor)
        if getattr(request, "content", None) is None:
            # A streaming request has no buffered body; an upgrade GET has none.
            request.content = io.BytesIO()  # type: ignore[assignment]
        return WebSocketResource(factory).render(request)

    def session_for(self, cluster_id: str, address: str, user: str) -> TunnelSession:
        """
        The session of an authorized attach: registered once its handshake is
        done, forgotten when it closes. A client that goes away (or never
        starts the handshake) before that is an ordinary event, logged as such.
        """
        session = TunnelSession(
            Role.ACCEPTOR,
            self._reactor,
            config=self._config,
            metrics=self.metrics,
            name=cluster_id,
        )

        def unready(failure: Failure) -> None:
            failure.trap(TunnelClosed)
            self._log.info(
                "Tunnel of {cluster} from {peer} closed before its handshake: {reason}",
                cluster=cluster_id,
                peer=address,
                reason=str(failure.value),
            )

        session.when_ready().addCallbacks(
            lambda ready: self._registry.attach(cluster_id, ready, address, user),
            unready,
        )
        session.when_closed().addCallback(self._closed, cluster_id, session)
        return session

    def _closed(self, reason: str, cluster_id: str, session: TunnelSession) -> None:
        self._log.info(
            "Tunnel of {cluster} closed: {reason}", cluster=cluster_id, reason=reason
        )
        self._registry.detach(cluster_id, session)
