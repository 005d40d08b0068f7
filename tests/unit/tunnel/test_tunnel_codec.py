"""
The frame codec: round trips, limits, and arbitrary bytes.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.tunnel import (
    Data,
    ErrorCode,
    Fin,
    FrameDecoder,
    GoAway,
    Hello,
    Open,
    OpenFail,
    OpenOk,
    Ping,
    Pong,
    ProtocolError,
    Reset,
    WindowUpdate,
    encode,
)
from clusternet.tunnel._codec import HEADER_SIZE, data_header

ids = st.integers(1, 0xFFFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
messages = st.text(max_size=200)
frames = st.one_of(
    st.builds(
        Hello,
        st.integers(0, 0xFFFF),
        u32,
        u32,
        u32,
        st.lists(st.from_regex(r"[a-z0-9.\-]{1,12}", fullmatch=True), max_size=4).map(
            tuple
        ),
    ),
    st.builds(Open, ids, st.text(min_size=1, max_size=100)),
    st.builds(OpenOk, ids),
    st.builds(OpenFail, ids, u32, messages),
    st.builds(Data, ids, st.binary(min_size=1, max_size=5000)),
    st.builds(WindowUpdate, ids, st.integers(1, 0xFFFFFFFF)),
    st.builds(Fin, ids),
    st.builds(Reset, ids, u32, messages),
    st.builds(Ping, st.binary(min_size=8, max_size=8)),
    st.builds(Pong, st.binary(min_size=8, max_size=8)),
    st.builds(GoAway, u32, u32, messages),
)


@given(st.lists(frames, max_size=20), st.integers(1, 64))
def test_frames_round_trip_in_any_split(sequence: list, step: int) -> None:
    wire = b"".join(encode(f) for f in sequence)
    decoder = FrameDecoder()
    decoded = []
    for start in range(0, len(wire), step):
        decoded.extend(decoder.feed(wire[start : start + step]))
    assert decoded == sequence
    assert decoder.buffered == 0


@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 20000), max_size=30))
def test_frames_round_trip_split_at_arbitrary_points(
    sequence: list, cuts: list[int]
) -> None:
    wire = b"".join(encode(f) for f in sequence)
    points = [0, *sorted({min(cut, len(wire)) for cut in cuts}), len(wire)]
    decoder = FrameDecoder()
    decoded = []
    for start, end in itertools.pairwise(points):
        decoded.extend(decoder.feed(wire[start:end]))
    assert decoded == sequence
    assert decoder.buffered == 0


@pytest.mark.parametrize("first", range(1, HEADER_SIZE))
def test_frame_over_the_limit_is_refused_when_its_header_arrives_in_pieces(
    first: int,
) -> None:
    """
    The limit is checked as soon as the header is complete, before any of
    the payload that came with it is buffered.
    """
    decoder = FrameDecoder(max_frame=1024)
    header = data_header(1, 1025)
    assert decoder.feed(header[:first]) == []
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(header[first:] + b"x" * 500)
    assert raised.value.code is ErrorCode.FRAME_TOO_LARGE
    assert decoder.buffered <= HEADER_SIZE


def test_frame_completed_across_reads_is_validated() -> None:
    wire = data_header(0, 3) + b"abc"  # DATA on stream 0
    decoder = FrameDecoder()
    assert decoder.feed(wire[:12]) == []
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(wire[12:])
    assert raised.value.code is ErrorCode.PROTOCOL_ERROR


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_a_protocol_error(data: bytes) -> None:
    decoder = FrameDecoder(max_frame=1024)
    try:
        for frame in decoder.feed(data):
            assert encode(frame)
    except ProtocolError as error:
        assert isinstance(error.code, ErrorCode)


@given(st.binary(min_size=10, max_size=10), st.binary(max_size=64))
def test_any_header_with_payload_parses_or_raises_a_protocol_error(
    header: bytes, payload: bytes
) -> None:
    decoder = FrameDecoder(max_frame=64)
    try:
        decoder.feed(header + payload)
    except ProtocolError:
        pass


def test_frame_over_the_limit_is_refused_on_its_header() -> None:
    decoder = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(data_header(1, 1025))
    assert raised.value.code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "wire",
    [
        data_header(0, 3) + b"abc",  # DATA on stream 0
        encode(Ping(b"12345678"))[:4] + b"\x08\x00\x00\x00\x00\x07" + b"12345678",
        b"\x00\x00\x00\x00\x0f\x00\x00\x00\x00\x01",  # unknown type
        b"\x00\x00\x00\x01\x06\x00\x00\x00\x00\x01x",  # FIN with payload
        b"\x00\x00\x00\x04\x05\x00\x00\x00\x00\x01\x00\x00\x00\x00",  # window +0
        b"\x00\x00\x00\x02\x01\x00\x00\x00\x00\x01\xff\xfe",  # OPEN not UTF-8
    ],
)
def test_malformed_frames_are_protocol_errors(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as raised:
        FrameDecoder().feed(wire)
    assert raised.value.code is ErrorCode.PROTOCOL_ERROR


def test_large_data_frames_decode_without_losing_bytes() -> None:
    payload = bytes(range(256)) * 1024
    wire = encode(Data(3, payload)) * 3
    decoder = FrameDecoder(max_frame=len(payload))
    out = []
    for start in range(0, len(wire), 65536):
        out.extend(decoder.feed(wire[start : start + 65536]))
    assert out == [Data(3, payload)] * 3
