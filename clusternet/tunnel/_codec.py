"""
The tunnel's frame codec: bytes to frames and frames to bytes, with no I/O.

The layout is in docs/tunnel-protocol.md.  Every malformed input raises
L{ProtocolError} carrying the error code the session sends in its GOAWAY.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from attrs import field, frozen

__all__ = [
    "DEFAULT_INITIAL_WINDOW",
    "DEFAULT_MAX_AUTO_WINDOW",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_STREAMS",
    "HEADER_SIZE",
    "MAX_MESSAGE",
    "MAX_TARGET",
    "PROTOCOL_VERSION",
    "Data",
    "ErrorCode",
    "Fin",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAway",
    "Hello",
    "Open",
    "OpenFail",
    "OpenFailReason",
    "OpenOk",
    "Ping",
    "Pong",
    "ProtocolError",
    "Reset",
    "WindowUpdate",
    "data_header",
    "encode",
    "truncate_message",
]

PROTOCOL_VERSION = 1
HEADER_SIZE = 10
MAX_TARGET = 1024
MAX_MESSAGE = 1024
# A stream's receive window: what one bulk stream can have in flight, and so
# what a small message beside it may wait behind (docs/tunnel-protocol.md,
# "Flow control").  It starts at 512 KiB, enough for loopback and a LAN, and
# grows where the round trip needs more, up to 8 MiB (160 MiB/s over 50 ms).
DEFAULT_INITIAL_WINDOW = 512 * 1024
DEFAULT_MAX_AUTO_WINDOW = 8 * 1024 * 1024
DEFAULT_MAX_FRAME = 256 * 1024
DEFAULT_MAX_STREAMS = 1024
MIN_WINDOW, MAX_WINDOW = 1024, 1 << 30
MIN_FRAME, MAX_FRAME = 1024, 16 * 1024 * 1024
MIN_STREAMS, MAX_STREAMS = 1, 65536
MAX_WINDOW_SIZE = (1 << 31) - 1

_HEADER = struct.Struct("!IBBI")
_U32 = struct.Struct("!I")
_TWO_U32 = struct.Struct("!II")
_HELLO = struct.Struct("!HIII")


class FrameType(IntEnum):
    HELLO = 0x0
    OPEN = 0x1
    OPEN_OK = 0x2
    OPEN_FAIL = 0x3
    DATA = 0x4
    WINDOW_UPDATE = 0x5
    FIN = 0x6
    RST = 0x7
    PING = 0x8
    PONG = 0x9
    GOAWAY = 0xA


class ErrorCode(IntEnum):
    """
    Codes carried by RST and GOAWAY.
    """

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    FRAME_TOO_LARGE = 4
    STREAM_LIMIT = 5
    PING_TIMEOUT = 6
    UNSUPPORTED_VERSION = 7
    CANCEL = 8
    CONNECTION_ERROR = 9


class OpenFailReason(IntEnum):
    """
    Why an OPEN was refused; the hub maps these to HTTP codes.
    """

    REFUSED = 1
    DIAL_FAILED = 2
    DIAL_TIMEOUT = 3
    BAD_TARGET = 4
    TOO_MANY = 5
    GOING_AWAY = 6
    NO_ACCEPTOR = 7

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    OpenFailReason.REFUSED: 403,
    OpenFailReason.DIAL_FAILED: 502,
    OpenFailReason.DIAL_TIMEOUT: 504,
    OpenFailReason.BAD_TARGET: 400,
    OpenFailReason.TOO_MANY: 503,
    OpenFailReason.GOING_AWAY: 503,
    OpenFailReason.NO_ACCEPTOR: 403,
}


class ProtocolError(Exception):
    """
    The peer broke the protocol; the session closes with C{code}.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def _u32(value: int) -> int:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit in 32 bits")
    return value


def _stream_id(instance: object, attribute: object, value: int) -> None:
    if not 0 < value <= 0xFFFFFFFF:
        raise ValueError(f"stream id {value} out of range")


def _message(instance: object, attribute: object, value: str) -> None:
    if len(value.encode("utf-8")) > MAX_MESSAGE:
        raise ValueError("message longer than 1024 bytes")


def truncate_message(message: str) -> str:
    """
    C{message} cut to fit the protocol's 1024-byte limit.
    """
    encoded = message.encode("utf-8")
    if len(encoded) <= MAX_MESSAGE:
        return message
    return encoded[:MAX_MESSAGE].decode("utf-8", "ignore")


@frozen
class Hello:
    version: int = PROTOCOL_VERSION
    initial_window: int = DEFAULT_INITIAL_WINDOW
    max_frame: int = DEFAULT_MAX_FRAME
    max_streams: int = DEFAULT_MAX_STREAMS
    capabilities: tuple[str, ...] = ()

    def validate(self) -> None:
        """
        Raise L{ProtocolError} when the advertised limits are out of bounds.
        """
        if not MIN_WINDOW <= self.initial_window <= MAX_WINDOW:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"initial window {self.initial_window} out of bounds",
            )
        if not MIN_FRAME <= self.max_frame <= MAX_FRAME:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"max frame {self.max_frame} out of bounds"
            )
        if not MIN_STREAMS <= self.max_streams <= MAX_STREAMS:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"max streams {self.max_streams} out of bounds",
            )


@frozen
class Open:
    stream_id: int = field(validator=_stream_id)
    target: str = field()

    @target.validator
    def _check(self, attribute: object, value: str) -> None:
        if not 0 < len(value.encode("utf-8")) <= MAX_TARGET:
            raise ValueError("target must be 1..1024 bytes")


@frozen
class OpenOk:
    stream_id: int = field(validator=_stream_id)


@frozen
class OpenFail:
    stream_id: int = field(validator=_stream_id)
    reason: int = field(converter=_u32)
    message: str = field(default="", validator=_message)


@frozen
class Data:
    stream_id: int = field(validator=_stream_id)
    data: bytes = field(repr=lambda d: f"<{len(d)} bytes>")


@frozen
class WindowUpdate:
    stream_id: int = field(validator=_stream_id)
    increment: int = field()

    @increment.validator
    def _check(self, attribute: object, value: int) -> None:
        if not 0 < value <= 0xFFFFFFFF:
            raise ValueError("increment must be 1..2**32-1")


@frozen
class Fin:
    stream_id: int = field(validator=_stream_id)


@frozen
class Reset:
    stream_id: int = field(validator=_stream_id)
    code: int = field(converter=_u32)
    message: str = field(default="", validator=_message)


@frozen
class Ping:
    opaque: bytes = field()

    @opaque.validator
    def _check(self, attribute: object, value: bytes) -> None:
        if len(value) != 8:
            raise ValueError("ping payload is 8 bytes")


@frozen
class Pong:
    opaque: bytes = field()

    @opaque.validator
    def _check(self, attribute: object, value: bytes) -> None:
        if len(value) != 8:
            raise ValueError("pong payload is 8 bytes")


@frozen
class GoAway:
    last_stream_id: int = field(converter=_u32)
    code: int = field(converter=_u32)
    message: str = field(default="", validator=_message)


Frame = (
    Hello
    | Open
    | OpenOk
    | OpenFail
    | Data
    | WindowUpdate
    | Fin
    | Reset
    | Ping
    | Pong
    | GoAway
)


def _header(kind: FrameType, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(length, kind, 0, stream_id)


def data_header(stream_id: int, length: int) -> bytes:
    """
    The header of a DATA frame, so that a payload can be written without a copy.
    """
    return _HEADER.pack(length, FrameType.DATA, 0, stream_id)


def encode(frame: Frame) -> bytes:
    """
    The bytes of one frame.
    """
    if isinstance(frame, Data):
        return data_header(frame.stream_id, len(frame.data)) + frame.data
    if isinstance(frame, WindowUpdate):
        return _header(FrameType.WINDOW_UPDATE, frame.stream_id, 4) + _U32.pack(
            frame.increment
        )
    if isinstance(frame, Open):
        target = frame.target.encode("utf-8")
        return _header(FrameType.OPEN, frame.stream_id, len(target)) + target
    if isinstance(frame, OpenOk):
        return _header(FrameType.OPEN_OK, frame.stream_id, 0)
    if isinstance(frame, OpenFail):
        message = frame.message.encode("utf-8")
        return (
            _header(FrameType.OPEN_FAIL, frame.stream_id, 4 + len(message))
            + _U32.pack(frame.reason)
            + message
        )
    if isinstance(frame, Fin):
        return _header(FrameType.FIN, frame.stream_id, 0)
    if isinstance(frame, Reset):
        message = frame.message.encode("utf-8")
        return (
            _header(FrameType.RST, frame.stream_id, 4 + len(message))
            + _U32.pack(frame.code)
            + message
        )
    if isinstance(frame, Ping):
        return _header(FrameType.PING, 0, 8) + frame.opaque
    if isinstance(frame, Pong):
        return _header(FrameType.PONG, 0, 8) + frame.opaque
    if isinstance(frame, GoAway):
        message = frame.message.encode("utf-8")
        return (
            _header(FrameType.GOAWAY, 0, 8 + len(message))
            + _TWO_U32.pack(frame.last_stream_id, frame.code)
            + message
        )
    capabilities = " ".join(frame.capabilities).encode("ascii")
    body = (
        _HELLO.pack(
            frame.version, frame.initial_window, frame.max_frame, frame.max_streams
        )
        + capabilities
    )
    return _header(FrameType.HELLO, 0, len(body)) + body


def _text(payload: bytes, what: str) -> str:
    if len(payload) > MAX_MESSAGE:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} longer than 1024 bytes")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"{what} is not UTF-8") from None


def _decode(kind: int, stream_id: int, payload: bytes) -> Frame:
    if kind == FrameType.DATA:
        if stream_id == 0 or not payload:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "bad DATA frame")
        return Data(stream_id, payload)
    if kind == FrameType.WINDOW_UPDATE:
        if stream_id == 0 or len(payload) != 4:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "bad WINDOW_UPDATE frame")
        (increment,) = _U32.unpack(payload)
        if increment == 0:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of zero")
        return WindowUpdate(stream_id, increment)
    if kind in (FrameType.PING, FrameType.PONG, FrameType.HELLO, FrameType.GOAWAY):
        if stream_id != 0:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR,
                f"{FrameType(kind).name} frame on stream {stream_id}",
            )
        if kind == FrameType.PING or kind == FrameType.PONG:
            if len(payload) != 8:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "bad PING/PONG frame")
            return Ping(payload) if kind == FrameType.PING else Pong(payload)
        if kind == FrameType.GOAWAY:
            if len(payload) < 8:
                raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "short GOAWAY frame")
            last, code = _TWO_U32.unpack_from(payload)
            return GoAway(last, code, _text(payload[8:], "GOAWAY message"))
        if len(payload) < _HELLO.size:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "short HELLO frame")
        version, window, max_frame, max_streams = _HELLO.unpack_from(payload)
        try:
            words = payload[_HELLO.size :].decode("ascii").split()
        except UnicodeDecodeError:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, "HELLO capabilities are not ASCII"
            ) from None
        return Hello(version, window, max_frame, max_streams, tuple(words))
    if stream_id == 0:
        raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"frame type {kind} on stream 0")
    if kind == FrameType.OPEN:
        if not 0 < len(payload) <= MAX_TARGET:
            raise ProtocolError(ErrorCode.PROTOCOL_ERROR, "OPEN target length")
        try:
            return Open(stream_id, payload.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, "OPEN target is not UTF-8"
            ) from None
    if kind == FrameType.OPEN_OK or kind == FrameType.FIN:
        if payload:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"{FrameType(kind).name} with a payload"
            )
        return OpenOk(stream_id) if kind == FrameType.OPEN_OK else Fin(stream_id)
    if kind == FrameType.OPEN_FAIL or kind == FrameType.RST:
        if len(payload) < 4:
            raise ProtocolError(
                ErrorCode.PROTOCOL_ERROR, f"short {FrameType(kind).name} frame"
            )
        (code,) = _U32.unpack_from(payload)
        message = _text(payload[4:], "message")
        if kind == FrameType.OPEN_FAIL:
            return OpenFail(stream_id, code, message)
        return Reset(stream_id, code, message)
    raise ProtocolError(ErrorCode.PROTOCOL_ERROR, f"unknown frame type {kind}")


class FrameDecoder:
    """
    Incremental decoder: feed it bytes as they arrive, get whole frames back.

    The payload limit is checked on the header, before any payload is buffered,
    so a peer cannot make us hold more than one maximal frame.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """
        Add C{data}; return the frames it completes.

        Each payload is copied once, out of C{data} (or out of the buffer for
        a frame that spans calls); only the unfinished frame at the end is
        kept, and only as many bytes as it needs are taken into the buffer.

        @raise ProtocolError: the bytes are not a valid frame sequence; the
            decoder is then unusable.
        """
        frames: list[Frame] = []
        total = len(data)
        position = 0
        max_frame = self.max_frame
        buffer = self._buffer
        with memoryview(data) as view:
            if buffer:
                held = len(buffer)
                if held < HEADER_SIZE:
                    position = min(HEADER_SIZE - held, total)
                    buffer += view[:position]
                    if len(buffer) < HEADER_SIZE:
                        return frames
                length, kind, _flags, stream_id = _HEADER.unpack_from(buffer)
                if length > max_frame:
                    raise ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"frame of {length} bytes exceeds the limit of {max_frame}",
                    )
                need = HEADER_SIZE + length - len(buffer)
                if total - position < need:
                    buffer += view[position:]
                    return frames
                buffer += view[position : position + need]
                position += need
                with memoryview(buffer) as held_view:
                    payload = bytes(held_view[HEADER_SIZE:])
                buffer.clear()
                frames.append(_frame(kind, stream_id, payload))
            unpack = _HEADER.unpack_from
            while total - position >= HEADER_SIZE:
                length, kind, _flags, stream_id = unpack(data, position)
                if length > max_frame:
                    raise ProtocolError(
                        ErrorCode.FRAME_TOO_LARGE,
                        f"frame of {length} bytes exceeds the limit of {max_frame}",
                    )
                end = position + HEADER_SIZE + length
                if end > total:
                    break
                start = position + HEADER_SIZE
                if kind == FrameType.DATA and stream_id and length:
                    frames.append(Data(stream_id, bytes(view[start:end])))
                else:
                    frames.append(_decode(kind, stream_id, bytes(view[start:end])))
                position = end
            if position < total:
                buffer += view[position:]
        return frames


def _frame(kind: int, stream_id: int, payload: bytes) -> Frame:
    if kind == FrameType.DATA and stream_id and payload:
        return Data(stream_id, payload)
    return _decode(kind, stream_id, payload)
