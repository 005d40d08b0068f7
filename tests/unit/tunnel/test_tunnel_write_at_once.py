"""
Tests of the tuning that hands a small write to the kernel in the write call
(L{clusternet.tunnel._tuning._write_small_at_once}), against a model of a
socket whose kernel takes what it is told to.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet import main
from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPullProducer
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from clusternet.tunnel._tuning import SMALL_WRITE, send_promptly, tune_transport


class _Socket:
    def setsockopt(self, *args: Any) -> None:
        pass


class _Kernel(FileDescriptor):
    """
    A connection whose C{send()} takes up to C{room} bytes (all when C{None})
    or fails with C{error}.
    """

    def __init__(self) -> None:
        self.reactor_ = MemoryReactorClock()
        super().__init__(self.reactor_)
        self.socket = _Socket()
        self.connected = True
        self.received = bytearray()
        self.sends = 0
        self.room: int | None = None
        self.error: Exception | None = None

    def writeSomeData(self, data: bytes) -> int | Exception:
        self.sends += 1
        if self.error is not None:
            return self.error
        taken = len(data) if self.room is None else min(self.room, len(data))
        if self.room is not None:
            self.room -= taken
        self.received += bytes(data[:taken])
        return taken

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    @property
    def registered_for_writing(self) -> bool:
        return self in self.reactor_.getWriters()


def _tuned() -> _Kernel:
    connection = _Kernel()
    tune_transport(connection)
    assert "write" in vars(connection)
    return connection


def test_a_small_write_goes_to_the_kernel_in_the_write_call() -> None:
    connection = _tuned()
    connection.write(b"hello")
    assert connection.received == b"hello"
    assert connection.sends == 1
    # Never registered for writing: no epoll_ctl, no send on the next turn.
    assert not connection.registered_for_writing
    send_promptly(connection, 5)
    assert connection.sends == 1


def test_what_the_kernel_does_not_take_is_queued_for_the_reactor() -> None:
    connection = _tuned()
    connection.room = 3
    connection.write(b"hello")
    assert connection.received == b"hel"
    assert connection.registered_for_writing
    # A later small write waits behind the queue instead of overtaking it.
    connection.room = None
    connection.write(b"!")
    assert connection.received == b"hel"
    connection.doWrite()
    assert connection.received == b"hello!"
    assert not connection.registered_for_writing


def test_bulk_writes_are_queued_for_the_reactor_to_batch() -> None:
    connection = _tuned()
    connection.write(b"x" * (SMALL_WRITE + 1))
    assert connection.sends == 0
    assert connection.registered_for_writing


def test_a_failed_send_queues_the_bytes_for_the_reactor_to_meet_again() -> None:
    connection = _tuned()
    connection.error = main.CONNECTION_LOST
    connection.write(b"hello")
    assert connection.sends == 1
    assert connection.registered_for_writing
    assert connection.doWrite() is main.CONNECTION_LOST


def test_closing_and_tls_connections_take_twisteds_way() -> None:
    for state in ("disconnecting", "_writeDisconnecting", "TLS", "_aborting"):
        connection = _tuned()
        setattr(connection, state, True)
        connection.write(b"hello")
        assert connection.sends == 0, state


def test_a_pull_producer_is_asked_for_more_by_the_reactor_as_before() -> None:
    asked = []

    @implementer(IPullProducer)
    class Pull:
        def resumeProducing(self) -> None:
            asked.append(True)

        def stopProducing(self) -> None:
            pass

    connection = _tuned()
    connection.registerProducer(Pull(), False)
    asked.clear()
    connection.write(b"hello")
    assert connection.sends == 0
    connection.doWrite()
    assert asked and connection.received == b"hello"


def test_a_closed_connection_drops_writes_as_before() -> None:
    connection = _tuned()
    connection.connected = False
    connection.write(b"hello")
    assert connection.sends == 0
    assert not connection.registered_for_writing


def test_a_connection_without_twisteds_queue_is_left_alone() -> None:
    class Other:
        socket = _Socket()
        connected = True

        def write(self, data: bytes) -> None:
            pass

    other: Any = Other()
    tune_transport(other)
    assert "write" not in vars(other)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.integers(1, 2 * SMALL_WRITE)),
            st.tuples(st.just("room"), st.one_of(st.none(), st.integers(0, 4096))),
            st.tuples(st.just("turn"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_bytes_arrive_in_the_order_written(steps: list[tuple[str, Any]]) -> None:
    """
    Whatever the kernel takes and whenever the reactor turns, the bytes
    arrive whole and in the order they were written.
    """
    connection = _tuned()
    written = bytearray()
    for n, (what, value) in enumerate(steps):
        if what == "write":
            data = bytes([n % 256]) * value
            written += data
            connection.write(data)
            send_promptly(connection, len(data))
        elif what == "room":
            connection.room = value
        elif connection.registered_for_writing:
            connection.doWrite()
    connection.room = None
    while connection.registered_for_writing:
        connection.doWrite()
    assert connection.received == written
