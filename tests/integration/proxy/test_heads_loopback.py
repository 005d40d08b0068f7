"""
Request heads against a real StreamingSite on loopback, alone in its own
process (heads_server.py) so that its RSS is measured by itself: what 200
unfinished 1 MB heads make it hold, and that the memory comes back after
they close; oversized heads answered 431 at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent
CONNECTIONS = 200
HEAD_BYTES = 1_000_000
MIB = 1024 * 1024


class Server:
    def __init__(self, *argv: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "heads_server.py"), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.port = json.loads(self._line())["port"]

    def _line(self) -> bytes:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "heads_server exited"
        return line

    def stats(self, command: str = "stats") -> dict[str, int]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        result: dict[str, int] = json.loads(self._line())
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        return sock


@pytest.fixture
def server() -> Iterator[Server]:
    # A head deadline longer than the test, so the heads stay until closed.
    running = Server("60")
    try:
        yield running
    finally:
        running.close()


def wait_for(
    server: Server, done: Callable[[dict[str, int]], bool], timeout: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    stats = server.stats()
    while not done(stats) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = server.stats()
    return stats


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_unfinished_heads_are_bounded_and_their_memory_comes_back(
    server: Server,
) -> None:
    sock = server.connect()
    sock.sendall(b"GET /apis HTTP/1.1\r\nHost: h\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 401 ")
    sock.close()
    baseline = wait_for(server, lambda s: s["connections"] == 0, 10)["rss_kib"]

    head = b"GET /apis HTTP/1.1\r\nHost: h\r\nX-Pad: "
    head += b"a" * (HEAD_BYTES - len(head))
    socks: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            client = server.connect()
            socks.append(client)
            client.sendall(head)
        held = wait_for(
            server,
            lambda s: s["buffered"] >= CONNECTIONS * (HEAD_BYTES - 100),
            30,
        )
        assert held["connections"] == CONNECTIONS
        assert held["buffered"] >= CONNECTIONS * (HEAD_BYTES - 100)
        during = held["rss_kib"]
    finally:
        for client in socks:
            client.close()
    gone = wait_for(server, lambda s: s["connections"] == 0, 30)
    assert gone["connections"] == 0
    assert gone["buffered"] == 0
    # Within 10% of the baseline: the site asks glibc to give the dropped
    # heads back (trim_memory); without it, 0 to 40 MB more stayed.
    after = wait_for(server, lambda s: s["rss_kib"] <= baseline * 1.1, 20)["rss_kib"]
    print(
        f"\nRSS: baseline {baseline / 1024:.1f} MiB, with {CONNECTIONS} unfinished "
        f"{HEAD_BYTES} byte heads {during / 1024:.1f} MiB, after they closed "
        f"{after / 1024:.1f} MiB"
    )
    # Held: the heads themselves plus a bounded overhead, never more.
    assert during - baseline >= CONNECTIONS * HEAD_BYTES / 1024 * 0.9
    assert during - baseline <= CONNECTIONS * 2 * MIB / 1024
    assert after <= baseline * 1.1


def test_oversized_heads_are_answered_431_and_closed(server: Server) -> None:
    head = b"GET /apis HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"a" * (MIB + 100)
    answers: list[bytes] = []
    started = time.monotonic()
    for _ in range(20):
        sock = server.connect()
        try:
            try:
                sock.sendall(head)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answers.append(read_all(sock))
        finally:
            sock.close()
    elapsed = time.monotonic() - started
    for answer in answers:
        head_part, _, body = answer.partition(b"\r\n\r\n")
        assert head_part.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
        status: dict[str, Any] = json.loads(body)
        assert status["kind"] == "Status"
        assert status["code"] == 431
    # Each was closed at once, not after an idle or grace timeout.
    assert elapsed < 10
    stats = wait_for(server, lambda s: s["connections"] == 0, 10)
    assert stats["connections"] == 0


def test_a_head_past_its_deadline_is_408_over_a_socket() -> None:
    running = Server("1")
    try:
        sock = running.connect()
        sock.sendall(b"GET /apis HTTP/1.1\r\nHo")
        started = time.monotonic()
        answer = read_all(sock)
        elapsed = time.monotonic() - started
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
        assert 0.5 < elapsed < 5
    finally:
        running.close()
