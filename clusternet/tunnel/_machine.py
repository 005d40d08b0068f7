"""
The tunnel session as a sans-IO state machine.

L{SessionMachine} takes the bytes a carrier delivered and returns events; local
actions (open, send, close a stream) queue bytes that the caller takes with
L{SessionMachine.data_to_send} and writes to its carrier.  It knows nothing of
Twisted: every transport and every test drives this same code.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from attrs import define, field, frozen

from clusternet.tunnel._codec import (
    DEFAULT_MAX_FRAME,
    MAX_WINDOW,
    MAX_WINDOW_SIZE,
    PROTOCOL_VERSION,
    Data,
    ErrorCode,
    Fin,
    Frame,
    FrameDecoder,
    GoAway,
    Hello,
    Open,
    OpenFail,
    OpenFailReason,
    OpenOk,
    Ping,
    Pong,
    ProtocolError,
    Reset,
    WindowUpdate,
    data_header,
    encode,
    truncate_message,
)

__all__ = [
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "HandshakeCompleted",
    "LocalStreamError",
    "PingReceived",
    "PongReceived",
    "Role",
    "SessionMachine",
    "SessionTerminated",
    "StreamAccepted",
    "StreamEnded",
    "StreamOpenRequested",
    "StreamRejected",
    "StreamReset",
    "WindowOpened",
]


#: Round trips measured before windows are tuned (L{SessionMachine._retune}).
ROUND_TRIPS_TO_GROW = 3
#: The shortest time a stream's rate is measured over, in seconds.
GROWTH_INTERVAL = 0.005
#: The smallest window auto-tuning shrinks a stream's to.
MIN_AUTO_WINDOW = 64 * 1024


class Role(Enum):
    """
    The dialer opened the carrier (odd stream ids); the acceptor took it (even).
    """

    DIALER = 1
    ACCEPTOR = 2


class LocalStreamError(Exception):
    """
    A local action is not possible now (the message says why).
    """

    def __init__(self, reason: OpenFailReason | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# Events -------------------------------------------------------------------


@frozen
class HandshakeCompleted:
    peer: Hello


@frozen
class StreamOpenRequested:
    stream_id: int
    target: str


@frozen
class StreamAccepted:
    stream_id: int


@frozen
class StreamRejected:
    stream_id: int
    reason: int
    message: str


@frozen
class DataReceived:
    stream_id: int
    data: bytes = field(repr=lambda d: f"<{len(d)} bytes>")


@frozen
class StreamEnded:
    """
    The peer sent FIN; C{closed} is true when our side had finished too.
    """

    stream_id: int
    closed: bool


@frozen
class StreamReset:
    """
    The stream is gone: the peer reset it (C{local} false) or we did because the
    peer broke its flow control (C{local} true).
    """

    stream_id: int
    code: int
    message: str
    local: bool = False


@frozen
class WindowOpened:
    stream_id: int
    window: int


@frozen
class PingReceived:
    opaque: bytes


@frozen
class PongReceived:
    opaque: bytes


@frozen
class GoAwayReceived:
    last_stream_id: int
    code: int
    message: str


@frozen
class SessionTerminated:
    """
    The session is over; every stream is gone.  C{by_peer} tells who ended it.
    """

    code: int
    message: str
    by_peer: bool


Event = (
    HandshakeCompleted
    | StreamOpenRequested
    | StreamAccepted
    | StreamRejected
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | PingReceived
    | PongReceived
    | GoAwayReceived
    | SessionTerminated
)


# Streams ------------------------------------------------------------------


class _State(Enum):
    OPENING = 1
    OPEN = 2


@define(slots=True)
class _Stream:
    stream_id: int
    local: bool
    state: _State
    send_window: int
    receive_window: int
    unacknowledged: int = 0
    local_fin: bool = False
    remote_fin: bool = False
    #: The receive window granted in all: the initial window as tuned since.
    window_limit: int = 0
    #: Since when the stream's rate is measured, and the bytes credited since.
    epoch_start: float = 0.0
    epoch_bytes: int = 0


class SessionMachine:
    """
    One end of a tunnel session.

    @ivar peer: the peer's HELLO once it arrived.
    @ivar closed: the session is over (after a violation, a fatal GOAWAY or
        L{terminate}); nothing more is sent.
    @ivar going_away: GOAWAY was sent or received: no new streams.
    """

    def __init__(
        self,
        role: Role,
        hello: Hello | None = None,
        *,
        max_window: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """
        @param max_window: how far a stream's receive window may grow beyond
            C{hello.initial_window} (see L{_retune}); no further than the
            initial window when smaller.
        @param clock: seconds, for tuning windows; without one, and until
            L{rtt_sample} gave enough round trips, they keep their initial
            size.
        """
        self.role = role
        self.hello = hello if hello is not None else Hello()
        self.hello.validate()
        self.max_window = min(max(max_window, self.hello.initial_window), MAX_WINDOW)
        self.min_rtt: float | None = None
        self.rtt_samples = 0
        self._clock = clock
        self.peer: Hello | None = None
        self.closed = False
        self.going_away = False
        self.sent_goaway = False
        self.close_code: int | None = None
        self.close_message = ""
        self._decoder = FrameDecoder(self.hello.max_frame)
        self._streams: dict[int, _Stream] = {}
        self._outgoing: list[bytes | memoryview] = []
        self._next_id = 1 if role is Role.DIALER else 2
        self._last_local = 0
        self._last_remote = 0
        self._local_open = 0
        self._remote_open = 0
        self._send_frame_limit = DEFAULT_MAX_FRAME
        self.frames_received = 0
        self.frames_sent = 0
        self._emit(self.hello)

    # -- bookkeeping -----------------------------------------------------

    def _emit(self, frame: Frame) -> None:
        self._outgoing.append(encode(frame))
        self.frames_sent += 1

    def data_to_send(self) -> list[bytes | memoryview]:
        """
        The bytes queued since the last call (possibly empty): frame headers
        and payloads in order, as bytes or memoryviews of the payloads the
        caller passed to L{send_data}.
        """
        out = self._outgoing
        if out:
            self._outgoing = []
        return out

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    @property
    def handshake_done(self) -> bool:
        return self.peer is not None

    @property
    def drained(self) -> bool:
        """
        We sent GOAWAY and no stream is left: time to close the carrier.
        """
        return self.sent_goaway and not self._streams

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return 0 if stream is None else stream.send_window

    def _is_local_id(self, stream_id: int) -> bool:
        return (stream_id & 1) == (1 if self.role is Role.DIALER else 0)

    def _new_stream(self, stream_id: int, local: bool) -> _Stream:
        assert self.peer is not None
        window = self.hello.initial_window
        return _Stream(
            stream_id,
            local,
            _State.OPENING,
            self.peer.initial_window,
            window,
            window_limit=window,
            epoch_start=self._clock() if self._clock is not None else 0.0,
        )

    def _forget(self, stream: _Stream) -> None:
        del self._streams[stream.stream_id]
        if stream.local:
            self._local_open -= 1
        else:
            self._remote_open -= 1

    # -- local actions ---------------------------------------------------

    def open_stream(self, target: str) -> int:
        """
        Send OPEN for C{target}; return the new stream id.

        @raise LocalStreamError: the session cannot open a stream now.
        """
        if self.closed:
            raise LocalStreamError(None, "the tunnel session is closed")
        if self.going_away:
            raise LocalStreamError(
                OpenFailReason.GOING_AWAY, "the tunnel session is draining"
            )
        if self.peer is None:
            raise LocalStreamError(None, "the tunnel handshake is not complete")
        if self._local_open >= self.peer.max_streams:
            raise LocalStreamError(
                OpenFailReason.TOO_MANY,
                f"the peer allows {self.peer.max_streams} concurrent streams",
            )
        stream_id = self._next_id
        if stream_id > 0xFFFFFFFF:
            self.go_away(ErrorCode.NO_ERROR, "stream ids exhausted")
            raise LocalStreamError(OpenFailReason.GOING_AWAY, "stream ids exhausted")
        self._emit(Open(stream_id, target))
        self._next_id += 2
        self._last_local = stream_id
        self._streams[stream_id] = self._new_stream(stream_id, True)
        self._local_open += 1
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.local or stream.state is not _State.OPENING:
            return
        stream.state = _State.OPEN
        self._emit(OpenOk(stream_id))

    def refuse_stream(
        self, stream_id: int, reason: OpenFailReason, message: str = ""
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.local or stream.state is not _State.OPENING:
            return
        self._forget(stream)
        self._emit(OpenFail(stream_id, reason, truncate_message(message)))

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int:
        """
        Queue as much of C{data} as the stream's send window allows.

        The payload is queued as C{data} itself or as memoryview slices of it,
        never copied: C{data} must not change afterwards (bytes never do).

        @return: how many bytes were taken; the caller keeps the rest until a
            L{WindowOpened} event.
        @raise LocalStreamError: the stream is not open for sending.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.closed:
            raise LocalStreamError(None, "the stream is closed")
        if stream.state is not _State.OPEN or stream.local_fin:
            raise LocalStreamError(None, "the stream is not open for sending")
        size = len(data)
        taken = min(size, stream.send_window)
        if taken <= 0:
            return 0
        stream.send_window -= taken
        limit = self._send_frame_limit
        out = self._outgoing
        if taken <= limit:
            out.append(data_header(stream_id, taken))
            out.append(data if taken == size else memoryview(data)[:taken])
            self.frames_sent += 1
        else:
            view = memoryview(data)
            for start in range(0, taken, limit):
                end = min(start + limit, taken)
                out.append(data_header(stream_id, end - start))
                out.append(view[start:end])
                self.frames_sent += 1
        return taken

    def send_fin(self, stream_id: int) -> bool:
        """
        Half-close our side; return true when the stream is now fully closed.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.closed or stream.local_fin:
            return stream is None
        if stream.state is not _State.OPEN:
            raise LocalStreamError(None, "the stream is not open yet")
        stream.local_fin = True
        self._emit(Fin(stream_id))
        if stream.remote_fin:
            self._forget(stream)
            return True
        return False

    def reset_stream(
        self, stream_id: int, code: ErrorCode = ErrorCode.CANCEL, message: str = ""
    ) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._forget(stream)
        if not self.closed:
            self._emit(Reset(stream_id, code, truncate_message(message)))

    def consumed(self, stream_id: int, size: int) -> None:
        """
        The application consumed C{size} received bytes: return credit.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.closed or stream.remote_fin:
            return
        pending = stream.unacknowledged + size
        # Credit goes back once an eighth of the stream's window is consumed.
        if pending >= stream.window_limit >> 3:
            stream.unacknowledged = 0
            credit = pending + self._retune(stream, pending)
            if credit:
                stream.receive_window += credit
                self._emit(WindowUpdate(stream_id, credit))
        else:
            stream.unacknowledged = pending

    def rtt_sample(self, seconds: float) -> None:
        """
        A round trip of the carrier (a PING answered), for tuning windows.
        """
        if seconds < 0:
            return
        self.rtt_samples += 1
        if self.min_rtt is None or seconds < self.min_rtt:
            self.min_rtt = seconds

    def _retune(self, stream: _Stream, credited: int) -> int:
        """
        Receive-window auto-tuning: what to add to (or, negative, keep back
        from) the credit C{credited} that is about to be granted.

        A window needs to hold what the link carries in a round trip of the
        carrier, or the sender waits for credit; every byte more only queues
        ahead of a small message on the same carrier.  So each stream's rate
        (bytes credited) is measured over L{GROWTH_INTERVAL} or four round
        trips, whichever is longer (so that bytes consumed in a burst, a
        large read, do not look like a fast link), against the smallest
        round trip seen (so that the queue a large window builds does not
        make it grow further):

          - while the window is at most twice the bytes that rate carries in
            a round trip, it doubles, up to L{max_window};
          - while it is more than eight times that, it is cut by up to half
            (out of the credit about to be granted), down to
            L{MIN_AUTO_WINDOW} (or the initial window, if smaller): over a
            slow uplink a window of the initial size would sit whole in the
            carrier's queue.

        It settles between two and eight times the bytes in flight.  Nothing
        is decided before L{ROUND_TRIPS_TO_GROW} round trips (the first,
        of a process still starting, is often slow), nor over an interval
        the stream spent mostly idle.
        """
        rtt = self.min_rtt
        if self._clock is None or rtt is None or self.rtt_samples < ROUND_TRIPS_TO_GROW:
            return 0
        now = self._clock()
        stream.epoch_bytes += credited
        elapsed = now - stream.epoch_start
        interval = max(4 * rtt, GROWTH_INTERVAL)
        if elapsed < interval:
            return 0
        rate = stream.epoch_bytes / elapsed
        stream.epoch_start, stream.epoch_bytes = now, 0
        if elapsed > 4 * interval:
            # Idle for most of it: no measure of the link.
            return 0
        in_flight = rate * rtt
        limit = stream.window_limit
        if 2 * in_flight > limit and limit < self.max_window:
            extra = min(limit, self.max_window - limit)
            stream.window_limit += extra
            return extra
        floor = min(MIN_AUTO_WINDOW, self.hello.initial_window)
        if 8 * in_flight < limit and limit > floor:
            cut = min(limit // 2, limit - floor, credited)
            stream.window_limit -= cut
            return -cut
        return 0

    def ping(self, opaque: bytes) -> None:
        if not self.closed:
            self._emit(Ping(opaque))

    def go_away(self, code: ErrorCode = ErrorCode.NO_ERROR, message: str = "") -> None:
        """
        Announce a graceful drain: no new streams either way.
        """
        if self.closed or self.sent_goaway:
            return
        self.going_away = True
        self.sent_goaway = True
        self._emit(GoAway(self._last_remote, code, truncate_message(message)))

    def terminate(self, code: ErrorCode, message: str) -> SessionTerminated:
        """
        End the session now: queue a fatal GOAWAY and forget every stream.
        """
        if not self.closed:
            message = truncate_message(message)
            self._emit(GoAway(self._last_remote, code, message))
            self._close(code, message)
        return SessionTerminated(code, message, False)

    def _close(self, code: int, message: str) -> None:
        self.closed = True
        self.going_away = True
        self.close_code = code
        self.close_message = message
        self._streams.clear()
        self._local_open = self._remote_open = 0

    # -- input -----------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """
        Process bytes from the carrier; return what happened.
        """
        if self.closed:
            return []
        events: list[Event] = []
        try:
            frames = self._decoder.feed(data)
            self.frames_received += len(frames)
            for frame in frames:
                if type(frame) is Data:
                    self._on_data(frame, events)
                else:
                    self._on_frame(frame, events)
                if self.close_code is not None:
                    break
        except ProtocolError as error:
            events.append(self.terminate(error.code, error.message))
        return events

    def _stream_for(self, stream_id: int) -> _Stream | None:
        """
        The live stream, None for one that is gone, or raise for an id that
        was never opened.
        """
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        last = self._last_local if self._is_local_id(stream_id) else self._last_remote
        if stream_id > last:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"frame for unopened stream {stream_id}"
            )
        return None

    def _on_data(self, frame: Data, events: list[Event]) -> None:
        stream = self._stream_for(frame.stream_id)
        if stream is None:
            return
        if stream.state is not _State.OPEN or stream.remote_fin:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"DATA on stream {frame.stream_id} that is not open for it",
            )
        size = len(frame.data)
        if size > stream.receive_window:
            message = f"peer sent {size} bytes into a window of {stream.receive_window}"
            self.reset_stream(stream.stream_id, ErrorCode.FLOW_CONTROL_ERROR, message)
            events.append(
                StreamReset(
                    stream.stream_id, ErrorCode.FLOW_CONTROL_ERROR, message, True
                )
            )
            return
        stream.receive_window -= size
        events.append(DataReceived(frame.stream_id, frame.data))

    def _on_frame(self, frame: Frame, events: list[Event]) -> None:
        if self.peer is None:
            if not isinstance(frame, Hello):
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR, "the first frame must be HELLO"
                )
            if min(frame.version, PROTOCOL_VERSION) < 1:
                raise ProtocolError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"peer speaks version {frame.version}, we speak 1",
                )
            frame.validate()
            self.peer = frame
            self._send_frame_limit = frame.max_frame
            events.append(HandshakeCompleted(frame))
            return
        if isinstance(frame, WindowUpdate):
            stream = self._stream_for(frame.stream_id)
            if stream is None:
                return
            stream.send_window += frame.increment
            if stream.send_window > MAX_WINDOW_SIZE:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL_ERROR,
                    f"window of stream {frame.stream_id} overflowed",
                )
            if stream.state is _State.OPEN and not stream.local_fin:
                events.append(WindowOpened(frame.stream_id, stream.send_window))
        elif isinstance(frame, Open):
            self._on_open(frame, events)
        elif isinstance(frame, OpenOk | OpenFail):
            stream = self._stream_for(frame.stream_id)
            if stream is None:
                return
            if not stream.local or stream.state is not _State.OPENING:
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR,
                    f"unexpected open answer on stream {frame.stream_id}",
                )
            if isinstance(frame, OpenOk):
                stream.state = _State.OPEN
                events.append(StreamAccepted(frame.stream_id))
            else:
                self._forget(stream)
                events.append(
                    StreamRejected(frame.stream_id, frame.reason, frame.message)
                )
        elif isinstance(frame, Fin):
            stream = self._stream_for(frame.stream_id)
            if stream is None:
                return
            if stream.state is not _State.OPEN or stream.remote_fin:
                raise ProtocolError(
                    ErrorCode.PROTOCOL_ERROR, f"unexpected FIN on {frame.stream_id}"
                )
            stream.remote_fin = True
            done = stream.local_fin
            if done:
                self._forget(stream)
            events.append(StreamEnded(frame.stream_id, done))
        elif isinstance(frame, Reset):
            stream = self._stream_for(frame.stream_id)
            if stream is None:
                return
            self._forget(stream)
            events.append(StreamReset(frame.stream_id, frame.code, frame.message))
        elif isinstance(frame, Ping):
            self._emit(Pong(frame.opaque))
            events.append(PingReceived(frame.opaque))
        elif isinstance(frame, Pong):
            events.append(PongReceived(frame.opaque))
        elif isinstance(frame, GoAway):
            if frame.code != ErrorCode.NO_ERROR:
                self._close(frame.code, frame.message)
                events.append(SessionTerminated(frame.code, frame.message, True))
                return
            self.going_away = True
            events.append(
                GoAwayReceived(frame.last_stream_id, frame.code, frame.message)
            )
        elif isinstance(frame, Hello):
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "second HELLO")

    def _on_open(self, frame: Open, events: list[Event]) -> None:
        stream_id = frame.stream_id
        if self._is_local_id(stream_id) or stream_id <= self._last_remote:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"OPEN with invalid stream id {stream_id}"
            )
        self._last_remote = stream_id
        if self._remote_open >= self.hello.max_streams:
            raise ProtocolError(
                ErrorCode.STREAM_LIMIT,
                f"peer opened more than {self.hello.max_streams} streams",
            )
        if self.going_away:
            self._emit(
                OpenFail(stream_id, OpenFailReason.GOING_AWAY, "session is draining")
            )
            return
        self._streams[stream_id] = self._new_stream(stream_id, False)
        self._remote_open += 1
        events.append(StreamOpenRequested(stream_id, frame.target))
