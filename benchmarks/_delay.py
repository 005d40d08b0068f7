"""
A relay that holds every byte for a fixed time each way, for the tunnel
benchmark: the agent's carrier crosses it to reach the hub, as it crosses a
long-haul link to a distant site.  The round trip grows by twice the delay;
the relay adds no rate limit of its own, so what a stream then carries is
what its window allows per round trip.

Where netem is at hand, a link shaped with it is closer to a real one; this
needs nothing but loopback.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

__all__ = ["DelayRelayFactory"]


class _Delayed(Protocol):
    """
    One side of a relayed connection: what arrives here leaves on the other
    side C{delay} seconds later, in order.
    """

    def __init__(self, reactor: Any, delay: float) -> None:
        self.reactor = reactor
        self.delay = delay
        self.other: _Delayed | None = None
        self.queue: deque[tuple[float, bytes]] = deque()
        self.timer: Any = None
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.queue.append((self.reactor.seconds() + self.delay, data))
        self._arm()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            return
        if self.queue:
            wait = max(0.0, self.queue[0][0] - self.reactor.seconds())
            self.timer = self.reactor.callLater(wait, self._release)
        elif self.closed and self.other is not None and self.other.transport:
            # Everything before the close went out: pass the close on.
            self.other.transport.loseConnection()

    def _release(self) -> None:
        self.timer = None
        now = self.reactor.seconds()
        queue = self.queue
        while queue and queue[0][0] <= now:
            data = queue.popleft()[1]
            if self.other is not None and self.other.transport is not None:
                self.other.transport.write(data)
        self._arm()


class DelayRelayFactory(Factory):
    """
    Accepts connections and relays each to C{host}:C{port}, holding the bytes
    C{delay} seconds each way.
    """

    def __init__(self, reactor: Any, host: str, port: int, delay: float) -> None:
        self.reactor = reactor
        self.target = TCP4ClientEndpoint(reactor, host, port)
        self.delay = delay

    def buildProtocol(self, addr: Any) -> Protocol:
        inbound = _Delayed(self.reactor, self.delay)
        outbound = _Delayed(self.reactor, self.delay)
        inbound.other, outbound.other = outbound, inbound
        target = self.target

        class Inbound(Protocol):
            def connectionMade(self) -> None:
                transport: Any = self.transport
                inbound.makeConnection(transport)
                # Hold what arrives until the far side is connected.
                transport.pauseProducing()
                d = target.connect(Factory.forProtocol(lambda: outbound))
                d.addCallbacks(
                    lambda _: transport.resumeProducing(),
                    lambda _: transport.loseConnection(),
                )

            def dataReceived(self, data: bytes) -> None:
                inbound.dataReceived(data)

            def connectionLost(self, reason: Failure | None = None) -> None:
                inbound.connectionLost(reason)

        return Inbound()
