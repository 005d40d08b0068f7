"""
Fuzz target: the proxy's HTTP/1.x response head parser and serializer
(L{clusternet.proxy._head}) and the header policy applied to what it parsed
(L{clusternet.proxy._headers}).

Feeds: arbitrary bytes as an upstream's answer to an upgrade request, in
pieces of the size the first byte chooses, to a parser with a 2 KiB limit.

A crash is: any exception but L{HeadError}; a head accepted past the limit;
bytes after the head lost; a parsed head that does not serialize and parse
back to itself; the header policy raising, or letting a hop-by-hop field
through.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.proxy._head import HeadError, ResponseHeadParser, serialize_head
    from clusternet.proxy._headers import (
        HOP_BY_HOP,
        client_response_headers,
        connection_tokens,
        headers_from_pairs,
        upgrade_token,
        upstream_request_headers,
    )

LIMIT = 2048


def _check_policy(pairs: tuple[tuple[bytes, bytes], ...]) -> None:
    headers = headers_from_pairs(pairs)
    named = connection_tokens(headers)
    upgrade_token(headers)
    upstream = upstream_request_headers(
        headers, host=b"backend", client_ip="10.0.0.1", proto=b"https"
    )
    response = client_response_headers(headers, rewrite_location=lambda v: v)
    for result in (upstream, response):
        for name, _ in result.getAllRawHeaders():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered in named:
                raise AssertionError(f"hop-by-hop field {name!r} forwarded")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 64 + 1, data[1:]
    parser = ResponseHeadParser(limit=LIMIT)
    parsed = None
    fed = 0
    try:
        for i in range(0, len(stream), step):
            fed = i + step
            parsed = parser.feed(stream[i:fed])
            if parsed is not None:
                break
    except HeadError:
        return
    if parsed is None:
        if len(stream) > LIMIT:
            raise AssertionError("more than the limit buffered without an error")
        return
    head, rest = parsed
    end = stream.find(b"\r\n\r\n")
    if end < 0 or end + 4 > LIMIT or rest != stream[end + 4 : fed]:
        raise AssertionError("the head ends elsewhere than at its empty line")
    wire = serialize_head(head.version, head.code, head.phrase, list(head.headers))
    again = ResponseHeadParser(limit=len(wire)).feed(wire)
    if again != (head, b""):
        raise AssertionError(f"{head!r} does not round-trip: {again!r}")
    _check_policy(head.headers)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
