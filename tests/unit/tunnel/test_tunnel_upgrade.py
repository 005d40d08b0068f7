"""
The HTTP upgrade carrier's dialing side, sans network: the request it sends,
how it reads the answer (101, refusals, garbage, silence) and what it hands
to the session.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from clusternet.tunnel import (
    UPGRADE_PROTOCOL,
    TunnelClosed,
    UpgradeNotSupported,
    is_tunnel_upgrade,
)
from clusternet.tunnel._upgrade import (
    UPGRADE_TIMEOUT,
    _refusal_message,
    _request_head,
    _Upgrader,
)

URL = "https://parent:6443/apis/proxies.clusternet.io/v1alpha1/sockets/c1"


class Session:
    """
    What the carrier needs of a session, recording what it got.
    """

    def __init__(self) -> None:
        self.carrier: Any = None
        self.received: list[bytes] = []
        self.lost: Failure | None = None

    def connection_made(self, carrier: Any) -> None:
        self.carrier = carrier

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self, reason: Failure) -> None:
        self.lost = reason

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.result: Deferred[Any] = Deferred()
        self.outcome: list[Any] = []
        self.result.addBoth(self.outcome.append)
        self.sessions: list[Session] = []
        self.upgrader = _Upgrader(
            _request_head(URL, {"Authorization": "Bearer t0ken"}),
            self.new_session,
            self.result,
            self.clock,
        )
        self.transport = StringTransport()
        self.upgrader.makeConnection(self.transport)

    def new_session(self) -> Any:
        session = Session()
        self.sessions.append(session)
        return session

    def failure(self) -> Failure:
        assert len(self.outcome) == 1 and isinstance(self.outcome[0], Failure)
        failure: Failure = self.outcome[0]
        return failure


def _response(code: int, phrase: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"HTTP/1.1 {code} {phrase}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


SWITCHED = _response(
    101,
    "Switching Protocols",
    {"Connection": "Upgrade", "Upgrade": UPGRADE_PROTOCOL},
    b"",
)


def test_the_request_asks_for_the_upgrade() -> None:
    harness = Harness()
    sent = harness.transport.value()
    lines = sent.split(b"\r\n")
    assert lines[0] == b"GET /apis/proxies.clusternet.io/v1alpha1/sockets/c1 HTTP/1.1"
    assert b"Host: parent:6443" in lines
    assert b"Connection: Upgrade" in lines
    assert b"Upgrade: clusternet-tunnel.v1" in lines
    assert b"Authorization: Bearer t0ken" in lines
    assert sent.endswith(b"\r\n\r\n")


def test_a_header_value_with_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as caught:
        _request_head(URL, {"Authorization": "Bearer se\r\ncret"})
    assert "cret" not in str(caught.value)
    assert "Authorization" in str(caught.value)


def test_switching_hands_the_rest_to_a_new_session() -> None:
    harness = Harness()
    assert harness.sessions == []
    harness.upgrader.dataReceived(SWITCHED[:20])
    harness.upgrader.dataReceived(SWITCHED[20:] + b"first frames")
    assert len(harness.sessions) == 1
    session = harness.sessions[0]
    assert harness.outcome == [session]
    assert session.carrier is not None
    assert session.received == [b"first frames"]
    harness.upgrader.dataReceived(b"more")
    assert session.received[-1] == b"more"
    harness.upgrader.connectionLost(Failure(ConnectionDone()))
    assert session.lost is not None
    assert harness.clock.getDelayedCalls() == []


def _status(code: int, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "code": code,
        }
    ).encode()


def test_a_refusal_carries_the_status_message() -> None:
    harness = Harness()
    body = _status(403, 'sockets "c2" is forbidden')
    response = _response(403, "Forbidden", {"Content-Length": str(len(body))}, body)
    harness.upgrader.dataReceived(response[:-10])
    assert harness.outcome == []
    harness.upgrader.dataReceived(response[-10:])
    error = harness.failure().value
    assert isinstance(error, UpgradeNotSupported)
    assert str(error).endswith(
        'tunnel upgrade refused (403 Forbidden): sockets "c2" is forbidden.'
    )
    assert harness.transport.disconnecting or harness.transport.disconnected
    assert harness.sessions == []


@pytest.mark.parametrize("code", [200, 302, 400, 403, 404, 405, 426, 501])
def test_an_answer_from_a_server_without_the_carrier_allows_a_fall_back(
    code: int,
) -> None:
    harness = Harness()
    harness.upgrader.dataReceived(
        _response(code, "Whatever", {"Content-Length": "2"}, b"{}")
    )
    error = harness.failure().value
    assert isinstance(error, UpgradeNotSupported)
    assert error.code == code


@pytest.mark.parametrize("code", [401, 429, 500, 502, 503])
def test_other_refusals_do_not_fall_back(code: int) -> None:
    harness = Harness()
    harness.upgrader.dataReceived(_response(code, "No", {"Content-Length": "0"}, b""))
    error = harness.failure().value
    assert isinstance(error, TunnelClosed)
    assert not isinstance(error, UpgradeNotSupported)


def test_a_refusal_without_a_length_ends_with_the_connection() -> None:
    harness = Harness()
    harness.upgrader.dataReceived(_response(503, "Service Unavailable", {}, b"hub "))
    harness.upgrader.dataReceived(b"is down")
    assert harness.outcome == []
    harness.upgrader.connectionLost(Failure(ConnectionDone()))
    assert str(harness.failure().value).endswith(
        "(503 Service Unavailable): hub is down."
    )


def test_a_refusal_whose_body_stalls_ends_after_a_wait() -> None:
    harness = Harness()
    harness.upgrader.dataReceived(
        _response(403, "Forbidden", {"Content-Length": "100"}, b"partial")
    )
    harness.clock.advance(5)
    assert "(403 Forbidden): partial" in str(harness.failure().value)


def test_switching_to_another_protocol_fails() -> None:
    harness = Harness()
    harness.upgrader.dataReceived(
        _response(101, "Switching Protocols", {"Upgrade": "websocket"}, b"")
    )
    assert "another protocol" in str(harness.failure().value)
    assert harness.sessions == []


def test_no_answer_times_out() -> None:
    harness = Harness()
    harness.clock.advance(UPGRADE_TIMEOUT - 1)
    assert harness.outcome == []
    harness.clock.advance(1)
    assert "no answer to the tunnel upgrade within 30 s" in str(harness.failure().value)
    assert harness.transport.disconnecting or harness.transport.disconnected


def test_garbage_fails_cleanly() -> None:
    harness = Harness()
    harness.upgrader.dataReceived(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    assert "bad answer to the tunnel upgrade" in str(harness.failure().value)


def test_the_connection_closing_before_an_answer_fails() -> None:
    harness = Harness()
    harness.upgrader.dataReceived(b"HTTP/1.1 10")
    harness.upgrader.connectionLost(Failure(ConnectionLost("gone")))
    assert "closed before the tunnel upgrade was answered" in str(
        harness.failure().value
    )
    assert harness.clock.getDelayedCalls() == []


@settings(max_examples=300, deadline=None)
@given(
    answer=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda code, body, cut: _response(
                code, "X", {"Content-Length": str(len(body))}, body
            )[: cut or None],
            st.integers(100, 599),
            st.binary(max_size=200),
            st.integers(0, 400),
        ),
        st.just(SWITCHED + b"frames"),
    ),
    cuts=st.lists(st.integers(1, 50), max_size=8),
    then_close=st.booleans(),
)
def test_any_answer_ends_in_a_session_a_closed_tunnel_or_waiting(
    answer: bytes, cuts: list[int], then_close: bool
) -> None:
    """
    Whatever comes back, cut anywhere: nothing raises out of the protocol;
    the result is a session, a L{TunnelClosed}, or still pending (and then
    the connection closing or the timer settles it).
    """
    harness = Harness()
    rest = answer
    for cut in cuts:
        piece, rest = rest[:cut], rest[cut:]
        harness.upgrader.dataReceived(piece)
    if rest:
        harness.upgrader.dataReceived(rest)
    if then_close:
        harness.upgrader.connectionLost(Failure(ConnectionDone()))
    else:
        harness.clock.advance(UPGRADE_TIMEOUT)
    assert len(harness.outcome) == 1
    outcome = harness.outcome[0]
    if isinstance(outcome, Failure):
        assert outcome.check(TunnelClosed)
        assert "\n" not in str(outcome.value)
    else:
        assert outcome is harness.sessions[0]


@given(st.binary(max_size=500), st.integers(100, 599))
def test_a_refusal_message_is_one_line(body: bytes, code: int) -> None:
    message = _refusal_message(code, b"Phrase", body)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"tunnel upgrade refused ({code} Phrase)")
    assert len(message) < 400


def test_is_tunnel_upgrade() -> None:
    def request(**headers: str) -> DummyRequest:
        r = DummyRequest([b""])
        for name, value in headers.items():
            r.requestHeaders.addRawHeader(name.encode(), value.encode())
        return r

    assert is_tunnel_upgrade(request(connection="Upgrade", upgrade=UPGRADE_PROTOCOL))
    assert is_tunnel_upgrade(
        request(connection="keep-alive, upgrade", upgrade="Clusternet-Tunnel.V1")
    )
    assert not is_tunnel_upgrade(request(connection="Upgrade", upgrade="websocket"))
    assert not is_tunnel_upgrade(request(upgrade=UPGRADE_PROTOCOL))
    assert not is_tunnel_upgrade(request(connection="Upgrade"))
    post = request(connection="Upgrade", upgrade=UPGRADE_PROTOCOL)
    post.method = b"POST"
    assert not is_tunnel_upgrade(post)
