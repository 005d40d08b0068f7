"""
The recordings of a real Kubernetes API server (C{shared/kube-wire}, beside the
repository), which the sandbox's fidelity tests compare against.

Where the recordings are missing, a test that needs one is skipped on a
developer's machine and fails under CI (C{CI=true}): CI always has them beside
the clone, so a missing file there means the tests are not checking what they
claim to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

__all__ = ["WIRE", "recorded", "recorded_path"]

WIRE = Path(__file__).resolve().parents[2].parent / "shared" / "kube-wire"


def recorded_path(name: str) -> Path:
    """
    The path of the recording C{name}; skips the test (fails it under CI) when
    the recordings are not there.
    """
    path = WIRE / name
    if not path.exists():
        message = f"{path} is not present"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI must have shared/kube-wire beside the clone)")
        pytest.skip(message)
    return path


def recorded(name: str) -> dict[str, Any]:
    """
    The recording C{name}: C{{"request": ..., "response": ...}}.
    """
    result: dict[str, Any] = json.loads(recorded_path(name).read_text())
    return result
