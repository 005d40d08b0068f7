# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
from __future__ import annotations

import random
from typing import Any

import pytest

from twisted.internet.task import Clock

from clusternet.sandbox._controllers import CRDController, NamespaceController
from clusternet.sandbox._meta import ApiError
from clusternet.sandbox._resources import Registry
from clusternet.sandbox._store import Gone, Store
from clusternet.sandbox._store_api import ObjectWriter, StoreEvent


def make_store(history: int = 100) -> tuple[Store, Clock, Registry]:
    clock = Clock()
    clock.advance(1_800_000_000)
    registry = Registry.with_builtins()
    store = Store(registry, clock, history=history, rng=random.Random(1))
    store.create("/namespaces", None, {"metadata": {"name": "ns"}})
    return store, clock, registry


def cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }


def test_store_is_an_object_writer() -> None:
    store, _, _ = make_store()
    writer: ObjectWriter = store
    assert writer.get("/namespaces", None, "ns") is not None


def test_create_fills_metadata_and_refuses_duplicates() -> None:
    store, _, _ = make_store()
    made = store.create("/configmaps", "ns", cm("a", k="v"))
    meta = made["metadata"]
    assert (
        meta["namespace"] == "ns"
        and meta["uid"]
        and meta["creationTimestamp"] == "2027-01-15T08:00:00Z"
    )
    assert int(meta["resourceVersion"]) == store.resource_version
    with pytest.raises(ApiError) as e:
        store.create("/configmaps", "ns", cm("a"))
    assert (e.value.code, e.value.reason, e.value.message) == (
        409,
        "AlreadyExists",
        'configmaps "a" already exists',
    )


def test_generate_name_and_missing_namespace() -> None:
    store, _, _ = make_store()
    made = store.create("/configmaps", "ns", {"metadata": {"generateName": "g-"}})
    assert (
        made["metadata"]["name"].startswith("g-") and len(made["metadata"]["name"]) == 7
    )
    with pytest.raises(ApiError) as e:
        store.create("/configmaps", "nope", cm("a"))
    assert e.value.code == 404 and e.value.message == 'namespaces "nope" not found'


def test_update_with_stale_resource_version_conflicts() -> None:
    store, _, _ = make_store()
    made = store.create("/configmaps", "ns", cm("a", k="1"))
    store.update("/configmaps", "ns", {**made, "data": {"k": "2"}})
    with pytest.raises(ApiError) as e:
        store.update("/configmaps", "ns", {**made, "data": {"k": "3"}})
    assert e.value.code == 409 and "the object has been modified" in e.value.message


def test_noop_update_keeps_resource_version() -> None:
    store, _, _ = make_store()
    made = store.create("/configmaps", "ns", cm("a", k="1"))
    again = store.update("/configmaps", "ns", made)
    assert again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.x.io"},
        "spec": {
            "group": "x.io",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def with_crd() -> tuple[Store, Clock, Registry]:
    store, clock, registry = make_store()
    CRDController(store, registry).start()
    store.create("apiextensions.k8s.io/customresourcedefinitions", None, crd())
    return store, clock, registry


def test_crd_becomes_established_and_served() -> None:
    store, _, registry = with_crd()
    got = store.get(
        "apiextensions.k8s.io/customresourcedefinitions", None, "things.x.io"
    )
    assert got is not None
    assert {c["type"]: c["status"] for c in got["status"]["conditions"]} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    assert registry.lookup("x.io", "v1", "things") is not None


def test_generation_moves_on_spec_not_on_status_or_metadata() -> None:
    store, _, _ = with_crd()
    thing = store.create(
        "x.io/things",
        "ns",
        {
            "apiVersion": "x.io/v1",
            "kind": "Thing",
            "metadata": {"name": "t"},
            "spec": {"a": 1},
        },
    )
    assert thing["metadata"]["generation"] == 1
    thing = store.update(
        "x.io/things",
        "ns",
        {**thing, "metadata": {**thing["metadata"], "labels": {"l": "1"}}},
    )
    assert thing["metadata"]["generation"] == 1
    thing = store.update(
        "x.io/things", "ns", {**thing, "status": {"s": 1}}, subresource="status"
    )
    assert thing["metadata"]["generation"] == 1 and thing["status"] == {"s": 1}
    ignored = store.update("x.io/things", "ns", {**thing, "status": {"s": 2}})
    assert ignored["status"] == {"s": 1}
    thing = store.update("x.io/things", "ns", {**thing, "spec": {"a": 2}})
    assert thing["metadata"]["generation"] == 2


def test_finalizers_hold_deletion_until_removed() -> None:
    store, _, _ = make_store()
    made = store.create(
        "/configmaps",
        "ns",
        {**cm("a"), "metadata": {"name": "a", "finalizers": ["x/y"]}},
    )
    pending = store.delete("/configmaps", "ns", "a")
    assert pending is not None and pending["metadata"]["deletionTimestamp"]
    assert store.get("/configmaps", "ns", "a") is not None
    current = store.get("/configmaps", "ns", "a")
    assert current is not None
    current["metadata"]["finalizers"] = []
    store.update("/configmaps", "ns", current)
    assert store.get("/configmaps", "ns", "a") is None
    assert made["metadata"]["uid"] == pending["metadata"]["uid"]


def test_namespace_deletion_terminates_then_removes_contents() -> None:
    store, clock, _ = make_store()
    store.create("/configmaps", "ns", cm("a"))
    deleted = store.delete("/namespaces", None, "ns")
    assert deleted is not None and deleted["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as e:
        store.create("/configmaps", "ns", cm("late"))
    assert e.value.code == 403 and "because it is being terminated" in e.value.message
    clock.advance(0)
    assert store.get("/configmaps", "ns", "a") is None
    assert store.get("/namespaces", None, "ns") is None


def test_protected_namespaces_cannot_be_deleted() -> None:
    store, _, _ = make_store()
    store.create("/namespaces", None, {"metadata": {"name": "default"}})
    with pytest.raises(ApiError) as e:
        store.delete("/namespaces", None, "default")
    assert e.value.code == 403


def test_watch_replays_history_then_streams_and_compaction_is_gone() -> None:
    store, _, _ = make_store(history=3)
    start = store.resource_version
    store.create("/configmaps", "ns", cm("a"))
    seen: list[tuple[str, str]] = []
    cancel = store.watch(
        "/configmaps",
        "ns",
        start,
        lambda kind, obj, old: seen.append((kind, obj["metadata"]["resourceVersion"])),
    )
    store.delete("/configmaps", "ns", "a")
    assert [k for k, _ in seen] == ["ADDED", "DELETED"]
    cancel()
    for i in range(5):
        store.create("/configmaps", "ns", cm(f"x{i}"))
    with pytest.raises(Gone) as e:
        store.watch("/configmaps", None, start, lambda *a: None)
    assert str(e.value).startswith(f"too old resource version: {start} (")


def test_subscribers_may_write_and_see_events_in_order() -> None:
    store, _, _ = make_store()
    events: list[StoreEvent] = []
    NamespaceController(store, "CA").start()

    def react(event: StoreEvent) -> None:
        events.append(event)

    store.subscribe(react)
    store.create("/namespaces", None, {"metadata": {"name": "other"}})
    kinds = [(e.type, e.resource, e.object["metadata"]["name"]) for e in events]
    assert kinds[0] == ("ADDED", "/namespaces", "other")
    assert ("ADDED", "/serviceaccounts", "default") in kinds
    assert ("ADDED", "/configmaps", "kube-root-ca.crt") in kinds


def test_lease_micro_time_without_fraction_is_refused() -> None:
    store, _, _ = make_store()
    body = {
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "a", "renewTime": "2026-11-26T10:00:00Z"},
    }
    with pytest.raises(ApiError) as e:
        store.create("coordination.k8s.io/leases", "ns", body)
    assert e.value.message == (
        'Lease in version "v1" cannot be handled as a Lease: parsing time "2026-11-26T10:00:00Z" as '
        '"2006-01-02T15:04:05.000000Z07:00": cannot parse "Z" as ".000000"'
    )


def test_invalid_name_gives_the_real_message() -> None:
    store, _, _ = make_store()
    with pytest.raises(ApiError) as e:
        store.create("/configmaps", "ns", cm("Bad_Name"))
    assert e.value.code == 422
    assert e.value.message.startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )
