"""
CA discovery over real TLS on loopback: the agent reads cluster-info from a server
whose certificate it does not yet trust, accepts the CA only when the bootstrap
token's signature verifies, and then verifies the server with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent


def run(mode: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(HERE / "cluster_info_harness.py"), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_signed_cluster_info_is_trusted_and_its_ca_verifies_the_parent() -> None:
    out = run("signed")
    assert out == {
        "mode": "signed",
        "source": "cluster-info",
        "ca_matches": True,
        "verified_get": "ok",
        "credentials_sent": [],
    }


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("forged", "JWSError", "does not verify"),
        ("other-server", "BootstrapError", "not the parent URL"),
    ],
)
def test_a_forged_or_foreign_cluster_info_is_refused(
    mode: str, error: str, words: str
) -> None:
    out = run(mode)
    assert out["error"] == error
    assert words in out["message"]
    assert out["credentials_sent"] == []
