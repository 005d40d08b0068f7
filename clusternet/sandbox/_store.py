# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
The sandbox's object store: every object in memory, a global resourceVersion, a
bounded watch history per resource, and an optional journal that persists each
change off the reactor thread.
"""

from __future__ import annotations

import builtins
import copy
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from clusternet.sandbox._meta import (
    ApiError,
    already_exists,
    conflict,
    format_time,
    invalid,
    not_found,
    validate_name,
)
from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._store_api import JSONObject, StoreError, StoreEvent
from clusternet.sandbox._strategy import (
    CRD_FINALIZER,
    decode_check,
    prepare,
    spec_changed,
    validate_object,
)

__all__ = ["Gone", "Journal", "Store"]

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
WatchCallback = Callable[[str, JSONObject, "JSONObject | None"], None]

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class Gone(Exception):
    """
    A watch asked for history the store no longer has.
    """

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Journal(Protocol):
    def record(
        self, rv: int, resource: str, key: tuple[str, str], obj: JSONObject | None
    ) -> None:
        """
        Persist one change (C{obj} C{None} for a removal); must not block.
        """


class _Watcher:
    __slots__ = ("callback", "namespace")

    def __init__(self, namespace: str | None, callback: WatchCallback) -> None:
        self.namespace = namespace
        self.callback = callback


class Store:
    """
    Implements L{clusternet.sandbox._store_api.ObjectWriter}.

    Stored objects are never mutated in place: every write stores a new dict,
    so readers may hold on to what they were given by the internal C{snapshot}.
    """

    _log = Logger()

    def __init__(
        self,
        registry: Registry,
        clock: IReactorTime,
        *,
        history: int = 10000,
        journal: Journal | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._history_size = history
        self._journal = journal
        self._rng = rng or random.Random()
        self._objects: dict[str, dict[tuple[str, str], JSONObject]] = {}
        self._history: dict[
            str, deque[tuple[int, str, JSONObject, JSONObject | None]]
        ] = {}
        self._oldest: dict[str, int] = {}
        self._start_rv = 0
        self._rv = 0
        self._watchers: dict[str, list[_Watcher]] = {}
        self._subscribers: list[Callable[[StoreEvent], None]] = []
        self._pending: deque[StoreEvent] = deque()
        self._dispatching = False
        self._service_ips: set[str] = set()
        self._scheduled: set[tuple[str, str]] = set()

    # --- loading ------------------------------------------------------------

    def load(self, rv: int, objects: Iterator[tuple[str, JSONObject]]) -> None:
        """
        Restore persisted state: watches can only start from C{rv} on.
        """
        for resource, obj in objects:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            self._objects.setdefault(resource, {})[key] = obj
            if resource == "/services":
                ip = (obj.get("spec") or {}).get("clusterIP")
                if ip:
                    self._service_ips.add(ip)
        self._rv = rv
        self._start_rv = rv

    def dump(self) -> Iterator[tuple[str, JSONObject]]:
        for resource, objects in self._objects.items():
            for obj in objects.values():
                yield resource, obj

    @property
    def resource_version(self) -> int:
        return self._rv

    def now(self) -> str:
        return format_time(self._clock.seconds())

    # --- reading ------------------------------------------------------------

    def _type(self, resource: str) -> ResourceType:
        rtype = self._registry.by_key(resource)
        if rtype is None:
            raise ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return rtype

    def get(self, resource: str, namespace: str | None, name: str) -> JSONObject | None:
        obj = self._objects.get(resource, {}).get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def peek(
        self, resource: str, namespace: str | None, name: str
    ) -> JSONObject | None:
        """
        The stored object itself, not a copy: do not mutate it.
        """
        return self._objects.get(resource, {}).get((namespace or "", name))

    def list(self, resource: str, namespace: str | None = None) -> list[JSONObject]:
        return [copy.deepcopy(o) for o in self.snapshot(resource, namespace)]

    def snapshot(
        self, resource: str, namespace: str | None = None
    ) -> builtins.list[JSONObject]:
        """
        The stored objects (not copies), sorted by namespace and name.
        """
        objects = self._objects.get(resource, {})
        keys = sorted(k for k in objects if namespace is None or k[0] == namespace)
        return [objects[k] for k in keys]

    def count(self, resource: str) -> int:
        return len(self._objects.get(resource, {}))

    # --- writing ------------------------------------------------------------

    def create(
        self,
        resource: str,
        namespace: str | None,
        obj: JSONObject,
        *,
        dry_run: bool = False,
    ) -> JSONObject:
        rtype = self._type(resource)
        obj = copy.deepcopy(obj)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        meta = obj["metadata"]
        obj.setdefault("apiVersion", rtype.group_version)
        obj.setdefault("kind", rtype.kind)
        for drop in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(drop, None)
        ns = ""
        if rtype.namespaced:
            ns = namespace or meta.get("namespace") or ""
            if not ns:
                raise invalid(
                    rtype.kind,
                    meta.get("name", ""),
                    rtype.group,
                    [("FieldValueRequired", "metadata.namespace", "Required value")],
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    rtype.kind,
                    "",
                    rtype.group,
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            for _ in range(16):
                candidate = prefix + "".join(
                    self._rng.choice(_NAME_CHARS) for _ in range(5)
                )
                if (ns, candidate) not in self._objects.get(resource, {}):
                    meta["name"] = candidate
                    break
            else:
                raise ApiError(500, "ServerTimeout", "could not generate a unique name")
        name = meta["name"]
        if not isinstance(name, str):
            raise ApiError(400, "BadRequest", "metadata.name must be a string")
        problem = validate_name(name, rtype.name_rule)
        if problem is not None:
            raise invalid(
                rtype.kind,
                name,
                rtype.group,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.name",
                        f'Invalid value: "{name}": {problem}',
                    )
                ],
            )
        if rtype.namespaced:
            self._check_namespace(rtype, ns, name)
        if (ns, name) in self._objects.get(resource, {}):
            raise already_exists(rtype.plural, name, rtype.group)
        decode_check(rtype, obj)
        prepare(
            rtype,
            obj,
            None,
            self._service_ips if not dry_run else set(self._service_ips),
        )
        obj = validate_object(rtype, obj, self._schema_for(rtype, obj))
        meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.now()
        if rtype.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if dry_run:
            return obj
        self._commit(resource, (ns, name), obj, None, "ADDED")
        return copy.deepcopy(obj)

    def _schema_for(self, rtype: ResourceType, obj: JSONObject) -> JSONObject | None:
        if not rtype.crd:
            return None
        api_version = obj.get("apiVersion", "")
        version = api_version.rpartition("/")[2]
        served = self._registry.lookup(rtype.group, version, rtype.plural)
        return (served or rtype).schema

    def _check_namespace(self, rtype: ResourceType, ns: str, name: str) -> None:
        namespace = self._objects.get("/namespaces", {}).get(("", ns))
        if namespace is None:
            raise not_found("namespaces", ns)
        if namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rtype.plural} "{name}" is forbidden: unable to create new content in '
                f"namespace {ns} because it is being terminated",
                {
                    "name": name,
                    **({"group": rtype.group} if rtype.group else {}),
                    "kind": rtype.plural,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {ns} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    def update(
        self,
        resource: str,
        namespace: str | None,
        obj: JSONObject,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> JSONObject:
        """
        Replace an object.  With C{subresource="status"} only its status changes;
        without it a kind with a status subresource keeps its stored status.
        """
        rtype = self._type(resource)
        obj = copy.deepcopy(obj)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        meta = obj["metadata"]
        name = meta.get("name", "")
        ns = (namespace or meta.get("namespace") or "") if rtype.namespaced else ""
        old = self._objects.get(resource, {}).get((ns, name))
        if old is None:
            raise not_found(rtype.plural, name, rtype.group)
        wanted_rv = meta.get("resourceVersion")
        if (
            wanted_rv not in (None, "")
            and str(wanted_rv) != old["metadata"]["resourceVersion"]
        ):
            raise conflict(rtype.plural, name, rtype.group)
        uid = meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise conflict(
                rtype.plural,
                name,
                rtype.group,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}",
            )
        obj.setdefault("apiVersion", old.get("apiVersion", rtype.group_version))
        obj.setdefault("kind", rtype.kind)
        decode_check(rtype, obj)
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            # Only the status changes, but the managedFields of a status
            # update are kept: they record who owns the status now.
            if "managedFields" in meta:
                new["metadata"]["managedFields"] = meta["managedFields"]
        elif subresource == "finalize":
            new = copy.deepcopy(old)
            new["spec"] = {
                **(old.get("spec") or {}),
                "finalizers": (obj.get("spec") or {}).get("finalizers", []),
            }
        else:
            new = obj
            if rtype.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            new_meta = new["metadata"]
            old_meta = old["metadata"]
            for keep in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generateName",
            ):
                if keep in old_meta:
                    new_meta[keep] = old_meta[keep]
                else:
                    new_meta.pop(keep, None)
            new_meta["name"] = name
            if rtype.namespaced:
                new_meta["namespace"] = ns
            else:
                new_meta.pop("namespace", None)
            if "managedFields" not in new_meta and "managedFields" in old_meta:
                new_meta["managedFields"] = old_meta["managedFields"]
            prepare(
                rtype,
                new,
                old,
                set(self._service_ips) if dry_run else self._service_ips,
            )
            new = validate_object(rtype, new, self._schema_for(rtype, new))
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(
                    old_meta.get("finalizers") or []
                )
                if added:
                    raise invalid(
                        rtype.kind,
                        name,
                        rtype.group,
                        [
                            (
                                "FieldValueForbidden",
                                "metadata.finalizers",
                                "Forbidden: no new finalizers can be added if the object is being deleted",
                            )
                        ],
                    )
        new_meta = new["metadata"]
        new_meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rtype.generation:
            generation = old["metadata"].get("generation", 1)
            if subresource != "status" and spec_changed(rtype, old, new):
                generation += 1
            new_meta["generation"] = generation
        if _same(old, new):
            return copy.deepcopy(old)
        if dry_run:
            return new
        if new_meta.get("deletionTimestamp") and not _finalizers(rtype, new):
            self._remove(resource, (ns, name), new)
            return copy.deepcopy(new)
        self._commit(resource, (ns, name), new, old, "MODIFIED")
        return copy.deepcopy(new)

    def delete(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> JSONObject | None:
        rtype = self._type(resource)
        ns = (namespace or "") if rtype.namespaced else ""
        old = self._objects.get(resource, {}).get((ns, name))
        if old is None:
            raise not_found(rtype.plural, name, rtype.group)
        if uid and uid != old["metadata"]["uid"]:
            raise conflict(
                rtype.plural,
                name,
                rtype.group,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}",
            )
        if resource_version and resource_version != old["metadata"]["resourceVersion"]:
            raise conflict(
                rtype.plural,
                name,
                rtype.group,
                f"Precondition failed: ResourceVersion in precondition: {resource_version}, "
                f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
            )
        if resource == "/namespaces" and name in PROTECTED_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)
        new = copy.deepcopy(old)
        if resource == "apiextensions.k8s.io/customresourcedefinitions":
            finalizers = new["metadata"].setdefault("finalizers", [])
            if CRD_FINALIZER not in finalizers:
                finalizers.append(CRD_FINALIZER)
        if _finalizers(rtype, new):
            meta = new["metadata"]
            meta["deletionTimestamp"] = self.now()
            if resource != "/namespaces":
                meta["deletionGracePeriodSeconds"] = 0
            if rtype.generation:
                meta["generation"] = meta.get("generation", 1) + 1
            if resource == "/namespaces":
                new["status"] = {**(new.get("status") or {}), "phase": "Terminating"}
            if dry_run:
                return new
            self._commit(resource, (ns, name), new, old, "MODIFIED")
            if resource == "/namespaces":
                self._schedule_namespace(name)
            return copy.deepcopy(new)
        if dry_run:
            return new
        self._remove(resource, (ns, name), new)
        return copy.deepcopy(new)

    def _remove(self, resource: str, key: tuple[str, str], last: JSONObject) -> None:
        old = self._objects[resource][key]
        self._commit(resource, key, last, old, "DELETED")
        ns = key[0]
        if ns:
            namespace = self._objects.get("/namespaces", {}).get(("", ns))
            if namespace is not None and namespace["metadata"].get("deletionTimestamp"):
                self._schedule_namespace(ns)

    # --- namespace termination ------------------------------------------------

    def _schedule_namespace(self, name: str) -> None:
        token = ("/namespaces", name)
        if token in self._scheduled:
            return
        self._scheduled.add(token)

        def run() -> None:
            self._scheduled.discard(token)
            try:
                self._finalize_namespace(name)
            except StoreError as e:
                self._log.warn(
                    "namespace {name} cleanup: {error}", name=name, error=e.message
                )

        self._clock.callLater(0, run)

    def _finalize_namespace(self, name: str) -> None:
        namespace = self._objects.get("/namespaces", {}).get(("", name))
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for resource in list(self._objects):
            rtype = self._registry.by_key(resource)
            if rtype is None or not rtype.namespaced:
                continue
            for key in [k for k in self._objects[resource] if k[0] == name]:
                obj = self._objects[resource][key]
                if not obj["metadata"].get("deletionTimestamp"):
                    self.delete(resource, name, key[1])
                if key in self._objects.get(resource, {}):
                    remaining += 1
        if remaining:
            return
        namespace = self._objects["/namespaces"][("", name)]
        if namespace["metadata"].get("finalizers"):
            return
        last = copy.deepcopy(namespace)
        last["spec"] = {**(last.get("spec") or {}), "finalizers": []}
        self._remove("/namespaces", ("", name), last)

    # --- commit, history, watch -------------------------------------------------

    def _commit(
        self,
        resource: str,
        key: tuple[str, str],
        obj: JSONObject,
        old: JSONObject | None,
        kind: EventType,
    ) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        objects = self._objects.setdefault(resource, {})
        if kind == "DELETED":
            objects.pop(key, None)
            if resource == "/services":
                ip = (obj.get("spec") or {}).get("clusterIP")
                self._service_ips.discard(ip)
        else:
            objects[key] = obj
        history = self._history.get(resource)
        if history is None:
            history = self._history[resource] = deque()
        history.append((self._rv, kind, obj, old))
        while len(history) > self._history_size:
            dropped = history.popleft()
            self._oldest[resource] = dropped[0]
        if self._journal is not None:
            self._journal.record(
                self._rv, resource, key, None if kind == "DELETED" else obj
            )
        for watcher in list(self._watchers.get(resource, ())):
            if watcher.namespace is None or watcher.namespace == key[0]:
                try:
                    watcher.callback(kind, obj, old)
                except Exception:
                    self._log.failure("watcher failed")
        if self._subscribers:
            self._pending.append(
                StoreEvent(
                    kind,
                    resource,
                    copy.deepcopy(obj),
                    copy.deepcopy(old) if old else None,
                )
            )
            self._dispatch()

    def _dispatch(self) -> None:
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                event = self._pending.popleft()
                for subscriber in list(self._subscribers):
                    try:
                        subscriber(event)
                    except Exception:
                        self._log.failure(
                            "store subscriber failed on {resource}",
                            resource=event.resource,
                        )
        finally:
            self._dispatching = False

    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def oldest_watchable(self, resource: str) -> int:
        return max(self._start_rv, self._oldest.get(resource, 0))

    def watch(
        self,
        resource: str,
        namespace: str | None,
        since: int | None,
        callback: WatchCallback,
    ) -> Callable[[], None]:
        """
        Call C{callback(type, object, old)} for each change after C{since}
        (replaying history first), or for each change from now on when
        C{since} is C{None}.

        @raise Gone: C{since} is older than the history kept.
        """
        if since is not None:
            oldest = self.oldest_watchable(resource)
            if since < oldest:
                raise Gone(since, oldest + 1)
            for rv, kind, obj, old in list(self._history.get(resource, ())):
                if rv <= since:
                    continue
                if (
                    namespace is None
                    or obj["metadata"].get("namespace", "") == namespace
                ):
                    callback(kind, obj, old)
        watcher = _Watcher(namespace, callback)
        self._watchers.setdefault(resource, []).append(watcher)

        def cancel() -> None:
            watchers = self._watchers.get(resource, [])
            if watcher in watchers:
                watchers.remove(watcher)

        return cancel


def _finalizers(rtype: ResourceType, obj: JSONObject) -> builtins.list[Any]:
    finalizers = list(obj["metadata"].get("finalizers") or [])
    if rtype.key == "/namespaces":
        finalizers += list((obj.get("spec") or {}).get("finalizers") or [])
    return finalizers


def _same(old: JSONObject, new: JSONObject) -> bool:
    def strip(obj: JSONObject) -> JSONObject:
        meta = {
            k: v
            for k, v in obj["metadata"].items()
            if k not in ("resourceVersion", "managedFields")
        }
        return {**obj, "metadata": meta}

    if strip(old) != strip(new):
        return False
    return True
