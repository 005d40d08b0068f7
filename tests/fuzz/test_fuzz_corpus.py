"""
Every fuzz target of fuzz/ accepts every input of its seed corpus: the
targets and their corpora stay in step with the parsers.
"""

from __future__ import annotations

import pytest
from fuzz_support import FUZZ, TARGETS, load_target


def test_every_target_has_a_seed_corpus() -> None:
    assert len(TARGETS) >= 8
    for name in TARGETS:
        assert len(list((FUZZ / "corpus" / name).iterdir())) >= 3, name


@pytest.mark.parametrize("name", TARGETS)
def test_the_seed_corpus_passes_the_target(name: str) -> None:
    target = load_target(name)
    for seed in sorted((FUZZ / "corpus" / name).iterdir()):
        target(seed.read_bytes())
