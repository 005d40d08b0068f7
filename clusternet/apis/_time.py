"""
Time stamps as Kubernetes writes and reads them.

C{metav1.Time} is RFC 3339 with whole seconds (C{2026-11-26T19:29:57Z}).
C{metav1.MicroTime} (Lease C{renewTime}, C{acquireTime}) must carry exactly six
fractional digits (C{2026-11-26T19:29:57.000000Z}); a real kube-apiserver refuses a
MicroTime without them, which is what C{datetime.isoformat()} writes whenever the
microseconds happen to be zero.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from twisted.internet.interfaces import IReactorTime

__all__ = ["format_microtime", "format_time", "now", "parse_time"]

_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def _utc(when: datetime) -> datetime:
    # Naive datetimes are taken to be UTC already.
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def format_time(when: datetime) -> str:
    """
    A C{metav1.Time}: RFC 3339 in UTC with whole seconds, such as
    C{2026-11-26T19:29:57Z}. Fractions of a second are dropped (truncated).
    """
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_microtime(when: datetime) -> str:
    """
    A C{metav1.MicroTime}: RFC 3339 in UTC with exactly six fractional digits, such
    as C{2026-11-26T19:29:57.000000Z}.
    """
    return _utc(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """
    Parse an RFC 3339 time stamp (with or without fractional seconds, C{Z} or a
    numeric offset) into an aware datetime in UTC. Digits beyond microseconds are
    truncated, as Go keeps nanoseconds and Python does not.

    @raise ValueError: C{text} is not an RFC 3339 date-time.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 time string, got {type(text).__name__}")
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an RFC 3339 time such as 2026-11-26T19:29:57Z"
        )
    year, month, day, hour, minute, second, fraction = match.groups()[:7]
    micro = int((fraction or "").ljust(6, "0")[:6])
    if match.group(8):
        tz: timezone = UTC
    else:
        sign = -1 if match.group(9) == "-" else 1
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{text!r} has an impossible UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            micro,
            tzinfo=tz,
        )
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid time: {e}") from None
    return parsed.astimezone(UTC)


def now(clock: IReactorTime) -> datetime:
    """
    The wall-clock time of C{clock} (the reactor in production, a
    L{twisted.internet.task.Clock} in tests) as an aware UTC datetime.
    """
    return datetime.fromtimestamp(clock.seconds(), tz=UTC)
