"""
The hub's side of an attach: a client that never starts the tunnel handshake is
an ordinary event, not an unhandled error.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.hub._registry import SocketRegistry
from clusternet.hub._tunnels import TunnelAttach
from clusternet.tunnel import ITunnelProtocol, ITunnelTransport
from clusternet.tunnel._memory import MemoryLink


@implementer(ITunnelProtocol)
class Silent:
    """
    A client that connects and then says nothing.
    """

    def connection_made(self, transport: ITunnelTransport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, reason: Failure) -> None:
        pass


def test_a_client_gone_before_the_handshake_logs_no_error() -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        registry = SocketRegistry(Clock())
        session = TunnelAttach(Clock(), registry).session_for(
            "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d", "192.0.2.1:4000", "agent"
        )
        link = MemoryLink(session, Silent())
        link.pump()
        link.sever()
        link.pump()
        del session, link
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(events.append)
    levels = [e.get("log_level") for e in events]
    assert LogLevel.critical not in levels and LogLevel.error not in levels, events
    assert any("before its handshake" in str(e.get("log_format")) for e in events)
    assert registry.infos() == []
