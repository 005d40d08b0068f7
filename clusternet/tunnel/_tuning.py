"""
Socket and allocator tuning for bulk transfer.
"""

from __future__ import annotations

import ctypes
import platform
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol

__all__ = [
    "READ_SIZE",
    "limit_queue",
    "tune_allocator",
    "tune_carrier",
    "tune_transport",
    "unbuffered_write",
]

# Twisted reads 64 KiB per recv() by default; bigger reads mean fewer calls
# through the WebSocket parser and the session per byte.  The same number is
# the write-buffer level above which the connection pauses its producer, and
# the most one send() hands the kernel: Twisted's default of 128 KiB made
# every MiB take eight sends and eight pause/resume rounds of every stream's
# source (measured with benchmarks/tunnel.py, 64 streams over ws: 397 ->
# 585 MiB/s, agent CPU 2,450 -> 1,700 us/MiB).
READ_SIZE = 1024 * 1024

# glibc mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

# Every byte through the tunnel lives in a few short-lived buffers of up to a
# few MiB (socket reads, frames, WebSocket masking).  With glibc's defaults
# the heap top is handed back to the kernel as soon as more than a couple of
# such buffers are free, and the next ones fault their pages in again: on a
# virtual machine that costs more than everything else on the data path
# (measured: 900-1000 page faults and ~4 ms of CPU per MiB through the
# WebSocket carrier, against none and ~1 ms with these settings).  So: buffers
# up to 4 MiB come from the heap, and up to 16 MiB of free heap is kept.
_MMAP_THRESHOLD = 4 * 1024 * 1024
_TRIM_THRESHOLD = 16 * 1024 * 1024
_TOP_PAD = 4 * 1024 * 1024

_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """
    Make glibc's malloc keep the memory of freed bulk buffers for reuse
    instead of returning it to the kernel at once (see above).  Process-wide
    and idempotent; the carriers call it when a session connects.  A no-op
    (returning false) where the C library is not glibc.
    """
    global _allocator_tuned
    if _allocator_tuned is not None:
        return _allocator_tuned
    _allocator_tuned = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _allocator_tuned = bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        and mallopt(_M_TOP_PAD, _TOP_PAD)
    )
    return _allocator_tuned


def tune_transport(transport: Any, size: int = READ_SIZE) -> None:
    """
    Raise the read size, the pause level and the send size of C{transport},
    or of the TCP connection it wraps (TLS), to C{size}, and turn Nagle's
    algorithm off on it (L{set_no_delay}).
    """
    connection = _connection_under(transport)
    if connection is not None:
        connection.bufferSize = size
        connection.SEND_LIMIT = size
        set_no_delay(connection)
        _write_small_at_once(connection)


#: Writes up to this size are small: interactive traffic rather than bulk.
#: L{send_promptly} hands them to the kernel at once, and a congested carrier
#: does not stop the source of a stream that writes them.
SMALL_WRITE = 64 * 1024


# What L{FileDescriptor} keeps of its write queue and its closing, read by
# L{_write_small_at_once}: a connection without all of it is left alone.
_QUEUE_STATE = (
    "dataBuffer",
    "offset",
    "_tempDataLen",
    "_writeDisconnecting",
    "disconnecting",
    "connected",
    "writeSomeData",
    "producer",
    "streamingProducer",
)


def _queued(connection: Any) -> bool:
    """
    Whether C{connection} holds written bytes that it has not sent yet (true
    when it cannot tell).
    """
    try:
        return bool(connection._tempDataLen) or connection.offset < len(
            connection.dataBuffer
        )
    except AttributeError:
        return True


def _write_small_at_once(connection: Any) -> None:
    """
    Make a small write to C{connection} (a L{FileDescriptor}), when nothing is
    queued ahead of it, go to the kernel at once, in the write call.

    L{FileDescriptor.write} queues every write and registers the socket for
    writing; L{send_promptly} then sends the queue and unregisters it: two
    C{epoll_ctl} calls around every send, four of the agent's ten system
    calls per round trip through the tunnel.  Here the send happens first;
    only what the kernel did not take is queued, as before, and the reactor
    sends it when the socket is writable.

    A connection in TLS mode (C{startTLS}), closing, half-closed, or with a
    pull producer (which the reactor asks for more once the queue is sent),
    and a write that is bulk, or that would overtake queued bytes, take
    Twisted's own way.
    """
    if "write" in vars(connection) or not all(
        hasattr(connection, name) for name in _QUEUE_STATE
    ):
        return
    queue = type(connection).write
    send = connection.writeSomeData

    def write(data: bytes) -> None:
        if (
            type(data) is bytes
            and 0 < len(data) <= SMALL_WRITE
            and not _queued(connection)
            and connection.connected
            and not connection.disconnecting
            and not connection._writeDisconnecting
            and not getattr(connection, "TLS", False)
            and not getattr(connection, "_aborting", False)
            and (connection.producer is None or connection.streamingProducer)
        ):
            sent = send(data)
            if type(sent) is int:
                if sent == len(data):
                    return
                data = data[sent:]
            # On an error the queue keeps the bytes, and the reactor meets
            # the error again when it sends them, as for any write.
        queue(connection, data)

    connection.write = write


def set_no_delay(transport: Any) -> None:
    """
    Turn Nagle's algorithm off on the TCP connection under C{transport} (TLS
    included), as Go does for every TCP connection.  A relay writes what it
    receives when it receives it; with Nagle, a small write that follows
    another before the peer acknowledged it waited for that acknowledgement,
    which a peer with nothing to say delays by 40 ms.
    """
    connection = _connection_under(transport)
    if connection is not None and hasattr(connection, "setTcpNoDelay"):
        try:
            connection.setTcpNoDelay(True)
        except OSError:
            # Not a TCP socket after all (a UNIX socket), or already closed.
            pass


def tune_carrier(transport: Any, queue: int | None = None) -> None:
    """
    Everything a carrier's connection gets: L{tune_transport}, the
    allocator, and, for a C{queue} (bytes; 0 or C{None} for none),
    L{limit_queue}.
    """
    tune_transport(transport)
    tune_allocator()
    if queue:
        limit_queue(transport, queue)


def limit_queue(transport: Any, size: int) -> None:
    """
    Keep what the TCP connection under C{transport} (TLS included) queues
    ahead of a new write to about C{size} bytes: its own buffer pauses the
    session at C{size} and sends and reads up to C{size} per call, and the
    kernel keeps at most half of it unsent (C{TCP_NOTSENT_LOWAT}, where the
    platform has it; bytes in flight are not limited).

    Everything a stream writes waits behind what the carrier queued before
    it, so over a link slower than the tunnel this is what an interactive
    request waits for beside a download: with the 1 MiB of L{tune_transport}
    and the kernel's own buffer, 88 ms over 100 Mbit/s; with 256 KiB, 24 ms
    (benchmarks/tunnel.py --link 100mbit).  On a fast link the smaller reads
    and sends cost CPU per byte: the session applies it to a carrier that
    proved slow, or from the start when configured to.
    """
    tune_transport(transport, size)
    connection = _connection_under(transport)
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if connection is None or option is None:
        return
    try:
        connection.socket.setsockopt(socket.IPPROTO_TCP, option, max(size // 2, 1))
    except OSError:
        # Not a TCP socket after all (a UNIX socket), or already closed.
        pass


def unbuffered_write(transport: Any) -> Callable[[bytes], None]:
    """
    A function that writes to C{transport} and hands the bytes on at once.

    Twisted's TLS (L{BufferingTLSTransport}) holds every write under 64 KB
    until the reactor's next turn, to encrypt several as one; a carrier joins
    what it sends itself, and its small writes (a request, a reply, a window
    update) should leave now, as they do without TLS (L{send_promptly}).
    Measured with benchmarks/tunnel.py: a 1-byte echo over C{wss} 765 ->
    693 us (p50, the median of 4 alternating runs of 3).

    Whoever uses it must write to C{transport} only through it: a write that
    went to Twisted's buffer could otherwise leave after a later one.
    """
    layer = transport
    if not isinstance(layer, TLSMemoryBIOProtocol):
        # A connection from listenSSL or connectSSL: the TLS layer is its
        # protocol (twisted.internet._newtls), and it writes through it.
        tls = getattr(transport, "TLS", False)
        layer = getattr(transport, "protocol", None) if tls else None
    if not isinstance(layer, BufferingTLSTransport):
        write: Callable[[bytes], None] = transport.write
        return write
    tls_write = TLSMemoryBIOProtocol.write

    def write_now(data: bytes) -> None:
        # As the connection's own write: nothing once it is gone.
        if getattr(transport, "connected", True):
            tls_write(layer, data)

    return write_now


def _connection_under(transport: Any) -> Any:
    """
    The socket-backed connection C{transport} is or wraps (TLS wraps one), or
    C{None}.  Asked by type: a TLS wrapper hands on every attribute it lacks to
    the connection under it, so it seems to have C{socket} and C{doWrite} too,
    and setting an attribute on it would not reach the connection.
    """
    for _ in range(4):
        if transport is None:
            return None
        if isinstance(transport, FileDescriptor):
            return transport if hasattr(transport, "socket") else None
        transport = getattr(transport, "transport", None)
    return None


def send_promptly(transport: Any, size: int) -> None:
    """
    After a write of C{size} bytes to C{transport}: when it was a small one,
    hand what the TCP connection under C{transport} (TLS included) holds to
    the kernel now, rather than on the reactor's next turn.

    Twisted sends what was written once the reactor next polls; a reply that
    crosses the tunnel is written three times on its way (stream to carrier
    on one side, carrier to stream and stream to target on the other), and
    each waited for a turn of a reactor that, under load, was busy with bulk
    data.  Measured with benchmarks/tunnel.py: echo p50 600 -> 551 us, and
    beside a bulk download on the same session 3.0 -> 2.2 ms.  Bulk writes
    are left to the reactor, which sends what several of them queued at
    once (doing it for them too cost the receiving hub 50% more CPU per
    MiB, in smaller reads).

    C{doWrite} is the reactor's own entry point (L{IWriteDescriptor}); a
    connection that is closing is left to the reactor, which must see the
    result of its last write.
    """
    if size > SMALL_WRITE:
        return
    connection = _connection_under(transport)
    if (
        connection is None
        or not connection.connected
        or connection.disconnecting
        or connection.disconnected
        or not _queued(connection)
    ):
        return
    # A failed send is left in place: the connection stays registered for
    # writing, and the reactor meets the same error on its next turn.
    connection.doWrite()
