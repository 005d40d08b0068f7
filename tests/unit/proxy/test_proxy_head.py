"""
The response head parser used for Upgrade requests.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.proxy import HeadError, ResponseHead, ResponseHeadParser, serialize_head

TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
).map(str.encode)
VALUE = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip(b" \t")
)
HEADS = st.builds(
    ResponseHead,
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    code=st.integers(100, 599),
    phrase=st.sampled_from([b"", b"OK", b"Switching Protocols", b"Bad Request"]),
    headers=st.lists(st.tuples(TOKEN, VALUE), max_size=12).map(tuple),
)


def feed_in_pieces(data: bytes, cuts: list[int]) -> tuple[ResponseHead, bytes]:
    parser = ResponseHeadParser()
    positions = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(positions):
        result = parser.feed(data[start:end])
        if result is not None:
            head, rest = result
            return head, rest + data[end:]
    raise AssertionError("head never completed")


@given(HEADS, st.binary(max_size=100), st.lists(st.integers(0, 2000), max_size=8))
def test_any_split_of_a_serialized_head_parses_back(
    head: ResponseHead, rest: bytes, cuts: list[int]
) -> None:
    wire = serialize_head(head.version, head.code, head.phrase, list(head.headers))
    parsed, after = feed_in_pieces(wire + rest, cuts)
    assert parsed == head
    assert after == rest


@given(st.lists(st.binary(max_size=300), max_size=10))
def test_arbitrary_bytes_parse_or_raise_head_error_only(chunks: list[bytes]) -> None:
    parser = ResponseHeadParser(limit=2048)
    for chunk in chunks:
        try:
            result = parser.feed(chunk)
        except HeadError:
            return
        if result is not None:
            head, _ = result
            assert 100 <= head.code <= 999
            return


@given(st.binary(max_size=200))
def test_mangled_status_lines_are_rejected_or_valid(noise: bytes) -> None:
    parser = ResponseHeadParser()
    try:
        result = parser.feed(b"HTTP/1.1 " + noise + b"\r\nA: b\r\n\r\n")
    except HeadError:
        return
    if result is not None:
        assert result[0].code == int(noise[:3])


def test_a_101_head_and_the_bytes_after_it() -> None:
    parser = ResponseHeadParser()
    assert (
        parser.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r") is None
    )
    head, rest = parser.feed(b"\nConnection: Upgrade\r\n\r\n\x80\x03raw") or (None, b"")
    assert head is not None
    assert head.code == 101
    assert head.values(b"upgrade") == [b"SPDY/3.1"]
    assert head.values(b"CONNECTION") == [b"Upgrade"]
    assert rest == b"\x80\x03raw"


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
)
def test_malformed_heads_are_rejected(wire: bytes) -> None:
    with pytest.raises(HeadError):
        ResponseHeadParser().feed(wire)


def test_a_head_over_the_limit_is_rejected_without_waiting_for_its_end() -> None:
    parser = ResponseHeadParser(limit=1000)
    assert parser.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(HeadError):
        parser.feed(b"X-Long: " + b"a" * 1000)
