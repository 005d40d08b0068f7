"""
What one HTTP/1.1 connection may make a server hold, and for how long, before
(and regardless of whether) its requests prove an identity.

L{twisted.web.http.HTTPChannel} parses request heads with
L{twisted.protocols.basic.LineReceiver}.  Out of the box it closes the
connection without a word on a request line over 16 KiB, buffers a header
line up to C{MAX_LENGTH} whatever the head holds already, has no deadline for
a head (every byte restarts the idle timeout, so a head that trickles in a
byte a minute is kept forever), and over TLS its C{loseConnection} waits for
the peer's C{close_notify}, which a hostile peer never sends.
L{BudgetedHTTPChannel} keeps its parser and adds the limits of a
L{ConnectionBudget}, answering as Go's C{net/http} server does (C{431} for
an oversized head) with a Kubernetes C{Status} body.  See "Resource budget
per connection" in docs/deploy.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Mapping
from typing import Any

from attrs import Attribute, field, frozen
from attrs.validators import ge, gt, instance_of

from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel

from clusternet.apis.status import status_body

__all__ = [
    "DEFAULT_BUDGET",
    "MAX_HEADER_BYTES",
    "BudgetedHTTPChannel",
    "ConnectionBudget",
    "MemoryTrimmer",
    "budget_from_options",
    "budget_of",
]

# Go's http.Server default MaxHeaderBytes, which kube-apiserver keeps: a head
# the parent accepted and forwards must not be refused by the hub.
MAX_HEADER_BYTES = 1024 * 1024


def _positive_seconds(_: object, attribute: Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number or None")


@frozen
class ConnectionBudget:
    """
    The resource budget of one HTTP/1.1 connection.

    @ivar max_head_bytes: the most bytes a request head (request line, header
        lines and their line ends) may take; more is answered C{431} (C{414}
        when the request line alone is too long) and the connection closed.
        It is also what a connection may make the server buffer while its
        head is incomplete.
    @ivar head_timeout: seconds within which a head must be complete: from
        the connection's start for its first request (so it covers a TLS
        handshake, as Go's C{ReadHeaderTimeout} does), from its first byte
        for a later one.  Then C{408} (if any of the head came) and close.
        L{None}: no deadline.
    @ivar idle_timeout: seconds a connection may be silent while it waits
        for a request or sends a body (twisted.web's C{timeOut}); L{None}:
        none.
    @ivar max_refused_body: after a request is answered before its body is
        in (a 401, 403, 404 or 503), the most body bytes read and thrown
        away so the client can read the answer; past it, or when a known
        C{Content-Length} says the rest is longer, or when the rest does
        not arrive within C{head_timeout}, the connection is closed.
    @ivar max_headers: the most header lines in a head (twisted.web's
        C{maxHeaders}); more is answered C{431}.
    @ivar close_grace: seconds a connection being closed after a refusal may
        take to go (a TLS peer that never answers C{close_notify}) before
        it is aborted.
    @ivar trim_memory: after connections that held at least
        L{TRIM_AFTER_BYTES} of unfinished heads between them are gone, ask
        the C library to give freed memory back (glibc's C{malloc_trim}),
        at most every L{TRIM_INTERVAL} seconds.  Without it glibc may keep
        tens of MB of freed head buffers as the process's RSS.
    """

    max_head_bytes: int = field(
        default=MAX_HEADER_BYTES, validator=[instance_of(int), ge(1024)]
    )
    head_timeout: float | None = field(default=10.0, validator=_positive_seconds)
    idle_timeout: float | None = field(default=60.0, validator=_positive_seconds)
    max_refused_body: int = field(
        default=MAX_HEADER_BYTES, validator=[instance_of(int), ge(0)]
    )
    max_headers: int = field(default=500, validator=[instance_of(int), gt(0)])
    trim_memory: bool = field(default=True, validator=instance_of(bool))
    close_grace: float = field(
        default=2.0, validator=[instance_of((int, float)), gt(0)]
    )


DEFAULT_BUDGET = ConnectionBudget()

# How many bytes of dropped head buffers make a trim worth it, how long after
# that it waits for the rest of a burst of closing connections, and how often
# one may run at most.
TRIM_AFTER_BYTES = 4 * 1024 * 1024
# What a closed connection counts towards a trim besides its unfinished head.
CONNECTION_FOOTPRINT = 32 * 1024
TRIM_SETTLE = 1.0
TRIM_INTERVAL = 10.0


def _load_malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        # Not glibc (musl has no malloc_trim).
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryTrimmer:
    """
    Gives memory freed by dropped request heads back to the system: once
    C{threshold} bytes of them were dropped, C{trim} runs C{settle} seconds
    later (one trim for a burst of closing connections), and never sooner
    than C{interval} seconds after the last one.

    glibc keeps freed memory for reuse; buffers of many sizes freed in any
    order fragment its heap, and what it keeps stays in the process's RSS.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        trim: Callable[[], object] | None = None,
        threshold: int = TRIM_AFTER_BYTES,
        settle: float = TRIM_SETTLE,
        interval: float = TRIM_INTERVAL,
    ) -> None:
        self._clock = clock
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._threshold = threshold
        self._settle = settle
        self._interval = interval
        self._freed = 0
        self._last: float | None = None
        self._call: IDelayedCall | None = None
        self.trims = 0

    def freed(self, size: int) -> None:
        """
        C{size} bytes of buffered heads were dropped.
        """
        if self._trim is None or size <= 0:
            return
        self._freed += size
        if self._freed < self._threshold or self._call is not None:
            return
        wait = self._settle
        if self._last is not None:
            wait = max(wait, self._last + self._interval - self._clock.seconds())
        self._call = self._clock.callLater(wait, self._run)

    def _run(self) -> None:
        self._call = None
        self._last = self._clock.seconds()
        freed, self._freed = self._freed, 0
        if self._trim is not None:
            self._trim()
            self.trims += 1
            self._log.debug(
                "Gave memory back to the system after {freed} bytes of request "
                "heads were dropped",
                freed=freed,
            )

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


def budget_from_options(options: Mapping[str, Any]) -> ConnectionBudget:
    """
    The budget that the flags C{--max-request-header-bytes},
    C{--request-header-timeout}, C{--idle-timeout},
    C{--max-refused-body-bytes} and C{--trim-memory} ask for (parsed: bytes,
    seconds, a timeout of 0 meaning none); an absent flag keeps its default.
    """
    default = DEFAULT_BUDGET

    def seconds(flag: str, fallback: float | None) -> float | None:
        if flag not in options:
            return fallback
        return float(options[flag]) or None

    return ConnectionBudget(
        max_head_bytes=int(
            options.get("max-request-header-bytes", default.max_head_bytes)
        ),
        head_timeout=seconds("request-header-timeout", default.head_timeout),
        idle_timeout=seconds("idle-timeout", default.idle_timeout),
        max_refused_body=int(
            options.get("max-refused-body-bytes", default.max_refused_body)
        ),
        trim_memory=bool(options.get("trim-memory", default.trim_memory)),
    )


def budget_of(channel: object) -> ConnectionBudget:
    """
    The budget of the site that built C{channel}, or the default one.
    """
    budget = getattr(getattr(channel, "site", None), "budget", None)
    return budget if isinstance(budget, ConnectionBudget) else DEFAULT_BUDGET


# Phrases twisted.web does not know (RFC 9110, RFC 6585).
_PHRASES = {
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


def _error_response(code: int, message: str) -> bytes:
    body = status_body(code, message)
    phrase = _PHRASES.get(code) or RESPONSES.get(code, b"Error")
    return (
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: application/json\r\n"
        b"Cache-Control: no-cache, private\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n"
        b"\r\n" % (code, phrase, len(body))
    ) + body


class BudgetedHTTPChannel(HTTPChannel):
    """
    An L{HTTPChannel} held to the L{ConnectionBudget} of its site.

    A head is counted as it is parsed: C{MAX_LENGTH}, the longest line
    L{LineReceiver} buffers, is lowered after each header line to what is
    left of the head's budget, so the bytes buffered for an incomplete head
    never exceed C{max_head_bytes} plus one read.  When the connection
    ends, whatever it buffered is dropped at once, even if a request still
    refers to the channel.
    """

    _log = Logger()

    budget: ConnectionBudget = DEFAULT_BUDGET
    _in_head = False
    _head_seen = False
    _head_bytes = 0
    _request_line_seen = False
    _head_call: IDelayedCall | None = None
    _abort_call: IDelayedCall | None = None
    _closing = False
    # Pieces of an unfinished line, held as they came (see _hold).
    _held: list[bytes] | None = None
    _held_bytes = 0

    def connectionMade(self) -> None:
        self.budget = budget_of(self)
        self.totalHeadersSize = self.budget.max_head_bytes
        self.maxHeaders = self.budget.max_headers
        super().connectionMade()
        self._begin_head()

    # -- the head being read

    def _waiting_for_head(self) -> bool:
        return bool(self.line_mode) and not self._handlingRequest

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_seen = False
        self._head_bytes = 0
        self._request_line_seen = False
        self.MAX_LENGTH = self.budget.max_head_bytes
        timeout = self.budget.head_timeout
        if timeout is not None and self._head_call is None:
            self._head_call = self.callLater(timeout, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self.MAX_LENGTH = self.budget.max_head_bytes
        self._cancel_head_call()

    def _cancel_head_call(self) -> None:
        call, self._head_call = self._head_call, None
        if call is not None and call.active():
            call.cancel()

    def _head_timed_out(self) -> None:
        self._head_call = None
        if self._closing or not self._in_head:
            return
        self._log.debug(
            "Request head from {peer} not complete within {timeout}s",
            peer=self._peer(),
            timeout=self.budget.head_timeout,
        )
        if self._head_seen or self._buffer or self._held:
            self.refuse(
                408,
                f"the request head was not complete within "
                f"{self.budget.head_timeout:g}s",
            )
        else:
            self.close_connection()

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        if data:
            if not self._in_head and self._waiting_for_head():
                self._begin_head()
            if self._in_head:
                self._head_seen = True
        if self._hold(data):
            return
        super().dataReceived(data)
        if (
            self._buffer
            and not self._closing
            and not self._in_head
            and self._waiting_for_head()
        ):
            # A request served while this data was parsed left the start of
            # the next head behind.
            self._begin_head()
            self._head_seen = True

    def _hold(self, data: bytes) -> bool:
        """
        Keep C{data} aside when it only lengthens an unfinished line.

        L{LineReceiver} adds each read to its buffer (a copy of all of it) and
        searches all of it for the line's end again: a 1 MiB header line that
        comes in 16 KiB TLS records costs it 32 ms of CPU, quadratic in the
        line. A read without a line feed cannot end a line, so it waits here
        as it came, until a read that can (or one that takes the line past
        its limit) hands everything over in one piece.
        """
        if (
            self.line_mode
            and not self._busyReceiving
            and not self.paused
            and b"\n" not in data
            and len(self._buffer) + self._held_bytes + len(data)
            < self.MAX_LENGTH + len(self.delimiter)
        ):
            if self._held is None:
                self._held = []
            self._held.append(data)
            self._held_bytes += len(data)
            return True
        if self._held:
            self._buffer += b"".join(self._held)
            self._held = None
            self._held_bytes = 0
        return False

    @property
    def buffered(self) -> int:
        """
        Bytes of the unfinished head (or line) this connection holds.
        """
        return len(self._buffer) + self._held_bytes

    def clearLineBuffer(self) -> bytes:
        held = b"".join(self._held) if self._held else b""
        self._held = None
        self._held_bytes = 0
        return bytes(super().clearLineBuffer()) + held

    def lineReceived(self, line: bytes) -> None:
        if self._closing:
            return
        if not self._in_head:
            self._begin_head()
            self._head_seen = True
        limit = self.budget.max_head_bytes
        self._head_bytes += len(line) + len(self.delimiter)
        if self._head_bytes > limit:
            self._too_large()
            return
        if line:
            self._request_line_seen = True
        # The next line may take only what is left of the head's budget.
        self.MAX_LENGTH = max(limit - self._head_bytes - len(self.delimiter), 0)
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._too_large()

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(
                431, f"a request head may have at most {self.maxHeaders} headers"
            )
            return False
        return bool(super().headerReceived(line))

    def _too_large(self) -> None:
        limit = self.budget.max_head_bytes
        if self._request_line_seen:
            self.refuse(431, f"the request head is larger than {limit} bytes")
        else:
            self.refuse(414, f"the request line is longer than {limit} bytes")

    def allHeadersReceived(self) -> None:
        self._end_head()
        super().allHeadersReceived()

    # -- refusing and closing

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400, "malformed HTTP request")

    def refuse(self, code: int, message: str) -> None:
        """
        Answer C{code} with a C{Status} saying C{message}, unless a response
        is already under way, and close the connection.
        """
        if self._closing:
            return
        self._log.debug(
            "Refused a request from {peer}: {code} {message}",
            peer=self._peer(),
            code=code,
            message=message,
        )
        if self.transport is not None and not any(
            getattr(request, "startedWriting", False) for request in self.requests
        ):
            self.transport.write(_error_response(code, message))
        self.close_connection()

    def close_connection(self) -> None:
        """
        Drop what was buffered, send what was written and close; abort the
        connection if it is still there after C{close_grace}.

        As Go's server does, the connection is closed for writing first
        while what the client still sends is read and thrown away: closing
        a socket with unread data resets it, and the client may lose the
        answer.  (Over TLS, C{loseConnection} does that by itself: it sends
        C{close_notify} and reads until the peer's.)
        """
        if self._closing:
            return
        self._closing = True
        self._drop_buffers()
        self._cancel_head_call()
        self.setTimeout(None)
        transport: Any = self.transport
        if transport is None:
            return
        if ITCPTransport.providedBy(transport) and not ISSLTransport.providedBy(
            transport
        ):
            self._networkProducer.unregisterProducer()
            transport.loseWriteConnection()
            resume = getattr(transport, "resumeProducing", None)
            if resume is not None:
                resume()
        else:
            self.loseConnection()
        self._abort_call = self.callLater(self.budget.close_grace, self._abort)

    def _abort(self) -> None:
        self._abort_call = None
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()

    def _peer(self) -> str:
        get_peer = getattr(self.transport, "getPeer", None)
        return str(get_peer()) if get_peer is not None else "-"

    def _drop_buffers(self) -> None:
        dropped = len(self.clearLineBuffer()) + sum(map(len, self._dataBuffer))
        self._dataBuffer = []
        trimmer = getattr(getattr(self, "site", None), "trimmer", None)
        if isinstance(trimmer, MemoryTrimmer):
            # What a closed connection leaves besides its head: TLS state and
            # buffers of its own (a burst of a few hundred closing connections
            # is worth a trim too).
            trimmer.freed(dropped + CONNECTION_FOOTPRINT)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        self._in_head = False
        self._cancel_head_call()
        call, self._abort_call = self._abort_call, None
        if call is not None and call.active():
            call.cancel()
        self._drop_buffers()
        super().connectionLost(reason)
