"""
Socket tuning for bulk transfer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["READ_SIZE", "tune_transport"]

# Twisted reads 64 KiB per recv() by default; bigger reads mean fewer calls
# through the WebSocket parser and the session per byte.  The same number is
# the write-buffer level above which the connection pauses its producer.
READ_SIZE = 1024 * 1024


def tune_transport(transport: Any, size: int = READ_SIZE) -> None:
    """
    Raise the read size of C{transport} and of the transports it wraps (TLS).
    """
    for _ in range(4):
        if transport is None:
            return
        if hasattr(transport, "socket") and hasattr(transport, "bufferSize"):
            transport.bufferSize = size
            return
        transport = getattr(transport, "transport", None)
