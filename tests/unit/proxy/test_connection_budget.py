"""
The connection budget of a StreamingSite in memory: a StringTransport, a
MemoryReactorClock, no sockets and no real time.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from clusternet._web import write_status
from clusternet.hub import HubOptions
from clusternet.proxy import (
    BudgetedHTTPChannel,
    ConnectionBudget,
    IStreamingResource,
    StreamingRequest,
    StreamingSite,
    budget_from_options,
)
from clusternet.proxy._budget import DEFAULT_BUDGET, MAX_HEADER_BYTES, MemoryTrimmer

CLIENT = IPv4Address("TCP", "10.9.8.7", 50000)
SMALL = ConnectionBudget(
    max_head_bytes=4096,
    head_timeout=10.0,
    idle_timeout=60.0,
    max_refused_body=1000,
    max_headers=20,
    close_grace=2.0,
)


class Echo(Resource):
    """
    Answers how many headers the request had and the length of C{X-Big}.
    """

    isLeaf = True

    def render(self, request: Request) -> bytes:
        headers = list(request.requestHeaders.getAllRawHeaders())
        big = request.getHeader(b"x-big") or b""
        return b"headers=%d big=%d" % (len(headers), len(big))


@implementer(IStreamingResource)
class Refuser(Resource):
    """
    Answers 403 as soon as the head is in, as the hub does before a body is
    read; or keeps the request for the test to answer.
    """

    isLeaf = True

    def __init__(self, answer: bool = True) -> None:
        super().__init__()
        self.requests: list[StreamingRequest] = []
        self._answer = answer

    def renderStreaming(self, request: StreamingRequest) -> None:
        self.requests.append(request)
        if self._answer:
            request.write(write_status(request, 403, "no"))
            request.finish()


class Connection:
    def __init__(self, resource: Resource, budget: ConnectionBudget = SMALL) -> None:
        self.clock = MemoryReactorClock()
        self.site = StreamingSite(resource, reactor=self.clock, budget=budget)
        self.protocol: Any = self.site.buildProtocol(CLIENT)
        self.transport = StringTransport(peerAddress=CLIENT, lenient=True)
        self.protocol.makeConnection(self.transport)
        self.channel: BudgetedHTTPChannel = self.protocol._channel

    def send(self, data: bytes, chunk: int | None = None) -> None:
        step = chunk or max(len(data), 1)
        for start in range(0, len(data), step):
            if self.transport.disconnecting:
                return
            self.protocol.dataReceived(data[start : start + step])

    def take(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def status_line(output: bytes) -> bytes:
    return output.split(b"\r\n", 1)[0]


def status_of(output: bytes) -> dict[str, Any]:
    head, _, body = output.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower()
    assert b"connection: close" in head.lower()
    result: dict[str, Any] = json.loads(body)
    return result


def head_of_size(size: int, path: bytes = b"/x") -> bytes:
    """
    A GET head of exactly C{size} bytes (request line, headers, final CRLF).
    """
    start = b"GET " + path + b" HTTP/1.1\r\nHost: h\r\nX-Big: "
    end = b"\r\n\r\n"
    return start + b"b" * (size - len(start) - len(end)) + end


# ------------------------------------------------------------------ heads


def test_a_head_at_the_limit_is_served() -> None:
    conn = Connection(Echo())
    conn.send(head_of_size(4096))
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 200 OK"
    assert not conn.transport.disconnecting


def test_a_head_one_byte_over_the_limit_is_431_and_closed() -> None:
    conn = Connection(Echo())
    conn.send(head_of_size(4097))
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 431 Request Header Fields Too Large"
    status = status_of(output)
    assert status["kind"] == "Status"
    assert status["code"] == 431
    assert "4096 bytes" in status["message"]
    assert conn.transport.disconnecting


def test_an_unfinished_header_line_over_the_limit_is_431_without_its_end() -> None:
    conn = Connection(Echo())
    conn.send(b"GET /x HTTP/1.1\r\nX-Big: " + b"b" * 5000, chunk=100)
    assert status_line(conn.take()) == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert conn.transport.disconnecting
    assert conn.channel.buffered == 0


def test_buffered_head_bytes_never_exceed_the_limit_and_one_read() -> None:
    conn = Connection(Echo())
    held = 0
    conn.protocol.dataReceived(b"GET /x HTTP/1.1\r\n")
    for i in range(200):
        if conn.transport.disconnecting:
            break
        conn.protocol.dataReceived(b"X-%d: %s" % (i, b"v" * 40))
        held = max(held, conn.channel.buffered + conn.channel._head_bytes)
        conn.protocol.dataReceived(b"\r\n")
    assert conn.transport.disconnecting
    assert held <= 4096 + 50


def test_a_request_line_over_the_limit_is_414() -> None:
    conn = Connection(Echo())
    conn.send(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", chunk=1000)
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 414 URI Too Long"
    assert status_of(output)["code"] == 414
    assert conn.transport.disconnecting


def test_a_request_line_longer_than_twisteds_16k_is_served() -> None:
    """
    twisted.web alone closes without an answer on a request line over
    16 KiB; the budget's limit applies to the whole head instead.
    """
    conn = Connection(Echo(), DEFAULT_BUDGET)
    conn.send(b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", chunk=4096)
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"


def test_too_many_headers_is_431() -> None:
    conn = Connection(Echo())
    conn.send(
        b"GET /x HTTP/1.1\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(21))
        + b"\r\n"
    )
    output = conn.take()
    assert status_line(output).startswith(b"HTTP/1.1 431 ")
    assert "20 headers" in status_of(output)["message"]
    assert conn.transport.disconnecting


def test_twenty_headers_are_served() -> None:
    conn = Connection(Echo())
    conn.send(
        b"GET /x HTTP/1.1\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(20))
        + b"\r\n"
    )
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 200 OK"
    assert output.endswith(b"headers=20 big=0")


def test_a_malformed_head_is_a_400_status() -> None:
    conn = Connection(Echo())
    conn.send(b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n")
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 400 Bad Request"
    assert status_of(output)["reason"] == "BadRequest"
    assert conn.transport.disconnecting


def test_a_refused_connection_is_aborted_if_it_lingers() -> None:
    """
    Over TLS, loseConnection waits for the peer's close_notify; a peer that
    never sends it is aborted after the grace.
    """
    conn = Connection(Echo())
    conn.send(head_of_size(5000))
    assert conn.transport.disconnecting
    assert not conn.transport.disconnected
    conn.clock.advance(1.9)
    assert not conn.transport.disconnected
    conn.clock.advance(0.2)
    assert conn.transport.disconnected


def test_a_refused_connection_that_goes_leaves_no_timers() -> None:
    conn = Connection(Echo())
    conn.send(head_of_size(5000))
    conn.lose()
    assert [c for c in conn.clock.getDelayedCalls() if c.active()] == []


def test_data_after_a_refusal_is_dropped() -> None:
    conn = Connection(Echo())
    conn.send(head_of_size(5000))
    conn.take()
    conn.protocol.dataReceived(b"x" * 10_000)
    assert conn.channel.buffered == 0
    assert conn.take() == b""


# ------------------------------------------------------------- deadlines


def test_a_head_trickling_past_the_deadline_is_408_and_closed() -> None:
    conn = Connection(Echo())
    head = b"GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"s" * 100
    for byte in range(len(head)):
        if conn.transport.disconnecting:
            break
        conn.protocol.dataReceived(head[byte : byte + 1])
        conn.clock.advance(0.5)
    # Every byte restarts the idle timeout; the head deadline still came.
    assert conn.transport.disconnecting
    assert conn.clock.seconds() == pytest.approx(10.0)
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 408 Request Timeout"
    assert status_of(output)["code"] == 408


def test_a_complete_head_in_time_is_served() -> None:
    conn = Connection(Echo())
    head = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    for byte in range(len(head)):
        conn.protocol.dataReceived(head[byte : byte + 1])
        conn.clock.advance(0.3)
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"
    conn.clock.advance(30)
    assert not conn.transport.disconnecting


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline_silently() -> None:
    conn = Connection(Echo())
    conn.clock.advance(9.9)
    assert not conn.transport.disconnecting
    conn.clock.advance(0.2)
    assert conn.transport.disconnecting
    assert conn.take() == b""


def test_a_keep_alive_request_has_its_own_deadline() -> None:
    conn = Connection(Echo())
    conn.clock.advance(9)
    conn.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"
    # Idle between requests: only the idle timeout applies.
    conn.clock.advance(50)
    assert not conn.transport.disconnecting
    conn.send(b"GET /2 HTTP/1.1\r\nHo")
    conn.clock.advance(9.9)
    assert not conn.transport.disconnecting
    conn.send(b"st: h\r\n\r\n")
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"
    conn.clock.advance(5)
    conn.send(b"GET /3 HTTP/1.1\r\nHo")
    conn.clock.advance(10)
    assert conn.transport.disconnecting
    assert status_line(conn.take()) == b"HTTP/1.1 408 Request Timeout"


def test_a_pipelined_partial_head_gets_a_deadline() -> None:
    conn = Connection(Echo())
    conn.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHo")
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"
    conn.clock.advance(10)
    assert conn.transport.disconnecting
    assert status_line(conn.take()) == b"HTTP/1.1 408 Request Timeout"


def test_an_idle_keep_alive_connection_closes_at_the_idle_timeout() -> None:
    conn = Connection(Echo())
    conn.send(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
    conn.take()
    conn.clock.advance(59)
    assert not conn.transport.disconnecting
    conn.clock.advance(2)
    assert conn.transport.disconnecting
    assert conn.take() == b""


def test_no_head_deadline_when_turned_off() -> None:
    conn = Connection(Echo(), ConnectionBudget(head_timeout=None, idle_timeout=None))
    conn.send(b"GET /1 HTTP/1.1\r\nHo")
    conn.clock.advance(3600)
    assert not conn.transport.disconnecting
    conn.send(b"st: h\r\n\r\n")
    assert status_line(conn.take()) == b"HTTP/1.1 200 OK"


def test_the_idle_timeout_is_the_sites_timeout() -> None:
    site = StreamingSite(Echo(), reactor=MemoryReactorClock(), budget=SMALL)
    assert site.timeOut == 60.0
    protocol: Any = site.buildProtocol(CLIENT)
    assert protocol.timeOut == 60.0


def test_nothing_stays_buffered_after_the_connection_ends() -> None:
    conn = Connection(Echo(), DEFAULT_BUDGET)
    conn.send(b"GET /x HTTP/1.1\r\nX-Big: " + b"b" * 500_000, chunk=65536)
    assert conn.channel.buffered > 400_000
    conn.lose()
    assert conn.channel.buffered == 0
    assert conn.channel._dataBuffer == []
    assert [c for c in conn.clock.getDelayedCalls() if c.active()] == []


# ----------------------------------------------------------- refused bodies


def refused_upload(length: int) -> bytes:
    return b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % length


def test_a_refused_body_within_the_bound_is_read_and_the_connection_closed() -> None:
    conn = Connection(Refuser())
    conn.send(refused_upload(1000))
    output = conn.take()
    assert status_line(output) == b"HTTP/1.1 403 Forbidden"
    assert b"Connection: close" in output
    assert not conn.transport.disconnecting
    conn.send(b"z" * 999)
    assert not conn.transport.disconnecting
    conn.send(b"z")
    assert conn.transport.disconnecting


def test_a_refused_body_known_to_be_over_the_bound_closes_at_once() -> None:
    conn = Connection(Refuser())
    conn.send(refused_upload(10 * 1024 * 1024) + b"z" * 100)
    assert status_line(conn.take()) == b"HTTP/1.1 403 Forbidden"
    assert conn.transport.disconnecting


def test_a_refused_chunked_body_over_the_bound_is_closed() -> None:
    conn = Connection(Refuser())
    conn.send(b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert status_line(conn.take()) == b"HTTP/1.1 403 Forbidden"
    for _ in range(20):
        if conn.transport.disconnecting:
            break
        conn.send(b"64\r\n" + b"z" * 100 + b"\r\n")
    assert conn.transport.disconnecting
    assert conn.take() == b""
    # 1000 bytes thrown away, then the 11th chunk went over.
    request = conn.site.resource.requests[0]
    assert request._drained == 1100


def test_a_refused_body_trickling_past_the_deadline_is_closed() -> None:
    conn = Connection(Refuser())
    conn.send(refused_upload(500))
    conn.take()
    for _ in range(30):
        if conn.transport.disconnecting:
            break
        conn.send(b"z")
        conn.clock.advance(1)
    assert conn.transport.disconnecting
    assert conn.clock.seconds() == pytest.approx(10.0)


def test_a_body_read_in_full_keeps_no_drain_deadline() -> None:
    conn = Connection(Refuser(answer=False))
    conn.send(refused_upload(3) + b"abc")
    request = conn.site.resource.requests[0]
    request.write(b"ok")
    request.finish()
    conn.clock.advance(30)
    assert not conn.transport.disconnecting


# ---------------------------------------------- chunking never changes the answer


HEADS = st.one_of(
    st.integers(200, 4096).map(head_of_size),
    st.integers(4097, 9000).map(head_of_size),
    st.integers(4000, 6000).map(lambda n: b"GET /" + b"p" * n + b" HTTP/1.1\r\n\r\n"),
    st.integers(0, 30).map(
        lambda n: (
            b"GET /x HTTP/1.1\r\n"
            + b"".join(b"X-%d: v\r\n" % i for i in range(n))
            + b"\r\n"
        )
    ),
)


def answer(head: bytes, cuts: list[int]) -> tuple[bytes, bool, bytes]:
    conn = Connection(Echo())
    points = sorted({c % (len(head) + 1) for c in cuts} | {0, len(head)})
    for start, end in itertools.pairwise(points):
        if conn.transport.disconnecting:
            break
        conn.protocol.dataReceived(head[start:end])
    output = conn.take()
    body = output.partition(b"\r\n\r\n")[2]
    return status_line(output), bool(conn.transport.disconnecting), body


@given(HEADS, st.lists(st.integers(0, 10_000), max_size=40))
def test_the_answer_never_depends_on_the_chunking(head: bytes, cuts: list[int]) -> None:
    assert answer(head, cuts) == answer(head, [])


@given(HEADS)
def test_a_head_is_refused_exactly_when_it_is_over_a_limit(head: bytes) -> None:
    line, closed, _ = answer(head, [])
    headers = head.count(b"\r\n") - 2
    if len(head) > 4096 or headers > 20:
        assert line.split(b" ")[1] in (b"414", b"431")
        assert closed
    else:
        assert line == b"HTTP/1.1 200 OK"
        assert not closed


# ------------------------------------------------------------------ flags


def parse(*argv: str) -> HubOptions:
    options = HubOptions()
    options.parseOptions(list(argv))
    return options


def test_the_hub_flags_default_to_the_default_budget() -> None:
    assert budget_from_options(parse()) == DEFAULT_BUDGET
    assert DEFAULT_BUDGET.max_head_bytes == MAX_HEADER_BYTES == 1 << 20
    assert DEFAULT_BUDGET.head_timeout == 10.0
    assert DEFAULT_BUDGET.idle_timeout == 60.0
    assert DEFAULT_BUDGET.max_refused_body == 1 << 20


def test_the_hub_flags_make_the_budget() -> None:
    options = parse(
        "--max-request-header-bytes=64Ki",
        "--request-header-timeout=5s",
        "--idle-timeout=2m",
        "--max-refused-body-bytes=0",
    )
    assert budget_from_options(options) == ConnectionBudget(
        max_head_bytes=65536, head_timeout=5.0, idle_timeout=120.0, max_refused_body=0
    )


def test_a_zero_timeout_is_none() -> None:
    options = parse("--request-header-timeout=0s", "--idle-timeout=0")
    budget = budget_from_options(options)
    assert budget.head_timeout is None
    assert budget.idle_timeout is None


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--max-request-header-bytes=1000"], "--max-request-header-bytes"),
        (["--max-request-header-bytes=lots"], "--max-request-header-bytes"),
        (["--request-header-timeout=soon"], "--request-header-timeout"),
        (["--idle-timeout=-1s"], "--idle-timeout"),
        (["--max-refused-body-bytes=1MB"], "--max-refused-body-bytes"),
    ],
)
def test_bad_budget_flags_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        parse(*argv)


def test_a_budget_checks_its_values() -> None:
    with pytest.raises(ValueError, match="head_timeout"):
        ConnectionBudget(head_timeout=0)
    with pytest.raises(ValueError):
        ConnectionBudget(max_head_bytes=10)


# ------------------------------------------------------------- memory trim


def test_dropped_heads_trim_once_per_burst_and_not_too_often() -> None:
    clock = MemoryReactorClock()
    trims: list[float] = []
    trimmer = MemoryTrimmer(
        clock, lambda: trims.append(clock.seconds()), threshold=1000, interval=10
    )
    for _ in range(9):
        trimmer.freed(100)
    clock.advance(5)
    assert trims == []
    for _ in range(30):
        trimmer.freed(100)
    clock.advance(1)
    assert trims == [6.0]
    trimmer.freed(5000)
    clock.advance(1)
    assert trims == [6.0]
    clock.advance(9)
    assert trims == [6.0, 16.0]
    trimmer.freed(5000)
    trimmer.stop()
    clock.advance(100)
    assert trims == [6.0, 16.0]


def test_a_closed_connection_reports_the_head_it_dropped() -> None:
    conn = Connection(Echo(), DEFAULT_BUDGET)
    trimmer = conn.site.trimmer
    assert trimmer is not None
    trims: list[int] = []
    trimmer._trim = lambda: trims.append(1)
    trimmer._threshold = 300_000
    conn.send(b"GET /x HTTP/1.1\r\nX-Big: " + b"b" * 400_000, chunk=65536)
    conn.lose()
    conn.clock.advance(1)
    assert trims == [1]


def test_no_trimmer_when_turned_off() -> None:
    site = StreamingSite(
        Echo(), reactor=MemoryReactorClock(), budget=ConnectionBudget(trim_memory=False)
    )
    assert site.trimmer is None
    assert budget_from_options(parse("--trim-memory=false")).trim_memory is False


def test_a_refused_request_without_a_body_keeps_its_connection() -> None:
    """
    Nothing is left to drain after a GET: a refusal (403, 429) keeps the
    connection, so a client refused again and again does not cost the server a
    new TLS handshake each time.
    """
    conn = Connection(Refuser())
    for _ in range(3):
        conn.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        output = conn.take()
        assert status_line(output) == b"HTTP/1.1 403 Forbidden"
        assert b"connection: close" not in output.lower()
        assert not conn.transport.disconnecting
