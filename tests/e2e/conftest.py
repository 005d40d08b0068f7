"""
A fleet (parent sandbox, hub, two children with agents) shared by the
end-to-end tests of one module.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusternet.fleet import Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("fleet")
    lines: list[str] = []
    fleet = Fleet(
        data, children=2, say=lines.append, status_frequency="5s", lease_grace="10s"
    )
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        fleet.stop()
