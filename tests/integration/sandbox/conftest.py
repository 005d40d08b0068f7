from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sandbox import Sandbox, running_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(
        tmp_path_factory.mktemp("sandbox"), ["--watch-history", "300"]
    ) as running:
        yield running
