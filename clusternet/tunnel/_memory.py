"""
An in-memory carrier for tests: two session ends joined by queues.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.tunnel._interfaces import ITunnelProtocol, ITunnelTransport

__all__ = ["MemoryLink", "MemoryTransport"]


@implementer(ITunnelTransport)
class MemoryTransport:
    """
    One end of a L{MemoryLink}.
    """

    kind = "memory"

    def __init__(self, link: MemoryLink, side: int, peer: str) -> None:
        self._link = link
        self._side = side
        self.peer = peer
        self.written: list[bytes | memoryview] = []
        self.closing = False
        #: The sizes L{limit_queue} was called with.
        self.queue_limits: list[int] = []

    def write(self, data: Sequence[bytes | memoryview]) -> None:
        if self.closing or self._link.severed:
            return
        self.written.extend(data)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self._link.sever(ConnectionLost("aborted"), clean=False)

    def limit_queue(self, size: int) -> None:
        self.queue_limits.append(size)


class MemoryLink:
    """
    Joins two L{ITunnelProtocol}s.  Nothing moves until L{pump}: tests decide
    when bytes travel, and can L{sever} the link to make a peer vanish.
    """

    def __init__(self, a: ITunnelProtocol, b: ITunnelProtocol) -> None:
        self.ends = (a, b)
        self.transports = (
            MemoryTransport(self, 0, "memory:b"),
            MemoryTransport(self, 1, "memory:a"),
        )
        self.severed = False
        self.vanished: set[int] = set()
        a.connection_made(self.transports[0])
        b.connection_made(self.transports[1])

    def pump(self, rounds: int = 100_000) -> int:
        """
        Deliver queued bytes both ways until the link is quiet (at most
        C{rounds} deliveries); return how many deliveries happened.
        """
        moved = 0
        for _ in range(rounds):
            progressed = False
            for side in (0, 1):
                if self.severed:
                    return moved
                transport = self.transports[side]
                if self.vanished:
                    transport.written = []
                    continue
                if transport.written:
                    data = b"".join(transport.written)
                    transport.written = []
                    self.ends[1 - side].data_received(data)
                    progressed = True
                    moved += 1
            for side in (0, 1):
                transport = self.transports[side]
                if transport.closing and not transport.written and not self.severed:
                    self.sever(ConnectionDone("closed"), clean=True)
                    return moved
            if not progressed:
                return moved
        raise AssertionError(f"memory link still busy after {rounds} rounds")

    def sever(self, reason: Exception | None = None, clean: bool = False) -> None:
        """
        Drop the link: both ends see C{connection_lost}.
        """
        if self.severed:
            return
        self.severed = True
        failure = Failure(reason if reason is not None else ConnectionLost("severed"))
        for end in self.ends:
            end.connection_lost(failure)

    def vanish(self, side: int) -> None:
        """
        The end C{side} disappears without a trace: it sees its carrier lost,
        its peer gets no more bytes and no close (only a keepalive deadline
        can notice).
        """
        self.vanished.add(side)
        for transport in self.transports:
            transport.written = []
        self.ends[side].connection_lost(Failure(ConnectionLost("vanished")))
