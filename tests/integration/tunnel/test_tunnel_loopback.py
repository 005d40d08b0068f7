"""
The tunnel over real loopback sockets: WebSocket (plain and TLS with a CA
bundle) and raw TCP carriers, a real dialer to real TCP targets, and
twisted.web's Agent running through it.
"""

from __future__ import annotations

import fcntl
import random
import socket
import struct
import termios
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor as _reactor
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clusternet.pki import issue_certificate, make_ca
from clusternet.tunnel import (
    AllowList,
    Backoff,
    DialingAcceptor,
    ITunnelTransport,
    ReconnectingTunnelClient,
    Role,
    SessionConfig,
    StreamCarrierFactory,
    StreamCarrierProtocol,
    StreamOpenFailed,
    TunnelClosed,
    TunnelConnector,
    TunnelMetrics,
    TunnelSession,
    TunnelWebSocketServerFactory,
    UpgradeNotSupported,
    is_tunnel_upgrade,
    take_over,
)
from clusternet.tunnel._machine import ROUND_TRIPS_TO_GROW

reactor: Any = _reactor
TOKEN = "Bearer s3cret"


def _connection_under(transport: Any) -> Any:
    for _ in range(4):
        if isinstance(transport, FileDescriptor):
            return transport
        transport = getattr(transport, "transport", None)
    raise AssertionError("no TCP connection under the transport")


def _readable(sock: socket.socket) -> int:
    """
    Bytes waiting in C{sock}'s receive queue.
    """
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0" * 4))[0]


def _no_delay(transport: Any) -> bool:
    """
    Whether TCP_NODELAY is on for the socket under C{transport} (TLS too).
    """
    for _ in range(4):
        if isinstance(transport, FileDescriptor):
            sock = transport.socket  # type: ignore[attr-defined]
            return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        transport = getattr(transport, "transport", None)
    raise AssertionError("no TCP connection under the transport")


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


class Collect(Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: Deferred[None] = Deferred()
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any) -> None:  # type: ignore[override]
        self.reason = reason
        self.done.callback(None)


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello from the child " + request.path


class Loopback(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.hub_metrics = TunnelMetrics()
        self.agent_metrics = TunnelMetrics()
        self.hub_sessions: list[TunnelSession] = []
        self.session_ready: Deferred[TunnelSession] = Deferred()
        echo = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(echo.stopListening)
        self.echo_port = echo.getHost().port
        web = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(Hello())
        )
        self.addCleanup(web.stopListening)
        self.web_port = web.getHost().port

    agent_config = SessionConfig(initial_window=1024 * 1024)

    def hub_session(self, name: str = "hub") -> TunnelSession:
        session = TunnelSession(
            Role.ACCEPTOR, reactor, metrics=self.hub_metrics, name=name
        )
        self.hub_sessions.append(session)
        session.when_ready().addCallback(
            lambda s: (
                self.session_ready.callback(s)
                if not self.session_ready.called
                else None
            )
        )
        return session

    def agent_session(self) -> TunnelSession:
        acceptor = DialingAcceptor(
            AllowList([f"127.0.0.1:{self.echo_port}", f"127.0.0.1:{self.web_port}"]),
            lambda host, port: HostnameEndpoint(reactor, host, port),
            reactor,
            metrics=self.agent_metrics,
        )
        return TunnelSession(
            Role.DIALER,
            reactor,
            acceptor=acceptor,
            metrics=self.agent_metrics,
            name="agent",
            config=self.agent_config,
        )

    async def websocket_pair(self, tls: bool = False) -> tuple[Any, Any]:
        return await self.pair(tls, "websocket", upgrades=False)

    async def upgrade_pair(self, tls: bool = False) -> tuple[Any, Any]:
        return await self.pair(tls, "upgrade")

    async def pair(
        self,
        tls: bool,
        carrier: str,
        upgrades: bool = True,
        refuse_upgrades_with: int | None = None,
    ) -> tuple[Any, Any]:
        """
        A hub taking WebSocket (and, with C{upgrades}, the tunnel upgrade)
        at the sockets path, and an agent attached to it with C{carrier}.
        """

        def accept(request: Any) -> TunnelSession:
            if request.headers.get("authorization") != TOKEN:
                raise ConnectionDeny(401, "no")
            assert request.path == "/apis/proxies.clusternet.io/v1alpha1/sockets/c1"
            return self.hub_session()

        websocket = WebSocketResource(TunnelWebSocketServerFactory(accept, reactor))
        hub_session = self.hub_session

        class Attach(Resource):
            isLeaf = True

            def render(self, request: Any) -> Any:
                if refuse_upgrades_with and is_tunnel_upgrade(request):
                    # Something in between that passes only WebSocket.
                    request.setResponseCode(refuse_upgrades_with)
                    return b"upgrade not allowed"
                if upgrades and is_tunnel_upgrade(request):
                    if request.getHeader(b"authorization") != TOKEN.encode():
                        request.setResponseCode(401)
                        return b"no"
                    take_over(request, hub_session())
                    return NOT_DONE_YET
                return websocket.render(request)

        root = Resource()
        apis = Resource()
        root.putChild(b"apis", apis)
        node = apis
        for part in [b"proxies.clusternet.io", b"v1alpha1", b"sockets"]:
            child = Resource()
            node.putChild(part, child)
            node = child
        node.putChild(b"c1", Attach())
        site = Site(root)
        if tls:
            ca = make_ca("test-ca")
            pair = issue_certificate(ca, "localhost", hosts=["127.0.0.1"], server=True)
            options = PrivateCertificate.loadPEM(
                pair.certificate_pem + pair.key_pem
            ).options()
            port = reactor.listenSSL(0, site, options, interface="127.0.0.1")
            endpoint = wrapClientTLS(
                optionsForClientTLS(
                    "127.0.0.1", trustRoot=Certificate.loadPEM(ca.certificate_pem)
                ),
                TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
            )
        else:
            port = reactor.listenTCP(0, site, interface="127.0.0.1")
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        self.addCleanup(port.stopListening)
        self.connector = TunnelConnector(reactor, carrier)
        agent = await self.connector.connect(
            endpoint,
            tls,
            f"127.0.0.1:{port.getHost().port}"
            "/apis/proxies.clusternet.io/v1alpha1/sockets/c1",
            self.agent_session,
            {"Authorization": TOKEN},
        )
        hub = await self.session_ready
        await agent.when_ready()
        self.addCleanup(self.close_all, agent)
        return hub, agent

    async def close_all(self, agent: TunnelSession) -> None:
        agent.abort("test over")
        for session in self.hub_sessions:
            session.abort("test over")
        await deferLater(reactor, 0.05, lambda: None)

    async def many_streams(self, hub: TunnelSession) -> None:
        rng = random.Random(7)
        payloads = [rng.randbytes(rng.randrange(1, 2_000_000)) for _ in range(24)]
        endpoint = hub.endpoint_for(f"127.0.0.1:{self.echo_port}")
        clients = []
        for payload in payloads:
            client = Collect()
            await endpoint.connect(Factory.forProtocol(lambda c=client: c))
            client.transport.write(payload)  # type: ignore[union-attr]
            client.transport.loseWriteConnection()  # type: ignore[union-attr]
            clients.append(client)
        await gatherResults([c.done for c in clients])
        for client, payload in zip(clients, payloads, strict=True):
            assert client.reason.check(ConnectionDone), client.reason
            assert b"".join(client.chunks) == payload
        await deferLater(reactor, 0.05, lambda: None)
        assert self.hub_metrics.streams_open == 0
        assert self.agent_metrics.streams_open == 0

    async def test_websocket_many_streams_byte_exact(self) -> None:
        hub, _agent = await self.websocket_pair()
        await self.many_streams(hub)

    async def test_wss_with_ca_bundle_many_streams_byte_exact(self) -> None:
        hub, _agent = await self.websocket_pair(tls=True)
        await self.many_streams(hub)

    async def test_upgrade_many_streams_byte_exact(self) -> None:
        hub, agent = await self.upgrade_pair()
        for session in (hub, agent):
            assert verifyObject(ITunnelTransport, session.transport)
            assert session.transport.kind == "upgrade"
        await self.many_streams(hub)

    async def test_upgrade_over_tls_many_streams_byte_exact(self) -> None:
        hub, agent = await self.upgrade_pair(tls=True)
        assert isinstance(agent.transport, StreamCarrierProtocol)
        await self.many_streams(hub)

    async def test_auto_falls_back_to_websocket_for_good(self) -> None:
        """
        Against a hub that takes only WebSocket (an older one), C{auto}
        attaches over WebSocket, and asks for WebSocket at once next time.
        """
        hub, agent = await self.pair(False, "auto", upgrades=False)
        assert agent.transport.kind == "websocket"
        assert self.connector.carrier == "websocket"
        await self.many_streams(hub)

    async def test_auto_gets_past_a_proxy_that_forbids_other_upgrades(self) -> None:
        hub, agent = await self.pair(True, "auto", refuse_upgrades_with=403)
        assert agent.transport.kind == "websocket"
        assert self.connector.carrier == "websocket"
        await self.many_streams(hub)

    async def test_auto_keeps_asking_for_the_upgrade_while_nothing_attaches(
        self,
    ) -> None:
        """
        A server that answers 404 to both (an API server whose hub is not
        registered yet) does not make C{auto} give the upgrade up.
        """
        missing = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        self.addCleanup(missing.stopListening)
        connector = TunnelConnector(reactor, "auto")
        for _ in range(2):
            with self.assertRaises(TunnelClosed):
                await connector.connect(
                    TCP4ClientEndpoint(reactor, "127.0.0.1", missing.getHost().port),
                    False,
                    f"127.0.0.1:{missing.getHost().port}/apis/x/sockets/c1",
                    self.agent_session,
                    {"Authorization": TOKEN},
                )
            assert connector.carrier == "auto"

    async def test_upgrade_only_fails_against_a_websocket_only_hub(self) -> None:
        with self.assertRaises(UpgradeNotSupported):
            await self.pair(False, "upgrade", upgrades=False)

    async def test_auto_uses_the_upgrade_where_the_hub_takes_it(self) -> None:
        hub, agent = await self.pair(True, "auto")
        assert isinstance(agent.transport, StreamCarrierProtocol)
        assert self.connector.carrier == "auto"
        await self.many_streams(hub)

    async def test_websocket_payload_split_across_frames_and_messages(self) -> None:
        """
        The carrier is a byte stream: tunnel frames cut across WebSocket
        frames (a fragmented message) and across messages arrive byte-exact.
        """
        hub, agent = await self.websocket_pair()
        carrier: Any = agent.transport

        def write(data: Any) -> None:
            joined = b"".join(data)
            cut = len(joined) - len(joined) // 3
            carrier.sendMessage(joined[:cut], isBinary=True, fragmentSize=777)
            if cut < len(joined):
                carrier.sendMessage(joined[cut:], isBinary=True)

        carrier.write = write
        client = Collect()
        endpoint = hub.endpoint_for(f"127.0.0.1:{self.echo_port}")
        await endpoint.connect(Factory.forProtocol(lambda: client))
        payload = random.Random(3).randbytes(300_000)
        client.transport.write(payload)  # type: ignore[union-attr]
        client.transport.loseWriteConnection()  # type: ignore[union-attr]
        await client.done
        assert b"".join(client.chunks) == payload

    async def test_carrier_and_target_connections_send_small_writes_at_once(
        self,
    ) -> None:
        """
        Nagle's algorithm is off on both ends of every carrier and on the
        agent's connections to targets: a relay's second small write must not
        wait for the peer to acknowledge the first (40 ms with delayed ACKs).
        """
        for kind in ("ws", "wss", "tcp"):
            if kind == "tcp":
                port = reactor.listenTCP(
                    0,
                    StreamCarrierFactory(lambda addr: self.hub_session("tcp")),
                    interface="127.0.0.1",
                )
                self.addCleanup(port.stopListening)
                agent = self.agent_session()
                await TCP4ClientEndpoint(
                    reactor, "127.0.0.1", port.getHost().port
                ).connect(StreamCarrierFactory(lambda addr, a=agent: a))
                await agent.when_ready()
                self.addCleanup(self.close_all, agent)
                hub = self.hub_sessions[-1]
            else:
                hub, agent = await self.websocket_pair(tls=kind == "wss")
            for session in (hub, agent):
                assert _no_delay(session.transport), (kind, session)
            client = Collect()
            endpoint = hub.endpoint_for(f"127.0.0.1:{self.echo_port}")
            await endpoint.connect(Factory.forProtocol(lambda c=client: c))
            client.transport.write(b"x")  # type: ignore[union-attr]
            while not client.chunks:
                await deferLater(reactor, 0.01, lambda: None)
            (stream,) = [s for s in agent._streams.values() if s.protocol is not None]
            target = stream.protocol.target_side.transport  # type: ignore[union-attr]
            assert _no_delay(target), kind
            client.transport.loseConnection()  # type: ignore[union-attr]
            self.session_ready = Deferred()

    async def test_a_carrier_queue_reaches_the_tcp_connection_under_tls(
        self,
    ) -> None:
        """
        An agent's C{carrier_queue} shortens its TCP connection's buffer and
        the kernel's unsent bytes, under TLS too; the hub's stays tuned for
        throughput; streams still arrive byte-exact both ways.
        """
        self.agent_config = SessionConfig(
            initial_window=1024 * 1024, carrier_queue=64 * 1024
        )
        hub, agent = await self.websocket_pair(tls=True)
        connection = _connection_under(agent.transport)
        assert (connection.bufferSize, connection.SEND_LIMIT) == (65536, 65536)
        option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if option is not None:
            lowat = connection.socket.getsockopt(socket.IPPROTO_TCP, option)
            assert lowat == 32 * 1024
        assert _connection_under(hub.transport).bufferSize == 1024 * 1024
        await self.many_streams(hub)

    async def test_small_writes_leave_at_once_over_tls(self) -> None:
        """
        A small write on a wss carrier, either end, reaches
        the peer's socket in the same reactor turn: Twisted's TLS would hold
        it until the next one, to join it with later writes.
        """
        hub, agent = await self.websocket_pair(tls=True)
        for sender, receiver in ((hub, agent), (agent, hub)):
            sock = _connection_under(receiver.transport).socket
            before = _readable(sock)
            sender.transport.write([b"\x00" * 10])
            assert _readable(sock) > before, sender

    async def test_small_writes_need_no_writer_registration(self) -> None:
        """
        A small write on an idle carrier, either end, with TLS (the hub's
        C{listenSSL} connection and the agent's TLS wrapper) and without,
        goes to the kernel in the write call: the reactor is never asked to
        watch the socket for writing (two C{epoll_ctl} calls per write).
        """
        for tls in (False, True):
            hub, agent = await self.upgrade_pair(tls=tls)
            for sender, receiver in ((hub, agent), (agent, hub)):
                connection = _connection_under(sender.transport)
                sock = _connection_under(receiver.transport).socket
                watched: list[Any] = []
                add_writer = reactor.addWriter
                self.patch(
                    reactor,
                    "addWriter",
                    lambda w, add=add_writer, seen=watched: (seen.append(w), add(w)),
                )
                before = _readable(sock)
                sender.transport.write([b"\x00" * 10])
                assert _readable(sock) > before, (tls, sender)
                assert connection not in watched, (tls, sender)
                self.patch(reactor, "addWriter", add_writer)
            await self.close_all(agent)
            self.session_ready = Deferred()

    async def test_both_ends_measure_the_carrier_round_trip_at_once(self) -> None:
        """
        Right after the handshake each end PINGs a few times in a row: the
        round trip its streams' windows grow by (docs/tunnel-protocol.md,
        "Flow control"), known before the first keepalive.
        """
        hub, agent = await self.upgrade_pair(tls=True)
        for _ in range(200):
            if all(s._machine.rtt_samples >= ROUND_TRIPS_TO_GROW for s in (hub, agent)):
                break
            await deferLater(reactor, 0.01, lambda: None)
        for session in (hub, agent):
            machine = session._machine
            assert machine.rtt_samples == ROUND_TRIPS_TO_GROW
            assert machine.min_rtt is not None and 0 < machine.min_rtt < 1.0
        # Bytes still arrive whole with the windows the round trip allows.
        await self.many_streams(hub)

    async def test_a_text_message_closes_the_session(self) -> None:
        hub, agent = await self.websocket_pair()
        carrier: Any = agent.transport
        carrier.sendMessage(b"hello", isBinary=False)
        message = await hub.when_closed()
        assert "websocket closed" in message
        await agent.when_closed()

    async def test_raw_tcp_carrier_many_streams_byte_exact(self) -> None:
        port = reactor.listenTCP(
            0,
            StreamCarrierFactory(lambda addr: self.hub_session()),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        agent = self.agent_session()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            StreamCarrierFactory(lambda addr: agent)
        )
        hub = await self.session_ready
        self.addCleanup(self.close_all, agent)
        await self.many_streams(hub)

    async def test_agent_http_request_through_the_tunnel(self) -> None:
        hub, _agent = await self.websocket_pair()

        class Endpoints:
            def endpointForURI(self, uri: Any) -> Any:
                return hub.endpoint_for(f"{uri.host.decode()}:{uri.port}")

        client = Agent.usingEndpointFactory(reactor, Endpoints())
        for path in (b"/a", b"/b/c"):
            response = await client.request(
                b"GET", b"http://127.0.0.1:%d%s" % (self.web_port, path)
            )
            assert response.code == 200
            assert await readBody(response) == b"hello from the child " + path

    async def test_policy_refusal_and_dial_failure(self) -> None:
        hub, agent = await self.websocket_pair()
        factory = Factory.forProtocol(Collect)
        try:
            await hub.endpoint_for("127.0.0.1:1").connect(factory)
        except StreamOpenFailed as error:
            assert error.http_status == 403
        else:
            raise AssertionError("refused target was dialled")
        agent.acceptor.policy = AllowList(["127.0.0.1:*"])  # type: ignore[union-attr]
        try:
            await hub.endpoint_for("127.0.0.1:1").connect(factory)
        except StreamOpenFailed as error:
            assert error.http_status == 502
        else:
            raise AssertionError("closed port accepted")
        assert self.agent_metrics.dial_failures == 1

    async def test_peer_vanishing_mid_stream_errors_every_stream(self) -> None:
        hub, agent = await self.websocket_pair()
        endpoint = hub.endpoint_for(f"127.0.0.1:{self.echo_port}")
        clients = []
        for _ in range(5):
            client = Collect()
            await endpoint.connect(Factory.forProtocol(lambda c=client: c))
            client.transport.write(b"x" * 100_000)  # type: ignore[union-attr]
            clients.append(client)
        agent.transport.abort()  # type: ignore[union-attr]
        await gatherResults([c.done for c in clients])
        for client in clients:
            assert client.reason.check(ConnectionLost)
        await deferLater(reactor, 0.1, lambda: None)
        for metrics in (self.hub_metrics, self.agent_metrics):
            assert metrics.streams_open == 0
            assert metrics.sessions_open == 0

    async def test_reconnecting_client_comes_back_after_the_hub_drops_it(self) -> None:
        port = reactor.listenTCP(
            0,
            StreamCarrierFactory(
                lambda addr: self.hub_session(f"hub{len(self.hub_sessions)}")
            ),
            interface="127.0.0.1",
        )
        self.addCleanup(port.stopListening)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        sessions: list[TunnelSession] = []

        def connect() -> Deferred[TunnelSession]:
            session = self.agent_session()
            sessions.append(session)
            return endpoint.connect(
                StreamCarrierFactory(lambda addr: session)
            ).addCallback(lambda _: session)

        client = ReconnectingTunnelClient(
            connect, reactor, Backoff(initial=0.01, maximum=0.05)
        )
        client.startService()
        self.addCleanup(client.stopService)
        first = await client.whenConnected()
        await self.session_ready
        self.hub_sessions[0].close("hub restarts")
        for _ in range(100):
            await deferLater(reactor, 0.02, lambda: None)
            if client.session is not None and client.session is not first:
                break
        second = await client.whenConnected()
        assert second is not first and second.ready
        assert len(self.hub_sessions) == 2
