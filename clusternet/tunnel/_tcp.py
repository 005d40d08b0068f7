"""
The raw stream carrier: frames straight on a TCP or TLS connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.tunnel._batching import ReadBatcher
from clusternet.tunnel._interfaces import ITunnelProtocol, ITunnelTransport
from clusternet.tunnel._tuning import (
    limit_queue,
    send_promptly,
    tune_carrier,
    unbuffered_write,
)

__all__ = ["StreamCarrierFactory", "StreamCarrierProtocol"]


@implementer(ITunnelTransport, IPushProducer)
class StreamCarrierProtocol(Protocol):
    """
    Carries a session over any stream transport (TCP, TLS, UNIX).  Frames are
    length-delimited already, so bytes go through untouched.
    """

    _batcher: ReadBatcher | None = None

    def __init__(self, session: ITunnelProtocol, kind: str = "stream") -> None:
        self.session = session
        self.peer = ""
        self.kind = kind
        # Set on connection (see unbuffered_write); the session writes only
        # once connection_made handed it this carrier.
        self._write: Callable[[bytes], None]

    def connectionMade(self) -> None:
        transport: Any = self.transport
        config = getattr(self.session, "config", None)
        tune_carrier(transport, getattr(config, "carrier_queue", None))
        self.peer = str(transport.getPeer())
        transport.registerProducer(self, True)
        self._write = unbuffered_write(transport)
        clock = getattr(self.session, "clock", None)
        if clock is not None:
            self._batcher = ReadBatcher.for_transport(
                transport, clock, self.session.data_received
            )
        self.session.connection_made(self)

    def dataReceived(self, data: bytes) -> None:
        if self._batcher is not None:
            self._batcher.add(data)
        else:
            self.session.data_received(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        if self._batcher is not None:
            self._batcher.flush()
        self.session.connection_lost(reason)

    # ITunnelTransport
    def write(self, data: Sequence[bytes | memoryview]) -> None:
        # Twisted transports take bytes only: one join makes the frames one
        # buffer (the connection would join its queued pieces anyway).
        first = data[0] if len(data) == 1 else None
        payload = first if type(first) is bytes else b"".join(data)
        self._write(payload)
        send_promptly(self.transport, len(payload))

    def close(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def limit_queue(self, size: int) -> None:
        limit_queue(self.transport, size)

    def abort(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    # IPushProducer: the connection tells us when its send buffer is full.
    def pauseProducing(self) -> None:
        self.session.pause_writing()

    def resumeProducing(self) -> None:
        self.session.resume_writing()

    def stopProducing(self) -> None:
        pass


class StreamCarrierFactory(Factory):
    """
    Builds a L{StreamCarrierProtocol} per connection, with a new session from
    C{session_factory(address)}; use it with any stream endpoint
    (C{serverFromString(reactor, "ssl:7443:...")}, C{wrapClientTLS(...)}).
    """

    def __init__(
        self, session_factory: Callable[[IAddress | None], ITunnelProtocol]
    ) -> None:
        self.session_factory = session_factory

    def buildProtocol(self, addr: IAddress | None) -> StreamCarrierProtocol:
        protocol = StreamCarrierProtocol(self.session_factory(addr))
        protocol.factory = self
        return protocol
