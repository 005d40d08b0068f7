"""
The proxy's header policy (RFC 9110 hop-by-hop fields, strip/set, forwarding).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted.web.http_headers import Headers

from clusternet.proxy import (
    HOP_BY_HOP,
    client_response_headers,
    connection_tokens,
    upgrade_token,
    upstream_request_headers,
)


def headers(**fields: list[bytes]) -> Headers:
    result = Headers()
    for name, values in fields.items():
        result.setRawHeaders(name.replace("_", "-").encode(), values)
    return result


def forward(incoming: Headers, **kwargs: object) -> Headers:
    options: dict[str, object] = {
        "host": b"child.test",
        "client_ip": "10.1.2.3",
        "proto": b"https",
    }
    options.update(kwargs)
    return upstream_request_headers(incoming, **options)  # type: ignore[arg-type]


def test_hop_by_hop_and_connection_named_fields_are_dropped() -> None:
    result = forward(
        headers(
            Connection=[b"keep-alive, X-Hop", b"x-other-hop"],
            X_Hop=[b"1"],
            X_Other_Hop=[b"2"],
            Keep_Alive=[b"timeout=5"],
            TE=[b"trailers"],
            Trailer=[b"X-T"],
            Transfer_Encoding=[b"chunked"],
            Proxy_Authorization=[b"Basic x"],
            Upgrade=[b"websocket"],
            Content_Length=[b"12"],
            Expect=[b"100-continue"],
            Accept=[b"application/json"],
        )
    )
    names = {name.lower() for name, _ in result.getAllRawHeaders()}
    assert names == {
        b"accept",
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
    }
    assert result.getRawHeaders(b"host") == [b"child.test"]


def test_strip_exact_and_prefix_then_set() -> None:
    result = forward(
        headers(
            Authorization=[b"Bearer parent"],
            X_Remote_User=[b"alice"],
            X_Remote_Extra_Scopes=[b"a", b"b"],
            X_Remotely=[b"kept"],
        ),
        strip=[b"Authorization", b"X-Remote-*"],
        set_headers={b"X-Remote-User": b"bob", b"X-Remote-Group": [b"g1", b"g2"]},
    )
    assert not result.hasHeader(b"authorization")
    assert not result.hasHeader(b"x-remote-extra-scopes")
    assert result.getRawHeaders(b"x-remote-user") == [b"bob"]
    assert result.getRawHeaders(b"x-remote-group") == [b"g1", b"g2"]
    assert result.getRawHeaders(b"x-remotely") == [b"kept"]


def test_forwarded_headers_append_and_keep_earlier_proxies_values() -> None:
    result = forward(
        headers(
            X_Forwarded_For=[b"192.0.2.1"],
            X_Forwarded_Proto=[b"http"],
            Host=[b"parent.test:6443"],
        )
    )
    assert result.getRawHeaders(b"x-forwarded-for") == [b"192.0.2.1, 10.1.2.3"]
    assert result.getRawHeaders(b"x-forwarded-proto") == [b"http"]
    assert result.getRawHeaders(b"x-forwarded-host") == [b"parent.test:6443"]
    plain = forward(headers(Host=[b"h"]), forwarded=False)
    assert not plain.hasHeader(b"x-forwarded-for")


def test_upgrade_is_kept_only_when_asked() -> None:
    incoming = headers(Connection=[b"Upgrade"], Upgrade=[b"SPDY/3.1"])
    assert upgrade_token(incoming) == b"SPDY/3.1"
    result = forward(incoming, upgrade=b"SPDY/3.1")
    assert result.getRawHeaders(b"connection") == [b"Upgrade"]
    assert result.getRawHeaders(b"upgrade") == [b"SPDY/3.1"]
    assert upgrade_token(headers(Upgrade=[b"websocket"])) is None
    assert upgrade_token(headers(Connection=[b"upgrade"])) is None


def test_response_headers_location_and_upgrade() -> None:
    upstream = headers(
        Location=[b"https://child/api/v1/x"],
        Keep_Alive=[b"timeout=1"],
        Connection=[b"Upgrade"],
        Upgrade=[b"websocket"],
        Sec_WebSocket_Accept=[b"abc"],
    )
    result = client_response_headers(
        upstream, rewrite_location=lambda v: v.replace(b"https://child", b"/p")
    )
    assert result.getRawHeaders(b"location") == [b"/p/api/v1/x"]
    assert not result.hasHeader(b"upgrade")
    assert not result.hasHeader(b"keep-alive")
    switched = client_response_headers(upstream, upgrade=True)
    assert switched.getRawHeaders(b"upgrade") == [b"websocket"]
    assert switched.getRawHeaders(b"connection") == [b"Upgrade"]
    assert switched.getRawHeaders(b"sec-websocket-accept") == [b"abc"]


NAMES = st.sampled_from(
    [n.decode() for n in HOP_BY_HOP]
    + ["X-A", "X-B", "Accept", "Authorization", "X-Remote-User", "Cookie"]
).map(str.encode)


@given(
    st.lists(st.tuples(NAMES, st.binary(min_size=1, max_size=20)), max_size=15),
    st.lists(NAMES, max_size=3),
)
def test_no_hop_by_hop_field_ever_reaches_the_upstream(
    fields: list[tuple[bytes, bytes]], connection: list[bytes]
) -> None:
    incoming = Headers()
    for name, value in fields:
        incoming.addRawHeader(name, value.replace(b"\r", b"").replace(b"\n", b""))
    if connection:
        incoming.addRawHeader(b"Connection", b", ".join(connection))
    named = connection_tokens(incoming)
    result = forward(incoming)
    for name, _ in result.getAllRawHeaders():
        lowered = name.lower()
        assert lowered not in HOP_BY_HOP
        assert lowered not in named
