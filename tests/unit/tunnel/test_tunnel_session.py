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
from clusternet.tunnel._codec import Data, FrameDecoder
from clusternet.tunnel._session import AUTO_CARRIER_QUEUE, MIN_CARRIER_QUEUE, QUANTUM
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

    def carrier_frames(self, pair: Pair) -> list[Any]:
        """
        The frames the hub handed its carrier since the last pump, taken off.
        """
        transport = pair.link.transports[1]
        data, transport.written = b"".join(transport.written), []
        return FrameDecoder(max_frame=16 * 1024 * 1024).feed(data)

    def data_order(self, pair: Pair, names: dict[int, str]) -> list[str]:
        return [
            names[frame.stream_id]
            for frame in self.carrier_frames(pair)
            if isinstance(frame, Data)
        ]

    def two_waiting(
        self, size: int, config: SessionConfig | None = None
    ) -> tuple[Pair, dict[int, str]]:
        """
        A pair whose carrier is congested, with streams C{a} and C{b} that
        each wrote C{size} bytes meanwhile: the pair, and the streams' names
        by id.
        """
        pair = Pair(ProtocolAcceptor(Collect), config)
        streams = self.produced(pair, 2)
        names = {}
        for name, (client, _) in zip("ab", streams, strict=True):
            names[client.transport.stream_id] = name  # type: ignore[union-attr]
        self.carrier_frames(pair)
        pair.hub.pause_writing()
        for client, _ in streams:
            client.transport.write(b"x" * size)  # type: ignore[union-attr]
        return pair, names

    def test_a_congested_carrier_holds_bulk_writes_in_their_streams(self) -> None:
        """
        While the carrier is full, a bulk write waits in its stream (and the
        stream's source pauses) instead of growing what the carrier holds;
        once the carrier drains, it is sent and the source resumes.
        """
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor)
        [(client, source)] = self.produced(pair, 1)
        carrier = pair.link.transports[1]

        def held() -> int:
            return sum(len(chunk) for chunk in carrier.written)

        client.transport.write(BULK)  # type: ignore[union-attr]
        assert not source.paused
        before = held()
        assert before > len(BULK)
        pair.hub.pause_writing()
        client.transport.write(BULK)  # type: ignore[union-attr]
        assert source.paused
        assert held() == before
        pair.hub.resume_writing()
        assert not source.paused
        assert held() > before + len(BULK)
        client.transport.write(BULK)  # type: ignore[union-attr]
        pair.pump()
        assert acceptor.protocols[0].data == BULK * 3

    def test_streams_take_turns_on_a_congested_carrier(self) -> None:
        """
        Fairness: the streams that waited for a congested carrier take turns
        of QUANTUM bytes once it drains, in the order they began to wait, and
        each source resumes once its stream's bytes are all sent.
        """
        acceptor = ProtocolAcceptor(Collect)
        pair = Pair(acceptor)
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
        names = {}
        for name, client in clients.items():
            self.successResultOf(pair.connect(f"{name}:1", client))
            client.transport.registerProducer(Ordered(name), True)  # type: ignore[union-attr]
            names[client.transport.stream_id] = name  # type: ignore[union-attr]
        self.carrier_frames(pair)
        pair.hub.pause_writing()
        for name in ("b", "c", "a"):
            clients[name].transport.write(b"x" * (2 * QUANTUM))  # type: ignore[union-attr]
        assert self.carrier_frames(pair) == []
        pair.hub.resume_writing()
        assert self.data_order(pair, names) == ["b", "c", "a", "b", "c", "a"]
        assert resumed == ["b", "c", "a"]

    def test_the_round_stops_when_the_carrier_fills_again(self) -> None:
        """
        Draining stops as soon as the carrier asks to pause again; the rest
        waits for the next drain, where the round goes on.
        """
        # Windows wide enough for three turns each.
        wide = SessionConfig(initial_window=4 * QUANTUM)
        pair, names = self.two_waiting(3 * QUANTUM, wide)
        carrier = pair.link.transports[1]
        write = carrier.write

        def write_then_fill(data: Any) -> None:
            write(data)
            pair.hub.pause_writing()

        carrier.write = write_then_fill  # type: ignore[method-assign]
        pair.hub.resume_writing()
        assert self.data_order(pair, names) == ["a", "b", "a", "b"]
        carrier.write = write  # type: ignore[method-assign]
        pair.hub.resume_writing()
        assert self.data_order(pair, names) == ["a", "b"]

    def test_a_carrier_queue_bounds_each_write_of_the_round(self) -> None:
        """
        With C{carrier_queue} set, a drain hands the carrier at most that
        many payload bytes per write, still in turns.
        """
        queue = 128 * 1024
        pair, names = self.two_waiting(2 * queue, SessionConfig(carrier_queue=queue))
        carrier = pair.link.transports[1]
        write = carrier.write
        sizes: list[int] = []

        def measured(data: Any) -> None:
            sizes.append(sum(len(chunk) for chunk in data))
            write(data)

        carrier.write = measured  # type: ignore[method-assign]
        pair.hub.resume_writing()
        assert self.data_order(pair, names) == ["a", "b", "a", "b"]
        assert len(sizes) == 4
        assert all(queue < size < queue + 64 for size in sizes)

    def test_a_carrier_queue_below_one_tls_record_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            SessionConfig(carrier_queue=MIN_CARRIER_QUEUE - 1)
        assert SessionConfig(carrier_queue=0).carrier_queue == 0

    def congestions(
        self, pair: Pair, count: int, busy: float, congested: float
    ) -> None:
        """
        C{count} times: a stream hands the carrier 1 MiB, C{busy} seconds
        pass, then the carrier is congested for C{congested} seconds.
        """
        client = Collect()
        self.successResultOf(pair.connect("x:1", client))
        for _ in range(count):
            client.transport.write(b"x" * (1024 * 1024))  # type: ignore[union-attr]
            pair.clock.advance(busy)
            pair.hub.pause_writing()
            pair.clock.advance(congested)
            pair.hub.resume_writing()
            pair.pump()

    def test_a_slow_carrier_gets_a_short_queue(self) -> None:
        """
        By default a carrier that drains slower than SLOW_CARRIER three
        congestions in a row is asked to keep its queue short, once, and the
        round hands it that much per write from then on.
        """
        pair = Pair(ProtocolAcceptor(Collect))
        carrier = pair.link.transports[1]
        self.congestions(pair, 2, busy=0.01, congested=0.09)
        assert carrier.queue_limits == []
        self.congestions(pair, 3, busy=0.01, congested=0.09)
        assert carrier.queue_limits == [AUTO_CARRIER_QUEUE]
        assert pair.hub._batch == AUTO_CARRIER_QUEUE
        # The agent's side sent nothing much: it was never congested.
        assert pair.link.transports[0].queue_limits == []

    def test_a_fast_or_seldom_congested_carrier_keeps_its_queue(self) -> None:
        pair = Pair(ProtocolAcceptor(Collect))
        # 100 MiB/s: fast.
        self.congestions(pair, 5, busy=0.001, congested=0.009)
        # Slow, but the streams set the pace: congested a tenth of the time.
        self.congestions(pair, 5, busy=0.09, congested=0.01)
        assert pair.link.transports[1].queue_limits == []

    def test_a_fixed_carrier_queue_is_not_measured(self) -> None:
        for queue in (0, 64 * 1024):
            pair = Pair(ProtocolAcceptor(Collect), SessionConfig(carrier_queue=queue))
            self.congestions(pair, 5, busy=0.01, congested=0.09)
            assert pair.link.transports[1].queue_limits == []

    def test_a_congested_carrier_does_not_stop_small_writers(self) -> None:
        """
        Head-of-line fairness: while the carrier is congested by a bulk
        stream, a stream that writes small chunks (requests, replies) goes
        straight to the carrier, ahead of the bulk bytes, until it wrote
        SMALL_WRITE bytes during this congestion; then it waits its turn.
        """
        pair = Pair(ProtocolAcceptor(Collect))
        (bulk, bulk_source), (interactive, interactive_source) = self.produced(pair, 2)
        names = {
            bulk.transport.stream_id: "bulk",  # type: ignore[union-attr]
            interactive.transport.stream_id: "interactive",  # type: ignore[union-attr]
        }
        self.carrier_frames(pair)
        pair.hub.pause_writing()
        bulk.transport.write(BULK)  # type: ignore[union-attr]
        assert bulk_source.paused
        request = b"GET / HTTP/1.1\r\n\r\n"
        for _ in range(5):
            interactive.transport.write(request)  # type: ignore[union-attr]
            assert not interactive_source.paused
        assert self.data_order(pair, names) == ["interactive"] * 5
        interactive.transport.write(BULK)  # type: ignore[union-attr]
        assert interactive_source.paused
        pair.hub.resume_writing()
        assert self.data_order(pair, names) == ["bulk", "interactive"]
        # A new congestion: small writes go straight through again.
        pair.hub.pause_writing()
        interactive.transport.write(request)  # type: ignore[union-attr]
        assert self.data_order(pair, names) == ["interactive"]

    def test_a_carrier_that_pauses_and_resumes_loses_and_reorders_nothing(
        self,
    ) -> None:
        """
        Random writes, half-closes and carrier congestion: every stream's
        bytes arrive exact and in order, followed by its FIN.
        """
        pair = Pair(ProtocolAcceptor(Echo), SMALL)
        rng = random.Random(7)
        clients = []
        for _ in range(12):
            client = Collect()
            self.successResultOf(pair.connect("echo:1", client))
            clients.append((client, bytearray()))
        half_closed: set[int] = set()
        for step in range(300):
            client, sent = rng.choice(clients)
            if id(client) not in half_closed:
                chunk = rng.randbytes(rng.choice([1, 100, 5000, 70_000, 300_000]))
                client.transport.write(chunk)  # type: ignore[union-attr]
                sent.extend(chunk)
            if rng.random() < 0.3:
                if pair.hub._carrier_paused:
                    pair.hub.resume_writing()
                else:
                    pair.hub.pause_writing()
            if rng.random() < 0.2:
                pair.pump()
            if step > 200 and rng.random() < 0.1:
                client.transport.loseWriteConnection()  # type: ignore[union-attr]
                half_closed.add(id(client))
        pair.hub.resume_writing()
        for client, _ in clients:
            client.transport.loseWriteConnection()  # type: ignore[union-attr]
        pair.pump()
        for client, sent in clients:
            assert client.data == bytes(sent)
            assert client.lost is not None and client.lost.check(ConnectionDone)
        assert pair.hub.stream_count == 0 and pair.agent.stream_count == 0

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
