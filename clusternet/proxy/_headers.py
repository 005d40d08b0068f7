"""
Header policy of the reverse proxy (RFC 9110 section 7.6.1).

Hop-by-hop fields describe one connection and never cross the proxy: the
fixed set below plus every field the C{Connection} header names.  Callers add
their own policy on top: names to strip (exact, or a prefix ending in C{*})
and fields to set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from twisted.web.http_headers import Headers

__all__ = [
    "HOP_BY_HOP",
    "HeaderValues",
    "client_response_headers",
    "connection_tokens",
    "upgrade_token",
    "upstream_request_headers",
]

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Fields the proxy computes itself for the next hop.
_RECOMPUTED: frozenset[bytes] = frozenset({b"host", b"content-length", b"expect"})

HeaderValues = Headers | Mapping[bytes, bytes | Sequence[bytes]]


def _values(headers: Headers, name: bytes) -> list[bytes]:
    return list(headers.getRawHeaders(name, []))


def connection_tokens(headers: Headers) -> set[bytes]:
    """
    The lower-cased tokens of every C{Connection} field.
    """
    tokens = set()
    for value in _values(headers, b"connection"):
        for token in value.split(b","):
            token = token.strip(b" \t").lower()
            if token:
                tokens.add(token)
    return tokens


def upgrade_token(headers: Headers) -> bytes | None:
    """
    The C{Upgrade} value if these request headers ask for a protocol switch
    (C{Connection: upgrade} and an C{Upgrade} field), else L{None}.
    """
    if b"upgrade" not in connection_tokens(headers):
        return None
    values = [v.strip() for v in _values(headers, b"upgrade") if v.strip()]
    if not values:
        return None
    return b", ".join(values)


def _matcher(patterns: Iterable[bytes]) -> Callable[[bytes], bool]:
    exact = set()
    prefixes = []
    for pattern in patterns:
        lowered = pattern.lower()
        if lowered.endswith(b"*"):
            prefixes.append(lowered[:-1])
        else:
            exact.add(lowered)
    prefix_tuple = tuple(prefixes)

    def matches(name: bytes) -> bool:
        return name in exact or (bool(prefix_tuple) and name.startswith(prefix_tuple))

    return matches


def _as_headers(values: HeaderValues | None) -> Headers:
    if values is None:
        return Headers()
    if isinstance(values, Headers):
        return values
    result = Headers()
    for name, value in values.items():
        if isinstance(value, bytes):
            result.setRawHeaders(name, [value])
        else:
            result.setRawHeaders(name, list(value))
    return result


def _copy_end_to_end(
    source: Headers, drop: Callable[[bytes], bool], extra: Iterable[bytes] = ()
) -> Headers:
    named = connection_tokens(source) | set(extra)
    result = Headers()
    for name, values in source.getAllRawHeaders():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named or drop(lowered):
            continue
        result.setRawHeaders(name, list(values))
    return result


def upstream_request_headers(
    incoming: Headers,
    *,
    host: bytes,
    client_ip: str | None,
    proto: bytes,
    strip: Iterable[bytes] = (),
    set_headers: HeaderValues | None = None,
    upgrade: bytes | None = None,
    forwarded: bool = True,
) -> Headers:
    """
    The headers to send upstream for a request that came in with C{incoming}.

    Hop-by-hop fields and C{strip} are dropped; C{Host} becomes C{host};
    C{X-Forwarded-For} gains the client address, C{X-Forwarded-Proto} and
    C{X-Forwarded-Host} are set unless an earlier proxy set them; then
    C{set_headers} replace whatever is there.  With C{upgrade}, the request
    keeps asking the next hop for that protocol switch.
    """
    strip_match = _matcher(strip)
    original_host = incoming.getRawHeaders(b"host", [b""])[0]
    result = _copy_end_to_end(
        incoming, lambda name: name in _RECOMPUTED or strip_match(name)
    )
    if forwarded:
        if client_ip is not None and not strip_match(b"x-forwarded-for"):
            chain = _values(result, b"x-forwarded-for")
            joined = b", ".join([*chain, client_ip.encode("ascii", "replace")])
            result.setRawHeaders(b"x-forwarded-for", [joined])
        if not result.hasHeader(b"x-forwarded-proto"):
            result.setRawHeaders(b"x-forwarded-proto", [proto])
        if original_host and not result.hasHeader(b"x-forwarded-host"):
            result.setRawHeaders(b"x-forwarded-host", [original_host])
    for name, values in _as_headers(set_headers).getAllRawHeaders():
        result.setRawHeaders(name, list(values))
    if upgrade is not None:
        result.setRawHeaders(b"connection", [b"Upgrade"])
        result.setRawHeaders(b"upgrade", [upgrade])
    result.setRawHeaders(b"host", [host])
    return result


def client_response_headers(
    upstream: Headers,
    *,
    rewrite_location: Callable[[bytes], bytes] | None = None,
    upgrade: bool = False,
) -> Headers:
    """
    The headers to send to the client for a response that came with
    C{upstream}: hop-by-hop fields dropped (but C{Connection: Upgrade} and
    C{Upgrade} kept on a 101), C{Location} rewritten.
    """
    upgrade_value = _values(upstream, b"upgrade") if upgrade else []
    result = _copy_end_to_end(upstream, lambda name: False)
    if upgrade_value:
        result.setRawHeaders(b"connection", [b"Upgrade"])
        result.setRawHeaders(b"upgrade", upgrade_value)
    if rewrite_location is not None:
        locations = result.getRawHeaders(b"location")
        if locations:
            result.setRawHeaders(b"location", [rewrite_location(v) for v in locations])
    return result


def headers_from_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> Headers:
    """
    A L{Headers} from wire-order C{(name, value)} pairs.
    """
    result = Headers()
    for name, value in pairs:
        result.addRawHeader(name, value)
    return result
