from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox._patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    field_set,
    fields_v1,
    make_merge_patch,
    parse_fields_v1,
    server_side_apply,
)

scalars = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans())
documents = st.recursive(
    st.dictionaries(st.text("abc", min_size=1, max_size=2), scalars, max_size=3),
    lambda inner: st.dictionaries(
        st.text("abc", min_size=1, max_size=2),
        st.one_of(inner, st.lists(scalars, max_size=3)),
        max_size=3,
    ),
    max_leaves=10,
)


@given(documents, documents)
def test_merge_patch_from_diff_turns_source_into_target(
    source: dict[str, Any], target: dict[str, Any]
) -> None:
    assert apply_merge_patch(source, make_merge_patch(source, target)) == target


@given(documents, documents)
def test_merge_patch_is_idempotent(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    once = apply_merge_patch(doc, patch)
    assert apply_merge_patch(once, patch) == once


@given(documents, documents)
def test_strategic_merge_without_lists_agrees_with_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any]
) -> None:
    def no_lists(d: Any) -> Any:
        return (
            {k: no_lists(v) for k, v in d.items() if not isinstance(v, list)}
            if isinstance(d, dict)
            else d
        )

    doc, patch = no_lists(doc), no_lists(patch)
    assert apply_strategic_merge_patch(doc, patch) == apply_merge_patch(doc, patch)


@given(documents, st.text("xyz", min_size=1, max_size=2), scalars)
def test_json_patch_add_then_remove_restores(
    doc: dict[str, Any], key: str, value: Any
) -> None:
    if key in doc:
        return
    added = apply_json_patch(doc, [{"op": "add", "path": f"/{key}", "value": value}])
    assert added[key] == value
    assert apply_json_patch(added, [{"op": "remove", "path": f"/{key}"}]) == doc


def test_json_patch_replace_of_missing_key_adds_it_like_the_real_server() -> None:
    assert apply_json_patch(
        {"data": {"a": "1"}}, [{"op": "replace", "path": "/data/zzz", "value": "3"}]
    ) == {"data": {"a": "1", "zzz": "3"}}


def test_json_patch_test_failure_and_bad_paths_are_errors() -> None:
    with pytest.raises(PatchError):
        apply_json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(PatchError):
        apply_json_patch({"a": 1}, [{"op": "remove", "path": "/b/c"}])
    with pytest.raises(PatchError):
        apply_json_patch({"a": 1}, {"op": "add"})


def test_strategic_merge_merges_lists_by_key_and_honours_directives() -> None:
    pod = {
        "spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]
        },
        "metadata": {"finalizers": ["x"]},
    }
    patch = {
        "spec": {
            "containers": [
                {"name": "b", "image": "2"},
                {"name": "a", "$patch": "delete"},
            ]
        },
        "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]},
    }
    assert apply_strategic_merge_patch(pod, patch) == {
        "spec": {"containers": [{"name": "b", "image": "2"}]},
        "metadata": {"finalizers": ["y"]},
    }


def test_field_sets_round_trip_through_fields_v1() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "labels": {"x": "1"}},
        "data": {"a": "1"},
    }
    paths = field_set(obj)
    tree = fields_v1(paths)
    assert tree == {
        "f:data": {".": {}, "f:a": {}},
        "f:metadata": {"f:labels": {".": {}, "f:x": {}}},
    }
    assert parse_fields_v1(tree) == paths


def test_server_side_apply_conflicts_with_another_manager_unless_forced() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "old"},
    }
    managed = [
        {
            "manager": "other",
            "operation": "Update",
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(field_set(live)),
        }
    ]
    applied = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "new"},
    }
    with pytest.raises(PatchError) as e:
        server_side_apply(
            live, applied, "me", managed, force=False, api_version="v1", now="t"
        )
    assert e.value.code == 409 and 'conflict with "other"' in str(e.value)
    result, entries = server_side_apply(
        live, applied, "me", managed, force=True, api_version="v1", now="t"
    )
    assert result["data"] == {"k": "new"}
    assert [m["manager"] for m in entries] == ["me"]


def test_server_side_apply_removes_fields_the_manager_stopped_applying() -> None:
    first = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "1", "gone": "x"},
    }
    live, managed = server_side_apply(
        {}, first, "me", [], force=False, api_version="v1", now="t"
    )
    second = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "data": {"k": "1"},
    }
    result, _ = server_side_apply(
        live, second, "me", managed, force=False, api_version="v1", now="t"
    )
    assert result["data"] == {"k": "1"}
