"""
Counters of the tunnel: plain attributes, exported elsewhere.
"""

from __future__ import annotations

from attrs import asdict, define

__all__ = ["TunnelMetrics"]


@define
class TunnelMetrics:
    """
    Counters shared by the sessions, streams and dialers of one process.

    Gauges (C{sessions_open}, C{streams_open}) go up and down; the rest only
    grow.  The hub exports them as Prometheus metrics; nothing here knows that.
    """

    sessions_open: int = 0
    sessions_total: int = 0
    streams_open: int = 0
    streams_total: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_out: int = 0
    streams_reset: int = 0
    open_refused: int = 0
    dial_failures: int = 0
    connect_failures: int = 0
    ping_timeouts: int = 0
    protocol_errors: int = 0

    def snapshot(self) -> dict[str, int]:
        """
        The counters as a plain dict.
        """
        return asdict(self)
