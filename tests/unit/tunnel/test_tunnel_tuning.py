"""
Tests of the tunnel's process tuning.
"""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

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


class _Connection(FileDescriptor):
    """
    A socket-backed connection as far as the tuning looks at it.
    """

    def __init__(self) -> None:
        super().__init__(Clock())
        self.socket = object()
        self.connected = True
        self.writes = 0
        self.no_delay = False

    def doWrite(self) -> None:
        self.writes += 1

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def _tls_like(transport: object) -> ProtocolWrapper:
    """
    A wrapper that, as TLS does, hands on every attribute it lacks to the
    connection under it.
    """
    wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
    wrapper.transport = transport  # type: ignore[assignment]
    return wrapper


class _Wrapper:
    def __init__(self, transport: object) -> None:
        self.transport = transport


def test_tune_transport_raises_read_and_send_sizes_of_the_wrapped_tcp() -> None:
    """
    The TCP connection under a TLS wrapper gets the new read size, pause
    level and send size, although the wrapper seems to have those too.
    """
    from clusternet.tunnel._tuning import READ_SIZE, tune_transport

    connection = _Connection()
    wrapper = _tls_like(connection)
    assert wrapper.bufferSize == FileDescriptor.bufferSize
    tune_transport(wrapper)
    assert (connection.bufferSize, connection.SEND_LIMIT) == (READ_SIZE, READ_SIZE)
    assert "bufferSize" not in vars(wrapper)
    assert FileDescriptor.SEND_LIMIT == 128 * 1024


def test_set_no_delay_reaches_the_connection_under_tls() -> None:
    from clusternet.tunnel._tuning import set_no_delay

    connection = _Connection()
    set_no_delay(_tls_like(connection))
    assert connection.no_delay
    set_no_delay(object())


def test_send_promptly_sends_small_writes_now_through_wrappers() -> None:
    from clusternet.tunnel._tuning import SMALL_WRITE, send_promptly

    connection = _Connection()
    connection._tempDataLen = 1  # a write is queued
    send_promptly(_Wrapper(_Wrapper(connection)), 1)
    send_promptly(connection, SMALL_WRITE)
    send_promptly(_tls_like(connection), 1)
    assert connection.writes == 3


def test_send_promptly_leaves_a_connection_with_nothing_queued_alone() -> None:
    """
    A write that already went to the kernel (L{_write_small_at_once}) leaves
    nothing to send: no empty C{send()}.
    """
    from clusternet.tunnel._tuning import send_promptly

    connection = _Connection()
    send_promptly(connection, 1)
    assert connection.writes == 0


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


def test_limit_queue_shortens_what_the_connection_under_tls_queues() -> None:
    """
    C{limit_queue} sets the pause level, read and send sizes of the TCP
    connection under a TLS wrapper, and the kernel's unsent limit.
    """
    from clusternet.tunnel._tuning import limit_queue, tune_carrier

    connection = _Connection()
    with socket.socket() as sock:
        connection.socket = sock
        tune_carrier(_tls_like(connection), 64 * 1024)
        assert (connection.bufferSize, connection.SEND_LIMIT) == (65536, 65536)
        assert connection.no_delay
        option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if option is not None:
            assert sock.getsockopt(socket.IPPROTO_TCP, option) == 32 * 1024
    # No queue: the throughput settings stay.
    other = _Connection()
    tune_carrier(other, 0)
    assert other.bufferSize == 1024 * 1024
    # Not a TCP socket, or none at all: nothing breaks.
    with socket.socket(socket.AF_UNIX) as unix:
        connection.socket = unix
        limit_queue(connection, 65536)
    limit_queue(object(), 65536)
