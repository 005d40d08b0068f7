"""
StreamingRequest and ReverseProxy in memory: StringTransports on both sides,
a MemoryReactorClock, no sockets and no real time.
"""

from __future__ import annotations

import io
import json
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clusternet.proxy import (
    IStreamingResource,
    ProxyError,
    ProxyResource,
    RequestBody,
    ReverseProxy,
    Route,
    StreamingRequest,
    StreamingSite,
    remaining_path,
)
from clusternet.proxy._proxy import COALESCE_BYTES

CLIENT = IPv4Address("TCP", "10.9.8.7", 50000)


class Consumer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


@implementer(IStreamingResource)
class Recorder(Resource):
    """
    Records streaming requests; starts consuming their body on demand.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[StreamingRequest] = []

    def renderStreaming(self, request: StreamingRequest) -> None:
        self.requests.append(request)


class Buffered(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.bodies: list[bytes] = []

    def getChildWithDefault(self, path: bytes, request: Any) -> Resource:
        self.lookups += 1
        return self

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(request.content.read())
        return b"ok"


class Counting(Resource):
    def __init__(self, child: Resource) -> None:
        super().__init__()
        self.child = child
        self.lookups = 0

    def getChild(self, path: bytes, request: Any) -> Resource:
        self.lookups += 1
        return self.child


def connect(site: StreamingSite) -> tuple[Any, StringTransport]:
    protocol = site.buildProtocol(CLIENT)
    transport = StringTransport(peerAddress=CLIENT, lenient=True)
    protocol.makeConnection(transport)
    return protocol, transport


def make_site(resource: Resource) -> StreamingSite:
    return StreamingSite(resource, reactor=MemoryReactorClock())


# ------------------------------------------------------------ StreamingRequest


def test_request_body_chunks_reach_the_resource_as_they_arrive() -> None:
    recorder = Recorder()
    protocol, _transport = connect(make_site(recorder))
    protocol.dataReceived(
        b"POST /x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    assert len(recorder.requests) == 1
    request = recorder.requests[0]
    assert request.streaming
    assert request.method == b"POST"
    assert request.args == {b"a": [b"1"]}
    body = request.bodyProducer
    assert body is not None
    consumer = Consumer()
    finished = body.startProducing(consumer)
    protocol.dataReceived(b"5\r\nhello\r\n")
    assert consumer.chunks == [b"hello"]
    protocol.dataReceived(b"6\r\n world\r\n")
    assert consumer.chunks == [b"hello", b" world"]
    assert not finished.called
    protocol.dataReceived(b"0\r\n\r\n")
    assert finished.called


def test_consumer_backpressure_pauses_the_client_connection() -> None:
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 30\r\n\r\n" + b"a" * 10
    )
    body = recorder.requests[0].bodyProducer
    assert body is not None
    consumer = Consumer()
    finished = body.startProducing(consumer)
    assert consumer.chunks == [b"a" * 10]
    body.pauseProducing()
    assert transport.producerState == "paused"
    # Bytes already on their way are held, not lost, and keep us paused.
    transport.producerState = "producing"
    protocol.dataReceived(b"b" * 10)
    assert transport.producerState == "paused"
    assert consumer.chunks == [b"a" * 10]
    body.resumeProducing()
    assert transport.producerState == "producing"
    assert consumer.chunks == [b"a" * 10, b"b" * 10]
    protocol.dataReceived(b"c" * 10)
    assert finished.called
    assert body.max_held == 10


def test_body_waiting_for_a_consumer_is_bounded() -> None:
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n"
    )
    body = recorder.requests[0].bodyProducer
    assert body is not None
    for _ in range(3):
        protocol.dataReceived(b"z" * 32 * 1024)
    assert transport.producerState == "paused"
    consumer = Consumer()
    body.startProducing(consumer)
    assert b"".join(consumer.chunks) == b"z" * 96 * 1024
    assert transport.producerState == "producing"


def test_expect_continue_is_sent_only_when_the_body_is_wanted() -> None:
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    assert transport.value() == b""
    body = recorder.requests[0].bodyProducer
    assert body is not None
    body.startProducing(Consumer())
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_answering_before_the_body_closes_the_connection_afterwards() -> None:
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
    request = recorder.requests[0]
    finished: list[object] = []
    request.notifyFinish().addBoth(finished.append)
    request.setResponseCode(403)
    request.setHeader(b"content-length", b"2")
    request.write(b"no")
    request.finish()
    written = transport.value()
    assert b"403" in written and b"Connection: close" in written
    assert not transport.disconnecting
    protocol.dataReceived(b"0123456789")
    assert transport.disconnecting
    assert finished == [None]


def test_answering_before_a_withheld_body_closes_at_once() -> None:
    """
    After C{Expect: 100-continue} and no C{100}, the client sends no body:
    the connection is not kept waiting for one.
    """
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    request = recorder.requests[0]
    finished: list[object] = []
    request.notifyFinish().addBoth(finished.append)
    request.setResponseCode(403)
    request.setHeader(b"content-length", b"2")
    request.write(b"no")
    request.finish()
    written = transport.value()
    assert b"100 Continue" not in written
    assert b"403" in written and b"Connection: close" in written
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    assert finished == [None]


def test_get_without_body_streams_and_keeps_the_connection() -> None:
    recorder = Recorder()
    protocol, transport = connect(make_site(recorder))
    protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    request = recorder.requests[0]
    assert request.bodyProducer is None
    request.setHeader(b"content-length", b"2")
    request.write(b"hi")
    request.finish()
    protocol.dataReceived(b"GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
    assert len(recorder.requests) == 2
    assert not transport.disconnecting


def test_client_disconnect_fails_the_body() -> None:
    recorder = Recorder()
    protocol, _transport = connect(make_site(recorder))
    protocol.dataReceived(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
    body = recorder.requests[0].bodyProducer
    assert body is not None
    finished = body.startProducing(Consumer())
    protocol.connectionLost(Failure(ConnectionDone()))
    assert finished.called
    finished.addErrback(lambda f: None)


def test_ordinary_resources_buffer_and_are_looked_up_once() -> None:
    leaf = Buffered()
    root = Counting(leaf)
    protocol, transport = connect(make_site(root))
    protocol.dataReceived(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc"
    )
    assert leaf.bodies == []
    protocol.dataReceived(b"def")
    assert leaf.bodies == [b"abcdef"]
    assert root.lookups == 1
    assert transport.value().startswith(b"HTTP/1.1 200 OK")


def test_interfaces() -> None:
    body = RequestBody(None, lambda: None, lambda: None, lambda: None)
    assert verifyObject(IBodyProducer, body)
    resource = ProxyResource(ReverseProxy(MemoryReactorClock()))
    assert verifyObject(IStreamingResource, resource)


def test_remaining_path_keeps_encoding_and_query() -> None:
    from twisted.web.test.requesthelper import DummyChannel

    request = Request(DummyChannel())
    request.uri = b"/sockets/c1/proxy/direct/api/v1/a%2Fb?watch=1"
    request.prepath = [b"sockets", b"c1", b"proxy", b"direct"]
    assert remaining_path(request) == b"/api/v1/a%2Fb?watch=1"


# ---------------------------------------------------------------- ReverseProxy


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    Connects to nothing: each connection is a StringTransport the test reads
    and a protocol the test feeds.
    """

    def __init__(self, result: Deferred[None] | None = None) -> None:
        self.connections: list[tuple[IProtocol, StringTransport]] = []
        self.result = result

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        if self.result is not None:
            return self.result  # type: ignore[return-value]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert protocol is not None
        transport = StringTransport(lenient=True)
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


class Fixed(ProxyResource):
    def __init__(self, proxy: ReverseProxy, endpoint: Any, **route: Any) -> None:
        super().__init__(proxy)
        self.endpoint = endpoint
        self.extra = route

    def route(self, request: Request) -> Route:
        return Route(
            endpoint=self.endpoint,
            path=remaining_path(request),
            host=b"up.test",
            **self.extra,
        )


class Setup:
    def __init__(self, endpoint: Any = None, **kwargs: Any) -> None:
        self.reactor = MemoryReactorClock()
        mapping = kwargs.pop("error_status", None)
        self.proxy = ReverseProxy(
            self.reactor,
            connect_timeout=kwargs.pop("connect_timeout", 5.0),
            response_timeout=kwargs.pop("response_timeout", None),
            error_status=mapping,
        )
        self.endpoint = endpoint or MemoryEndpoint()
        resource = Fixed(self.proxy, self.endpoint, **kwargs)
        site = StreamingSite(resource, reactor=self.reactor)
        self.client, self.client_transport = connect(site)

    def send(self, data: bytes) -> None:
        self.client.dataReceived(data)

    @property
    def upstream(self) -> tuple[IProtocol, StringTransport]:
        return self.endpoint.connections[-1]

    def client_output(self) -> bytes:
        value = self.client_transport.value()
        self.client_transport.clear()
        return value


def status_of(output: bytes) -> dict[str, Any]:
    _head, _, body = output.partition(b"\r\n\r\n")
    return json.loads(body)


def test_upstream_request_is_rewritten_and_the_response_relayed() -> None:
    setup = Setup(
        strip_headers=(b"authorization",), set_headers={b"X-Remote-User": b"u"}
    )
    setup.send(
        b"GET /api/v1/pods?watch=1 HTTP/1.1\r\nHost: parent\r\n"
        b"Authorization: Bearer secret\r\nConnection: keep-alive\r\n\r\n"
    )
    protocol, transport = setup.upstream
    sent = transport.value()
    assert sent.startswith(b"GET /api/v1/pods?watch=1 HTTP/1.1\r\n")
    assert b"Host: up.test\r\n" in sent
    assert b"X-Remote-User: u\r\n" in sent
    assert b"secret" not in sent
    assert b"X-Forwarded-For: 10.9.8.7\r\n" in sent
    protocol.dataReceived(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    head = setup.client_output()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    # Each event reaches the client at the end of the reactor turn it
    # arrived in.
    protocol.dataReceived(b'8\r\n{"a":1}\n\r\n')
    setup.reactor.advance(0)
    assert setup.client_output() == b'8\r\n{"a":1}\n\r\n'
    protocol.dataReceived(b'8\r\n{"a":2}\n\r\n')
    setup.reactor.advance(0)
    assert setup.client_output() == b'8\r\n{"a":2}\n\r\n'
    protocol.dataReceived(b"0\r\n\r\n")
    assert setup.client_output() == b"0\r\n\r\n"
    assert not setup.client_transport.disconnecting


def test_content_length_is_passed_through() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    setup.reactor.advance(0)
    output = setup.client_output()
    assert b"Content-Length: 5\r\n" in output
    assert b"chunked" not in output.lower()
    assert output.endswith(b"\r\n\r\nhel")
    protocol.dataReceived(b"lo")
    assert setup.client_output() == b"lo"


class Writes:
    """
    Counts the writes a client transport gets.
    """

    def __init__(self, transport: StringTransport) -> None:
        self.writes: list[bytes] = []
        original = transport.write

        def write(data: bytes) -> None:
            self.writes.append(data)
            original(data)

        transport.write = write  # type: ignore[method-assign]


def test_pieces_read_in_one_turn_are_written_once_at_its_end() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    setup.reactor.advance(0)
    setup.client_output()
    writes = Writes(setup.client_transport)
    for piece in (b"a" * 10, b"b" * 10, b"c" * 10):
        protocol.dataReceived(piece)
    assert writes.writes == []
    setup.reactor.advance(0)
    assert writes.writes == [b"a" * 10 + b"b" * 10 + b"c" * 10]
    protocol.dataReceived(b"d" * 70)  # the end of the body: written at once
    assert writes.writes[1:] == [b"d" * 70]


def test_a_large_burst_is_written_without_waiting_for_the_turn() -> None:
    size = COALESCE_BYTES // 2
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (size * 4,)
    )
    setup.reactor.advance(0)
    setup.client_output()
    writes = Writes(setup.client_transport)
    protocol.dataReceived(b"x" * size)
    assert writes.writes == []
    protocol.dataReceived(b"y" * size)
    assert writes.writes == [b"x" * size + b"y" * size]


def test_held_bytes_of_a_broken_response_are_not_written() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    setup.reactor.advance(0)
    setup.client_output()
    protocol.dataReceived(b"abc")
    protocol.connectionLost(Failure(ConnectionDone()))
    setup.reactor.advance(0)
    assert b"abc" not in setup.client_output()
    assert setup.client_transport.disconnecting
    assert not setup.reactor.getDelayedCalls()


def test_slow_client_pauses_the_upstream_read() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, transport = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    # The client's transport reports a full write buffer to its producer.
    setup.client_transport.producer.pauseProducing()  # type: ignore[union-attr]
    assert transport.producerState == "paused"
    setup.client_transport.producer.resumeProducing()  # type: ignore[union-attr]
    assert transport.producerState == "producing"


def test_request_body_streams_upstream_with_expect_continue() -> None:
    setup = Setup()
    setup.send(
        b"PUT /x HTTP/1.1\r\nHost: p\r\nContent-Length: 6\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    _protocol, transport = setup.upstream
    assert setup.client_output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"Content-Length: 6\r\n" in transport.value()
    assert b"Expect" not in transport.value()
    transport.clear()
    setup.send(b"abc")
    assert transport.value() == b"abc"
    setup.send(b"def")
    assert transport.value() == b"abcdef"


def test_connect_failure_is_a_502_status() -> None:
    setup = Setup(MemoryEndpoint(fail(ConnectionRefusedError("nobody home"))))
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    output = setup.client_output()
    assert output.startswith(b"HTTP/1.1 502 Bad Gateway")
    status = status_of(output)
    assert status["code"] == 502 and status["kind"] == "Status"


class NotConnected(Exception):
    pass


def test_error_mapping_hook_chooses_the_status() -> None:
    setup = Setup(
        MemoryEndpoint(fail(NotConnected())),
        error_status=lambda f: (
            ProxyError(503, "agent not connected") if f.check(NotConnected) else None
        ),
    )
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    output = setup.client_output()
    assert output.startswith(b"HTTP/1.1 503")
    assert status_of(output)["message"] == "agent not connected"


def test_connect_and_response_timeouts_are_504() -> None:
    setup = Setup(MemoryEndpoint(Deferred()), connect_timeout=3.0)
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    setup.reactor.advance(2.9)
    assert setup.client_output() == b""
    setup.reactor.advance(0.2)
    assert setup.client_output().startswith(b"HTTP/1.1 504")

    setup = Setup(response_timeout=10.0)
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    _, transport = setup.upstream
    setup.reactor.advance(10.0)
    assert setup.client_output().startswith(b"HTTP/1.1 504")
    assert transport.disconnecting


def test_client_disconnect_aborts_the_upstream() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, transport = setup.upstream
    setup.client.connectionLost(Failure(ConnectionDone()))
    assert transport.disconnecting

    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, transport = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    setup.client.connectionLost(Failure(ConnectionDone()))
    assert transport.disconnecting


def test_upstream_breaking_off_aborts_the_client() -> None:
    setup = Setup()
    setup.send(b"GET / HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    protocol.dataReceived(b"3\r\nabc\r\n")
    setup.client_output()
    protocol.connectionLost(Failure(ConnectionDone()))
    assert setup.client_transport.disconnected  # aborted
    assert b"0\r\n\r\n" not in setup.client_output()


def test_upgrade_splices_raw_bytes_both_ways() -> None:
    setup = Setup()
    setup.send(
        b"POST /exec HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\n"
        b"Upgrade: SPDY/3.1\r\n\r\nearly"
    )
    protocol, transport = setup.upstream
    sent = transport.value()
    assert b"Upgrade: SPDY/3.1\r\n" in sent
    assert b"Connection: Upgrade\r\n" in sent
    transport.clear()
    protocol.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: SPDY/3.1\r\nKeep-Alive: x\r\n\r\nserver-first"
    )
    output = setup.client_output()
    assert output.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Keep-Alive" not in output
    assert output.endswith(b"\r\n\r\nserver-first")
    assert transport.value() == b"early"
    transport.clear()
    setup.send(b"\x80\x03\x00\x01")
    assert transport.value() == b"\x80\x03\x00\x01"
    protocol.dataReceived(b"\x00\x00\x00\x05")
    assert setup.client_output() == b"\x00\x00\x00\x05"
    # Each side's transport is the other's producer.
    assert setup.client_transport.producer is transport
    assert transport.producer is setup.client_transport
    protocol.connectionLost(Failure(ConnectionDone()))
    assert setup.client_transport.disconnecting


def test_refused_upgrade_is_relayed_as_a_response() -> None:
    setup = Setup()
    setup.send(
        b"GET /ws HTTP/1.1\r\nHost: p\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope")
    output = setup.client_output()
    assert output.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert output.endswith(b"\r\n\r\nnope")
    assert not setup.client_transport.disconnecting


def test_head_keeps_the_upstream_content_length_and_sends_no_body() -> None:
    setup = Setup()
    setup.send(b"HEAD /x HTTP/1.1\r\nHost: p\r\n\r\n")
    protocol, _ = setup.upstream
    protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    output = setup.client_output()
    assert b"Content-Length: 1234\r\n" in output
    assert output.endswith(b"\r\n\r\n")
    setup.send(b"GET /y HTTP/1.1\r\nHost: p\r\n\r\n")
    assert len(setup.endpoint.connections) == 2


def test_routes_with_a_pool_key_reuse_idle_connections() -> None:
    setup = Setup(pool_key=("cluster-a", "direct"))
    for number in range(3):
        setup.send(b"GET /%d HTTP/1.1\r\nHost: p\r\n\r\n" % (number,))
        protocol, transport = setup.upstream
        assert b"Connection: close" not in transport.value()
        transport.clear()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert setup.client_output().endswith(b"ok")
    assert len(setup.endpoint.connections) == 1
    assert setup.proxy.pool_label(("cluster-a", "direct")) != setup.proxy.pool_label(
        ("cluster-b", "direct")
    )


# ------------------------------------------------------------ access log


def _answer_one(site: StreamingSite) -> None:
    recorder = Recorder()
    site.resource = recorder
    protocol, _transport = connect(site)
    protocol.dataReceived(b"GET /logged?q=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    request = recorder.requests[0]
    request.setHeader(b"content-length", b"2")
    request.write(b"hi")
    request.finish()


def test_access_log_at_info_is_twisted_webs_line() -> None:
    site = StreamingSite(Resource(), reactor=MemoryReactorClock())
    written = io.StringIO()
    site.logFile = written
    _answer_one(site)
    assert '"GET /logged?q=1 HTTP/1.1" 200 2' in written.getvalue()


def test_access_log_at_debug_is_a_structured_event_not_a_line() -> None:
    site = StreamingSite(
        Resource(), reactor=MemoryReactorClock(), access_log=LogLevel.debug
    )
    written = io.StringIO()
    site.logFile = written
    events: list[dict[str, Any]] = []
    site._log = Logger(observer=cast(Any, events.append))
    _answer_one(site)
    assert written.getvalue() == ""
    assert len(events) == 1
    event = events[0]
    assert event["log_level"] is LogLevel.debug
    assert (event["method"], event["uri"], event["code"]) == (
        b"GET",
        b"/logged?q=1",
        200,
    )
    assert event["length"] == 2 and event["client"] == CLIENT.host


def test_access_log_can_be_off() -> None:
    site = StreamingSite(Resource(), reactor=MemoryReactorClock(), access_log=None)
    written = io.StringIO()
    site.logFile = written
    events: list[dict[str, Any]] = []
    site._log = Logger(observer=cast(Any, events.append))
    _answer_one(site)
    assert written.getvalue() == "" and events == []
