"""
What the property tests in tests/fuzz share: their Hypothesis settings and the
fuzz targets of fuzz/, loaded without atheris.

The settings are the deterministic profile with a few hundred examples; set
C{CLUSTERNET_FUZZ_EXAMPLES} to run many more, e.g. where atheris is not
available (docs/fuzzing.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
EXAMPLES = int(os.environ.get("CLUSTERNET_FUZZ_EXAMPLES", "300"))

fuzz_settings = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

TARGETS = sorted(path.stem.removeprefix("fuzz_") for path in FUZZ.glob("fuzz_*.py"))


def load_target(name: str) -> Callable[[bytes], None]:
    """
    The C{TestOneInput} of C{fuzz/fuzz_<name>.py}; a stand-in for atheris
    when it is not installed (only its import-time API is used).
    """
    if "atheris" not in sys.modules:
        try:
            import atheris  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            stub = types.ModuleType("atheris")
            stub.instrument_imports = lambda **_: contextlib.nullcontext()  # type: ignore[attr-defined]
            sys.modules["atheris"] = stub
    spec = importlib.util.spec_from_file_location(
        f"clusternet_fuzz_{name}", FUZZ / f"fuzz_{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Callable[[bytes], None] = module.TestOneInput
    return target
