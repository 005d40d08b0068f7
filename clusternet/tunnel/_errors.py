"""
Exceptions the tunnel raises to its callers.
"""

from __future__ import annotations

from twisted.internet.error import ConnectError, ConnectionLost

from clusternet.tunnel._codec import OpenFailReason

__all__ = ["OpenRefused", "StreamOpenFailed", "TunnelClosed", "TunnelStreamReset"]


class OpenRefused(Exception):
    """
    Raised by an acceptor to refuse a stream; becomes OPEN_FAIL on the wire.
    """

    def __init__(self, reason: OpenFailReason, message: str = "") -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason.name}: {self.message}"


class StreamOpenFailed(ConnectError):
    """
    The far side refused to open the stream (OPEN_FAIL) or it could not be sent.

    @ivar reason: the L{OpenFailReason} code (an C{int} for unknown codes).
    @ivar http_status: the HTTP status a proxy should answer with.
    """

    def __init__(self, reason: int, message: str) -> None:
        super().__init__(string=f"{_reason_name(reason)}: {message}")
        self.reason = reason
        self.message = message

    @property
    def http_status(self) -> int:
        try:
            return OpenFailReason(self.reason).http_status
        except ValueError:
            return 502


class TunnelClosed(ConnectError):
    """
    The tunnel session is closed (or closing): no stream can be opened.
    """


class TunnelStreamReset(ConnectionLost):
    """
    A stream was reset (by the peer, by a protocol violation or by the session
    ending).  C{code} is the protocol's error code.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"stream reset ({code}): {message}")
        self.code = code
        self.message = message


def _reason_name(reason: int) -> str:
    try:
        return OpenFailReason(reason).name
    except ValueError:
        return f"reason {reason}"
