"""
Which carrier the dialing side asks for: the tunnel's own HTTP upgrade, or
WebSocket, or the upgrade first and WebSocket for good once the server
answers the upgrade like one that does not know it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from clusternet.tunnel._session import TunnelSession
from clusternet.tunnel._upgrade import UpgradeNotSupported, connect_upgrade
from clusternet.tunnel._websocket import connect_websocket

__all__ = ["CARRIERS", "TunnelConnector"]

#: The choices of C{--tunnel-transport}.
CARRIERS = ("auto", "upgrade", "websocket")


class TunnelConnector:
    """
    Attaches sessions to one server address with the chosen carrier.

    @param carrier: C{"upgrade"}, C{"websocket"} or C{"auto"}: the upgrade;
        when the server answers it with L{UpgradeNotSupported}, WebSocket at
        once, and only WebSocket from then on if that attached (a server
        that answered 404 because its API was not registered yet, and then
        refuses WebSocket too, gets the upgrade again next time).
    """

    _log = Logger()

    def __init__(self, reactor: IReactorTime, carrier: str = "auto") -> None:
        if carrier not in CARRIERS:
            raise ValueError(f"unknown tunnel carrier {carrier!r}")
        self._reactor = reactor
        self.carrier = carrier

    def connect(
        self,
        endpoint: IStreamClientEndpoint,
        secure: bool,
        where: str,
        session_factory: Callable[[], TunnelSession],
        headers: Mapping[str, str],
    ) -> Deferred[TunnelSession]:
        """
        Connect C{endpoint} (TLS-wrapped when C{secure}) and attach a session
        at C{where} (C{host:port/path}); fires as L{connect_upgrade} and
        L{connect_websocket} do.
        """

        def websocket() -> Deferred[TunnelSession]:
            scheme = "wss" if secure else "ws"
            return connect_websocket(
                self._reactor, endpoint, f"{scheme}://{where}", session_factory, headers
            )

        if self.carrier == "websocket":
            return websocket()
        scheme = "https" if secure else "http"
        attached = connect_upgrade(
            self._reactor, endpoint, f"{scheme}://{where}", session_factory, headers
        )
        if self.carrier == "auto":
            attached.addErrback(self._fall_back, websocket)
        return attached

    def _fall_back(
        self, failure: Failure, websocket: Callable[[], Deferred[TunnelSession]]
    ) -> Deferred[TunnelSession]:
        failure.trap(UpgradeNotSupported)
        reason = failure.getErrorMessage()

        def attached(session: TunnelSession) -> TunnelSession:
            if self.carrier == "auto":
                self.carrier = "websocket"
                self._log.warn(
                    "The server does not take the tunnel upgrade ({reason}); "
                    "using WebSocket from now on",
                    reason=reason,
                )
            return session

        return websocket().addCallback(attached)
