# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
The controllers built into the sandbox: the CRD controller (serves custom
resources, sets Established, cleans up on delete) and the namespace controller
(each namespace gets its C{default} ServiceAccount and C{kube-root-ca.crt}).
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._store import Store
from clusternet.sandbox._store_api import JSONObject, StoreError, StoreEvent
from clusternet.sandbox._strategy import CRD_FINALIZER

__all__ = ["CRDController", "NamespaceController", "crd_resource_types"]

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
CR_VERBS = (
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
)


def crd_resource_types(crd: JSONObject) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    result = []
    for version in spec.get("versions") or []:
        if not isinstance(version, dict) or not version.get("served"):
            continue
        subresources = version.get("subresources") or {}
        result.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                verbs=CR_VERBS,
                subresources=("status",) if "status" in subresources else (),
                generation=True,
                strategic=False,
                return_deleted=True,
                crd=True,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return result


class CRDController:
    _log = Logger()

    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        self._registry = registry

    def start(self) -> None:
        for crd in self._store.snapshot(CRD_KEY):
            self._serve(crd)
            if crd["metadata"].get("deletionTimestamp"):
                self._cleanup(crd)
        self._store.subscribe(self._on_event)

    def _serve(self, crd: JSONObject) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        try:
            self._registry.replace_crd(
                spec["group"], names["plural"], crd_resource_types(crd)
            )
        except (KeyError, TypeError):
            self._log.warn(
                "ignoring malformed CRD {name}", name=crd["metadata"].get("name")
            )

    def _on_event(self, event: StoreEvent) -> None:
        if event.resource == CRD_KEY:
            crd = event.object
            spec = crd.get("spec") or {}
            if event.type == "DELETED":
                self._registry.remove_group_resource(
                    spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
                )
                return
            self._serve(crd)
            if crd["metadata"].get("deletionTimestamp"):
                self._cleanup(crd)
            elif not _established(crd):
                self._establish(crd)
            return
        if event.type == "DELETED":
            group, _, plural = event.resource.partition("/")
            name = f"{plural}.{group}"
            owner = self._store.peek(CRD_KEY, None, name)
            if owner is not None and owner["metadata"].get("deletionTimestamp"):
                self._cleanup(owner)

    def _establish(self, crd: JSONObject) -> None:
        now = self._store.now()
        names = dict((crd.get("spec") or {}).get("names") or {})
        status = dict(crd.get("status") or {})
        status["acceptedNames"] = names
        status["conditions"] = [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": now,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ]
        updated = {**crd, "status": status}
        try:
            self._store.update(CRD_KEY, None, updated, subresource="status")
        except StoreError as e:
            self._log.warn(
                "CRD {name} not established: {error}",
                name=crd["metadata"]["name"],
                error=e.message,
            )

    def _cleanup(self, crd: JSONObject) -> None:
        spec = crd.get("spec") or {}
        resource = (
            f"{spec.get('group', '')}/{(spec.get('names') or {}).get('plural', '')}"
        )
        remaining = 0
        for obj in list(self._store.snapshot(resource)):
            meta = obj["metadata"]
            if not meta.get("deletionTimestamp"):
                try:
                    self._store.delete(resource, meta.get("namespace"), meta["name"])
                except StoreError:
                    pass
            if (
                self._store.peek(resource, meta.get("namespace"), meta["name"])
                is not None
            ):
                remaining += 1
        if remaining:
            return
        current = self._store.peek(CRD_KEY, None, crd["metadata"]["name"])
        if current is None:
            return
        finalizers = [
            f for f in current["metadata"].get("finalizers") or [] if f != CRD_FINALIZER
        ]
        if finalizers == (current["metadata"].get("finalizers") or []):
            return
        updated: dict[str, Any] = {
            **current,
            "metadata": {**current["metadata"], "finalizers": finalizers},
        }
        try:
            self._store.update(CRD_KEY, None, updated)
        except StoreError as e:
            self._log.warn(
                "CRD {name} cleanup: {error}",
                name=crd["metadata"]["name"],
                error=e.message,
            )


def _established(crd: JSONObject) -> bool:
    for condition in (crd.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Established" and condition.get("status") == "True":
            return True
    return False


class NamespaceController:
    """
    Gives every new namespace its C{default} ServiceAccount and the
    C{kube-root-ca.crt} ConfigMap, as the real controllers do.
    """

    _log = Logger()

    def __init__(self, store: Store, ca_pem: str) -> None:
        self._store = store
        self._ca_pem = ca_pem

    def start(self) -> None:
        for namespace in self._store.snapshot("/namespaces"):
            self._fill(namespace)
        self._store.subscribe(self._on_event)

    def _on_event(self, event: StoreEvent) -> None:
        if event.resource == "/namespaces" and event.type == "ADDED":
            self._fill(event.object)

    def _fill(self, namespace: JSONObject) -> None:
        name = namespace["metadata"]["name"]
        if namespace["metadata"].get("deletionTimestamp"):
            return
        try:
            if self._store.peek("/serviceaccounts", name, "default") is None:
                self._store.create(
                    "/serviceaccounts",
                    name,
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "default"},
                    },
                )
            if self._store.peek("/configmaps", name, "kube-root-ca.crt") is None:
                self._store.create(
                    "/configmaps",
                    name,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": "kube-root-ca.crt",
                            "annotations": {
                                "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
                            },
                        },
                        "data": {"ca.crt": self._ca_pem},
                    },
                )
        except StoreError as e:
            self._log.warn("namespace {name}: {error}", name=name, error=e.message)
