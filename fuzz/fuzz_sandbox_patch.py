"""
Fuzz target: the sandbox's patch formats (L{clusternet.sandbox._patch}): JSON
patch, JSON merge patch, strategic merge patch and server-side apply.

Feeds: the first byte chooses the format; the rest is a JSON array
C{[live object, patch]} (the HTTP layer decodes the body; an input that is not
such JSON is skipped). For server-side apply the live object's
C{metadata.managedFields} are the other managers' fields.

A crash is: any exception but L{PatchError}; a patched result that strict
JSON cannot write; the live object changed in place.
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.sandbox._patch import (
        PatchError,
        apply_json_patch,
        apply_merge_patch,
        apply_strategic_merge_patch,
        server_side_apply,
    )


def _apply(live: dict[str, Any], patch: Any) -> object:
    metadata = live.get("metadata")
    managed = metadata.get("managedFields") if isinstance(metadata, dict) else None
    if not isinstance(managed, list) or not all(isinstance(m, dict) for m in managed):
        managed = []
    if not isinstance(patch, dict):
        return None
    return server_side_apply(
        live,
        patch,
        "fuzz",
        managed,
        force=False,
        api_version="v1",
        now="2025-01-01T00:00:00Z",
    )


FORMATS = (apply_json_patch, apply_merge_patch, apply_strategic_merge_patch, _apply)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    apply = FORMATS[data[0] % len(FORMATS)]
    try:
        document = json.loads(data[1:].decode("utf-8"))
    except (ValueError, RecursionError):
        return
    if not isinstance(document, list) or len(document) != 2:
        return
    live, patch = document
    if not isinstance(live, dict):
        return
    if apply is apply_merge_patch and not isinstance(patch, dict):
        return
    before = copy.deepcopy(live)
    try:
        result = apply(live, patch)
    except PatchError:
        return
    if live != before:
        raise AssertionError("the live object was changed in place")
    json.dumps(result, allow_nan=False)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
