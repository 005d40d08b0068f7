"""
The server side of streaming: a twisted.web request that hands its body to a
resource while it arrives, instead of buffering all of it first.

L{twisted.web.server.Request} collects the whole request body in
C{request.content} before it looks up and renders a resource.  A
L{StreamingRequest} looks the resource up as soon as the request headers are
in; when it provides L{IStreamingResource}, the resource's
C{renderStreaming} runs at once and the body flows to it through
C{request.bodyProducer} (an L{IBodyProducer}, so it can be passed straight to
an HTTP client) with backpressure: when the consumer pauses, the client
connection stops being read.  Every other resource on the same site is
rendered exactly as before, with the body buffered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web import resource as _resource
from twisted.web.http import _GenericHTTPChannelProtocol, parse_qs, unquote
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import Attribute, implementer

from clusternet.proxy._budget import (
    DEFAULT_BUDGET,
    MAX_HEADER_BYTES,
    BudgetedHTTPChannel,
    ConnectionBudget,
    MemoryTrimmer,
    budget_of,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "IStreamingResource",
    "RequestBody",
    "StreamingRequest",
    "StreamingSite",
    "switching_protocols",
]

# How much request body is held while nobody consumes it (before the
# upstream connection exists, or while it is paused) before the client
# connection stops being read.
BODY_BUFFER_BYTES = 64 * 1024


class IStreamingResource(IResource):
    """
    A resource that handles a request as soon as its headers have arrived.
    """

    def renderStreaming(request: StreamingRequest) -> None:
        """
        Handle C{request}; its body, if any, arrives through
        C{request.bodyProducer}.  Finish the request (or take over its
        connection) when done; exceptions become a 500 response.
        """


class IRequestBody(IBodyProducer):
    """
    A request body arriving from the network.
    """

    done = Attribute("True once the whole body has been received.")


@implementer(IRequestBody, IPushProducer)
class RequestBody:
    """
    The body of a streaming request, as an L{IBodyProducer}.

    Chunks received before L{startProducing} (or while paused) are held, up
    to L{BODY_BUFFER_BYTES}, after which the client connection is paused.
    """

    _log = Logger()

    def __init__(
        self,
        length: int | None,
        pause_reading: Callable[[], None],
        resume_reading: Callable[[], None],
        on_start: Callable[[], None],
    ) -> None:
        self.length: int | object = UNKNOWN_LENGTH if length is None else length
        self.done = False
        self.max_held = 0
        self.discarded = 0
        self._pause_reading = pause_reading
        self._resume_reading = resume_reading
        self._on_start = on_start
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._consumer: IConsumer | None = None
        self._finished: Deferred[None] | None = None
        self._paused = False
        self._stopped = False
        self._failed: Failure | None = None
        self._reading_paused = False

    # Reading side (the request feeds these).

    def _set_reading(self, paused: bool) -> None:
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                self._pause_reading()
            else:
                self._resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._stopped or self._failed is not None:
            self.discarded += len(data)
            return
        if self._consumer is not None and not self._paused and not self._held:
            self._consumer.write(data)
            return
        self._held.append(data)
        self._held_bytes += len(data)
        self.max_held = max(self.max_held, self._held_bytes)
        if self._paused or self._held_bytes >= BODY_BUFFER_BYTES:
            # Also when already paused: the HTTP channel may have resumed the
            # transport behind our back (it does so when its write buffer
            # drains), so every chunk that arrives while paused re-pauses.
            self._reading_paused = False
            self._set_reading(True)

    def body_done(self) -> None:
        self.done = True
        self._maybe_finish()

    def connection_lost(self, reason: Failure) -> None:
        if self.done or self._failed is not None:
            return
        self._failed = reason
        self._held = []
        self._held_bytes = 0
        if self._finished is not None and not self._stopped:
            finished, self._finished = self._finished, None
            finished.errback(reason)

    def _maybe_finish(self) -> None:
        if (
            self.done
            and not self._held
            and self._finished is not None
            and not self._stopped
        ):
            finished, self._finished = self._finished, None
            finished.callback(None)

    def _flush(self) -> None:
        while self._held and not self._paused and self._consumer is not None:
            chunk = self._held.pop(0)
            self._held_bytes -= len(chunk)
            self._consumer.write(chunk)
        if not self._held and not self._paused:
            self._set_reading(False)
            self._maybe_finish()

    # IBodyProducer

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        if self._failed is not None:
            failed: Deferred[None] = Deferred()
            failed.errback(self._failed)
            return failed

        def cancel(d: Deferred[None]) -> None:
            self.stopProducing()

        self._consumer = consumer
        self._finished = Deferred(cancel)
        finished = self._finished
        self._on_start()
        self._flush()
        return finished

    def pauseProducing(self) -> None:
        self._paused = True
        self._set_reading(True)

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._held = []
        self._held_bytes = 0
        self._set_reading(False)
        # IBodyProducer: after stopProducing the Deferred of startProducing
        # never fires (a cancel of it fails it by itself). Failing it here made
        # Twisted's client log a critical error whenever a backend answered
        # before the body was sent (TRANSMITTING_AFTER_RECEIVING_RESPONSE).
        self._finished = None


class StreamingRequest(Request):
    """
    A request whose body streams to an L{IStreamingResource}.

    @ivar streaming: True when the request went to an L{IStreamingResource}.
    @ivar bodyProducer: the request body while streaming, or L{None} when the
        request has no body (or is not streaming).
    """

    _log = Logger()

    streaming = False
    bodyProducer: RequestBody | None = None
    upgraded = False
    _all_received = False
    _cleanup_pending = False
    _expect_continue = False
    _found: IResource | None = None
    _drained = 0
    _body_received = 0
    _body_withheld = False
    _drain_call: IDelayedCall | None = None

    # Called by HTTPChannel.allHeadersReceived, before any body byte.
    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        command = getattr(channel, "_command", None)
        uri = getattr(channel, "_path", None)
        version = getattr(channel, "_version", None)
        site = getattr(channel, "site", None)
        if (
            not isinstance(command, bytes)
            or not isinstance(uri, bytes)
            or not isinstance(version, bytes)
            or site is None
            or uri == b"*"
        ):
            super().gotLength(length)
            return
        self.method, self.uri, self.clientproto = command, uri, version
        path, _, query = uri.partition(b"?")
        self.path = path
        self.args = parse_qs(query, 1) if query else {}
        self.site = site
        self.prepath = []
        self.postpath = list(map(unquote, path[1:].split(b"/")))
        try:
            found = site.getResourceFor(self)
        except Exception:
            # Let process() look it up again and report the failure.
            super().gotLength(length)
            return
        if not IStreamingResource.providedBy(found):
            self._found = found
            super().gotLength(length)
            return
        self._start_streaming(found, length)

    def _start_streaming(self, found: IStreamingResource, length: int | None) -> None:
        self.streaming = True
        self.defaultContentType = None
        self.content = None
        expect = self.requestHeaders.getRawHeaders(b"expect", [])
        if expect:
            self.requestHeaders.removeHeader(b"expect")
            self._expect_continue = (
                expect[0].lower() == b"100-continue" and self.clientproto == b"HTTP/1.1"
            )
        if length == 0:
            self.bodyProducer = None
        else:
            self.bodyProducer = RequestBody(
                length, self._pause_reading, self._resume_reading, self._send_continue
            )
        try:
            found.renderStreaming(self)
        except Exception:
            self.processingFailed(Failure())

    def _pause_reading(self) -> None:
        transport: Any = getattr(self.channel, "transport", None)
        if transport is not None:
            transport.pauseProducing()

    def _resume_reading(self) -> None:
        transport: Any = getattr(self.channel, "transport", None)
        if transport is not None:
            transport.resumeProducing()

    def _send_continue(self) -> None:
        if self._expect_continue and not self.startedWriting and not self.finished:
            self._expect_continue = False
            if self.channel is not None and self.channel.transport is not None:
                self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def handleContentChunk(self, data: bytes) -> None:
        if not self.streaming:
            super().handleContentChunk(data)
            return
        self._body_received += len(data)
        if self.finished:
            self._drained += len(data)
            if self._drained > budget_of(self.channel).max_refused_body:
                self._close_connection()
            return
        if self.bodyProducer is not None:
            self.bodyProducer.data_received(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.streaming:
            super().requestReceived(command, path, version)
            return
        self._all_received = True
        self._cancel_drain_deadline()
        if self.bodyProducer is not None:
            self.bodyProducer.body_done()
        if self._cleanup_pending:
            self._cleanup_pending = False
            super()._cleanup()

    def process(self) -> None:
        found, self._found = self._found, None
        if found is None:
            super().process()
            return
        # What Request.process does, minus the second resource lookup.
        from twisted.web.http import datetimeToString
        from twisted.web.server import version

        self.site = getattr(self.channel, "site", None)
        self.setHeader(b"Server", version)
        self.setHeader(b"Date", datetimeToString())
        try:
            if _resource._IEncodingResource.providedBy(found):
                encoder = found.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(found)
        except BaseException:
            self.processingFailed(Failure())

    def write(self, data: bytes) -> None:
        if (
            self.streaming
            and not self.startedWriting
            and not self._all_received
            and self.bodyProducer is not None
        ):
            # Answering before the whole request body is in: the rest of the
            # body will be thrown away, so this connection ends afterwards.
            self.setHeader(b"connection", b"close")
            if self.channel is not None:
                self.channel.persistent = False
            # A client told nothing after "Expect: 100-continue" must not
            # send the body now; waiting for it would be waiting for nothing.
            self._body_withheld = self._expect_continue
            self._expect_continue = False
        super().write(data)

    def _cleanup(self) -> None:
        if self.streaming and not self._all_received:
            # HTTPChannel may only hear that this request is done once it has
            # parsed the whole body; until then the body is drained.
            self._cleanup_pending = True
            if self.bodyProducer is not None:
                self.bodyProducer.stopProducing()
                self._resume_reading()
            self._drain_or_close()
            return
        super()._cleanup()

    def _drain_or_close(self) -> None:
        """
        The answer went out before the body came in: read and throw away at
        most C{max_refused_body} more of it, within C{head_timeout}, so the
        client can read the answer before the connection closes.
        """
        budget = budget_of(self.channel)
        length = self.bodyProducer.length if self.bodyProducer is not None else None
        rest = length - self._body_received if isinstance(length, int) else None
        if self._body_withheld or (rest is not None and rest > budget.max_refused_body):
            self._close_connection()
            return
        call_later = getattr(self.channel, "callLater", None)
        if budget.head_timeout is not None and call_later is not None:
            self._drain_call = call_later(budget.head_timeout, self._drain_timed_out)

    def _drain_timed_out(self) -> None:
        self._drain_call = None
        self._close_connection()

    def _cancel_drain_deadline(self) -> None:
        call, self._drain_call = self._drain_call, None
        if call is not None and call.active():
            call.cancel()

    def _close_connection(self) -> None:
        channel: Any = getattr(self, "channel", None)
        if channel is None:
            return
        if isinstance(channel, BudgetedHTTPChannel):
            channel.close_connection()
        else:
            channel.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_drain_deadline()
        if self.bodyProducer is not None:
            self.bodyProducer.connection_lost(reason)
        if self.upgraded or (self.finished and self._cleanup_pending):
            # The response was complete (or the connection was handed over to
            # another protocol): report success, not the disconnection.
            self._disconnected = True
            self.channel = None  # type: ignore[assignment]
            notifications, self.notifications = self.notifications, []
            for d in notifications:
                d.callback(None)
            return
        super().connectionLost(reason)


def switching_protocols(
    request: Request, phrase: bytes = b"Switching Protocols"
) -> bytes:
    """
    Record that C{request} is answered with C{101} and that its connection
    leaves HTTP: twisted.web writes no response of its own, the access log
    shows the 101, and a L{StreamingRequest} reports the connection's end as
    success.  The caller writes the 101 itself.

    @return: the bytes the client sent after its request head, which
        twisted.web kept for a next request but belong to the new protocol.
    """
    channel = request.channel
    if isinstance(request, StreamingRequest):
        request.upgraded = True
    request.setResponseCode(101, phrase)
    request.startedWriting = 1
    factory = getattr(channel, "factory", None)
    if factory is not None:
        factory.log(request)
    leftover = b"".join(getattr(channel, "_dataBuffer", []))
    if hasattr(channel, "_dataBuffer"):
        channel._dataBuffer = []
    return leftover


class StreamingSite(Site):
    """
    A L{Site} whose requests are L{StreamingRequest}s and whose connections
    keep to a L{ConnectionBudget}: request heads of up to
    C{budget.max_head_bytes}, complete within C{budget.head_timeout}; its
    C{budget.idle_timeout} is the site's C{timeOut}.
    """

    requestFactory = StreamingRequest
    _log = Logger()

    def __init__(
        self,
        resource: IResource,
        *args: Any,
        budget: ConnectionBudget = DEFAULT_BUDGET,
        access_log: LogLevel | None = LogLevel.info,
        **kwargs: Any,
    ) -> None:
        super().__init__(resource, *args, **kwargs)
        self.budget = budget
        self.timeOut = budget.idle_timeout
        self.access_log = access_log
        self.trimmer = MemoryTrimmer(self.reactor) if budget.trim_memory else None

    def stopFactory(self) -> None:
        if self.trimmer is not None:
            self.trimmer.stop()
        super().stopFactory()

    def protocol(self) -> Any:
        """
        What twisted.web builds for each connection (a wrapper that could
        switch to HTTP/2 after ALPN), around a L{BudgetedHTTPChannel}.
        """
        return _GenericHTTPChannelProtocol(BudgetedHTTPChannel())

    def log(self, request: http.Request) -> None:
        """
        The access log: twisted.web's combined log line at C{info} (the
        default), a structured event (formatted only if someone reads it) at
        another level, nothing with C{access_log=None}.  A line per request
        costs a busy proxy several percent of its CPU.
        """
        level = self.access_log
        if level is None:
            return
        if level is LogLevel.info:
            super().log(request)
            return
        self._log.emit(
            level,
            "{method} {uri} {code} {length} from {client}",
            method=request.method,
            uri=request.uri,
            code=request.code,
            length=request.sentLength,
            client=getattr(request.getClientAddress(), "host", "-"),
        )
