"""
The WebSocket carrier (autobahn): binary messages, each holding whole frames
when sent; received payload goes to the session as it arrives (the session
reads a byte stream of self-delimited frames), whatever the WebSocket frame
and message boundaries.

The client masks what it sends (RFC 6455); autobahn does that in C through its
NVX extension (C{autobahn.websocket.USES_NVX}), so masking costs a memcpy-like
pass, not a Python loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.tunnel._batching import ReadBatcher
from clusternet.tunnel._errors import TunnelClosed
from clusternet.tunnel._interfaces import ITunnelTransport
from clusternet.tunnel._session import TunnelSession
from clusternet.tunnel._tuning import (
    limit_queue,
    send_promptly,
    tune_carrier,
    unbuffered_write,
)

__all__ = [
    "SUBPROTOCOL",
    "TunnelWebSocketClientFactory",
    "TunnelWebSocketServerFactory",
    "connect_websocket",
]

SUBPROTOCOL = "clusternet-tunnel.v1"

_OPTIONS: dict[str, Any] = {
    "utf8validateIncoming": False,
    # Nothing is assembled into messages, so their size is no memory risk:
    # the session's decoder holds at most one tunnel frame (max_frame).
    "maxFramePayloadSize": 0,
    "maxMessagePayloadSize": 0,
    "tcpNoDelay": True,
    "openHandshakeTimeout": 30,
    "closeHandshakeTimeout": 5,
}


@implementer(ITunnelTransport, IPushProducer)
class _CarrierMixin:
    """
    What the client and server protocols share: frames in binary messages.
    """

    _log = Logger()
    session: TunnelSession | None = None
    _carrier_open = False
    _batcher: ReadBatcher | None = None
    # How sendData writes to the transport (see unbuffered_write).
    _write: Callable[[bytes], None] | None = None

    # autobahn callbacks
    def onOpen(self) -> None:
        assert self.session is not None
        transport: Any = self.transport  # type: ignore[attr-defined]
        if getattr(transport, "producer", None) is not None:
            # twisted.web's channel registered itself; it no longer owns this
            # connection.
            transport.unregisterProducer()
        transport.registerProducer(self, True)
        # Also turns Nagle off: autobahn's own tcpNoDelay option never reached
        # a client's socket (its attempt fails quietly before the options are
        # applied), so an agent's second small message waited up to 40 ms.
        tune_carrier(transport, self.session.config.carrier_queue)
        self._batcher = ReadBatcher.for_transport(
            transport,
            self.session.clock,
            super().dataReceived,  # type: ignore[misc]
        )
        self._carrier_open = True
        self.session.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self._batcher is not None:
            self._batcher.add(data)
        else:
            super().dataReceived(data)  # type: ignore[misc]

    def connectionLost(self, reason: Failure) -> None:
        if self._batcher is not None:
            self._batcher.flush()
        super().connectionLost(reason)  # type: ignore[misc]

    # autobahn's streaming API (IWebSocketChannelStreamingApi): the session
    # reads a byte stream of self-delimited frames, so the payload goes to it
    # as it arrives, never assembled into whole messages (no copy, no
    # buffering of a message, and nothing waits for a message's end).
    _binary = False

    def onMessageBegin(self, isBinary: bool) -> None:
        self._binary = isBinary
        if not isBinary:
            self._log.warn("Tunnel peer {peer} sent a text message", peer=self.peer)
            self.dropConnection(abort=True)  # type: ignore[attr-defined]

    def onMessageFrameBegin(self, length: int) -> None:
        pass

    def onMessageFrameData(self, payload: bytes) -> None:
        if self._binary and not self.failedByMe and self.session is not None:  # type: ignore[attr-defined]
            self.session.data_received(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        pass

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        # autobahn's sendData formats a debug line (qualified names, colours)
        # for every write before the logger drops it; that was a tenth of a
        # small message's cost.  What it does for the plain case, without that:
        write = self._write
        if write is None:
            write = self._write = unbuffered_write(self.transport)  # type: ignore[attr-defined]
        if sync or chopsize or self.send_queue or self.logOctets:  # type: ignore[attr-defined]
            # autobahn writes through the transport's own buffer from now on:
            # so must we, or our writes could overtake its.
            self._write = self.transport.write  # type: ignore[attr-defined]
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        write(data)
        if self.state == self.STATE_OPEN:  # type: ignore[attr-defined]
            self.trafficStats.outgoingOctetsWireLevel += len(data)  # type: ignore[attr-defined]

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._carrier_open:
            self._carrier_open = False
            assert self.session is not None
            self.session.connection_lost(
                Failure(ConnectionLost(f"websocket closed ({code}): {reason}"))
            )

    # ITunnelTransport
    peer: str = ""
    kind = "websocket"

    def write(self, data: Sequence[bytes | memoryview]) -> None:
        if not self._carrier_open or self.state != self.STATE_OPEN:  # type: ignore[attr-defined]
            # Closing: the session hears of it from onClose.
            return
        first = data[0] if len(data) == 1 else None
        payload = first if type(first) is bytes else b"".join(data)
        self.sendMessage(payload, isBinary=True)  # type: ignore[attr-defined]
        send_promptly(self.transport, len(payload))  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._carrier_open:
            self.sendClose(1000)  # type: ignore[attr-defined]

    def abort(self) -> None:
        self.dropConnection(abort=True)  # type: ignore[attr-defined]

    def limit_queue(self, size: int) -> None:
        limit_queue(self.transport, size)  # type: ignore[attr-defined]

    # IPushProducer, registered with the TCP/TLS connection underneath
    def pauseProducing(self) -> None:
        if self.session is not None:
            self.session.pause_writing()

    def resumeProducing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()

    def stopProducing(self) -> None:
        pass


class _ClientProtocol(_CarrierMixin, WebSocketClientProtocol):  # type: ignore[misc]
    factory: TunnelWebSocketClientFactory

    def onConnect(self, response: Any) -> None:
        if response.protocol != SUBPROTOCOL:
            self._log.warn(
                "Tunnel server did not agree to {protocol}", protocol=SUBPROTOCOL
            )
            self.dropConnection(abort=True)
            return
        self.session = self.factory.session_factory()

    def onOpen(self) -> None:
        super().onOpen()
        assert self.session is not None
        self.factory._connected(self.session)


class TunnelWebSocketClientFactory(WebSocketClientFactory):
    """
    A WebSocket client factory whose connection carries one tunnel session.

    @param url: C{ws://} or C{wss://} URL (gives the request path and Host).
    @param session_factory: makes the session once the upgrade succeeded.
    @param headers: extra request headers, e.g. C{Authorization}.
    """

    protocol = _ClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        url: str,
        session_factory: Callable[[], TunnelSession],
        reactor: Any,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url,
            protocols=[SUBPROTOCOL],
            headers=dict(headers or {}),
            reactor=reactor,
        )
        self.setProtocolOptions(**_OPTIONS)
        self.session_factory = session_factory
        self.connected: Deferred[TunnelSession] = Deferred()

    def _connected(self, session: TunnelSession) -> None:
        if not self.connected.called:
            self.connected.callback(session)


def connect_websocket(
    reactor: IReactorTime,
    endpoint: IStreamClientEndpoint,
    url: str,
    session_factory: Callable[[], TunnelSession],
    headers: Mapping[str, str] | None = None,
) -> Deferred[TunnelSession]:
    """
    Connect C{endpoint} (TCP, or TLS for C{wss}, e.g. C{wrapClientTLS(
    optionsForClientTLS(host, trustRoot=...), HostnameEndpoint(...))}), upgrade
    to WebSocket at C{url} with C{headers}, and fire with the session made by
    C{session_factory} once the upgrade succeeded.  Fails with the connection
    error, or L{TunnelClosed} when the upgrade is refused.
    """
    factory = TunnelWebSocketClientFactory(url, session_factory, reactor, headers)
    result = factory.connected

    def connected(protocol: _ClientProtocol) -> None:
        def closed(wasClean: bool, code: int | None, reason: str | None) -> None:
            if not result.called:
                result.errback(
                    TunnelClosed(string=f"websocket upgrade failed ({code}): {reason}")
                )

        original = protocol.onClose

        def on_close(wasClean: bool, code: int | None, reason: str | None) -> None:
            closed(wasClean, code, reason)
            original(wasClean, code, reason)

        protocol.onClose = on_close  # type: ignore[method-assign]

    def failed(failure: Failure) -> None:
        if not result.called:
            result.errback(failure)

    maybeDeferred(endpoint.connect, factory).addCallbacks(connected, failed)
    return result


class _ServerProtocol(_CarrierMixin, WebSocketServerProtocol):  # type: ignore[misc]
    factory: TunnelWebSocketServerFactory

    def onConnect(self, request: ConnectionRequest) -> Deferred[str]:  # type: ignore[override]
        if SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(
                ConnectionDeny.NOT_ACCEPTABLE, f"the tunnel speaks {SUBPROTOCOL}"
            )

        def made(session: TunnelSession) -> str:
            self.session = session
            return SUBPROTOCOL

        accept: Any = self.factory.accept
        accepting: Deferred[TunnelSession] = maybeDeferred(accept, request)
        return accepting.addCallback(made)


class TunnelWebSocketServerFactory(WebSocketServerFactory):
    """
    A WebSocket server factory whose connections each carry a tunnel session.

    C{accept(request)} sees the upgrade request (path, headers, peer) and
    returns the session for it (or a Deferred of it), or raises
    C{autobahn.websocket.types.ConnectionDeny(code, reason)} to refuse.  Mount
    it in twisted.web with C{autobahn.twisted.resource.WebSocketResource}.
    """

    protocol = _ServerProtocol  # type: ignore[assignment]

    def __init__(
        self,
        accept: Callable[[ConnectionRequest], TunnelSession | Deferred[TunnelSession]],
        reactor: Any,
        url: str | None = None,
    ) -> None:
        super().__init__(url, protocols=[SUBPROTOCOL], reactor=reactor)
        self.setProtocolOptions(**_OPTIONS)
        self.accept = accept
