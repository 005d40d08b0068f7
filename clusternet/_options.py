"""
Helpers shared by the C{twist} plugins' option parsers.

Each coercer raises C{ValueError} with a message that names the accepted form;
L{twisted.python.usage} turns it into C{UsageError} naming the flag, and C{twist}
prints C{Error: ...} and exits with C{EX_USAGE} (64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.python.usage import Options, UsageError

from clusternet.duration import parse_duration
from clusternet.tunnel import MIN_CARRIER_QUEUE

__all__ = [
    "ClusternetOptions",
    "coerce_bool",
    "coerce_byte_size",
    "coerce_choice",
    "coerce_duration",
    "coerce_port",
    "coerce_positive_int",
    "coerce_tunnel_queue",
    "coerce_url",
    "require_readable_file",
]


def coerce_duration(text: str) -> float:
    """
    A non-negative Go duration such as C{3m}, C{90s}, C{1h30m}.
    """
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise ValueError(f"{e}; expected a duration such as 90s, 3m or 1h30m") from None
    if seconds < 0:
        raise ValueError(f"duration {text!r} must not be negative")
    return seconds


coerce_duration.coerceDoc = "A duration such as 90s, 3m or 1h30m."  # type: ignore[attr-defined]

_BINARY_SUFFIXES = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def coerce_byte_size(text: str) -> int:
    """
    A number of bytes, whole or with a Kubernetes binary suffix: C{65536},
    C{64Ki}, C{1Mi}.
    """
    stripped = text.strip()
    number = stripped.rstrip("KMGi")
    suffix = stripped[len(number) :]
    if suffix not in _BINARY_SUFFIXES or not (number.isascii() and number.isdigit()):
        raise ValueError(
            f"{text!r} is not a size; expected bytes such as 65536 or 64Ki"
        )
    return int(number) * _BINARY_SUFFIXES[suffix]


coerce_byte_size.coerceDoc = "Bytes, such as 65536, 64Ki or 1Mi."  # type: ignore[attr-defined]


def coerce_tunnel_queue(text: str) -> int | None:
    """
    C{--tunnel-queue}: C{auto} (C{None}), 0, or a size of at least
    L{MIN_CARRIER_QUEUE}.
    """
    if text.strip() == "auto":
        return None
    size = coerce_byte_size(text)
    if size and size < MIN_CARRIER_QUEUE:
        raise ValueError(
            f"{text!r} is too small; 0 or at least {MIN_CARRIER_QUEUE // 1024}Ki"
        )
    return size


coerce_tunnel_queue.coerceDoc = (  # type: ignore[attr-defined]
    "auto, 0, or bytes such as 64Ki or 256Ki."
)

#: The help of C{--tunnel-queue}, the same for the hub and the agent.
TUNNEL_QUEUE_HELP = (
    "Bytes the tunnel connection may queue ahead of a new write (what this "
    "side sends). auto: tuned for throughput until the link proves slower "
    "than 32 MiB/s, then 256Ki; 0: always tuned for throughput; 64Ki-256Ki "
    "let requests pass a download over a slow uplink (100 Mbit/s: 6-23 ms "
    "instead of 88) at a CPU cost on fast links."
)


def coerce_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return value


coerce_positive_int.coerceDoc = "A whole number greater than zero."  # type: ignore[attr-defined]


def coerce_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} is outside 0-65535")
    return value


coerce_port.coerceDoc = "A TCP port, 0 to 65535 (0 picks a free one)."  # type: ignore[attr-defined]


def coerce_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean; expected true or false")


coerce_bool.coerceDoc = "true or false."  # type: ignore[attr-defined]


def coerce_url(text: str) -> str:
    """
    An absolute C{https://} or C{http://} URL with a host.
    """
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            f"{text!r} is not a URL; expected https://HOST[:PORT] such as "
            "https://parent.example.com:6443"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return text.rstrip("/")


coerce_url.coerceDoc = "An https:// URL."  # type: ignore[attr-defined]


def coerce_choice(*choices: str) -> Callable[[str], str]:
    def coerce(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    coerce.coerceDoc = "One of: " + ", ".join(choices) + "."  # type: ignore[attr-defined]
    return coerce


def require_readable_file(flag: str, path: str | None) -> None:
    """
    Refuse a flag naming a file that cannot be read.
    """
    if not path:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise UsageError(f"--{flag}: cannot read {path!r}: {e.strerror}") from None


class ClusternetOptions(Options):
    """
    Options whose values are checked after parsing, so that every error names
    its flag and the accepted form, and C{--help} shows defaults as the user
    writes them (C{3m}, not C{180.0}).

    Subclasses list C{coercions}: flag name -> coercer raising C{ValueError}.
    """

    coercions: dict[str, Callable[[str], Any]] = {}

    def postOptions(self) -> None:
        for name, coerce in self.coercions.items():
            value = self[name]
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                continue  # already coerced (postOptions called twice in tests)
            try:
                self[name] = coerce(value)
            except ValueError as e:
                raise UsageError(f"--{name}={value}: {e}") from None
