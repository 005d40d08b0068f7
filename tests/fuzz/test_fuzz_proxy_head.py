"""
Bounded fuzzing of the proxy's response head parser and serializer and of the
header policy applied to what it parsed (the long run is
fuzz/fuzz_proxy_head.py).
"""

from __future__ import annotations

from itertools import pairwise

from fuzz_support import fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from clusternet.proxy._head import (
    HeadError,
    ResponseHead,
    ResponseHeadParser,
    serialize_head,
)
from clusternet.proxy._headers import (
    HOP_BY_HOP,
    client_response_headers,
    connection_tokens,
    headers_from_pairs,
    upstream_request_headers,
)

TOKEN = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
).map(str.encode)
NAMES = st.one_of(
    TOKEN,
    st.sampled_from(
        [
            b"Connection",
            b"Upgrade",
            b"Keep-Alive",
            b"TE",
            b"Transfer-Encoding",
            b"X-Hop",
            b"Content-Length",
            b"Location",
        ]
    ),
)
VALUES = st.binary(max_size=30).map(
    lambda v: bytes(c for c in v if c >= 0x20 and c != 0x7F).strip(b" \t")
)
HEADS = st.builds(
    ResponseHead,
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
    code=st.integers(0, 999),
    phrase=VALUES,
    headers=st.lists(st.tuples(NAMES, VALUES), max_size=8).map(tuple),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    head = draw(HEADS)
    wire = bytearray(
        serialize_head(head.version, head.code, head.phrase, list(head.headers))
    )
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(wire)))
        wire[position:position] = draw(
            st.sampled_from(
                [b"\r", b"\n", b"\x00", b" ", b":", b"\r\n", b"\t", b"\x7f", b"\xff"]
            )
        )
    return bytes(wire) + draw(st.binary(max_size=20))


@fuzz_settings
@given(
    st.one_of(mangled(), st.binary(max_size=400)),
    st.lists(st.integers(0, 500), max_size=8),
    st.integers(16, 600),
)
def test_any_answer_parses_to_a_head_that_round_trips_or_raises_head_error(
    data: bytes, cuts: list[int], limit: int
) -> None:
    parser = ResponseHeadParser(limit=limit)
    fed = b""
    try:
        for piece in split(data, cuts):
            fed += piece
            parsed = parser.feed(piece)
            if parsed is not None:
                break
        else:
            assert b"\r\n\r\n" not in data
            assert len(data) <= limit
            return
    except HeadError:
        return
    head, rest = parsed
    end = fed.index(b"\r\n\r\n")
    assert end + 4 <= limit
    assert rest == fed[end + 4 :]
    wire = serialize_head(head.version, head.code, head.phrase, list(head.headers))
    assert ResponseHeadParser(limit=len(wire)).feed(wire) == (head, b"")


@fuzz_settings
@given(HEADS)
def test_no_hop_by_hop_field_passes_the_policy_either_way(head: ResponseHead) -> None:
    headers = headers_from_pairs(head.headers)
    named = connection_tokens(headers)
    upstream = upstream_request_headers(
        headers, host=b"h", client_ip="10.0.0.1", proto=b"https"
    )
    response = client_response_headers(headers)
    for result in (upstream, response):
        for name, _ in result.getAllRawHeaders():
            assert name.lower() not in HOP_BY_HOP | named


@fuzz_settings
@given(st.binary(max_size=400))
def test_the_fuzz_target_accepts_random_input(data: bytes) -> None:
    TARGET(data)


TARGET = load_target("proxy_head")
