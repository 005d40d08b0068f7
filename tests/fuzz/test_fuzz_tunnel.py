"""
Bounded fuzzing of the tunnel's wire parsers: the frame codec and the dialing
side of the HTTP upgrade (the long runs are fuzz/fuzz_tunnel_*.py).
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from fuzz_support import fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from clusternet.tunnel import TunnelClosed
from clusternet.tunnel._codec import (
    HEADER_SIZE,
    Data,
    ErrorCode,
    Fin,
    Frame,
    FrameDecoder,
    GoAway,
    Hello,
    Open,
    OpenFail,
    Ping,
    ProtocolError,
    Reset,
    WindowUpdate,
    encode,
)
from clusternet.tunnel._upgrade import _request_head, _Upgrader

LIMIT = 1024
stream_ids = st.integers(1, 0xFFFFFFFF)
messages = st.text(max_size=40)
frames = st.one_of(
    st.builds(
        Hello,
        capabilities=st.lists(st.sampled_from(["a", "batch"]), max_size=3).map(tuple),
    ),
    st.builds(Open, stream_ids, st.text(min_size=1, max_size=30)),
    st.builds(Data, stream_ids, st.binary(min_size=1, max_size=60)),
    st.builds(WindowUpdate, stream_ids, st.integers(1, 0xFFFFFFFF)),
    st.builds(Fin, stream_ids),
    st.builds(OpenFail, stream_ids, st.integers(0, 0xFFFFFFFF), messages),
    st.builds(Reset, stream_ids, st.integers(0, 0xFFFFFFFF), messages),
    st.builds(Ping, st.binary(min_size=8, max_size=8)),
    st.builds(GoAway, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), messages),
)


def decode(chunks: list[bytes]) -> tuple[list[Frame], ErrorCode | None]:
    decoder = FrameDecoder(max_frame=LIMIT)
    out: list[Frame] = []
    for chunk in chunks:
        try:
            out.extend(decoder.feed(chunk))
        except ProtocolError as e:
            return out, e.code
        assert decoder.buffered <= HEADER_SIZE + LIMIT
    return out, None


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@st.composite
def hostile_streams(draw: st.DrawFn) -> bytes:
    """
    Real frames, then bytes flipped, cut out or put in: near-valid input.
    """
    wire = bytearray(b"".join(encode(f) for f in draw(st.lists(frames, max_size=6))))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(wire)))
        action = draw(st.sampled_from(["flip", "cut", "put"]))
        if action == "flip" and position < len(wire):
            wire[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del wire[position : position + draw(st.integers(1, 12))]
        else:
            wire[position:position] = draw(st.binary(max_size=12))
    return bytes(wire)


@fuzz_settings
@given(
    st.one_of(hostile_streams(), st.binary(max_size=600)),
    st.lists(st.integers(0, 700), max_size=12),
)
def test_any_stream_decodes_alike_whole_or_split_or_raises_a_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    whole, whole_error = decode([data])
    pieces, pieces_error = decode(split(data, cuts))
    assert whole_error == pieces_error
    if whole_error is None:
        assert pieces == whole


@fuzz_settings
@given(hostile_streams())
def test_every_decoded_frame_encodes_back_to_itself(data: bytes) -> None:
    decoded, _ = decode([data])
    for frame in decoded:
        assert decode([encode(frame)]) == ([frame], None)


@fuzz_settings
@given(st.integers(LIMIT + 1, 0xFFFFFFFF), st.integers(0, 255), st.binary(max_size=64))
def test_a_frame_over_the_limit_is_refused_on_its_header(
    length: int, kind: int, payload: bytes
) -> None:
    header = length.to_bytes(4, "big") + bytes([kind, 0]) + (1).to_bytes(4, "big")
    assert decode([header + payload]) == ([], ErrorCode.FRAME_TOO_LARGE)


class _Session:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, carrier: object) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self, reason: Failure) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def _answer(data: bytes, cuts: list[int], ending: int) -> list[object]:
    clock = Clock()
    result: Deferred[Any] = Deferred()
    upgrader = _Upgrader(
        _request_head("https://hub/sockets/c1", {}),
        _Session,  # type: ignore[arg-type]
        result,
        clock,
    )
    upgrader.makeConnection(StringTransport())
    outcomes: list[object] = []
    result.addBoth(outcomes.append)
    for piece in split(data, cuts):
        upgrader.dataReceived(piece)
    if ending == 1:
        upgrader.connectionLost(Failure(ConnectionLost()))
    elif ending == 2:
        clock.advance(3600)
    assert len(outcomes) <= 1
    return outcomes


bodies = st.one_of(
    st.binary(max_size=200),
    st.integers(1, 4000).map(lambda n: b"[" * n),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["message", "code", "kind"]), inner, max_size=3
            )
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
)


@st.composite
def refusals(draw: st.DrawFn) -> bytes:
    code = draw(st.integers(100, 999))
    body = draw(bodies)
    length = draw(
        st.one_of(
            st.just(str(len(body))),
            st.sampled_from(["", "-1", "abc", "1" * 5000, " 7 ", "+3", "1_0"]),
        )
    )
    phrase = draw(
        st.one_of(
            st.sampled_from([b"Forbidden", b"", b"Not Found"]), st.binary(max_size=20)
        )
    )
    return (
        b"HTTP/1.1 %d " % code
        + phrase
        + b"\r\nContent-Length: "
        + length.encode()
        + b"\r\n\r\n"
        + body
    )


@fuzz_settings
@given(
    st.one_of(refusals(), st.binary(max_size=300)),
    st.lists(st.integers(0, 400), max_size=6),
    st.integers(0, 2),
)
def test_any_answer_to_the_upgrade_fails_with_tunnel_closed_or_waits(
    data: bytes, cuts: list[int], ending: int
) -> None:
    outcomes = _answer(data, cuts, ending)
    if outcomes and isinstance(outcomes[0], Failure):
        assert outcomes[0].check(TunnelClosed), outcomes[0]
        assert "\n" not in outcomes[0].getErrorMessage()
    if ending:
        assert outcomes


@fuzz_settings
@given(st.binary(max_size=300))
def test_the_fuzz_targets_accept_random_input(data: bytes) -> None:
    """
    The atheris targets' own checks hold on Hypothesis' input too.
    """
    for name in ("tunnel_codec", "tunnel_upgrade"):
        _targets.setdefault(name, load_target(name))(data)


_targets: dict[str, Any] = {}
