"""
Go-style durations (``time.ParseDuration``) for command-line flags.

Kubernetes users write ``3m``, ``90s``, ``1h30m`` or ``500ms`` in every flag that
takes a time span; the Go original parsed them with ``time.ParseDuration`` and we
accept exactly the same language, so flags copied from its manifests keep working.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

# Seconds per unit, as Go names them.  Both micro signs are accepted, as in Go.
_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

_COMPONENT = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """
    Parse a Go duration such as ``"3m"``, ``"1h30m"``, ``"1.5s"`` or ``"0"``.

    @return: the duration in seconds.
    @raise ValueError: when C{text} is not a Go duration; the message quotes it.
    """
    original = text
    if not text:
        raise ValueError("invalid duration ''")
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {original!r}")
    total = 0.0
    position = 0
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if match is None:
            if text[position:].lstrip(".0123456789") == "" or _missing_unit(
                text, position
            ):
                raise ValueError(f"missing unit in duration {original!r}")
            raise ValueError(f"invalid duration {original!r}")
        number, unit = match.groups()
        total += float(number) * _UNITS[unit]
        position = match.end()
    return sign * total


def _missing_unit(text: str, position: int) -> bool:
    """
    Whether C{text} at C{position} is a number followed by no known unit.
    """
    rest = text[position:]
    digits = len(rest) - len(rest.lstrip(".0123456789"))
    return digits > 0 and not rest[digits : digits + 1].isalpha()


def format_duration(seconds: float) -> str:
    """
    Format seconds the way Go's ``Duration.String`` does: ``3m0s``, ``1h0m0s``,
    ``1.5s``, ``500ms``, ``0s``.
    """
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    nanos = round(abs(seconds) * 1e9)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(nanos / size) + unit
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = _trim(rest / 1e9) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
