"""
Kubernetes time stamps: RFC 3339 for Time, six fractional digits for MicroTime.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.task import Clock

from clusternet.apis import format_microtime, format_time, now, parse_time

_MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

aware = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)


def test_microtime_keeps_six_digits_when_microseconds_are_zero() -> None:
    when = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert format_microtime(when) == "2026-11-26T10:00:00.000000Z"


def test_time_has_whole_seconds() -> None:
    when = datetime(2026, 11, 26, 19, 29, 57, 123456, tzinfo=UTC)
    assert format_time(when) == "2026-11-26T19:29:57Z"


def test_offsets_are_converted_to_utc() -> None:
    when = datetime(2026, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_time(when) == "2026-01-01T00:00:00Z"


@given(aware)
def test_microtime_always_has_six_fractional_digits_and_round_trips(
    when: datetime,
) -> None:
    text = format_microtime(when)
    assert _MICRO.fullmatch(text), text
    assert parse_time(text) == when.astimezone(UTC)


@given(aware)
def test_time_round_trips_to_the_second(when: datetime) -> None:
    text = format_time(when)
    assert _TIME.fullmatch(text), text
    assert parse_time(text) == when.astimezone(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-26T19:29:57Z", datetime(2026, 11, 26, 19, 29, 57, tzinfo=UTC)),
        (
            "2026-11-26T19:29:57.123456789Z",
            datetime(2026, 11, 26, 19, 29, 57, 123456, tzinfo=UTC),
        ),
        ("2026-11-26T21:29:57+02:00", datetime(2026, 11, 26, 19, 29, 57, tzinfo=UTC)),
    ],
)
def test_parse_accepts_go_forms(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2026-11-26", "2026-11-26T19:29:57", "2026-13-01T00:00:00Z", "x"]
)
def test_parse_refuses_non_rfc3339(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@given(st.text(max_size=40))
def test_parse_never_raises_anything_but_value_error(text: str) -> None:
    try:
        parse_time(text)
    except ValueError:
        pass


def test_now_follows_the_clock() -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    assert format_microtime(now(clock)) == "2027-01-15T08:00:00.000000Z"
