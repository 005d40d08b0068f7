"""
The Twisted side of a tunnel session: streams as transports, keepalive, drain.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
)
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHalfCloseableProtocol,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.tunnel._codec import (
    DEFAULT_INITIAL_WINDOW,
    DEFAULT_MAX_AUTO_WINDOW,
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_STREAMS,
    ErrorCode,
    Hello,
    OpenFailReason,
)
from clusternet.tunnel._errors import (
    OpenRefused,
    StreamOpenFailed,
    TunnelClosed,
    TunnelStreamReset,
)
from clusternet.tunnel._interfaces import (
    IStreamAcceptor,
    ITunnelProtocol,
    ITunnelTransport,
)
from clusternet.tunnel._machine import (
    ROUND_TRIPS_TO_GROW,
    DataReceived,
    GoAwayReceived,
    HandshakeCompleted,
    LocalStreamError,
    PingReceived,
    PongReceived,
    Role,
    SessionMachine,
    SessionTerminated,
    StreamAccepted,
    StreamEnded,
    StreamOpenRequested,
    StreamRejected,
    StreamReset,
    WindowOpened,
)
from clusternet.tunnel._metrics import TunnelMetrics
from clusternet.tunnel._tuning import SMALL_WRITE

if TYPE_CHECKING:
    from clusternet.tunnel._endpoint import TunnelEndpoint

__all__ = ["SessionConfig", "TunnelAddress", "TunnelSession", "TunnelStream"]


def _positive(instance: object, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


#: The smallest carrier_queue: one TLS record.
MIN_CARRIER_QUEUE = 16 * 1024


#: What an automatic carrier_queue becomes on a slow carrier (see
#: TunnelSession._measure_carrier): over 100 Mbit/s a request beside a
#: download waits 23 ms instead of 88, and a reactor may be 8 ms late to
#: refill the connection before a link of 32 MiB/s runs dry.
AUTO_CARRIER_QUEUE = 256 * 1024
#: A carrier that drains slower than this (bytes per second) is slow...
SLOW_CARRIER = 32 * 1024 * 1024
#: ...when it does so this many congestions in a row.
_SLOW_SAMPLES = 3


def _queue_size(instance: object, attribute: Any, value: int | None) -> None:
    if value and value < MIN_CARRIER_QUEUE:
        raise ValueError(
            f"{attribute.name} must be 0 or at least {MIN_CARRIER_QUEUE} bytes"
        )


@frozen
class SessionConfig:
    """
    Limits and timers of a session.  Windows and frame sizes are what this side
    advertises (what the peer may send to us).
    """

    initial_window: int = DEFAULT_INITIAL_WINDOW
    #: How far a stream's receive window may grow, for a link whose round
    #: trip needs more than C{initial_window} in flight (see
    #: L{clusternet.tunnel._machine.SessionMachine._retune}, which also
    #: shrinks windows on a slow link); at most C{initial_window} turns
    #: growing off.
    max_window: int = DEFAULT_MAX_AUTO_WINDOW
    max_frame: int = DEFAULT_MAX_FRAME
    max_streams: int = DEFAULT_MAX_STREAMS
    ping_interval: float = field(default=10.0, validator=_positive)
    ping_timeout: float = field(default=30.0, validator=_positive)
    open_timeout: float = field(default=30.0, validator=_positive)
    #: Bytes the carrier may queue ahead of a new write: its connection's
    #: buffer, what one write hands it, and, at most, half of it unsent in
    #: the kernel (see L{clusternet.tunnel._tuning.limit_queue}).  0 leaves
    #: the connection tuned for throughput (1 MiB, and the kernel's own
    #: send buffer).  A few hundred KiB suits a site on a slow uplink: an
    #: interactive request waits less beside a download.  C{None}, the
    #: default: tuned for throughput until the carrier proves slow (it drains
    #: slower than L{SLOW_CARRIER} three congestions in a row), then
    #: L{AUTO_CARRIER_QUEUE}.
    carrier_queue: int | None = field(default=None, validator=_queue_size)

    def hello(self) -> Hello:
        return Hello(
            initial_window=self.initial_window,
            max_frame=self.max_frame,
            max_streams=self.max_streams,
        )


@implementer(IAddress)
@frozen
class TunnelAddress:
    """
    The address of a stream: its target and the session it runs in.
    """

    target: str
    session: str
    stream_id: int


#: While the carrier is congested, bytes a queued stream hands it per turn of
#: the round (see TunnelSession._drain), and bytes handed per carrier write.
QUANTUM = 256 * 1024
_DRAIN_BATCH = 1024 * 1024


@implementer(ITransport, IConsumer, IPushProducer)
class TunnelStream:
    """
    One stream, seen by the protocol connected to it as its transport.

    It behaves like a TCP transport: C{write} never blocks (bytes beyond the
    send window wait here, and a registered streaming producer is paused until
    they are sent); C{pauseProducing} stops the credit that lets the peer send
    more, so at most one window of bytes is ever buffered for a slow reader.
    """

    _log = Logger()

    def __init__(self, session: TunnelSession, stream_id: int, target: str) -> None:
        self.session = session
        self.stream_id = stream_id
        self.target = target
        self.protocol: IProtocol | None = None
        self.disconnecting = False
        self.disconnected = False
        self._address = TunnelAddress(target, session.name, stream_id)
        # incoming
        self._reading_paused = False
        self._inbox: deque[bytes] = deque()
        self._unacknowledged = 0
        self._remote_fin = False
        self._fin_delivered = False
        self._read_closed_locally = False
        # outgoing
        self._pending: deque[bytes | memoryview] = deque()
        self._pending_size = 0
        self._producer: Any = None
        self._streaming = False
        self._producer_paused = False
        self._fin_wanted = False
        self._fin_sent = False
        self._closed_reason: Failure | None = None
        # In the session's round of streams waiting for a congested carrier.
        self._queued = False
        # Bytes written straight through during the carrier's current
        # congestion (the session's _congestion counts them), see _light.
        self._congestion = 0
        self._congestion_bytes = 0

    def __repr__(self) -> str:
        return f"<TunnelStream {self.stream_id} to {self.target}>"

    # -- attaching -------------------------------------------------------

    def _attach(self, protocol: IProtocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)
        if self._closed_reason is not None:
            reason, self._closed_reason = self._closed_reason, None
            self._deliver_lost(reason)
            return
        self._deliver_inbox()

    # -- ITransport ------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._fin_wanted or self.disconnected or not data:
            return
        if type(data) is not bytes:
            # The payload goes out by reference: a copy of anything mutable.
            data = bytes(data)
        session = self.session
        if self._pending or (session._carrier_paused and not self._light(len(data))):
            # Behind bytes already waiting, or the carrier is congested and
            # this stream is a bulk one: wait for the stream's turn.
            self._pending.append(data)
            self._pending_size += len(data)
            if session._carrier_paused:
                session._enqueue(self)
            self._update_producer()
            return
        try:
            taken = session._machine.send_data(self.stream_id, data)
        except LocalStreamError:
            return
        if taken < len(data):
            rest = memoryview(data)[taken:]
            self._pending.append(rest)
            self._pending_size += len(rest)
            self._update_producer()
        session._flush()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Finish sending, send FIN, and stop reading: the protocol sees
        C{connectionLost} once the buffered bytes are sent.
        """
        if self.disconnected or self.disconnecting:
            return
        self.disconnecting = True
        self._read_closed_locally = True
        self._inbox.clear()
        self.loseWriteConnection()
        if self._fin_sent:
            self._finish(Failure(ConnectionDone("stream closed")), later=True)

    def loseWriteConnection(self) -> None:
        """
        Half-close: send FIN once the buffered bytes are sent; keep reading.
        """
        if self._fin_wanted or self.disconnected:
            return
        self._fin_wanted = True
        if not self._pending:
            self._send_fin()

    def abortConnection(self) -> None:
        if self.disconnected:
            return
        self.session._reset_stream(self, ErrorCode.CANCEL, "stream aborted")
        self._finish(Failure(ConnectionAborted("stream aborted")), later=True)

    def getPeer(self) -> TunnelAddress:
        return self._address

    def getHost(self) -> TunnelAddress:
        return self._address

    # -- IConsumer -------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError(f"{self!r} already has a producer")
        if self.disconnected:
            producer.stopProducing()
            return
        self._producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if not streaming:
            producer.resumeProducing()
        else:
            self._update_producer()

    def unregisterProducer(self) -> None:
        self._producer = None
        self._producer_paused = False

    # -- IPushProducer (the protocol reading from us) -----------------------

    def pauseProducing(self) -> None:
        self._reading_paused = True

    def resumeProducing(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        self._deliver_inbox()

    def stopProducing(self) -> None:
        # As for a TCP transport: the consumer is gone, close cleanly.
        self.loseConnection()

    # -- internals -------------------------------------------------------

    def _light(self, size: int) -> bool:
        """
        Whether a write of C{size} bytes, while the carrier is congested, may
        still go straight to it: yes for the first L{SMALL_WRITE} bytes a
        stream writes during one congestion.  A request, a reply or a
        keystroke does not wait behind the bulk streams' bytes; a stream that
        writes more is a bulk one and takes its turns in the round.
        """
        congestion = self.session._congestion
        if self._congestion != congestion:
            self._congestion = congestion
            self._congestion_bytes = 0
        self._congestion_bytes += size
        return self._congestion_bytes <= SMALL_WRITE

    def _update_producer(self) -> None:
        producer = self._producer
        if producer is None or not self._streaming:
            return
        # The source stops while bytes wait here (for the window, or for this
        # stream's turn on a congested carrier), and only this stream's.
        blocked = bool(self._pending)
        if blocked and not self._producer_paused:
            self._producer_paused = True
            producer.pauseProducing()
        elif not blocked and self._producer_paused:
            self._producer_paused = False
            producer.resumeProducing()

    def _send_fin(self) -> None:
        if self._fin_sent:
            return
        self._fin_sent = True
        try:
            done = self.session._machine.send_fin(self.stream_id)
        except LocalStreamError:
            done = False
        self.session._flush()
        if done:
            self.session._forget(self)
            self._finish(Failure(ConnectionDone("stream closed")))

    def _window_opened(self) -> None:
        session = self.session
        if session._carrier_paused:
            session._enqueue(self)
            return
        self._send_pending(None)
        session._flush()

    def _send_pending(self, limit: int | None) -> int:
        """
        Hand the session up to C{limit} (or all, for C{None}) of the waiting
        bytes, as far as the send window allows; return how many.  A stream
        with bytes and window left goes back into the round.
        """
        if self.disconnected:
            return 0
        session = self.session
        machine = session._machine
        pending = self._pending
        sent = 0
        while pending and (limit is None or sent < limit):
            head = pending[0]
            room = len(head) if limit is None else min(len(head), limit - sent)
            try:
                taken = machine.send_data(
                    self.stream_id,
                    head if room == len(head) else memoryview(head)[:room],
                )
            except LocalStreamError:
                return sent
            sent += taken
            self._pending_size -= taken
            if taken < len(head):
                pending[0] = memoryview(head)[taken:]
                if taken < room:
                    break
            else:
                pending.popleft()
        if pending:
            if machine.send_window(self.stream_id) > 0:
                session._enqueue(self)
        else:
            self._all_sent()
        return sent

    def _all_sent(self) -> None:
        if not self._pending:
            if self._fin_wanted:
                self._send_fin()
                if self.disconnecting and not self.disconnected:
                    self._finish(Failure(ConnectionDone("stream closed")))
                    return
            if self._producer is not None and not self._streaming:
                self._producer.resumeProducing()
        self._update_producer()

    def _data(self, data: bytes) -> None:
        if self._read_closed_locally or self.protocol is None:
            if self._read_closed_locally:
                self.session._machine.consumed(self.stream_id, len(data))
            else:
                self._inbox.append(data)
            return
        if self._reading_paused or self._inbox:
            self._inbox.append(data)
            return
        self.protocol.dataReceived(data)
        if self._paused_now():
            self._unacknowledged += len(data)
        else:
            self.session._machine.consumed(self.stream_id, len(data))

    def _paused_now(self) -> bool:
        # A method, so that type checkers do not assume the protocol cannot
        # have paused us while it handled the data.
        return self._reading_paused

    def _deliver_inbox(self) -> None:
        machine = self.session._machine
        inbox = self._inbox
        while inbox and not self._reading_paused and not self.disconnected:
            data = inbox.popleft()
            assert self.protocol is not None
            self.protocol.dataReceived(data)
            self._unacknowledged += len(data)
        if not self._reading_paused and self._unacknowledged:
            machine.consumed(self.stream_id, self._unacknowledged)
            self._unacknowledged = 0
            self.session._flush()
        if (
            not inbox
            and not self._reading_paused
            and self._remote_fin
            and not self._fin_delivered
        ):
            self._deliver_fin()

    def _ended(self, closed: bool) -> None:
        self._remote_fin = True
        if closed:
            self.session._forget(self)
        if self.protocol is None:
            return
        if closed and self._read_closed_locally:
            self._finish(Failure(ConnectionDone("stream closed")))
            return
        if not self._inbox and not self._reading_paused:
            self._deliver_fin()

    def _deliver_fin(self) -> None:
        self._fin_delivered = True
        protocol = self.protocol
        if self.disconnected or protocol is None:
            return
        if self._fin_sent and self.stream_id not in self.session._streams:
            if IHalfCloseableProtocol.providedBy(protocol):
                protocol.readConnectionLost()
            self._finish(Failure(ConnectionDone("stream closed")))
            return
        if IHalfCloseableProtocol.providedBy(protocol):
            protocol.readConnectionLost()
        else:
            self.loseConnection()

    def _finish(self, reason: Failure, later: bool = False) -> None:
        """
        The protocol is done with this stream: tell it once.

        @param later: deliver C{connectionLost} on the next reactor turn, as
            real transports do when the protocol itself closed the connection
            (callers such as C{HTTP11ClientProtocol.abort} rely on it).
        """
        if self.disconnected:
            return
        self.disconnected = True
        self.disconnecting = False
        self._pending.clear()
        self._pending_size = 0
        self._inbox.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        if self.protocol is None:
            self._closed_reason = reason
            return
        if later:
            self.session.clock.callLater(0, self._deliver_lost, reason)
        else:
            self._deliver_lost(reason)

    def _deliver_lost(self, reason: Failure) -> None:
        assert self.protocol is not None
        try:
            self.protocol.connectionLost(reason)
        except Exception:
            self._log.failure("connectionLost of {stream!r} failed", stream=self)


@implementer(ITunnelProtocol)
class TunnelSession:
    """
    One end of a tunnel: streams over a carrier (see docs/tunnel-protocol.md).

    Create it with its role, hand it to a carrier (which calls
    C{connection_made}), then open streams with L{open_stream} or
    L{endpoint_for}; streams the peer opens go to the C{acceptor}.
    """

    _log = Logger()

    def __init__(
        self,
        role: Role,
        clock: IReactorTime,
        *,
        acceptor: IStreamAcceptor | None = None,
        config: SessionConfig | None = None,
        metrics: TunnelMetrics | None = None,
        name: str = "",
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.role = role
        self.clock = clock
        self.acceptor = acceptor
        self.config = config if config is not None else SessionConfig()
        self.metrics = metrics if metrics is not None else TunnelMetrics()
        self.name = name
        self.transport: ITunnelTransport | None = None
        self.close_reason: str | None = None
        self._random_bytes = random_bytes
        self._machine = SessionMachine(
            role,
            self.config.hello(),
            max_window=self.config.max_window,
            clock=clock.seconds,
        )
        # The PING in flight and when it left, for the carrier's round trip.
        self._ping: tuple[bytes, float] | None = None
        self._streams: dict[int, TunnelStream] = {}
        self._opening: dict[int, Deferred[TunnelStream]] = {}
        self._open_timers: dict[int, IDelayedCall] = {}
        self._accepting: dict[int, Deferred[IProtocol]] = {}
        self._ready_waiters: list[Deferred[TunnelSession]] = []
        self._closed_waiters: list[Deferred[str]] = []
        # The carrier asked us to pause (its buffer is full) and has not
        # drained yet; the streams with bytes for it wait in _round, and
        # _congestion counts such times (see TunnelStream._light).
        self._carrier_paused = False
        self._congestion = 0
        self._round: deque[TunnelStream] = deque()
        self._draining = False
        self._batch = self.config.carrier_queue or _DRAIN_BATCH
        # Measuring the carrier, for an automatic carrier_queue.
        self._measuring = self.config.carrier_queue is None
        self._bytes_out = 0
        self._paused_at = 0.0
        self._measured_at = 0.0
        self._measured_bytes = 0
        self._slow_samples = 0
        self._timer: IDelayedCall | None = None
        self._last_received = 0.0
        self._next_ping = 0.0
        self._connected_at: float | None = None
        self._frames_in_seen = 0
        self._frames_out_seen = 0
        self._counted = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            DataReceived: self._on_data,
            WindowOpened: self._on_window,
            StreamAccepted: self._on_accepted,
            StreamRejected: self._on_rejected,
            StreamEnded: self._on_ended,
            StreamReset: self._on_reset,
            StreamOpenRequested: self._on_open_requested,
            HandshakeCompleted: self._on_handshake,
            GoAwayReceived: self._on_goaway,
            SessionTerminated: self._on_terminated,
            PingReceived: lambda event: None,
            PongReceived: self._on_pong,
        }

    def __repr__(self) -> str:
        return f"<TunnelSession {self.name or id(self)} {self.role.name}>"

    # -- state -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def ready(self) -> bool:
        return self._machine.handshake_done and not self.closed

    @property
    def stream_count(self) -> int:
        return self._machine.stream_count

    @property
    def peer_hello(self) -> Hello | None:
        return self._machine.peer

    @property
    def connected_for(self) -> float:
        if self._connected_at is None:
            return 0.0
        return self.clock.seconds() - self._connected_at

    def when_ready(self) -> Deferred[TunnelSession]:
        """
        Fires with the session once the handshake is done; fails with
        L{TunnelClosed} if the session ends first.
        """
        if self.closed:
            return fail(TunnelClosed(string=self.close_reason))
        if self._machine.handshake_done:
            return succeed(self)
        d: Deferred[TunnelSession] = Deferred()
        self._ready_waiters.append(d)
        return d

    def when_closed(self) -> Deferred[str]:
        """
        Fires with the reason text once the session is over.
        """
        if self.close_reason is not None:
            return succeed(self.close_reason)
        d: Deferred[str] = Deferred()
        self._closed_waiters.append(d)
        return d

    # -- ITunnelProtocol ---------------------------------------------------

    def connection_made(self, transport: ITunnelTransport) -> None:
        self.transport = transport
        now = self.clock.seconds()
        self._connected_at = now
        self._measured_at = now
        self._last_received = now
        self._next_ping = now + self.config.ping_interval
        self._counted = True
        self.metrics.sessions_open += 1
        self.metrics.sessions_total += 1
        self._flush()
        self._schedule()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.metrics.bytes_in += len(data)
        self._last_received = self.clock.seconds()
        events = self._machine.receive(data)
        handlers = self._handlers
        for event in events:
            handlers[type(event)](event)
            if self.close_reason is not None:
                break
        self._flush()
        if self._machine.drained and not self.closed:
            self._shutdown("drained", abort=False)

    def connection_lost(self, reason: Failure) -> None:
        if self.closed:
            return
        message = f"tunnel carrier lost: {reason.getErrorMessage()}"
        self._machine._close(ErrorCode.CONNECTION_ERROR, message)
        self._ended(message)

    def pause_writing(self) -> None:
        if self._carrier_paused:
            return
        self._carrier_paused = True
        self._congestion += 1
        if self._measuring:
            self._paused_at = self.clock.seconds()

    def resume_writing(self) -> None:
        self._carrier_paused = False
        if self._measuring:
            self._measure_carrier()
        self._drain()

    def _measure_carrier(self) -> None:
        """
        After a congestion: how fast did the carrier take bytes since the
        last one?  Counted only when it was congested for most of that time,
        so that it, not the streams, set the pace.  Three slow ones in a row
        and its queue is kept short from then on (L{AUTO_CARRIER_QUEUE}): on a
        slow link every MiB it holds is a long wait for the next request,
        and reading and sending less per call costs nothing at that rate.
        """
        now = self.clock.seconds()
        elapsed = now - self._measured_at
        sent = self._bytes_out - self._measured_bytes
        congested = now - self._paused_at
        self._measured_at, self._measured_bytes = now, self._bytes_out
        if elapsed <= 0 or congested < elapsed / 2:
            return
        rate = sent / elapsed
        self._slow_samples = self._slow_samples + 1 if rate < SLOW_CARRIER else 0
        if self._slow_samples < _SLOW_SAMPLES or self.transport is None:
            return
        self._measuring = False
        self._batch = AUTO_CARRIER_QUEUE
        self.transport.limit_queue(AUTO_CARRIER_QUEUE)
        self._log.info(
            "Tunnel session {name}: the carrier drains at {rate:.1f} MiB/s; "
            "keeping its queue to {queue} KiB so requests pass downloads",
            name=self.name,
            rate=rate / (1024 * 1024),
            queue=AUTO_CARRIER_QUEUE // 1024,
        )

    # -- the round of streams waiting for a congested carrier --------------
    #
    # While the carrier's buffer is full, a bulk stream's writes wait in the
    # stream (its source paused), not in the carrier: what the carrier holds
    # is what everything written later waits behind, a request or a window
    # update included.  Once it drains, the waiting streams take turns of
    # QUANTUM bytes each, in the order they began to wait, until it is full
    # again: every stream gets its share, and a stream's source resumes once
    # its bytes are all sent.

    def _enqueue(self, stream: TunnelStream) -> None:
        if not stream._queued:
            stream._queued = True
            self._round.append(stream)

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            queue = self._round
            quantum = min(QUANTUM, self._batch)
            while queue and not self._carrier_paused and self.close_reason is None:
                batch = 0
                while queue and batch < self._batch:
                    stream = queue.popleft()
                    stream._queued = False
                    batch += stream._send_pending(quantum)
                self._flush()
        finally:
            self._draining = False

    # -- opening streams -------------------------------------------------

    def open_stream(self, target: str) -> Deferred[TunnelStream]:
        """
        Open a stream to C{target} (C{host:port}); fires with the stream once
        the peer accepted it.  Fails with L{StreamOpenFailed} (the peer refused),
        L{TunnelClosed}, or C{TimeoutError} after C{open_timeout}.  Cancelling
        it resets the stream.
        """
        if self.closed:
            return fail(TunnelClosed(string=self.close_reason))
        if not self._machine.handshake_done:
            return self.when_ready().addCallback(lambda _: self.open_stream(target))
        try:
            stream_id = self._machine.open_stream(target)
        except LocalStreamError as error:
            if error.reason is None:
                return fail(TunnelClosed(string=error.message))
            return fail(StreamOpenFailed(error.reason, error.message))
        self._flush()
        stream = TunnelStream(self, stream_id, target)

        def cancel(d: Deferred[TunnelStream]) -> None:
            self._opening.pop(stream_id, None)
            self._streams.pop(stream_id, None)
            self._cancel_timer(stream_id)
            self._machine.reset_stream(stream_id, ErrorCode.CANCEL, "open cancelled")
            self._flush()

        d: Deferred[TunnelStream] = Deferred(cancel)
        self._streams[stream_id] = stream
        self._opening[stream_id] = d
        self._open_timers[stream_id] = self.clock.callLater(
            self.config.open_timeout, self._open_timed_out, stream_id
        )
        return d

    def endpoint_for(self, target: str) -> TunnelEndpoint:
        """
        An C{IStreamClientEndpoint} whose connections are streams to C{target}.
        """
        from clusternet.tunnel._endpoint import TunnelEndpoint

        return TunnelEndpoint(self, target)

    def _open_timed_out(self, stream_id: int) -> None:
        self._open_timers.pop(stream_id, None)
        d = self._opening.pop(stream_id, None)
        self._streams.pop(stream_id, None)
        self._machine.reset_stream(stream_id, ErrorCode.CANCEL, "open timed out")
        self._flush()
        if d is not None:
            d.errback(
                TimeoutError(f"no answer to OPEN within {self.config.open_timeout}s")
            )

    def _cancel_timer(self, stream_id: int) -> None:
        timer = self._open_timers.pop(stream_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- draining and closing ----------------------------------------------

    def go_away(self, message: str = "going away") -> None:
        """
        Start a graceful drain: no new streams either way, running ones finish,
        then the carrier closes.
        """
        if self.closed:
            return
        self._machine.go_away(ErrorCode.NO_ERROR, message)
        self._flush()
        if self._machine.drained:
            self._shutdown("drained", abort=False)

    def drain(self, timeout: float) -> Deferred[str]:
        """
        L{go_away}, then wait for the streams to finish; after C{timeout}
        seconds reset whatever is left.  Fires with the close reason.
        """
        done = self.when_closed()
        self.go_away("draining")
        if not self.closed:
            timer = self.clock.callLater(
                timeout, self.close, "drain timed out", ErrorCode.NO_ERROR
            )

            def stop_timer(result: str) -> str:
                if timer.active():
                    timer.cancel()
                return result

            done.addBoth(stop_timer)
        return done

    def close(
        self, message: str = "closed", code: ErrorCode = ErrorCode.NO_ERROR
    ) -> None:
        """
        End the session now: tell the peer (GOAWAY), reset every stream, close
        the carrier.
        """
        if self.closed:
            return
        if code == ErrorCode.NO_ERROR:
            # A fatal GOAWAY needs a non-zero code; NO_ERROR closes are drains
            # that did not finish.
            code = ErrorCode.CANCEL
        self._machine.terminate(code, message)
        self._flush()
        self._shutdown(message, abort=False)

    def abort(self, message: str = "aborted") -> None:
        """
        Drop the carrier without a word and fail every stream.
        """
        if self.closed:
            return
        self._machine._close(ErrorCode.CANCEL, message)
        self._shutdown(message, abort=True)

    def _shutdown(self, message: str, abort: bool) -> None:
        transport = self.transport
        self._ended(message)
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()

    def _ended(self, message: str) -> None:
        """
        Everything stops: fail waiters and streams, stop the timer, count.
        """
        if self.close_reason is not None:
            return
        self.close_reason = message
        self._log.info(
            "Tunnel session {name} closed: {reason}", name=self.name, reason=message
        )
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._counted:
            self._counted = False
            self.metrics.sessions_open -= 1
        for stream_id in list(self._open_timers):
            self._cancel_timer(stream_id)
        opening, self._opening = self._opening, {}
        accepting, self._accepting = self._accepting, {}
        streams, self._streams = self._streams, {}
        self._round.clear()
        for d in opening.values():
            d.errback(TunnelClosed(string=message))
        for d2 in accepting.values():
            d2.cancel()
        for stream in streams.values():
            if stream.stream_id in opening:
                continue
            self.metrics.streams_open -= 1
            self.metrics.streams_reset += 1
            stream._finish(
                Failure(TunnelStreamReset(ErrorCode.CONNECTION_ERROR, message))
            )
        ready, self._ready_waiters = self._ready_waiters, []
        for d3 in ready:
            d3.errback(TunnelClosed(string=message))
        waiters, self._closed_waiters = self._closed_waiters, []
        for d4 in waiters:
            d4.callback(message)

    # -- keepalive -------------------------------------------------------

    def _schedule(self) -> None:
        if self.closed:
            return
        deadline = self._last_received + self.config.ping_timeout
        at = min(deadline, self._next_ping)
        delay = max(0.0, at - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.clock.seconds()
        if now - self._last_received >= self.config.ping_timeout:
            self.metrics.ping_timeouts += 1
            message = f"no sign of life from the peer for {self.config.ping_timeout}s"
            self._machine.terminate(ErrorCode.PING_TIMEOUT, message)
            self._flush()
            self._shutdown(message, abort=True)
            return
        if now >= self._next_ping:
            self._send_ping()
            self._next_ping = now + self.config.ping_interval
        self._schedule()

    def _send_ping(self) -> None:
        opaque = self._random_bytes(8)
        self._ping = (opaque, self.clock.seconds())
        self._machine.ping(opaque)
        self._flush()

    def _on_pong(self, event: PongReceived) -> None:
        if self._ping is None or event.opaque != self._ping[0]:
            return
        machine = self._machine
        machine.rtt_sample(self.clock.seconds() - self._ping[1])
        self._ping = None
        if machine.rtt_samples < ROUND_TRIPS_TO_GROW:
            # Still probing, on a carrier that has just come up.
            self._send_ping()

    # -- output ----------------------------------------------------------

    def _flush(self) -> None:
        machine = self._machine
        out = machine.data_to_send()
        frames = machine.frames_sent
        if frames != self._frames_out_seen:
            self.metrics.frames_out += frames - self._frames_out_seen
            self._frames_out_seen = frames
        if not out or self.transport is None:
            if out:
                # Not connected yet: keep the bytes for connection_made.
                machine._outgoing[:0] = out
            return
        size = 0
        for chunk in out:
            size += len(chunk)
        self.metrics.bytes_out += size
        self._bytes_out += size
        self.transport.write(out)

    # -- stream bookkeeping ------------------------------------------------

    def _forget(self, stream: TunnelStream) -> None:
        if self._streams.pop(stream.stream_id, None) is not None:
            self.metrics.streams_open -= 1

    def _reset_stream(
        self, stream: TunnelStream, code: ErrorCode, message: str
    ) -> None:
        self._machine.reset_stream(stream.stream_id, code, message)
        if self._streams.pop(stream.stream_id, None) is not None:
            self.metrics.streams_open -= 1
            self.metrics.streams_reset += 1
        self._flush()
        if self._machine.drained and not self.closed:
            self._shutdown("drained", abort=False)

    def _after_stream_change(self) -> None:
        if self._machine.drained and not self.closed:
            self._shutdown("drained", abort=False)

    # -- events ----------------------------------------------------------

    def _on_data(self, event: DataReceived) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None:
            # Closed locally in the meantime: give the credit back anyway.
            self._machine.consumed(event.stream_id, len(event.data))
            return
        stream._data(event.data)

    def _on_window(self, event: WindowOpened) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None and stream._pending:
            stream._window_opened()

    def _on_accepted(self, event: StreamAccepted) -> None:
        self._cancel_timer(event.stream_id)
        d = self._opening.pop(event.stream_id, None)
        stream = self._streams.get(event.stream_id)
        if d is None or stream is None:
            return
        self.metrics.streams_open += 1
        self.metrics.streams_total += 1
        d.callback(stream)

    def _on_rejected(self, event: StreamRejected) -> None:
        self._cancel_timer(event.stream_id)
        d = self._opening.pop(event.stream_id, None)
        self._streams.pop(event.stream_id, None)
        self.metrics.open_refused += 1
        if d is not None:
            d.errback(StreamOpenFailed(event.reason, event.message))
        self._after_stream_change()

    def _on_ended(self, event: StreamEnded) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            stream._ended(event.closed)
        self._after_stream_change()

    def _on_reset(self, event: StreamReset) -> None:
        self._cancel_timer(event.stream_id)
        d = self._opening.pop(event.stream_id, None)
        if d is not None:
            self._streams.pop(event.stream_id, None)
            d.errback(StreamOpenFailed(OpenFailReason.DIAL_FAILED, event.message))
            return
        accepting = self._accepting.pop(event.stream_id, None)
        stream = self._streams.get(event.stream_id)
        if stream is not None:
            self._forget(stream)
            self.metrics.streams_reset += 1
            stream._finish(Failure(TunnelStreamReset(event.code, event.message)))
        if accepting is not None:
            accepting.cancel()
        self._after_stream_change()

    def _on_open_requested(self, event: StreamOpenRequested) -> None:
        stream_id = event.stream_id
        acceptor = self.acceptor
        if acceptor is None:
            self.metrics.open_refused += 1
            self._machine.refuse_stream(
                stream_id, OpenFailReason.NO_ACCEPTOR, "this side accepts no streams"
            )
            return
        stream = TunnelStream(self, stream_id, event.target)
        self._streams[stream_id] = stream
        self.metrics.streams_open += 1
        self.metrics.streams_total += 1
        try:
            d = acceptor.accept(event.target)
        except Exception as error:
            d = fail(error)
        self._accepting[stream_id] = d
        d.addCallbacks(
            lambda protocol: self._accepted(stream, protocol),
            lambda failure: self._refused(stream, failure),
        )

    def _accepted(self, stream: TunnelStream, protocol: IProtocol) -> None:
        stream_id = stream.stream_id
        if self._accepting.pop(stream_id, None) is None or self.closed:
            # The peer reset the stream or the session ended meanwhile.
            stream._attach(protocol)
            stream._finish(Failure(ConnectionLost("stream gone before it opened")))
            return
        self._machine.accept_stream(stream_id)
        self._flush()
        stream._attach(protocol)

    def _refused(self, stream: TunnelStream, failure: Failure) -> None:
        stream_id = stream.stream_id
        if self._accepting.pop(stream_id, None) is None:
            return
        self._forget(stream)
        self.metrics.open_refused += 1
        if failure.check(OpenRefused):
            error = failure.value
            assert isinstance(error, OpenRefused)
            reason, message = error.reason, error.message
        elif failure.check(TimeoutError, CancelledError):
            reason, message = OpenFailReason.DIAL_TIMEOUT, "dial timed out"
        else:
            reason, message = OpenFailReason.DIAL_FAILED, failure.getErrorMessage()
        if not self.closed:
            self._machine.refuse_stream(stream_id, reason, message)
            self._flush()
        self._after_stream_change()

    def _on_handshake(self, event: HandshakeCompleted) -> None:
        # The carrier's round trip, measured at once while it is still idle
        # (a few PINGs in a row), so that windows can grow from the first
        # streams on; the keepalive PINGs add more.
        self._send_ping()
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(self)

    def _on_goaway(self, event: GoAwayReceived) -> None:
        self._log.info(
            "Tunnel peer {name} is going away: {message}",
            name=self.name,
            message=event.message,
        )

    def _on_terminated(self, event: SessionTerminated) -> None:
        if event.by_peer:
            message = f"peer closed the session ({event.code}): {event.message}"
        else:
            self.metrics.protocol_errors += 1
            message = f"tunnel protocol error ({event.code}): {event.message}"
        self._flush()
        self._shutdown(message, abort=False)
