"""
Switching protocols: spot an upstream's C{101} before Twisted's HTTP client
would skip it, take the client's connection away from twisted.web, and splice
the two connections' raw bytes together with backpressure both ways (the
pattern of L{twisted.protocols.portforward}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.proxy._head import HeadError, ResponseHead, ResponseHeadParser

__all__ = ["SniffingFactory", "SniffingProtocol", "Splice"]

UpgradeHandler = Callable[[ResponseHead, bytes, "SniffingProtocol"], None]


class SniffingProtocol(Protocol):
    """
    Sits between an upstream transport and Twisted's HTTP client protocol.

    Bytes pass through untouched, except that the first final response head
    is parsed on the way: if it is a C{101}, the HTTP client never sees it
    nor anything after it; C{on_upgrade} gets the head, the bytes after it and
    this protocol, whose later bytes go to whatever L{attach} names.
    """

    _log = Logger()

    def __init__(self, inner: IProtocol, on_upgrade: UpgradeHandler) -> None:
        self.inner = inner
        self._on_upgrade = on_upgrade
        self._parser: ResponseHeadParser | None = ResponseHeadParser()
        self._held: list[bytes] = []
        self._hijacked = False
        self._sink_data: Callable[[bytes], None] | None = None
        self._sink_lost: Callable[[Failure], None] | None = None
        self._early: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        # The connection pool hands this protocol to the agent, which calls
        # request() on it: everything else is the HTTP client's.
        return getattr(self.inner, name)

    def makeConnection(self, transport: ITransport) -> None:
        Protocol.makeConnection(self, transport)
        self.inner.makeConnection(transport)

    def attach(
        self, data: Callable[[bytes], None], lost: Callable[[Failure], None]
    ) -> None:
        """
        After a 101: deliver further upstream bytes and the disconnection to
        these callables.
        """
        self._sink_data = data
        self._sink_lost = lost
        early, self._early = self._early, []
        for chunk in early:
            data(chunk)

    def dataReceived(self, data: bytes) -> None:
        if self._hijacked:
            if self._sink_data is None:
                self._early.append(data)
            else:
                self._sink_data(data)
            return
        if self._parser is None:
            self.inner.dataReceived(data)
            return
        self._held.append(data)
        try:
            parsed = self._parser.feed(data)
        except HeadError:
            # Not ours to judge: Twisted's parser will reject it properly.
            self._parser = None
            self._release()
            return
        if parsed is None:
            return
        head, rest = parsed
        if head.code == 101:
            self._parser = None
            self._held = []
            self._hijacked = True
            self._on_upgrade(head, rest, self)
            return
        if 100 <= head.code < 200:
            # An interim response (the HTTP client skips it): keep looking.
            consumed = b"".join(self._held)
            self._held = []
            head_bytes = consumed[: len(consumed) - len(rest)]
            self.inner.dataReceived(head_bytes)
            self._parser = ResponseHeadParser()
            if rest:
                self.dataReceived(rest)
            return
        self._parser = None
        self._release()

    def _release(self) -> None:
        held, self._held = b"".join(self._held), []
        if held:
            self.inner.dataReceived(held)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if self._hijacked and self._sink_lost is not None:
            self._sink_lost(reason)
        self.inner.connectionLost(reason)


@implementer(IProtocolFactory)
class SniffingFactory:
    """
    Wraps the HTTP client's protocol factory in L{SniffingProtocol}s.
    """

    def __init__(self, inner: IProtocolFactory, on_upgrade: UpgradeHandler) -> None:
        self._inner = inner
        self._on_upgrade = on_upgrade

    def buildProtocol(self, addr: IAddress) -> IProtocol | None:
        inner = self._inner.buildProtocol(addr)
        if inner is None:
            return None
        return SniffingProtocol(inner, self._on_upgrade)

    def doStart(self) -> None:
        self._inner.doStart()

    def doStop(self) -> None:
        self._inner.doStop()


class Splice:
    """
    Two connected transports whose bytes are copied to each other.

    Each transport is registered as the other's streaming producer, so a
    reader that does not keep up pauses the other side's reads.  When either
    side goes away the other is closed after its pending bytes are written;
    L{done} fires when both are gone.
    """

    _log = Logger()

    def __init__(self, client: ITransport, upstream: ITransport) -> None:
        self.client = client
        self.upstream = upstream
        self.done: Deferred[None] = Deferred()
        self.bytes_up = 0
        self.bytes_down = 0
        self._client_open = True
        self._upstream_open = True

    def start(self) -> None:
        """
        Register the transports as each other's producers.
        """
        self.client.registerProducer(self.upstream, True)  # type: ignore[attr-defined]
        self.upstream.registerProducer(self.client, True)  # type: ignore[attr-defined]

    def client_data(self, data: bytes) -> None:
        if self._upstream_open:
            self.bytes_up += len(data)
            self.upstream.write(data)

    def upstream_data(self, data: bytes) -> None:
        if self._client_open:
            self.bytes_down += len(data)
            self.client.write(data)

    def client_lost(self, reason: Failure) -> None:
        if not self._client_open:
            return
        self._client_open = False
        if self._upstream_open:
            self._unregister(self.upstream)
            self.upstream.loseConnection()
        self._maybe_done()

    def upstream_lost(self, reason: Failure) -> None:
        if not self._upstream_open:
            return
        self._upstream_open = False
        if self._client_open:
            self._unregister(self.client)
            self.client.loseConnection()
        self._maybe_done()

    @staticmethod
    def _unregister(transport: ITransport) -> None:
        unregister = getattr(transport, "unregisterProducer", None)
        if unregister is not None:
            unregister()

    def _maybe_done(self) -> None:
        if not self._client_open and not self._upstream_open and not self.done.called:
            self.done.callback(None)
