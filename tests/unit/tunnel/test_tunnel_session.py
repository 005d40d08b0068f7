"""
Sessions over the in-memory carrier: streams, flow control, keepalive, drain.
"""

from __future__ import annotations

import random
from typing import Any

from tunnel_helpers import Collect, Echo, Pair, ProtocolAcceptor

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

import clusternet.tunnel as tunnel
from clusternet.tunnel import (
    AllowList,
    DialingAcceptor,
    ErrorCode,
    IDialPolicy,
    IStreamAcceptor,
    ITunnelProtocol,
    ITunnelTransport,
    MemoryLink,
    OpenFailReason,
    SessionConfig,
    StreamOpenFailed,
    TunnelClosed,
    TunnelStreamReset,
)
from clusternet.tunnel._tuning import SMALL_WRITE

SMALL = SessionConfig(initial_window=64 * 1024, max_frame=16 * 1024, max_streams=64)
# A write bigger than SMALL_WRITE: bulk traffic.
BULK = b"b" * (SMALL_WRITE + 1)


class Interfaces(SynchronousTestCase):
    def test_the_seams_provide_their_interfaces(self) -> None:
        pair = Pair()
        verifyObject(ITunnelProtocol, pair.hub)
        verifyObject(ITunnelTransport, pair.link.transports[0])
        verifyObject(IDialPolicy, AllowList(["a:1"]))
        verifyObject(IStreamAcceptor, ProtocolAcceptor())
        verifyObject(IStreamClientEndpoint, pair.hub.endpoint_for("a:1"))

    def test_public_names_are_the_private_objects(self) -> None:
        from clusternet.tunnel import _session, _websocket

        assert tunnel.TunnelSession is _session.TunnelSession
        assert tunnel.connect_websocket is _websocket.connect_websocket
        for name in tunnel.__all__:
            assert getattr(tunnel, name) is not None


class Streams(SynchronousTestCase):
    def test_many_concurrent_streams_of_random_sizes_arrive_byte_exact(self) -> None:
        pair = Pair(ProtocolAcceptor(Echo), SMALL)
        rng = random.Random(4)
        clients = []
        payloads = []
        for _ in range(40):
            payload = rng.randbytes(rng.randrange(1, 300_000))
            client = Collect()
            d = pair.connect("echo:1", client)
            clients.append((client, d))
            payloads.append(payload)
        for (client, d), payload in zip(clients, payloads, strict=True):
            self.successResultOf(d)
            client.transport.write(payload)  # type: ignore[union-attr]
            client.transport.loseWriteConnection()  # type: ignore[union-attr]
        pair.pump()
        for (client, _), payload in zip(clients, payloads, strict=True):
            assert client.data == payload
            assert client.lost is not None and client.lost.check(ConnectionDone)
        assert pair.metrics.streams_open == 0
        assert pair.agent_metrics.streams_open == 0
        assert pair.hub.stream_count == 0 and pair.agent.stream_count == 0

    def test_half_close_keeps_the_other_direction_open(self) -> None:
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor)
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        client.transport.write(b"request")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        pair.pump()
        server = acceptor.protocols[0]
        assert server.data == b"request"
        # Collect is not half-closeable: it got FIN as end of connection, so
        # its side closes after flushing; the client sees a clean close.
        assert server.lost is not None and server.lost.check(ConnectionDone)
        assert client.lost is not None and client.lost.check(ConnectionDone)

    def test_half_closeable_peer_answers_after_fin(self) -> None:
        pair = Pair(ProtocolAcceptor(Echo))
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        client.transport.write(b"ping")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        pair.pump()
        assert client.data == b"ping"
        assert client.lost is not None and client.lost.check(ConnectionDone)

    def test_reset_reaches_the_far_protocol_and_counters_return_to_zero(self) -> None:
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor)
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        assert pair.metrics.streams_open == 1
        client.transport.abortConnection()  # type: ignore[union-attr]
        pair.pump()
        server = acceptor.protocols[0]
        assert server.lost is not None and server.lost.check(TunnelStreamReset)
        assert server.lost.value.code == ErrorCode.CANCEL
        assert pair.metrics.streams_open == 0
        assert pair.agent_metrics.streams_open == 0

    def test_local_close_reports_connection_lost_on_a_later_turn(self) -> None:
        """
        As real transports do: C{HTTP11ClientProtocol.abort} registers its
        waiter after calling C{abortConnection}, so a synchronous
        C{connectionLost} would leave the waiter hanging forever.
        """
        for close in ("abortConnection", "loseConnection"):
            pair = Pair(ProtocolAcceptor(Collect))
            client = Collect()
            self.successResultOf(pair.connect("x:1", client))
            getattr(client.transport, close)()
            assert client.lost is None, close
            pair.clock.advance(0)
            pair.pump()
            pair.clock.advance(0)
            assert client.lost is not None, close

    def test_open_refused_by_policy_maps_to_403(self) -> None:
        reactor = MemoryReactorClock()
        policy = AllowList(["127.0.0.1:6443", "*.svc:443"])
        acceptor = DialingAcceptor(policy, lambda h, p: None, reactor)  # type: ignore[arg-type,return-value]
        pair = Pair(acceptor)
        failure = self.failureResultOf(pair.connect("10.0.0.1:22", Collect()))
        assert failure.check(StreamOpenFailed)
        assert failure.value.reason == OpenFailReason.REFUSED
        assert failure.value.http_status == 403
        bad = self.failureResultOf(pair.connect("no-port", Collect()))
        assert bad.value.http_status == 400
        assert pair.hub.stream_count == 0 and pair.agent.stream_count == 0

    def test_session_without_acceptor_refuses_streams(self) -> None:
        pair = Pair(None)
        failure = self.failureResultOf(pair.connect("x:1", Collect()))
        assert failure.value.reason == OpenFailReason.NO_ACCEPTOR

    def test_both_sides_can_open_streams_with_disjoint_ids(self) -> None:
        pair = Pair(ProtocolAcceptor(Echo), hub_acceptor=ProtocolAcceptor(Echo))
        hub_side = Collect()
        agent_side = Collect()
        self.successResultOf(pair.connect("x:1", hub_side))
        d = pair.agent.endpoint_for("y:2").connect(
            Factory.forProtocol(lambda: agent_side)
        )
        pair.pump()
        self.successResultOf(d)
        assert hub_side.transport.stream_id % 2 == 0  # type: ignore[union-attr]
        assert agent_side.transport.stream_id % 2 == 1  # type: ignore[union-attr]

    def test_cancelled_open_resets_the_stream(self) -> None:
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor)
        d = pair.hub.endpoint_for("x:1").connect(Factory.forProtocol(Collect))
        d.cancel()
        self.failureResultOf(d)
        pair.pump()
        assert pair.hub.stream_count == 0
        assert pair.agent.stream_count == 0


@implementer(IPushProducer)
class Source:
    def __init__(self) -> None:
        self.paused = False
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class FlowControl(SynchronousTestCase):
    def produced(self, pair: Pair, count: int) -> list[tuple[Any, Source]]:
        """
        C{count} streams opened by the hub, each with a streaming source
        registered on it: (the client protocol, its source).
        """
        streams = []
        for i in range(count):
            client, source = Collect(), Source()
            self.successResultOf(pair.connect(f"t{i}:1", client))
            client.transport.registerProducer(source, True)  # type: ignore[union-attr]
            streams.append((client, source))
        return streams

    def test_slow_reader_stops_only_its_own_stream(self) -> None:
        """
        Head-of-line isolation, asserted by progress: with one reader paused
        and its window full, another stream on the session still completes.
        """
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor, SMALL)
        slow_client, fast_client = Collect(), Collect()
        self.successResultOf(pair.connect("slow:1", slow_client))
        self.successResultOf(pair.connect("fast:1", fast_client))
        slow_server, fast_server = acceptor.protocols
        slow_server.transport.pauseProducing()
        slow_source, fast_source = Source(), Source()
        slow_client.transport.registerProducer(slow_source, True)  # type: ignore[union-attr]
        fast_client.transport.registerProducer(fast_source, True)  # type: ignore[union-attr]
        chunk = b"s" * 32 * 1024
        for _ in range(10):
            slow_client.transport.write(chunk)  # type: ignore[union-attr]
            pair.pump()
        assert slow_source.paused
        assert len(slow_server.data) == 0
        # The receiver holds at most one window for the paused reader.
        slow_stream = slow_server.transport
        held = sum(len(c) for c in slow_stream._inbox)
        assert held <= SMALL.initial_window
        total = 0
        for i in range(100):
            fast_client.transport.write(bytes([i % 256]) * 16 * 1024)  # type: ignore[union-attr]
            pair.pump()
            assert not fast_source.paused
            total += 16 * 1024
        assert len(fast_server.data) == total
        assert slow_source.paused
        # Resume the slow reader: everything arrives and the source restarts.
        slow_server.transport.resumeProducing()
        pair.pump()
        assert slow_server.data == chunk * 10
        assert not slow_source.paused

    def test_carrier_back_pressure_pauses_bulk_sources(self) -> None:
        pair = Pair(ProtocolAcceptor(Collect), SessionConfig(carrier_slack=0))
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        source = Source()
        client.transport.registerProducer(source, True)  # type: ignore[union-attr]
        client.transport.write(BULK)  # type: ignore[union-attr]
        pair.hub.pause_writing()
        assert source.paused
        pair.hub.resume_writing()
        assert not source.paused

    def test_sources_pause_once_the_carrier_holds_the_slack(self) -> None:
        """
        After the carrier asks to pause, the streams go on writing until it
        was handed C{carrier_slack} more bytes; then the bulk streams' sources
        pause (one that wrote nothing since it last sent bulk too), and they
        resume when the carrier does.
        """
        config = SessionConfig(carrier_slack=3 * len(BULK))
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor, config)
        (writer, writer_source), (quiet, quiet_source) = self.produced(pair, 2)
        quiet.transport.write(BULK)  # type: ignore[union-attr]
        pair.hub.pause_writing()
        for _ in range(2):
            writer.transport.write(BULK)  # type: ignore[union-attr]
        assert not writer_source.paused and not quiet_source.paused
        writer.transport.write(BULK)  # type: ignore[union-attr]
        assert writer_source.paused and quiet_source.paused
        pair.hub.resume_writing()
        assert not writer_source.paused and not quiet_source.paused
        pair.pump()
        assert len(acceptor.protocols[0].data) == 3 * len(BULK)

    def test_sources_resume_least_recently_written_first(self) -> None:
        """
        Fairness: after a congested carrier drains, the source that wrote
        longest ago resumes (and so is read) first.
        """
        pair = Pair(ProtocolAcceptor(Collect), SessionConfig(carrier_slack=0))
        resumed: list[str] = []

        @implementer(IPushProducer)
        class Ordered(Source):
            def __init__(self, name: str) -> None:
                super().__init__()
                self.name = name

            def resumeProducing(self) -> None:
                super().resumeProducing()
                resumed.append(self.name)

        clients = {name: Collect() for name in ("a", "b", "c")}
        for name, client in clients.items():
            self.successResultOf(pair.connect(f"{name}:1", client))
            client.transport.registerProducer(Ordered(name), True)  # type: ignore[union-attr]
        for name in ("b", "c", "a"):
            clients[name].transport.write(BULK)  # type: ignore[union-attr]
        pair.hub.pause_writing()
        pair.hub.resume_writing()
        assert resumed == ["b", "c", "a"]

    def test_a_congested_carrier_does_not_stop_small_writers(self) -> None:
        """
        Head-of-line fairness: while the carrier is congested by a bulk
        stream, a stream that writes small chunks (requests, replies) keeps
        its source running, until it writes a bulk chunk itself.
        """
        pair = Pair(ProtocolAcceptor(Collect), SessionConfig(carrier_slack=0))
        (bulk, bulk_source), (interactive, interactive_source) = self.produced(pair, 2)
        bulk.transport.write(BULK)  # type: ignore[union-attr]
        pair.hub.pause_writing()
        assert bulk_source.paused
        for _ in range(5):
            interactive.transport.write(b"GET / HTTP/1.1\r\n\r\n")  # type: ignore[union-attr]
            assert not interactive_source.paused
        interactive.transport.write(BULK)  # type: ignore[union-attr]
        assert interactive_source.paused

    def test_data_beyond_the_window_resets_the_stream(self) -> None:
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor, SMALL)
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        stream_id = client.transport.stream_id  # type: ignore[union-attr]
        # Lie about the window on the sending side.
        pair.hub._machine._streams[stream_id].send_window = 10**9
        client.transport.write(b"x" * (SMALL.initial_window + 1))  # type: ignore[union-attr]
        pair.pump()
        server = acceptor.protocols[0]
        assert server.lost is not None
        assert client.lost is not None and client.lost.check(TunnelStreamReset)
        assert client.lost.value.code == ErrorCode.FLOW_CONTROL_ERROR


class Lifecycle(SynchronousTestCase):
    def test_missed_ping_deadline_closes_session_and_fails_every_stream(self) -> None:
        pair = Pair(
            ProtocolAcceptor(Collect), SessionConfig(ping_interval=1, ping_timeout=3)
        )
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        # Pings are answered while the peer lives.
        for _ in range(10):
            pair.clock.advance(1)
            pair.pump()
        assert not pair.hub.closed
        pending = pair.hub.endpoint_for("x:1").connect(Factory.forProtocol(Collect))
        pair.link.vanish(0)  # the agent disappears without a word
        for _ in range(4):
            pair.clock.advance(1)
        assert pair.hub.closed
        assert "no sign of life" in (pair.hub.close_reason or "")
        assert client.lost is not None and client.lost.check(ConnectionLost)
        self.failureResultOf(pending, TunnelClosed)
        assert pair.metrics.streams_open == 0
        assert pair.metrics.sessions_open == 0
        assert pair.metrics.ping_timeouts == 1

    def test_go_away_drains_running_streams_and_refuses_new_ones(self) -> None:
        acceptor = ProtocolAcceptor(Echo)
        pair = Pair(acceptor)
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        closed = pair.hub.drain(timeout=60)
        pair.pump()
        refused = self.failureResultOf(pair.connect("x:1", Collect()))
        assert refused.check(StreamOpenFailed)
        agent_open = pair.agent.endpoint_for("y:1").connect(
            Factory.forProtocol(Collect)
        )
        self.failureResultOf(agent_open, StreamOpenFailed)
        assert not pair.hub.closed
        client.transport.write(b"still flowing")  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        pair.pump()
        assert client.data == b"still flowing"
        assert self.successResultOf(closed) == "drained"
        assert pair.agent.closed
        assert pair.metrics.sessions_open == 0 and pair.agent_metrics.sessions_open == 0

    def test_drain_timeout_resets_what_is_left(self) -> None:
        pair = Pair(ProtocolAcceptor(Collect))
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        closed = pair.hub.drain(timeout=5)
        pair.pump()
        pair.clock.advance(5)
        pair.pump()
        self.successResultOf(closed)
        assert client.lost is not None and client.lost.check(ConnectionLost)
        assert pair.agent.closed

    def test_peer_vanishing_mid_stream_fails_all_streams_and_leaks_nothing(
        self,
    ) -> None:
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor, SMALL)
        clients = [Collect() for _ in range(5)]
        for client in clients:
            self.successResultOf(pair.connect("x:1", client))
            client.transport.write(b"x" * 100_000)  # type: ignore[union-attr]
        pair.link.sever(ConnectionLost("gone"))
        for client in clients:
            assert client.lost is not None and client.lost.check(ConnectionLost)
        for server in acceptor.protocols:
            assert server.lost is not None and server.lost.check(ConnectionLost)
        for metrics in (pair.metrics, pair.agent_metrics):
            assert metrics.streams_open == 0
            assert metrics.sessions_open == 0
        self.failureResultOf(pair.connect("x:1", Collect()), TunnelClosed)

    def test_garbage_from_the_peer_closes_the_session_with_a_reason(self) -> None:
        pair = Pair(ProtocolAcceptor(Collect))
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        pair.hub.data_received(b"\x00\x00\x00\x00\x0f\x00\x00\x00\x00\x01")
        assert pair.hub.closed
        assert "PROTOCOL_ERROR" in (pair.hub.close_reason or "") or "(1)" in (
            pair.hub.close_reason or ""
        )
        assert client.lost is not None
        pair.pump()
        assert pair.agent.closed
        assert "peer closed the session" in (pair.agent.close_reason or "")

    def test_too_many_streams_fail_locally(self) -> None:
        pair = Pair(ProtocolAcceptor(Collect), SessionConfig(max_streams=2))
        self.successResultOf(pair.connect("x:1", Collect()))
        self.successResultOf(pair.connect("x:1", Collect()))
        failure = self.failureResultOf(pair.connect("x:1", Collect()))
        assert failure.value.reason == OpenFailReason.TOO_MANY


class Site_(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello " + request.path


class HTTPOverTheTunnel(SynchronousTestCase):
    def test_twisted_web_agent_runs_over_a_stream(self) -> None:
        site = Site(Site_())
        acceptor = ProtocolAcceptor(lambda: site.buildProtocol(None))
        pair = Pair(acceptor)
        reactor = MemoryReactorClock()

        class Endpoints:
            def endpointForURI(self, uri: Any) -> Any:
                return pair.hub.endpoint_for(f"{uri.host.decode()}:{uri.port}")

        agent = Agent.usingEndpointFactory(reactor, Endpoints())
        d: Deferred[Any] = agent.request(b"GET", b"http://10.0.0.1:8080/some/path")
        for _ in range(10):
            pair.pump()
        response = self.successResultOf(d)
        assert response.code == 200
        body = readBody(response)
        pair.pump()
        assert self.successResultOf(body) == b"hello /some/path"
        assert acceptor.targets == ["10.0.0.1:8080"]


def test_memory_link_delivers_in_order() -> None:
    pair = Pair(ProtocolAcceptor(Echo))
    assert isinstance(pair.link, MemoryLink)
    assert pair.hub.ready and pair.agent.ready
