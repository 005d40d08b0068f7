"""
Test helpers: an in-memory API server behind L{IKubeAPI}, and a thread pool that
runs calls synchronously. For unit tests of controllers; integration tests use
the sandbox and a real L{KubeClient}.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import define, field

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from clusternet.apis import format_time, now
from clusternet.kube._errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Invalid,
    KubeError,
    NotFound,
)
from clusternet.kube._interfaces import IKubeAPI, RawResponse, WatchEventCallback
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    MANAGED_CLUSTERS,
    Resource,
)

__all__ = ["ImmediateReactor", "MemoryKubeAPI", "SynchronousThreadPool"]

Obj = dict[str, Any]


class SynchronousThreadPool:
    """
    Runs each call at once in the calling thread (for L{KubeClient} unit tests).
    """

    def __init__(self) -> None:
        self.started = False
        self.calls = 0

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, object], None],
        func: Callable[..., object],
        *args: object,
        **kw: object,
    ) -> None:
        self.calls += 1
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class ImmediateReactor(Clock):
    """
    A L{Clock} whose C{callFromThread} runs the call at once.
    """

    def callFromThread(
        self, f: Callable[..., object], *args: object, **kw: object
    ) -> None:
        f(*args, **kw)


def _selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "==" in term or "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(selector: str | None, obj: Obj) -> bool:
    if not selector:
        return True
    meta = obj.get("metadata") or {}
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        key, _, value = term.replace("==", "=").partition("=")
        field_name = key.strip().removeprefix("metadata.")
        if str(meta.get(field_name, "")) != value.strip():
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """
    RFC 7386 JSON merge patch.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@define
class _Watcher:
    resource: Resource
    namespace: str | None
    label_selector: str | None
    field_selector: str | None
    on_event: WatchEventCallback
    done: Deferred[None]
    timer: IDelayedCall | None = None

    def wants(self, resource: Resource, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        return (
            resource == self.resource
            and (self.namespace is None or meta.get("namespace") == self.namespace)
            and _selector_matches(self.label_selector, meta.get("labels") or {})
            and _fields_match(self.field_selector, obj)
        )


@define
class _Event:
    rv: int
    resource: Resource
    type: str
    obj: Obj


@implementer(IKubeAPI)
@define
class MemoryKubeAPI:
    """
    An in-memory API server: objects with resourceVersions, optimistic concurrency
    (409 on a stale resourceVersion), AlreadyExists, generateName, label and field
    selectors, status subresources, merge patches, and watches that replay from a
    resourceVersion, end after C{timeoutSeconds} of C{clock} time, and answer 410
    Gone (an ERROR event) for a resourceVersion older than the last L{compact}.

    Every answer is a deep copy, delivered synchronously. L{fail_next} makes the
    next calls of a method fail; L{calls} records every call.
    """

    clock: IReactorTime = field(factory=Clock)
    status_resources: tuple[Resource, ...] = (
        CLUSTER_REGISTRATION_REQUESTS,
        MANAGED_CLUSTERS,
    )
    raw: dict[str, RawResponse] = field(factory=dict)
    calls: list[tuple[str, str, str]] = field(factory=list)
    _objects: dict[tuple[Resource, str, str], Obj] = field(factory=dict)
    _rv: int = 0
    _compacted: int = 0
    _events: list[_Event] = field(factory=list)
    _watchers: list[_Watcher] = field(factory=list)
    _failures: dict[str, list[KubeError]] = field(factory=dict)
    _names: Any = field(factory=lambda: itertools.count(1))

    # --- test controls ------------------------------------------------------------

    def fail_next(self, method: str, error: KubeError, times: int = 1) -> None:
        """
        Make the next C{times} calls of C{method} (C{"get"}, C{"watch"}, ...) fail
        with C{error}.
        """
        self._failures.setdefault(method, []).extend([error] * times)

    def compact(self) -> None:
        """
        Forget the event history: watches from older resourceVersions get 410.
        """
        self._compacted = self._rv
        self._events.clear()

    def expire_watches(self) -> None:
        """
        End every open watch now, as a server ending them at their timeout.
        """
        for watcher in list(self._watchers):
            self._end(watcher)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def objects(self, resource: Resource) -> list[Obj]:
        return [
            copy.deepcopy(o) for (r, _, _), o in self._objects.items() if r == resource
        ]

    # --- helpers ------------------------------------------------------------------

    def _failure(self, method: str) -> KubeError | None:
        queue = self._failures.get(method)
        return queue.pop(0) if queue else None

    def _key(
        self, resource: Resource, namespace: str | None, name: str
    ) -> tuple[Resource, str, str]:
        if resource.namespaced and not namespace:
            raise BadRequest(400, "BadRequest", f"{resource.plural} need a namespace")
        return (resource, (namespace or "") if resource.namespaced else "", name)

    def _emit(self, resource: Resource, kind: str, obj: Obj) -> None:
        self._events.append(_Event(self._rv, resource, kind, copy.deepcopy(obj)))
        for watcher in list(self._watchers):
            if watcher.wants(resource, obj):
                watcher.on_event(kind, copy.deepcopy(obj))

    def _bump(self, obj: Obj) -> None:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)

    def _answer(
        self, method: str, resource: Resource, name: str, make: Callable[[], Obj]
    ) -> Deferred[Obj]:
        self.calls.append((method, resource.plural, name))
        error = self._failure(method)
        if error is not None:
            return fail(error)
        try:
            return succeed(copy.deepcopy(make()))
        except KubeError as e:
            return fail(e)

    @staticmethod
    def _not_found(resource: Resource, name: str) -> NotFound:
        return NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')

    # --- IKubeAPI ------------------------------------------------------------------

    def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[Obj]:
        def make() -> Obj:
            obj = self._objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise self._not_found(resource, name)
            return obj

        return self._answer("get", resource, name, make)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[Obj]:
        def make() -> Obj:
            items = [
                o
                for (r, ns, _), o in sorted(
                    self._objects.items(), key=lambda kv: kv[0][1:]
                )
                if r == resource
                and (namespace is None or ns == namespace)
                and _selector_matches(
                    label_selector, (o.get("metadata") or {}).get("labels") or {}
                )
                and _fields_match(field_selector, o)
            ]
            return {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

        return self._answer("list", resource, "", make)

    def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Deferred[Obj]:
        def make() -> Obj:
            if subresource is not None:
                raise BadRequest(
                    400, "BadRequest", "MemoryKubeAPI has no create subresources"
                )
            obj = copy.deepcopy(dict(body))
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise Invalid(422, "Invalid", "metadata.name: Required value")
                meta["name"] = f"{prefix}{next(self._names):05d}"[-63:]
            if resource.namespaced:
                ns = namespace or meta.get("namespace")
                if meta.get("namespace") not in (None, ns):
                    raise BadRequest(400, "BadRequest", "namespace does not match")
                meta["namespace"] = ns
            key = self._key(resource, meta.get("namespace"), meta["name"])
            if key in self._objects:
                raise AlreadyExists(
                    409,
                    "AlreadyExists",
                    f'{resource.plural} "{meta["name"]}" already exists',
                )
            obj.setdefault("apiVersion", resource.api_version)
            obj.setdefault("kind", resource.kind)
            if dry_run:
                return obj
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = format_time(now(self.clock))
            if resource in self.status_resources:
                obj.pop("status", None)
            self._bump(obj)
            self._objects[key] = obj
            self._emit(resource, "ADDED", obj)
            return obj

        return self._answer(
            "create", resource, str((body.get("metadata") or {}).get("name", "")), make
        )

    def _replace(
        self,
        resource: Resource,
        key: tuple[Resource, str, str],
        obj: Obj,
        subresource: str | None,
    ) -> Obj:
        current = self._objects.get(key)
        if current is None:
            raise self._not_found(resource, key[2])
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise Conflict(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{key[2]}": '
                "the object has been modified; please apply your changes to the "
                "latest version and try again",
            )
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in obj:
                new["status"] = copy.deepcopy(obj["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(obj)
            for keep in ("uid", "creationTimestamp", "name", "namespace"):
                if keep in current["metadata"]:
                    new.setdefault("metadata", {})[keep] = current["metadata"][keep]
            if resource in self.status_resources:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        new.setdefault("apiVersion", resource.api_version)
        new.setdefault("kind", resource.kind)
        self._bump(new)
        self._objects[key] = new
        self._emit(resource, "MODIFIED", new)
        return new

    def update(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Deferred[Obj]:
        name = str((body.get("metadata") or {}).get("name") or "")

        def make() -> Obj:
            return self._replace(
                resource, self._key(resource, namespace, name), dict(body), subresource
            )

        return self._answer("update", resource, name, make)

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Any],
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Deferred[Obj]:
        def make() -> Obj:
            if patch_type != "merge" or not isinstance(patch, Mapping):
                raise KubeError(
                    415,
                    "UnsupportedMediaType",
                    f"MemoryKubeAPI supports merge patches only, not {patch_type}",
                )
            key = self._key(resource, namespace, name)
            current = self._objects.get(key)
            if current is None:
                raise self._not_found(resource, name)
            merged = merge_patch(current, dict(patch))
            return self._replace(resource, key, merged, subresource)

        return self._answer("patch", resource, name, make)

    def delete(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[Obj]:
        def make() -> Obj:
            key = self._key(resource, namespace, name)
            obj = self._objects.pop(key, None)
            if obj is None:
                raise self._not_found(resource, name)
            self._bump(obj)
            self._emit(resource, "DELETED", obj)
            return obj

        return self._answer("delete", resource, name, make)

    def raw_get(self, path: str) -> Deferred[RawResponse]:
        self.calls.append(("raw_get", path, ""))
        error = self._failure("raw_get")
        if error is not None:
            return fail(error)
        return succeed(self.raw.get(path, RawResponse(404, b"404 page not found\n")))

    def watch(
        self,
        resource: Resource,
        on_event: WatchEventCallback,
        namespace: str | None = None,
        resource_version: str = "",
        timeout_seconds: int = 300,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[None]:
        self.calls.append(("watch", resource.plural, resource_version))
        error = self._failure("watch")
        if error is not None:
            return fail(error)

        def cancel(d: Deferred[None]) -> None:
            self._drop(watcher)

        done: Deferred[None] = Deferred(cancel)
        watcher = _Watcher(
            resource, namespace, label_selector, field_selector, on_event, done
        )
        if resource_version:
            try:
                since = int(resource_version)
            except ValueError:
                return fail(Invalid(422, "Invalid", "bad resourceVersion"))
            if since < self._compacted:
                on_event(
                    "ERROR",
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {since} "
                        f"({self._compacted})",
                        "reason": "Expired",
                        "code": 410,
                    },
                )
                return succeed(None)
            backlog = [
                (e.type, e.obj)
                for e in self._events
                if e.rv > since and watcher.wants(e.resource, e.obj)
            ]
        else:
            backlog = [
                ("ADDED", o)
                for (r, _, _), o in self._objects.items()
                if watcher.wants(resource, o)
            ]
        self._watchers.append(watcher)
        watcher.timer = self.clock.callLater(timeout_seconds, self._end, watcher)
        for kind, obj in backlog:
            if watcher not in self._watchers:
                break
            on_event(kind, copy.deepcopy(obj))
        return done

    def _drop(self, watcher: _Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)
        if watcher.timer is not None and watcher.timer.active():
            watcher.timer.cancel()

    def _end(self, watcher: _Watcher) -> None:
        self._drop(watcher)
        if not watcher.done.called:
            watcher.done.callback(None)
