"""
Tests of the tunnel's process tuning.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from clusternet.tunnel import tune_allocator

_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# The tunnel's memory pattern: a few MiB-sized buffers alive at once, then
# freed, over and over.  Prints the page faults that cost.
_PATTERN = """
import resource, sys
sys.path.insert(0, {root!r})
if {tune}:
    from clusternet.tunnel import tune_allocator
    assert tune_allocator()
source = bytes(1 << 20)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for _ in range(30):
    alive = [source + bytes([i]) for i in range(6)]
    del alive
print(faults() - before)
"""


def _faults(tune: bool) -> int:
    root = str(Path(__file__).resolve().parents[3])
    code = _PATTERN.format(root=root, tune=tune)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(not _glibc, reason="glibc only")
def test_tuned_allocator_reuses_freed_bulk_buffers() -> None:
    """
    With glibc's defaults every round of MiB buffers faults its pages in
    again; tuned, only the first round does.
    """
    untuned = _faults(False)
    tuned = _faults(True)
    one_round = 6 * 256
    assert tuned <= 3 * one_round
    assert untuned > 10 * one_round


def test_tune_allocator_is_idempotent() -> None:
    first = tune_allocator()
    assert tune_allocator() is first
    assert first is _glibc


def test_tune_transport_raises_read_and_send_sizes_of_the_wrapped_tcp() -> None:
    """
    The TCP connection under a TLS wrapper gets the new read size, pause
    level and send size; the wrapper itself is left alone.
    """
    from twisted.internet.tcp import Connection

    from clusternet.tunnel._tuning import READ_SIZE, tune_transport

    class FakeTCP:
        socket = object()
        bufferSize = Connection.bufferSize
        SEND_LIMIT = Connection.SEND_LIMIT

    class Wrapper:
        def __init__(self, transport: object) -> None:
            self.transport = transport

    tcp = FakeTCP()
    wrapper = Wrapper(tcp)
    tune_transport(wrapper)
    assert (tcp.bufferSize, tcp.SEND_LIMIT) == (READ_SIZE, READ_SIZE)
    assert not hasattr(wrapper, "bufferSize")
    assert (FakeTCP.bufferSize, FakeTCP.SEND_LIMIT) == (65536, 128 * 1024)


class _Connection:
    """
    What L{send_promptly} looks at on a TCP connection.
    """

    socket = object()

    def __init__(self) -> None:
        self.connected = True
        self.disconnecting = False
        self.disconnected = False
        self.writes = 0

    def doWrite(self) -> None:
        self.writes += 1


class _Wrapper:
    def __init__(self, transport: object) -> None:
        self.transport = transport


def test_send_promptly_sends_small_writes_now_through_wrappers() -> None:
    from clusternet.tunnel._tuning import SMALL_WRITE, send_promptly

    connection = _Connection()
    send_promptly(_Wrapper(_Wrapper(connection)), 1)
    send_promptly(connection, SMALL_WRITE)
    assert connection.writes == 2


def test_send_promptly_leaves_bulk_and_closing_connections_to_the_reactor() -> None:
    """
    Bulk writes are batched by the reactor; a closing connection's last
    write result must reach the reactor, so it is not written here.
    """
    from clusternet.tunnel._tuning import SMALL_WRITE, send_promptly

    connection = _Connection()
    send_promptly(connection, SMALL_WRITE + 1)
    for state in ("disconnecting", "disconnected"):
        closing = _Connection()
        setattr(closing, state, True)
        send_promptly(closing, 1)
        assert closing.writes == 0
    idle = _Connection()
    idle.connected = False
    send_promptly(idle, 1)
    send_promptly(_Wrapper(object()), 1)
    assert connection.writes == idle.writes == 0
