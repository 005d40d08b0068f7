"""
The reverse proxy on real loopback sockets: a client (this test), the proxy
process (a StreamingSite) and a backend process.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent
sys.path.insert(0, str(HERE))

from proxy_harness import pattern, pattern_digest  # noqa: E402

TIMEOUT = 20.0


class Harness:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        script = str(HERE / "proxy_harness.py")
        self.backend = subprocess.Popen(
            [sys.executable, script, "backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        ports = json.loads(self._line(self.backend))
        self.web = ports["web"]
        self.raw = ports["raw"]
        self.ca = ports["ca"]
        self.proxy = subprocess.Popen(
            [
                sys.executable,
                script,
                "proxy",
                str(self.web),
                str(self.raw),
                str(ports["tls"]),
                self.ca,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.port = json.loads(self._line(self.proxy))["proxy"]

    @staticmethod
    def _line(process: subprocess.Popen[bytes]) -> bytes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"harness process exited {process.wait(5)}")
        return line

    def close(self) -> None:
        for process in (self.proxy, self.backend):
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        Path(self.ca).unlink(missing_ok=True)

    def connection(self, port: int | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            "127.0.0.1", port or self.port, timeout=TIMEOUT
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        connection = self.connection(port)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response, data

    def backend_stats(self) -> dict[str, int]:
        _, data = self.request("GET", "/control/stats", port=self.web)
        return json.loads(data)

    def proxy_stats(self) -> dict[str, int]:
        _, data = self.request("GET", "/proxy-stats")
        return json.loads(data)

    def rss_kib(self, field: str = "VmRSS") -> int:
        status = Path(f"/proc/{self.proxy.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc status")


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    running = Harness()
    try:
        yield running
    finally:
        running.close()


def wait_until(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
def test_methods_with_and_without_body_reach_the_backend(
    harness: Harness, method: str
) -> None:
    for body in (None, b"some body bytes"):
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        response, data = harness.request(method, "/backend/headers", body=body)
        assert response.status == 200
        seen = json.loads(data)
        assert seen["method"] == method
        assert seen["body_length"] == len(body or b"")


def test_query_string_and_encoding_are_preserved(harness: Harness) -> None:
    path = "/backend/headers/a%2Fb?watch=1&labelSelector=app%3Dx&x=%20y"
    response, data = harness.request("GET", path)
    assert response.status == 200
    assert json.loads(data)["uri"] == path[len("/backend") :]


def test_hop_by_hop_headers_do_not_cross_either_way(harness: Harness) -> None:
    response, data = harness.request(
        "GET",
        "/backend/headers",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Proxy-Connection": "keep-alive",
            "X-End-To-End": "kept",
        },
    )
    seen = json.loads(data)["headers"]
    for name in (
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ):
        assert name not in seen, name
    assert seen["x-end-to-end"] == ["kept"]
    assert seen["host"] == ["upstream.test"]
    assert response.getheader("x-kept") == "yes"
    assert response.getheader("keep-alive") is None
    assert response.getheader("proxy-connection") is None


def test_strip_and_set_headers_and_forwarded_headers(harness: Harness) -> None:
    _, data = harness.request(
        "GET",
        "/backend/headers",
        headers={
            "Authorization": "Bearer parent-token",
            "X-Remote-User": "forged",
            "X-Remote-Extra-Scopes": "all",
            "X-Forwarded-For": "10.0.0.1",
        },
    )
    seen = json.loads(data)["headers"]
    assert "authorization" not in seen
    assert "x-remote-extra-scopes" not in seen
    assert seen["x-remote-user"] == ["proxied-user"]
    assert seen["x-remote-group"] == ["g1", "g2"]
    assert seen["x-forwarded-for"] == ["10.0.0.1, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{harness.port}"]


def test_large_request_headers_pass(harness: Harness) -> None:
    big = "t" * 40_000
    response, data = harness.request(
        "GET", "/backend/headers", headers={"X-Big": big, "X-Other": "o" * 12_000}
    )
    assert response.status == 200
    assert json.loads(data)["headers"]["x-big"] == [big]


def test_location_is_rewritten(harness: Harness) -> None:
    response, _ = harness.request("GET", "/backend/redirect")
    assert response.status == 302
    assert response.getheader("location") == "http://proxy.test/backend/target?x=1"


def test_ordinary_resources_on_the_streaming_site_still_buffer(
    harness: Harness,
) -> None:
    response, data = harness.request("POST", "/plain", body=b"x" * 300_000)
    assert response.status == 200
    assert data == b"plain got 300000 bytes"


def test_connect_failure_is_a_502_status(harness: Harness) -> None:
    response, data = harness.request("GET", "/dead/anything")
    assert response.status == 502
    status = json.loads(data)
    assert status["kind"] == "Status"
    assert status["code"] == 502
    assert "error trying to reach service" in status["message"]


def test_route_errors_and_mapped_errors_are_statuses(harness: Harness) -> None:
    response, data = harness.request("GET", "/error/x")
    assert response.status == 503
    assert json.loads(data)["message"] == "agent for cluster x is not connected"
    response, data = harness.request("GET", "/refused/x")
    assert response.status == 403
    assert json.loads(data)["reason"] == "Forbidden"


def test_fifty_megabytes_up_byte_exact_with_bounded_buffering(
    harness: Harness,
) -> None:
    total = 50 * 1024 * 1024
    before = harness.rss_kib()

    def body() -> Iterator[bytes]:
        step = 1 << 16
        for offset in range(0, total, step):
            yield pattern(offset, min(step, total - offset))

    for chunked in (False, True):
        connection = harness.connection()
        headers = {"Content-Type": "application/octet-stream"}
        if chunked:
            connection.request(
                "PUT",
                "/backend/sink",
                body=body(),
                headers=headers,
                encode_chunked=True,
            )
        else:
            headers["Content-Length"] = str(total)
            connection.request("PUT", "/backend/sink", body=body(), headers=headers)
        response = connection.getresponse()
        result = json.loads(response.read())
        connection.close()
        assert response.status == 200
        assert result == {"length": total, "sha256": pattern_digest(total)}
    grown = harness.rss_kib("VmHWM") - before
    assert grown < 20 * 1024, f"proxy peak RSS grew by {grown} KiB"
    assert harness.proxy_stats()["max_held"] <= 256 * 1024


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_fifty_megabytes_down_byte_exact_with_bounded_buffering(
    harness: Harness, chunked: str
) -> None:
    total = 50 * 1024 * 1024
    before = harness.rss_kib()
    connection = harness.connection()
    connection.request("GET", f"/backend/source?size={total}&chunked={chunked}")
    response = connection.getresponse()
    assert response.status == 200
    if chunked == "0":
        assert response.getheader("content-length") == str(total)
    else:
        assert response.getheader("transfer-encoding") == "chunked"
    digest = hashlib.sha256()
    received = 0
    while True:
        chunk = response.read(1 << 16)
        if not chunk:
            break
        digest.update(chunk)
        received += len(chunk)
    connection.close()
    assert received == total
    assert digest.hexdigest() == pattern_digest(total)
    grown = harness.rss_kib("VmHWM") - before
    assert grown < 20 * 1024, f"proxy peak RSS grew by {grown} KiB"


def test_chunks_reach_the_client_before_the_next_is_sent(harness: Harness) -> None:
    connection = harness.connection()
    connection.request("GET", "/backend/stream")
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("transfer-encoding") == "chunked"
    assert response.readline() == b'{"event": 1}\n'
    for number in (2, 3, 4):
        # The backend sends event N only after we saw event N-1.
        harness.request("POST", f"/control/next?n={number}", port=harness.web)
        assert response.readline() == b'{"event": %d}\n' % (number,)
    harness.request("POST", "/control/end", port=harness.web)
    assert response.read() == b""
    connection.close()


def test_slow_client_pauses_the_upstream(harness: Harness) -> None:
    total = 200 * 1024 * 1024
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(b"GET /backend/source?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (total,))
    # Read nothing: the backend must stop producing long before the end.
    last = -1
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.3)
        produced = harness.backend_stats()["produced"]
        if produced == last:
            break
        last = produced
    assert 0 < last < 64 * 1024 * 1024, last
    # Reading resumes it; read a good part of the body.
    received = 0
    while received < 100 * 1024 * 1024:
        chunk = sock.recv(1 << 20)
        assert chunk
        received += len(chunk)
    assert harness.backend_stats()["produced"] > last
    sock.close()


def test_client_abort_aborts_the_upstream(harness: Harness) -> None:
    before = harness.backend_stats()["aborted"]
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=TIMEOUT)
    sock.sendall(b"GET /backend/hang HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    sock.close()
    wait_until(
        lambda: harness.backend_stats()["aborted"] == before + 1,
        "the backend to see the abort",
    )


@pytest.mark.parametrize("mode", ["length", "chunked"])
def test_upstream_abort_is_never_a_complete_body(harness: Harness, mode: str) -> None:
    connection = harness.connection()
    connection.request("GET", f"/backend/truncate?mode={mode}")
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        response.read()
    connection.close()


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_exactly(sock: socket.socket, size: int, already: bytes = b"") -> bytes:
    data = already
    while len(data) < size:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize("protocol", [b"SPDY/3.1", b"websocket"])
def test_upgrade_switches_to_raw_bytes_both_ways(
    harness: Harness, protocol: bytes
) -> None:
    sock = socket.create_connection(("127.0.0.1", harness.port), timeout=TIMEOUT)
    sock.sendall(
        b"POST /raw/upgrade/exec?command=sh HTTP/1.1\r\nHost: x\r\n"
        b"Connection: Upgrade\r\nUpgrade: " + protocol + b"\r\n"
        b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
    head, rest = read_head(sock)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
    fields = {
        k.strip().lower(): v.strip()
        for k, _, v in (line.partition(b":") for line in lines[1:])
    }
    assert fields[b"upgrade"] == protocol
    assert fields[b"connection"].lower() == b"upgrade"
    assert fields[b"x-stream-protocol-version"] == b"v4.channel.k8s.io"
    assert b"keep-alive" not in fields
    assert b"upgrade" in fields[b"x-seen-connection"].lower()
    greeting = b"hello from upstream\n"
    assert read_exactly(sock, len(greeting), rest) == greeting
    for size in (1, 1000, 3 * 1024 * 1024):
        payload = bytes(i % 251 for i in range(size))
        sock.sendall(payload)
        assert read_exactly(sock, size) == payload
    sock.close()


def test_refused_upgrade_is_an_ordinary_response(harness: Harness) -> None:
    response, data = harness.request(
        "GET",
        "/raw/refuse",
        headers={"Connection": "Upgrade", "Upgrade": "websocket"},
    )
    assert response.status == 400
    assert json.loads(data)["message"] == "upgrade refused"


def test_tls_upstream_through_wrap_client_tls(harness: Harness) -> None:
    response, data = harness.request("POST", "/tls/headers?q=1", body=b"over tls")
    assert response.status == 200
    seen = json.loads(data)
    assert seen["uri"] == "/headers?q=1"
    assert seen["body_length"] == len(b"over tls")
    total = 8 * 1024 * 1024
    response, data = harness.request("GET", f"/tls/source?size={total}&chunked=1")
    assert hashlib.sha256(data).hexdigest() == pattern_digest(total)
