"""
The seams of the tunnel: carrier transports, the session's side of them, the
acceptor of incoming streams and the dial policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

__all__ = ["IDialPolicy", "IStreamAcceptor", "ITunnelProtocol", "ITunnelTransport"]


class ITunnelTransport(Interface):
    """
    A carrier: an ordered, reliable byte pipe between two session ends
    (WebSocket, TLS/TCP, memory).  It moves bytes and knows nothing of frames.
    """

    peer = Attribute("A short text naming the far end, for logs.")
    kind = Attribute(
        "What carries the session, for logs: upgrade, websocket, stream, memory."
    )

    def write(data: Sequence[bytes | memoryview]) -> None:
        """
        Send C{data}, one or more complete frames, in order.  The pieces are
        bytes or memoryviews of bytes (payloads are not copied on their way
        here); a carrier that needs one buffer joins them.
        """

    def close() -> None:
        """
        Send what is buffered, then close the carrier.
        """

    def abort() -> None:
        """
        Close the carrier now, dropping buffered bytes.
        """

    def limit_queue(size: int) -> None:
        """
        Queue about C{size} bytes at most ahead of a new write (see
        L{clusternet.tunnel.SessionConfig.carrier_queue}); a carrier with no
        queue of its own to speak of ignores it.
        """


class ITunnelProtocol(Interface):
    """
    What a carrier drives: the session end.  Implemented by L{TunnelSession}.
    """

    def connection_made(transport: ITunnelTransport) -> None:
        """
        The carrier is up.
        """

    def data_received(data: bytes) -> None:
        """
        Bytes arrived from the peer.
        """

    def connection_lost(reason: Failure) -> None:
        """
        The carrier is gone.
        """

    def pause_writing() -> None:
        """
        The carrier's send buffer is full: stop local sources.
        """

    def resume_writing() -> None:
        """
        The carrier drained its send buffer.
        """


class IStreamAcceptor(Interface):
    """
    Decides what to do with a stream the peer opens.
    """

    def accept(target: str) -> Deferred[IProtocol]:
        """
        Return a Deferred that fires with the protocol to connect to the new
        stream (its transport will be the stream), or fails with
        L{clusternet.tunnel.OpenRefused} (or any error, reported as a failed
        dial) to refuse it.  The Deferred may be cancelled if the peer gives up.
        """


class IDialPolicy(Interface):
    """
    Which targets the accepting side may connect streams to.
    """

    def allows(host: str, port: int) -> bool:
        """
        Whether a stream may be connected to C{host}:C{port}.
        """
