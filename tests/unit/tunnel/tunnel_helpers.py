"""
Shared pieces of the tunnel unit tests: session pairs on a memory link.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.tunnel import (
    IStreamAcceptor,
    MemoryLink,
    Role,
    SessionConfig,
    TunnelMetrics,
    TunnelSession,
)


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    Echoes, and closes once the peer finished sending.
    """

    def __init__(self) -> None:
        self.lost: Failure | None = None
        self.received = 0

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


class Collect(Protocol):
    """
    Keeps what arrives and how the stream ended.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost: Failure | None = None
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


@implementer(IStreamAcceptor)
class ProtocolAcceptor:
    """
    Accepts every stream with a new protocol from C{make}; remembers them.
    """

    def __init__(self, make: Any = Echo) -> None:
        self.make = make
        self.protocols: list[Any] = []
        self.targets: list[str] = []

    def accept(self, target: str) -> Deferred[IProtocol]:
        protocol = self.make()
        self.protocols.append(protocol)
        self.targets.append(target)
        return succeed(protocol)


class Pair:
    """
    A hub-like acceptor-role session and an agent-like dialer-role session.
    """

    def __init__(
        self,
        acceptor: IStreamAcceptor | None = None,
        config: SessionConfig | None = None,
        hub_acceptor: IStreamAcceptor | None = None,
    ) -> None:
        self.clock = Clock()
        self.metrics = TunnelMetrics()
        self.agent_metrics = TunnelMetrics()
        config = config or SessionConfig()
        self.hub = TunnelSession(
            Role.ACCEPTOR,
            self.clock,
            config=config,
            metrics=self.metrics,
            name="hub",
            acceptor=hub_acceptor,
        )
        self.agent = TunnelSession(
            Role.DIALER,
            self.clock,
            config=config,
            metrics=self.agent_metrics,
            name="agent",
            acceptor=acceptor,
        )
        self.link = MemoryLink(self.agent, self.hub)
        self.link.pump()

    def pump(self) -> int:
        return self.link.pump()

    def connect(self, target: str, protocol: Protocol) -> Deferred[Any]:
        from twisted.internet.protocol import Factory

        d = self.hub.endpoint_for(target).connect(Factory.forProtocol(lambda: protocol))
        self.pump()
        return d
