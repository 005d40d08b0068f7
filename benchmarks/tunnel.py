"""
Tunnel benchmark: bulk download, concurrent streams, echo latency and idle
session memory, through the tunnel and directly, on loopback.

    python benchmarks/tunnel.py          # short run (256 MiB bulk), one run each
    python benchmarks/tunnel.py --full   # the issue's sizes (1 GiB bulk), medians of 3

The hub side (stream opener and sink) runs in this process, the agent side
(the dialer) in a child process, and the target server (a byte source and
echo server) in a process of its own, as an API server is beside an agent
(C{--source-in-agent} puts it in the agent's process instead).  The direct
baseline connects this process to the same target.  Prints one JSON object
per line (name, value, unit, baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit as _emit
from _common import rss_kib
from _delay import DelayRelayFactory
from _link import ShapedLink, link_unavailable
from _peer import PeerForward, parse_peer, tree_cpu_seconds

from twisted.internet import defer, task
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
)
from twisted.protocols.portforward import (
    ProxyClientFactory,
    ProxyFactory,
    ProxyServer,
)
from twisted.web.resource import Resource

from clusternet._options import coerce_tunnel_queue
from clusternet.tunnel._tuning import tune_transport

MiB = 1024 * 1024
CHUNK = b"\xa5" * (1024 * 1024)

# Added to every result line: the link the run was measured over (--link).
_link_fields: dict[str, Any] = {}
# Milliseconds each way between the agent and the hub (--delay).
_delay_ms = 0.0


def emit(
    name: str, value: float, unit: str, baseline: float | None = None, **extra: Any
) -> None:
    _emit(name, value, unit, baseline, **extra, **_link_fields)


# -- the source / echo server (agent side) -----------------------------------


class Source(Protocol):
    """
    First byte: b"B" + u64 size -> send that many bytes then close;
    b"E" -> echo forever.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.mode = b""
        self.remaining = 0

    def dataReceived(self, data: bytes) -> None:
        if self.mode == b"E":
            self.transport.write(data)
            return
        self.buffer += data
        if not self.mode and len(self.buffer) >= 1:
            self.mode = self.buffer[:1]
            if self.mode == b"E":
                rest, self.buffer = self.buffer[1:], b""
                if rest:
                    self.transport.write(rest)
                return
        if self.mode == b"B" and len(self.buffer) >= 9:
            (self.remaining,) = struct.unpack("!Q", self.buffer[1:9])
            self.buffer = b""
            self.transport.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self.remaining <= 0:
            return
        n = min(self.remaining, len(CHUNK))
        self.remaining -= n
        self.transport.write(CHUNK if n == len(CHUNK) else CHUNK[:n])
        if self.remaining <= 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def stopProducing(self) -> None:
        self.remaining = 0

    def pauseProducing(self) -> None:
        pass


async def agent_main(reactor: Any, args: argparse.Namespace) -> None:
    from autobahn.websocket import USES_NVX

    from clusternet.tunnel import (
        AllowList,
        DialingAcceptor,
        Role,
        SessionConfig,
        StreamCarrierFactory,
        TunnelSession,
        connect_upgrade,
        connect_websocket,
    )

    if args.source_port:
        source_port = args.source_port
    else:
        port = reactor.listenTCP(0, Factory.forProtocol(Source), interface=args.listen)
        source_port = port.getHost().port
    sessions = []

    def make() -> TunnelSession:
        acceptor = DialingAcceptor(
            AllowList([f"127.0.0.1:{source_port}"]),
            lambda h, p: TCP4ClientEndpoint(reactor, h, p),
            reactor,
        )
        session = TunnelSession(
            Role.DIALER,
            reactor,
            acceptor=acceptor,
            name="bench",
            config=SessionConfig(carrier_queue=args.carrier_queue),
        )
        sessions.append(session)
        return session

    hub_host = args.hub_host
    endpoint: Any = TCP4ClientEndpoint(reactor, hub_host, args.hub_port)
    if args.carrier in ("wss", "tls", "upgrade-tls"):
        ca = Certificate.loadPEM(Path(args.ca).read_bytes())
        endpoint = wrapClientTLS(optionsForClientTLS(hub_host, trustRoot=ca), endpoint)
    for _ in range(args.sessions):
        if args.carrier in ("upgrade", "upgrade-tls"):
            scheme = "https" if args.carrier == "upgrade-tls" else "http"
            await connect_upgrade(
                reactor,
                endpoint,
                f"{scheme}://{hub_host}:{args.hub_port}/tunnel",
                make,
                {"Authorization": "Bearer bench"},
            )
        elif args.carrier in ("ws", "wss"):
            scheme = "wss" if args.carrier == "wss" else "ws"
            await connect_websocket(
                reactor,
                endpoint,
                f"{scheme}://{hub_host}:{args.hub_port}/tunnel",
                make,
                {"Authorization": "Bearer bench"},
            )
        else:
            session = make()
            await endpoint.connect(StreamCarrierFactory(lambda addr, s=session: s))
    print(json.dumps({"source_port": source_port, "nvx": USES_NVX}), flush=True)
    # Run until the hub terminates us.
    await defer.Deferred()


async def source_main(reactor: Any, args: argparse.Namespace) -> None:
    """
    The target server on its own, as an API server is beside an agent.
    """
    port = reactor.listenTCP(0, Factory.forProtocol(Source), interface=args.listen)
    print(json.dumps({"source_port": port.getHost().port}), flush=True)
    await defer.Deferred()


async def relay_main(reactor: Any, args: argparse.Namespace) -> None:
    """
    The long-haul link (--delay): relays the agent's carrier to the hub,
    holding its bytes --delay milliseconds each way.
    """
    factory = DelayRelayFactory(
        reactor, args.hub_host, args.hub_port, args.delay / 1000.0
    )
    port = reactor.listenTCP(0, factory, interface=args.listen)
    print(json.dumps({"relay_port": port.getHost().port}), flush=True)
    await defer.Deferred()


# -- the hub side (this process) ---------------------------------------------


class Sink(Protocol):
    """
    Asks the source for C{expected} bytes once connected (or, with C{hold},
    once L{request} is called) and counts them.
    """

    def __init__(self, expected: int, hold: bool = False) -> None:
        self.expected = expected
        self.hold = hold
        self.received = 0
        self.done: defer.Deferred[float] = defer.Deferred()
        self.started = 0.0

    def connectionMade(self) -> None:
        # The direct baseline reads as much per call as the tunnel does.
        tune_transport(self.transport)
        if not self.hold:
            self.request()

    def request(self) -> None:
        self.started = time.perf_counter()
        self.transport.write(b"B" + struct.pack("!Q", self.expected))

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)

    def connectionLost(self, reason: Any) -> None:
        elapsed = time.perf_counter() - self.started
        if self.received != self.expected:
            self.done.errback(RuntimeError(f"got {self.received} of {self.expected}"))
        else:
            self.done.callback(elapsed)


class Pinger(Protocol):
    def connectionMade(self) -> None:
        self.waiting: defer.Deferred[None] | None = None
        self.transport.write(b"E")

    def dataReceived(self, data: bytes) -> None:
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(None)

    async def round_trips(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            self.waiting = defer.Deferred()
            start = time.perf_counter()
            self.transport.write(b"x")
            await self.waiting
            times.append((time.perf_counter() - start) * 1e6)
        return times


def cpu_seconds(pid: int | None = None) -> float:
    """
    User + system CPU time of this process, or of process C{pid} and its
    descendants (Linux).
    """
    if pid is None:
        times = os.times()
        return times.user + times.system
    return tree_cpu_seconds(pid)


class CpuMeter:
    """
    CPU time the hub (this process) and the agent spend, in microseconds per
    MiB moved or per round trip: less sensitive to a busy machine than
    throughput and latency.
    """

    def __init__(self, agent_pid: int) -> None:
        self.agent_pid = agent_pid
        self.hub = cpu_seconds()
        self.agent = cpu_seconds(agent_pid)

    def per_mib(self, size: int) -> dict[str, float]:
        mib = size / MiB
        return {
            "hub_cpu_us_per_mib": round((cpu_seconds() - self.hub) * 1e6 / mib, 1),
            "agent_cpu_us_per_mib": round(
                (cpu_seconds(self.agent_pid) - self.agent) * 1e6 / mib, 1
            ),
        }

    def per_round_trip(self, count: int) -> dict[str, float]:
        return {
            "hub_cpu_us_per_rtt": round((cpu_seconds() - self.hub) * 1e6 / count, 1),
            "agent_cpu_us_per_rtt": round(
                (cpu_seconds(self.agent_pid) - self.agent) * 1e6 / count, 1
            ),
        }


async def bulk(endpoint: Any, size: int) -> float:
    sink = Sink(size)
    await endpoint.connect(Factory.forProtocol(lambda: sink))
    elapsed = await sink.done
    return size / MiB / elapsed


async def parallel(
    endpoint: Any, streams: int, size: int, fairness: list[float] | None = None
) -> float:
    """
    C{streams} concurrent downloads of C{size} bytes, asked for at once once
    every stream is open; the aggregate MiB/s.
    Appends to C{fairness} Jain's index of the streams' own rates (1.0: all
    alike; 1/streams: one stream got everything).
    """
    sinks = [Sink(size, hold=True) for _ in range(streams)]
    for sink in sinks:
        await endpoint.connect(Factory.forProtocol(lambda s=sink: s))
    # All ask at once: the downloads share the connection from the start.
    start = time.perf_counter()
    for sink in sinks:
        sink.request()
    elapsed = await defer.gatherResults([s.done for s in sinks])
    if fairness is not None:
        rates = [size / e for e in elapsed]
        fairness.append(sum(rates) ** 2 / (len(rates) * sum(r * r for r in rates)))
    return streams * size / MiB / (time.perf_counter() - start)


async def echo(endpoint: Any, count: int) -> tuple[float, float]:
    pinger = Pinger()
    await endpoint.connect(Factory.forProtocol(lambda: pinger))
    await pinger.round_trips(50)
    times = sorted(await pinger.round_trips(count))
    pinger.transport.loseConnection()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


async def open_and_echo(endpoint: Any, count: int) -> tuple[float, float]:
    """
    Connect, one 1-byte round trip, close, C{count} times: what a new stream
    costs (the tunnel's OPEN, the agent's dial) on top of a round trip.
    """
    times = []
    for _ in range(count):
        pinger = Pinger()
        start = time.perf_counter()
        await endpoint.connect(Factory.forProtocol(lambda p=pinger: p))
        await pinger.round_trips(1)
        times.append((time.perf_counter() - start) * 1e6)
        pinger.transport.loseConnection()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


async def echo_under_load(
    reactor: Any, endpoint: Any, count: int
) -> tuple[float, float, float]:
    """
    Echo round trips on one stream while another stream of the same
    connection (or, directly, another connection) downloads as fast as it
    can: what an interactive request sees beside a bulk one.  Returns p50,
    p99 and the download's MiB/s meanwhile; the download is cut off after.
    """
    sink = Sink(1 << 40)
    sink.done.addErrback(lambda _: None)
    await endpoint.connect(Factory.forProtocol(lambda: sink))
    deadline = time.perf_counter() + 10
    while sink.received < 16 * MiB and time.perf_counter() < deadline:
        await task.deferLater(reactor, 0.01, lambda: None)
    start, before = time.perf_counter(), sink.received
    p50, p99 = await echo(endpoint, count)
    rate = (sink.received - before) / MiB / (time.perf_counter() - start)
    sink.transport.abortConnection()
    return p50, p99, rate


class _UpgradeResource(Resource):
    """
    Takes the tunnel upgrade (the hub authorizes before this, see
    clusternet.hub).
    """

    isLeaf = True

    def __init__(self, new_session: Callable[[Any], Any]) -> None:
        super().__init__()
        self.new_session = new_session

    def render(self, request: Any) -> Any:
        from twisted.web.server import NOT_DONE_YET

        from clusternet.tunnel import is_tunnel_upgrade, take_over

        if not is_tunnel_upgrade(request):
            request.setResponseCode(400)
            return b"not a tunnel upgrade"
        take_over(request, self.new_session(None))
        return NOT_DONE_YET


class Hub:
    def __init__(
        self, reactor: Any, carrier: str, tls: Any, host: str = "127.0.0.1"
    ) -> None:
        from autobahn.twisted.resource import WebSocketResource
        from twisted.web.server import Site

        from clusternet.tunnel import (
            Role,
            SessionConfig,
            StreamCarrierFactory,
            TunnelSession,
            TunnelWebSocketServerFactory,
        )

        self.reactor = reactor
        self.sessions: list[TunnelSession] = []
        self.waiting: list[tuple[int, defer.Deferred[None]]] = []

        def new_session(*_: Any) -> TunnelSession:
            session = TunnelSession(
                Role.ACCEPTOR,
                reactor,
                name="bench-hub",
                config=SessionConfig(carrier_queue=_carrier_queue),
            )
            self.sessions.append(session)
            session.when_ready().addCallback(lambda _: self._check())
            return session

        if carrier in ("ws", "wss"):
            root = Resource()
            root.putChild(
                b"tunnel",
                WebSocketResource(TunnelWebSocketServerFactory(new_session, reactor)),
            )
            factory: Any = Site(root)
        elif carrier in ("upgrade", "upgrade-tls"):
            root = Resource()
            root.putChild(b"tunnel", _UpgradeResource(new_session))
            factory = Site(root)
        else:
            factory = StreamCarrierFactory(new_session)
        if tls is None:
            self.port = reactor.listenTCP(0, factory, interface=host)
        else:
            self.port = reactor.listenSSL(0, factory, tls, interface=host)

    def _check(self) -> None:
        ready = sum(1 for s in self.sessions if s.ready)
        for count, d in list(self.waiting):
            if ready >= count and not d.called:
                d.callback(None)

    def wait_for(self, count: int) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.waiting.append((count, d))
        self._check()
        return d


# The carriers measured with 64 streams, a new stream per round trip and
# echo beside a download: what agents use (the upgrade by default, or
# WebSocket), each without TLS so that the carrier's own cost shows.
MAIN_CARRIERS = ("ws", "upgrade")

# Every process this benchmark starts, so that none outlives it.
_children: list[subprocess.Popen[bytes]] = []


# Where the agent and the target server run: the command that puts a child
# on the agent's side of a shaped link (see _link.py), and the addresses.
_agent_side: list[str] = []
_carrier_queue: int | None = None
_hub_host = "127.0.0.1"
_agent_host = "127.0.0.1"


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # The child exits when its stdin closes, i.e. when this process is gone
    # however it ended (see _exit_with_parent).
    listen = "0.0.0.0" if _agent_side else "127.0.0.1"
    child = subprocess.Popen(
        [*_agent_side, sys.executable, __file__, *args, "--listen", listen],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    _children.append(child)
    return child


def _stop_children() -> None:
    for child in _children:
        if child.poll() is None:
            child.terminate()
    for child in _children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    _children.clear()


def _exit_with_parent() -> None:
    """
    In a child: exit as soon as the benchmark that started it is gone.
    """

    def watch() -> None:
        # The raw descriptor: a buffered read would hold a lock that stops
        # the interpreter from finalizing when the child ends normally.
        while os.read(0, 4096):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


async def run_agent(
    reactor: Any,
    hub: Hub,
    carrier: str,
    ca_file: str,
    source_port: int,
    sessions: int = 1,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    hub_port = hub.port.getHost().port
    if _delay_ms:
        relay = _spawn(
            ["--relay", "--hub-port", str(hub_port), "--delay", str(_delay_ms)]
        )
        hub_port = int(json.loads(await _read_line(reactor, relay))["relay_port"])
    proc = _spawn(
        [
            "--agent",
            "--hub-port",
            str(hub_port),
            "--hub-host",
            _hub_host,
            "--carrier-queue",
            "auto" if _carrier_queue is None else str(_carrier_queue),
            "--carrier",
            carrier,
            "--ca",
            ca_file,
            "--sessions",
            str(sessions),
            "--source-port",
            str(source_port),
        ]
    )
    line = await _read_line(reactor, proc)
    await hub.wait_for(sessions)
    return proc, json.loads(line)


async def run_source(reactor: Any) -> int:
    proc = _spawn(["--source"])
    line = await _read_line(reactor, proc)
    return int(json.loads(line)["source_port"])


async def _read_line(reactor: Any, proc: subprocess.Popen[bytes]) -> bytes:
    from twisted.internet.threads import deferToThread

    assert proc.stdout is not None
    line = await deferToThread(proc.stdout.readline)
    if not line:
        raise RuntimeError("agent process exited")
    return line


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


class Measure:
    """
    Runs one measurement C{runs} times (the issue's references are medians
    of 3) and keeps the values with the CPU both processes spent on them.
    """

    def __init__(self, runs: int, agent_pid: int) -> None:
        self.runs = runs
        self.agent_pid = agent_pid

    async def rate(
        self, size: int, run: Callable[..., Awaitable[float]], *args: Any
    ) -> tuple[float, dict[str, Any]]:
        meter = CpuMeter(self.agent_pid)
        values = [await run(*args) for _ in range(self.runs)]
        extra: dict[str, Any] = dict(meter.per_mib(size * self.runs))
        if self.runs > 1:
            extra["runs"] = [round(v, 1) for v in values]
        return median(values), extra

    async def echo(
        self, endpoint: Any, count: int
    ) -> tuple[float, float, dict[str, Any]]:
        meter = CpuMeter(self.agent_pid)
        results = [await echo(endpoint, count) for _ in range(self.runs)]
        extra: dict[str, Any] = dict(meter.per_round_trip((count + 50) * self.runs))
        if self.runs > 1:
            extra["runs"] = [round(p50, 1) for p50, _ in results]
        return (
            median([p50 for p50, _ in results]),
            median([p99 for _, p99 in results]),
            extra,
        )


# OpenSSH's fastest ciphers on most machines: the issue's reference range.
SSH_CIPHERS = {
    "chacha20": "chacha20-poly1305@openssh.com",
    "aes128gcm": "aes128-gcm@openssh.com",
}


async def ssh_peer(
    reactor: Any,
    measure: Measure,
    source_port: int,
    size: int,
    direct_bulk: tuple[float, dict[str, Any]] | None,
    direct_echo: tuple[float, float, dict[str, Any]] | None,
    tests: list[str],
) -> None:
    """
    The same bulk and echo through an OpenSSH local port forward, where
    sshd and ssh are installed.
    """
    from _ssh import SSHForward, ssh_available

    from twisted.internet.threads import deferToThread

    missing = ssh_available()
    if missing is not None:
        emit("ssh_peer_skipped", 0, "", None, reason=missing)
        return
    for short, cipher in SSH_CIPHERS.items():
        forward = SSHForward(source_port, cipher)
        port = await deferToThread(forward.start)
        try:
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            if "bulk" in tests:
                value, extra = await measure.rate(size, bulk, endpoint, size)
                emit(
                    f"bulk_1_stream_ssh_{short}",
                    value,
                    "MiB/s",
                    None if direct_bulk is None else direct_bulk[0],
                    bytes=size,
                    cipher=cipher,
                    **extra,
                )
            if "echo" in tests:
                p50, p99, extra = await measure.echo(endpoint, 2000)
                emit(
                    f"echo_rtt_p50_ssh_{short}",
                    p50,
                    "us",
                    None if direct_echo is None else direct_echo[0],
                    cipher=cipher,
                    **extra,
                )
                emit(
                    f"echo_rtt_p99_ssh_{short}",
                    p99,
                    "us",
                    None if direct_echo is None else direct_echo[1],
                )
        finally:
            await deferToThread(forward.stop)


class _TunnelForwardServer(ProxyServer):
    """
    A local port forward into the tunnel: each accepted connection gets a
    stream to the target, spliced both ways with backpressure.
    """

    def connectionMade(self) -> None:
        tune_transport(self.transport)
        self.transport.pauseProducing()
        client = ProxyClientFactory()
        client.setServer(self)
        d = self.factory.endpoint.connect(client)  # type: ignore[attr-defined]
        d.addErrback(lambda _: self.transport.loseConnection())


def forward_into(reactor: Any, endpoint: Any) -> Any:
    """
    Listen on a port of 127.0.0.1 that forwards to C{endpoint}: our tunnel
    with the same topology as a peer's forward (a socket on each side).
    """
    factory = ProxyFactory("", 0)
    factory.protocol = _TunnelForwardServer
    factory.endpoint = endpoint  # type: ignore[attr-defined]
    factory.noisy = False
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


async def through_forward(
    reactor: Any,
    name: str,
    endpoint: Any,
    measure: Measure,
    sizes: tuple[int, int],
    direct_bulk: tuple[float, dict[str, Any]] | None,
    direct_echo: tuple[float, float, dict[str, Any]] | None,
    tests: list[str],
) -> None:
    """
    Bulk, 64 streams and echo through a local port forward at C{endpoint}:
    ours (C{ws_forward}) or another tunnel's (C{peer_NAME}, see --peer).
    """
    size, per_stream = sizes
    if "bulk" in tests:
        value, extra = await measure.rate(size, bulk, endpoint, size)
        emit(
            f"bulk_1_stream_{name}",
            value,
            "MiB/s",
            None if direct_bulk is None else direct_bulk[0],
            bytes=size,
            **extra,
        )
    if "parallel" in tests:
        fairness: list[float] = []
        value, extra = await measure.rate(
            64 * per_stream, parallel, endpoint, 64, per_stream, fairness
        )
        emit(
            f"bulk_64_streams_{name}",
            value,
            "MiB/s",
            None,
            bytes_per_stream=per_stream,
            jain_fairness=round(median(fairness), 3),
            **extra,
        )
    if "echo" in tests:
        p50, p99, extra = await measure.echo(endpoint, 2000)
        base = (None, None) if direct_echo is None else direct_echo[:2]
        emit(f"echo_rtt_p50_{name}", p50, "us", base[0], **extra)
        emit(f"echo_rtt_p99_{name}", p99, "us", base[1])
        p50, p99, rate = await echo_under_load(reactor, endpoint, 500)
        emit(
            f"echo_rtt_p50_beside_bulk_{name}",
            p50,
            "us",
            None,
            bulk_mib_s=round(rate, 1),
        )


async def compare_peers(
    reactor: Any,
    carrier: str,
    peers: list[tuple[str, list[str]]],
    session: Any,
    measure: Measure,
    target: str,
    runs: int,
    sizes: tuple[int, int],
    direct_bulk: tuple[float, dict[str, Any]] | None,
    direct_echo: tuple[float, float, dict[str, Any]] | None,
    tests: list[str],
) -> None:
    """
    Our tunnel behind a local port forward, then each --peer the same way,
    so that every one crosses the same sockets.
    """
    from twisted.internet.threads import deferToThread

    port = forward_into(reactor, session.endpoint_for(target))
    try:
        local = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        await through_forward(
            reactor,
            f"{carrier}_forward",
            local,
            measure,
            sizes,
            direct_bulk,
            direct_echo,
            tests,
        )
    finally:
        await port.stopListening()
    for name, argv in peers:
        forward = PeerForward(name, argv, target)
        peer_port = await deferToThread(forward.start)
        try:
            await through_forward(
                reactor,
                f"peer_{name}",
                TCP4ClientEndpoint(reactor, "127.0.0.1", peer_port),
                Measure(runs, forward.pid),
                sizes,
                direct_bulk,
                direct_echo,
                tests,
            )
        finally:
            await deferToThread(forward.stop)


async def hub_main(reactor: Any, args: argparse.Namespace) -> None:
    from clusternet.pki import issue_certificate, make_ca

    ca = make_ca("bench-ca")
    pair = issue_certificate(ca, _hub_host, hosts=[_hub_host], server=True)
    tls = PrivateCertificate.loadPEM(pair.certificate_pem + pair.key_pem).options()
    ca_file = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
    ca_file.write(ca.certificate_pem)
    ca_file.close()
    size = (1024 if args.full else args.bulk_mib) * MiB
    per_stream = (64 if args.full else args.stream_mib) * MiB
    runs = args.runs if args.runs else (3 if args.full else 1)
    tests = args.tests.split(",")
    direct_bulk: tuple[float, dict[str, Any]] | None = None
    direct_echo: tuple[float, float, dict[str, Any]] | None = None
    source_port = 0
    peers_done = False
    direct_parallel: tuple[float, dict[str, Any]] | None = None
    try:
        if not args.source_in_agent:
            source_port = await run_source(reactor)
        for carrier in args.carriers.split(","):
            hub = Hub(
                reactor,
                carrier,
                None if carrier in ("ws", "tcp", "upgrade") else tls,
                _hub_host,
            )
            proc, info = await run_agent(
                reactor, hub, carrier, ca_file.name, source_port
            )
            measure = Measure(runs, proc.pid)
            target = f"127.0.0.1:{info['source_port']}"
            direct = TCP4ClientEndpoint(reactor, _agent_host, info["source_port"])
            through = hub.sessions[0].endpoint_for(target)
            if "bulk" in tests:
                if direct_bulk is None:
                    direct_bulk = await measure.rate(size, bulk, direct, size)
                value, extra = await measure.rate(size, bulk, through, size)
                emit(
                    f"bulk_1_stream_{carrier}",
                    value,
                    "MiB/s",
                    direct_bulk[0],
                    bytes=size,
                    nvx=info["nvx"],
                    **extra,
                    baseline_extra=direct_bulk[1],
                )
            if carrier in MAIN_CARRIERS and "parallel" in tests:
                total = 64 * per_stream
                if direct_parallel is None:
                    base_fairness: list[float] = []
                    direct_parallel = await measure.rate(
                        total, parallel, direct, 64, per_stream, base_fairness
                    )
                    direct_parallel[1]["jain_fairness"] = round(
                        median(base_fairness), 3
                    )
                base, base_extra = direct_parallel
                fairness: list[float] = []
                value, extra = await measure.rate(
                    total, parallel, through, 64, per_stream, fairness
                )
                emit(
                    f"bulk_64_streams_{carrier}",
                    value,
                    "MiB/s",
                    base,
                    bytes_per_stream=per_stream,
                    jain_fairness=round(median(fairness), 3),
                    **extra,
                    baseline_extra=base_extra,
                )
            if "echo" in tests:
                if direct_echo is None:
                    direct_echo = await measure.echo(direct, 2000)
                p50, p99, extra = await measure.echo(through, 2000)
                emit(
                    f"echo_rtt_p50_{carrier}",
                    p50,
                    "us",
                    direct_echo[0],
                    **extra,
                    baseline_extra=direct_echo[2],
                )
                emit(f"echo_rtt_p99_{carrier}", p99, "us", direct_echo[1])
            if carrier in MAIN_CARRIERS and "echo" in tests:
                base_open = await open_and_echo(direct, 500)
                p50, p99 = await open_and_echo(through, 500)
                emit(f"open_echo_p50_{carrier}", p50, "us", base_open[0], count=500)
                emit(f"open_echo_p99_{carrier}", p99, "us", base_open[1])
                base = await echo_under_load(reactor, direct, 500)
                p50, p99, rate = await echo_under_load(reactor, through, 500)
                emit(
                    f"echo_rtt_p50_beside_bulk_{carrier}",
                    p50,
                    "us",
                    base[0],
                    bulk_mib_s=round(rate, 1),
                    baseline_bulk_mib_s=round(base[2], 1),
                )
                emit(f"echo_rtt_p99_beside_bulk_{carrier}", p99, "us", base[1])
            if carrier == "ws" and "ssh" in tests and _agent_side:
                emit("ssh_peer_skipped", 0, "", None, reason="not over --link")
            elif carrier == "ws" and "ssh" in tests:
                await ssh_peer(
                    reactor,
                    measure,
                    info["source_port"],
                    size,
                    direct_bulk,
                    direct_echo,
                    tests,
                )
            if args.peer and _agent_side:
                emit("peer_skipped", 0, "", None, reason="not over --link")
            elif args.peer:
                await compare_peers(
                    reactor,
                    carrier,
                    args.peer if not peers_done else [],
                    hub.sessions[0],
                    measure,
                    target,
                    runs,
                    (size, per_stream),
                    direct_bulk,
                    direct_echo,
                    tests,
                )
                peers_done = True
            proc.terminate()
            proc.wait()
            await hub.port.stopListening()
            for session in hub.sessions:
                session.abort("bench over")
        if "idle" not in tests:
            return
        # Memory per idle session, measured in the hub process.
        hub = Hub(reactor, "ws", None, _hub_host)
        before = rss_kib()
        proc, info = await run_agent(
            reactor, hub, "ws", ca_file.name, source_port, args.idle
        )
        await task.deferLater(reactor, 0.5, lambda: None)
        after = rss_kib()
        emit(
            "idle_session_memory_ws",
            (after - before) / args.idle,
            "KiB/session",
            None,
            sessions=args.idle,
        )
        proc.terminate()
        proc.wait()
    finally:
        os.unlink(ca_file.name)
        _stop_children()


def _queue_argument(text: str) -> int | None:
    # The agent's and the hub's --tunnel-queue syntax: auto, 0, 64Ki, 262144.
    try:
        return coerce_tunnel_queue(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _peer_argument(text: str) -> tuple[str, list[str]]:
    try:
        return parse_peer(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="1 GiB bulk, 64x64 MiB")
    parser.add_argument("--bulk-mib", type=int, default=256)
    parser.add_argument("--stream-mib", type=int, default=4)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument(
        "--carriers",
        default="upgrade,upgrade-tls,ws,wss,tls",
        help="comma-separated: ws, wss, tls, upgrade (HTTP upgrade to raw frames), "
        "upgrade-tls, tcp (the stream carrier without TLS)",
    )
    parser.add_argument(
        "--tests",
        default="bulk,parallel,echo,ssh,idle",
        help="comma-separated: bulk, parallel, echo, ssh (an OpenSSH local "
        "forward as a peer, where sshd is installed; with bulk/echo), idle",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=0,
        help="runs per measurement, the median is reported (default: 3 with "
        "--full, else 1)",
    )
    parser.add_argument(
        "--source-in-agent",
        action="store_true",
        help="run the target server inside the agent process (sharing its "
        "core), not as a process of its own like an API server",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=0,
        help="seconds the whole run may take before it stops with an error "
        "(default: 600, 2400 with --full)",
    )
    parser.add_argument(
        "--link",
        metavar="RATE",
        help="run the agent and the target server in a network namespace of "
        "their own, joined to the hub's by a link shaped to RATE each way "
        "(tc syntax: 100mbit, 20mbit), as an edge site's uplink; needs root",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="relay the agent's carrier to the hub through a process that holds "
        "its bytes MS milliseconds each way, as to a distant site (the round "
        "trip grows by 2 x MS; the direct baselines do not cross it)",
    )
    parser.add_argument(
        "--carrier-queue",
        type=_queue_argument,
        default=None,
        metavar="BYTES",
        help="SessionConfig.carrier_queue of both ends: auto (the default), 0 "
        "(tuned for throughput) or bytes",
    )
    parser.add_argument(
        "--peer",
        type=_peer_argument,
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="also measure bulk, 64 streams and echo through another tunnel: "
        "COMMAND forwards a local port to {target} and prints that port "
        "(see benchmarks/_peer.py); repeatable",
    )
    parser.add_argument("--agent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--hub-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hub-host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--listen", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--carrier", default="ws", help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent or args.source or args.relay:
        _exit_with_parent()
        entry = agent_main if args.agent else source_main if args.source else relay_main
        task.react(lambda reactor: defer.Deferred.fromCoroutine(entry(reactor, args)))
        return
    budget = args.budget or (2400.0 if args.full else 600.0)
    global _carrier_queue, _delay_ms
    _carrier_queue = args.carrier_queue
    if args.delay:
        if args.link:
            parser.error("--delay and --link do not go together")
        _delay_ms = args.delay
        _link_fields["delay_ms"] = args.delay
    if _carrier_queue is not None:
        _link_fields["carrier_queue"] = _carrier_queue
    link = None
    if args.link:
        why = link_unavailable()
        if why is not None:
            sys.stderr.write(f"Error: --link {why}\n")
            raise SystemExit(2)
        try:
            link = ShapedLink(args.link)
        except RuntimeError as e:
            sys.stderr.write(f"Error: --link: {e}\n")
            raise SystemExit(2) from None
        global _hub_host, _agent_host
        _agent_side[:] = link.prefix
        _hub_host, _agent_host = link.hub_host, link.agent_host
        _link_fields["link"] = args.link

    def bounded(reactor: Any) -> defer.Deferred[None]:
        # A stalled stream would otherwise wait forever: the run ends with
        # an error once its time is up (children stop in hub_main's finally).
        run = defer.Deferred.fromCoroutine(hub_main(reactor, args))
        return run.addTimeout(budget, reactor).addErrback(_over_budget, budget)

    try:
        task.react(bounded)
    finally:
        if link is not None:
            link.close()


def _over_budget(failure: Any, budget: float) -> None:
    if failure.check(defer.TimeoutError):
        sys.stderr.write(f"Error: the benchmark took over its {budget:.0f} s budget\n")
        _stop_children()
        raise SystemExit(1)
    failure.raiseException()


if __name__ == "__main__":
    main()
