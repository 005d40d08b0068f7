"""
Fuzz target: the dialing side of the tunnel's HTTP upgrade
(L{clusternet.tunnel._upgrade._Upgrader}), which reads the answer of whatever
is at the other end: the hub, or a proxy in between.

Feeds: arbitrary bytes as that answer, in pieces of the size the first byte
chooses; the second byte chooses how it ends (the connection stays open, is
lost, or the clock runs past every timeout).

A crash is: any exception out of the protocol's callbacks; a result that
fails with anything but L{TunnelClosed}; a result that fires twice; bytes after
a C{101} that do not all reach the session.
"""

from __future__ import annotations

import sys
from typing import Any

import atheris  # type: ignore[import-untyped]

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.proxy import ResponseHeadParser
    from clusternet.tunnel._errors import TunnelClosed
    from clusternet.tunnel._upgrade import _request_head, _Upgrader

HEAD = _request_head("https://hub:443/sockets/c1", {"Authorization": "Bearer x"})


class _Session:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, carrier: object) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self, reason: Failure) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    step, ending, answer = data[0] % 64 + 1, data[1] % 3, data[2:]
    clock = Clock()
    result: Deferred[Any] = Deferred()
    outcomes: list[object] = []
    sessions: list[_Session] = []

    def new_session() -> Any:
        sessions.append(_Session())
        return sessions[-1]

    upgrader = _Upgrader(HEAD, new_session, result, clock)
    upgrader.makeConnection(StringTransport())
    result.addBoth(lambda outcome: outcomes.append(outcome))
    for i in range(0, len(answer), step):
        upgrader.dataReceived(answer[i : i + step])
    if ending == 1:
        upgrader.connectionLost(Failure(ConnectionLost()))
    elif ending == 2:
        clock.advance(3600)
    if len(outcomes) > 1:
        raise AssertionError("the result fired twice")
    if outcomes and isinstance(outcomes[0], Failure):
        if not outcomes[0].check(TunnelClosed):
            outcomes[0].raiseException()
    if sessions:
        parsed = ResponseHeadParser().feed(answer)
        assert parsed is not None
        if b"".join(sessions[0].received) != parsed[1]:
            raise AssertionError("bytes after the 101 did not reach the session")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
