"""
The official kubernetes Python client against a running sandbox.
"""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.support.sandbox import Sandbox, running_sandbox

pytestmark = pytest.mark.slow

GROUP, VERSION, PLURAL = "client.example.com", "v1", "things"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"kind": "Thing", "plural": PLURAL, "singular": "thing"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"n": {"type": "integer"}},
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def api(sandbox: Sandbox) -> Any:
    return sandbox.client()


@pytest.fixture(scope="module")
def things(api: Any) -> client.CustomObjectsApi:
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(CRD)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        if any(
            c.type == "Established" and c.status == "True"
            for c in crd.status.conditions or []
        ):
            break
        time.sleep(0.05)
    return client.CustomObjectsApi(api)


def namespace(api: Any, name: str) -> str:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def thing(name: str, n: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Thing",
        "metadata": {"name": name},
        "spec": {"n": n},
    }


def test_custom_objects_create_get_list_patch_delete(
    api: Any, things: client.CustomObjectsApi
) -> None:
    ns = namespace(api, "pc-crud")
    created = things.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, thing("a", 1)
    )
    assert created["metadata"]["generation"] == 1 and created["metadata"]["uid"]
    assert things.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")[
        "spec"
    ] == {"n": 1}
    patched = things.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "a", {"spec": {"n": 2}}
    )
    assert patched["spec"] == {"n": 2} and patched["metadata"]["generation"] == 2
    status = things.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, "a", {"status": {"ok": True}}
    )
    assert status["status"] == {"ok": True} and status["metadata"]["generation"] == 2
    listed = things.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    things.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
    with pytest.raises(ApiException) as e:
        things.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "a")
    assert e.value.status == 404


def test_core_objects_with_typed_client(api: Any) -> None:
    core = client.CoreV1Api(api)
    ns = namespace(api, "pc-core")
    core.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="c", labels={"app": "x"}), data={"k": "v"}
        ),
    )
    core.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d", labels={"app": "y"})),
    )
    got = core.list_namespaced_config_map(ns, label_selector="app=x")
    assert [c.metadata.name for c in got.items] == ["c"]
    got = core.list_namespaced_config_map(ns, field_selector="metadata.name=d")
    assert [c.metadata.name for c in got.items] == ["d"]
    page = core.list_namespaced_config_map(ns, limit=1)
    assert len(page.items) == 1 and page.metadata._continue
    rest = core.list_namespaced_config_map(
        ns, limit=10, _continue=page.metadata._continue
    )
    names = [page.items[0].metadata.name] + [c.metadata.name for c in rest.items]
    assert sorted(names) == ["c", "d", "kube-root-ca.crt"] or sorted(names) == [
        "c",
        "d",
    ]
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(
            ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"))
        )
    assert e.value.status == 409
    sa = core.read_namespaced_service_account("default", ns)
    assert sa.metadata.name == "default"
    leases = client.CoordinationV1Api(api)
    whole_second = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(
        ApiException
    ) as e:  # isoformat() drops the fraction: refused, as the real server does
        leases.create_namespaced_lease(
            ns,
            {
                "metadata": {"name": "l"},
                "spec": {"holderIdentity": "me", "renewTime": whole_second},
            },
        )
    assert e.value.status == 400 and "cannot parse" in e.value.body
    lease = leases.create_namespaced_lease(
        ns,
        {
            "metadata": {"name": "l"},
            "spec": {
                "holderIdentity": "me",
                "leaseDurationSeconds": 10,
                "renewTime": whole_second.replace(microsecond=1),
            },
        },
    )
    assert lease.spec.holder_identity == "me"


def test_watch_sees_every_change_once_in_order(
    api: Any, things: client.CustomObjectsApi
) -> None:
    ns = namespace(api, "pc-watch")
    start = things.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)[
        "metadata"
    ]["resourceVersion"]
    things.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, thing("w", 0))
    for n in range(1, 20):
        things.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "w", {"spec": {"n": n}}
        )
    things.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w")
    seen = []
    w = watch.Watch()
    for event in w.stream(
        things.list_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PLURAL,
        resource_version=start,
        timeout_seconds=5,
    ):
        seen.append(
            (
                event["type"],
                event["object"]["spec"]["n"],
                int(event["object"]["metadata"]["resourceVersion"]),
            )
        )
        if event["type"] == "DELETED":
            w.stop()
    assert [s[0] for s in seen] == ["ADDED"] + ["MODIFIED"] * 19 + ["DELETED"]
    assert [s[1] for s in seen[:20]] == list(range(20))
    rvs = [s[2] for s in seen]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)


def test_watch_from_compacted_history_is_410_gone(api: Any) -> None:
    core = client.CoreV1Api(api)
    ns = namespace(api, "pc-gone")
    first = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "churn"}, "data": {"i": "0"}}
    )
    for i in range(320):  # the fixture keeps 300 events per resource
        core.patch_namespaced_config_map("churn", ns, {"data": {"i": str(i)}})
    events = (
        list(
            watch.Watch().stream(
                core.list_namespaced_config_map,
                ns,
                resource_version=first,
                timeout_seconds=2,
                _preload_content=False,
            )
        )
        if False
        else None
    )
    resp = core.list_namespaced_config_map(
        ns,
        watch=True,
        resource_version=first,
        timeout_seconds=2,
        _preload_content=False,
    )
    body = resp.data.decode()
    assert (
        '"type":"ERROR"' in body
        and '"code":410' in body
        and '"reason":"Expired"' in body
    )
    assert events is None


def test_concurrent_writers_get_conflicts_and_lose_no_update(
    api: Any, things: client.CustomObjectsApi, sandbox: Sandbox
) -> None:
    ns = namespace(api, "pc-race")
    things.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, thing("counter", 0)
    )
    conflicts = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer() -> None:
        nonlocal conflicts
        local = client.CustomObjectsApi(sandbox.client())
        for _ in range(200):  # bounded retries
            obj = local.get_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, "counter"
            )
            obj["spec"]["n"] += 1
            try:
                local.replace_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, "counter", obj
                )
                return
            except ApiException as e:
                if e.status != 409:
                    errors.append(e)
                    return
                with lock:
                    conflicts += 1
        errors.append(AssertionError("writer gave up"))

    threads = [threading.Thread(target=writer) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    final = things.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "counter")
    assert final["spec"]["n"] == 100
    assert conflicts > 0


def test_state_survives_restart_and_resource_versions_keep_increasing(
    tmp_path: Any,
) -> None:
    with running_sandbox(tmp_path / "persist") as first:
        core = client.CoreV1Api(first.client())
        core.create_namespace({"metadata": {"name": "keep"}})
        made = core.create_namespaced_config_map(
            "keep", {"metadata": {"name": "kept"}, "data": {"a": "b"}}
        )
        rv = int(made.metadata.resource_version)
        assert first.terminate() == 0
    with running_sandbox(tmp_path / "persist") as second:
        core = client.CoreV1Api(second.client())
        kept = core.read_namespaced_config_map("kept", "keep")
        assert kept.data == {"a": "b"} and kept.metadata.uid == made.metadata.uid
        again = core.create_namespaced_config_map(
            "keep", {"metadata": {"name": "later"}}
        )
        assert int(again.metadata.resource_version) > rv
