"""
Issue 6's test through the whole chain with real processes: the parent sandbox's
aggregation layer, the hub, the tunnel, the agent and a target in the child's
network that the agent is allowed to dial.  A 50 MB body both ways arrives
byte-exact, and an upgraded connection carries bytes both ways.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import re
import shutil
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator

import pytest
import yaml

from clusternet.fleet import Fleet

pytestmark = pytest.mark.slow

SIZE = 50 * 1024 * 1024
CHUNK = bytes(range(256)) * 256


class Target(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        for _ in range(SIZE // len(CHUNK)):
            self.wfile.write(CHUNK)

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            data = self.rfile.read(min(remaining, 1 << 20))
            digest.update(data)
            remaining -= len(data)
        body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class UpgradeEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.request.recv(4096)
            if not data:
                return
            head += data
        self.request.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
        )
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            self.request.sendall(rest)
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class ThreadedTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, int, int]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    target = Threaded(("127.0.0.1", 0), Target)
    upgrade = ThreadedTCP(("127.0.0.1", 0), UpgradeEcho)
    for server in (target, upgrade):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = (target.server_address[1], upgrade.server_address[1])
    allow = ",".join(f"127.0.0.1:{p}" for p in ports)
    data = tmp_path_factory.mktemp("chain")
    # The agent runs with a short carrier queue, as on a slow uplink, and
    # attaches over WebSocket: the bulk tests below cover those paths; the
    # other end-to-end tests run the defaults (the tunnel upgrade).
    fleet = Fleet(
        data,
        children=1,
        say=lambda line: None,
        agent_args=[
            f"--dial-allow={allow}",
            "--tunnel-queue=64Ki",
            "--tunnel-transport=websocket",
        ],
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet, ports[0], ports[1]
    finally:
        fleet.stop()
        target.shutdown()
        upgrade.shutdown()


def parent_connection(fleet: Fleet) -> tuple[http.client.HTTPSConnection, str]:
    assert fleet.parent is not None
    config = yaml.safe_load(fleet.parent.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(fleet.parent.data_dir / "ca.crt"))
    context.load_cert_chain(
        fleet.parent.data_dir / "admin.crt", fleet.parent.data_dir / "admin.key"
    )
    mcls = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))["items"][
        0
    ]
    cluster_id = mcls["spec"]["clusterId"]
    base = f"/apis/proxies.clusternet.io/v1alpha1/sockets/{cluster_id}/proxy/http"
    return http.client.HTTPSConnection(
        host, int(port), context=context, timeout=120
    ), base


def tunnel_kinds(fleet: Fleet) -> list[str]:
    """
    The carriers the agents' tunnels came up over, from their logs.
    """
    kinds = []
    for log in sorted(fleet.data_dir.glob("agent-*.log")):
        kinds += re.findall(r"Tunnel up: \S+ \((\w+)\)", log.read_text())
    return kinds


def test_the_agent_attached_over_websocket_as_told(
    chain: tuple[Fleet, int, int],
) -> None:
    fleet, _, _ = chain
    kinds = tunnel_kinds(fleet)
    assert kinds and set(kinds) == {"websocket"}, kinds


def test_50mb_both_ways_through_the_parent_byte_exact(
    chain: tuple[Fleet, int, int],
) -> None:
    fleet, port, _ = chain
    connection, base = parent_connection(fleet)
    connection.request("GET", f"{base}/127.0.0.1:{port}/big")
    response = connection.getresponse()
    digest = hashlib.sha256()
    total = 0
    while True:
        data = response.read(1 << 20)
        if not data:
            break
        digest.update(data)
        total += len(data)
    assert response.status == 200
    assert total == SIZE
    assert (
        digest.hexdigest() == hashlib.sha256(CHUNK * (SIZE // len(CHUNK))).hexdigest()
    )
    payload = bytes(range(251)) * (SIZE // 251)
    connection.request("POST", f"{base}/127.0.0.1:{port}/upload", body=payload)
    answer = json.loads(connection.getresponse().read())
    assert answer == {
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_upgrade_through_the_parent_carries_bytes_both_ways(
    chain: tuple[Fleet, int, int],
) -> None:
    fleet, _, port = chain
    connection, base = parent_connection(fleet)
    connection.connect()
    sock = connection.sock
    assert sock is not None
    sock.sendall(
        f"POST {base}/127.0.0.1:{port}/exec HTTP/1.1\r\nHost: parent\r\n"
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    for message in (b"first", b"x" * 100_000):
        sock.sendall(message)
        echoed = head.split(b"\r\n\r\n", 1)[1] if head else b""
        head = b""
        while len(echoed) < len(message):
            echoed += sock.recv(65536)
        assert echoed == message
    sock.close()


def test_a_target_outside_the_agents_policy_is_refused(
    chain: tuple[Fleet, int, int],
) -> None:
    fleet, _, _ = chain
    connection, base = parent_connection(fleet)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    connection.request("GET", f"{base}/127.0.0.1:{closed_port}/")
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 403
    assert body["kind"] == "Status"
