"""
Helpers shared by the benchmarks: one JSON object per line.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(
    name: str, value: float, unit: str, baseline: float | None = None, **extra: Any
) -> None:
    """
    Print one result line: C{name}, C{value}, C{unit} and, where the same
    measurement without the system under test exists, C{baseline}.
    """
    record: dict[str, Any] = {"name": name, "value": round(value, 3), "unit": unit}
    record["baseline"] = None if baseline is None else round(baseline, 3)
    record.update(extra)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def rss_kib() -> int:
    """
    This process's resident set size in KiB (Linux).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
