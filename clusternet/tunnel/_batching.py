"""
Joining what a TLS connection hands over one record at a time.

Twisted's TLS decrypts what one socket read brought (up to a MiB here) and
passes it on one TLS record, at most 16 KiB, per C{dataReceived} call.  Every
call costs a pass through the WebSocket parser and the session, so a MiB
through C{wss} made 64 of them.  A L{ReadBatcher} keeps full records and hands
them on joined once a shorter record ends the run (the last record of what
the peer wrote is short, unless its size was a multiple of 16 KiB), or else
at the start of the reactor's next turn.  A lone short record, a small
message, goes on at once.  Measured with benchmarks/tunnel.py: the hub's CPU
per MiB through wss down by a fifth to a third.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport

__all__ = ["ReadBatcher"]

#: The largest TLS record's payload (RFC 8446, 5.1).
RECORD = 16 * 1024


class ReadBatcher:
    """
    Collects received pieces and delivers them joined, once per reactor turn.

    @param clock: schedules the delivery (C{callLater(0, ...)}).
    @param deliver: takes the joined bytes.
    """

    def __init__(self, clock: IReactorTime, deliver: Callable[[bytes], None]) -> None:
        self._clock = clock
        self._deliver = deliver
        self._pieces: list[bytes] = []
        self._call: IDelayedCall | None = None

    @classmethod
    def for_transport(
        cls, transport: object, clock: IReactorTime, deliver: Callable[[bytes], None]
    ) -> ReadBatcher | None:
        """
        A batcher for what C{transport} receives when it is TLS, else C{None}
        (a plain connection hands over a whole read at once already).
        """
        if ISSLTransport.providedBy(transport):
            return cls(clock, deliver)
        return None

    def add(self, data: bytes) -> None:
        if len(data) < RECORD:
            if self._pieces:
                self._pieces.append(data)
                self.flush()
            else:
                self._deliver(data)
            return
        self._pieces.append(data)
        if self._call is None:
            self._call = self._clock.callLater(0, self._scheduled)

    def _scheduled(self) -> None:
        self._call = None
        self.flush()

    def flush(self) -> None:
        """
        Deliver what is held now (before the connection's loss is handled).
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None
        pieces, self._pieces = self._pieces, []
        if pieces:
            self._deliver(pieces[0] if len(pieces) == 1 else b"".join(pieces))
