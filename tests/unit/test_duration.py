"""
Go-style duration parsing and formatting.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("3m", 180.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("2h45m30.5s", 9930.5),
        ("-1m", -60.0),
        ("+10s", 10.0),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("1\u03bcs", 1e-6),
        ("3ns", 3e-9),
        (".5s", 0.5),
        ("5.s", 5.0),
    ],
)
def test_parses_what_go_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "banana", "3", "1.5", "-", "m", "3 m", "3M", "1d", ".s", "3m-1s", "1h 2m"],
)
def test_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_missing_unit_is_named() -> None:
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration("30")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (180, "3m0s"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (-60, "-1m0s"),
    ],
)
def test_formats_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert isinstance(value, float)


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_then_parse_round_trips(nanoseconds: int) -> None:
    seconds = nanoseconds / 1e9
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-9)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10**6),
            st.sampled_from(["h", "m", "s", "ms", "us", "ns"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_components_add_up(parts: list[tuple[int, str]]) -> None:
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * scale[unit] for n, unit in parts)
    assert parse_duration(text) == pytest.approx(expected)
