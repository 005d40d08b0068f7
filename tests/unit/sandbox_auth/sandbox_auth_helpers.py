"""
A small dict-backed ObjectWriter for the auth tests, and object builders.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable
from typing import Any

from clusternet.sandbox._store_api import StoreError, StoreEvent

JSONObject = dict[str, Any]


class MemoryStore:
    """
    Enough of the sandbox store for controllers: create/get/list/update/delete
    with resourceVersions, uids, generateName, 409s, and subscribers called after
    each commit (writes from a callback delivered after the current event).
    """

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str | None, str], JSONObject] = {}
        self._version = itertools.count(100)
        self._uids = itertools.count(1)
        self._subscribers: list[Callable[[StoreEvent], None]] = []
        self._pending: list[StoreEvent] = []
        self._delivering = False
        self.writes = 0

    def get(self, resource: str, namespace: str | None, name: str) -> JSONObject | None:
        obj = self._objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None) -> list[JSONObject]:
        return [
            copy.deepcopy(o)
            for (r, ns, _), o in sorted(
                self._objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if r == resource and (namespace is None or ns == namespace)
        ]

    def create(
        self, resource: str, namespace: str | None, obj: JSONObject
    ) -> JSONObject:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + f"{next(self._uids):05d}"
        name = meta["name"]
        if (resource, namespace, name) in self._objects:
            raise StoreError(
                409, "AlreadyExists", f'{resource} "{name}" already exists'
            )
        if namespace is not None:
            meta["namespace"] = namespace
        meta["uid"] = f"uid-{next(self._uids)}"
        meta["resourceVersion"] = str(next(self._version))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        if "stringData" in obj:
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(v.encode()).decode()
        self._objects[(resource, namespace, name)] = obj
        self._emit(StoreEvent("ADDED", resource, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def update(
        self, resource: str, namespace: str | None, obj: JSONObject
    ) -> JSONObject:
        obj = copy.deepcopy(obj)
        name = obj["metadata"]["name"]
        old = self._objects.get((resource, namespace, name))
        if old is None:
            raise StoreError(404, "NotFound", f'{resource} "{name}" not found')
        rv = obj["metadata"].get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise StoreError(409, "Conflict", "the object has been modified")
        obj["metadata"]["uid"] = old["metadata"]["uid"]
        obj["metadata"]["resourceVersion"] = str(next(self._version))
        self._objects[(resource, namespace, name)] = obj
        self.writes += 1
        self._emit(
            StoreEvent("MODIFIED", resource, copy.deepcopy(obj), copy.deepcopy(old))
        )
        return copy.deepcopy(obj)

    def delete(
        self, resource: str, namespace: str | None, name: str
    ) -> JSONObject | None:
        old = self._objects.pop((resource, namespace, name), None)
        if old is not None:
            self._emit(StoreEvent("DELETED", resource, copy.deepcopy(old)))
        return old

    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _emit(self, event: StoreEvent) -> None:
        self._pending.append(event)
        if self._delivering:
            return
        self._delivering = True
        try:
            rounds = 0
            while self._pending:
                rounds += 1
                assert rounds < 1000, "controllers keep writing: a loop"
                current = self._pending.pop(0)
                for callback in list(self._subscribers):
                    callback(current)
        finally:
            self._delivering = False


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def bootstrap_secret(
    token_id: str,
    token_secret: str,
    *,
    expiration: str | None = None,
    authentication: bool = True,
    signing: bool = True,
    extra_groups: str | None = None,
) -> JSONObject:
    data = {"token-id": token_id, "token-secret": token_secret}
    if authentication:
        data["usage-bootstrap-authentication"] = "true"
    if signing:
        data["usage-bootstrap-signing"] = "true"
    if expiration is not None:
        data["expiration"] = expiration
    if extra_groups is not None:
        data["auth-extra-groups"] = extra_groups
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
        "data": {k: b64(v) for k, v in data.items()},
    }


def service_account(namespace: str, name: str) -> JSONObject:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }
