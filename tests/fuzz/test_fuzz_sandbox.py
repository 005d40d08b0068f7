"""
Bounded fuzzing of the sandbox's request body decoders: Kubernetes protobuf
and the patch formats (the long runs are fuzz/fuzz_sandbox_*.py).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from fuzz_support import FUZZ, fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox._patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

KUBECTL = [
    (path.read_bytes()[0], path.read_bytes()[1:])
    for path in sorted((FUZZ / "corpus" / "sandbox_protobuf").iterdir())
    if path.read_bytes()[1:].startswith(b"k8s\x00")
]
PROTOBUF = load_target("sandbox_protobuf")
PATCH = load_target("sandbox_patch")


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[int, bytes]:
    endpoint, body = draw(st.sampled_from(KUBECTL))
    wire = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(4, len(wire)))
        action = draw(st.sampled_from(["flip", "cut", "put"]))
        if action == "flip" and position < len(wire):
            wire[position] = draw(st.integers(0, 255))
        elif action == "cut":
            del wire[position : position + draw(st.integers(1, 8))]
        else:
            wire[position:position] = draw(st.binary(min_size=1, max_size=8))
    return endpoint, bytes(wire)


@fuzz_settings
@given(mutated_bodies())
def test_mangled_kubectl_bodies_decode_to_strict_json_or_raise_value_error(
    case: tuple[int, bytes],
) -> None:
    endpoint, body = case
    PROTOBUF(bytes([endpoint]) + body)


@fuzz_settings
@given(st.integers(0, 255), st.binary(max_size=300))
def test_any_protobuf_body_passes_the_fuzz_target(endpoint: int, body: bytes) -> None:
    PROTOBUF(bytes([endpoint]) + b"k8s\x00" + body)


KEYS = st.sampled_from(
    [
        "a",
        "name",
        "containers",
        "ports",
        "port",
        "finalizers",
        "metadata",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "managedFields",
        "f:a",
        "",
        "/",
        "~",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from(["replace", "delete", "merge", "a", "c", ""])
)
JSONS = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=15,
)
PATHS = st.lists(
    st.sampled_from(
        ["a", "name", "containers", "0", "1", "01", "-", "²", "9" * 30, "~1", "~0", ""]
    ),
    max_size=4,
).map(lambda parts: "".join("/" + p for p in parts))
OPERATIONS = st.fixed_dictionaries(
    {
        "op": st.sampled_from(
            ["add", "remove", "replace", "move", "copy", "test", "x"]
        ),
        "path": PATHS,
    },
    optional={"value": JSONS, "from": PATHS},
)


def applies_cleanly(apply: Any, live: dict[str, Any], patch: Any) -> None:
    before = copy.deepcopy(live)
    try:
        result = apply(live, patch)
    except PatchError:
        return
    assert live == before
    json.dumps(result, allow_nan=False)


@fuzz_settings
@given(
    st.dictionaries(KEYS, JSONS, max_size=4), st.lists(OPERATIONS, max_size=4) | JSONS
)
def test_any_json_patch_applies_or_raises_patch_error(
    live: dict[str, Any], patch: Any
) -> None:
    applies_cleanly(apply_json_patch, live, patch)


@fuzz_settings
@given(
    st.dictionaries(KEYS, JSONS, max_size=4), st.dictionaries(KEYS, JSONS, max_size=4)
)
def test_any_merge_or_strategic_patch_applies_or_raises_patch_error(
    live: dict[str, Any], patch: dict[str, Any]
) -> None:
    applies_cleanly(apply_merge_patch, live, patch)
    applies_cleanly(apply_strategic_merge_patch, live, patch)


@fuzz_settings
@given(
    st.dictionaries(KEYS, JSONS, max_size=4),
    st.dictionaries(KEYS, JSONS, max_size=4),
    st.lists(
        st.dictionaries(st.sampled_from(["manager", "operation", "fieldsV1"]), JSONS),
        max_size=2,
    ),
)
def test_any_apply_applies_or_raises_patch_error(
    live: dict[str, Any], applied: dict[str, Any], managed: list[dict[str, Any]]
) -> None:
    live = {**live, "metadata": {"managedFields": managed}}
    PATCH(b"\x03" + json.dumps([live, applied]).encode())


@fuzz_settings
@given(st.integers(0, 3), st.integers(1, 500))
def test_deeply_nested_documents_are_refused_or_applied(kind: int, depth: int) -> None:
    deep = json.loads('{"a":' * depth + "1" + "}" * depth)
    PATCH(bytes([kind]) + json.dumps([{"a": {}}, deep]).encode())
    PATCH(
        bytes([0])
        + json.dumps([{}, [{"op": "add", "path": "/a", "value": deep}]]).encode()
    )
