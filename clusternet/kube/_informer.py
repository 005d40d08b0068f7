"""
Informers: list, then watch from the list's resourceVersion, keeping a local cache
and telling handlers about adds, updates and deletes on the reactor thread.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from typing import Any

from attrs import frozen

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from clusternet.kube._errors import Gone, KubeError
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import Resource

__all__ = ["EventHandler", "IResourceEventHandler", "Informer", "Store", "object_key"]

Obj = dict[str, Any]


class IResourceEventHandler(Interface):
    """
    Receives an informer's events on the reactor thread. Exceptions are logged
    and do not stop the informer.
    """

    def on_add(obj: Obj) -> None:
        """
        C{obj} appeared (or was in the first list).
        """

    def on_update(old: Obj, new: Obj) -> None:
        """
        C{old} changed into C{new}; on a periodic resync, C{old is new}.
        """

    def on_delete(obj: Obj) -> None:
        """
        C{obj} went away (C{obj} is its last known state).
        """


@implementer(IResourceEventHandler)
@frozen
class EventHandler:
    """
    An L{IResourceEventHandler} from plain functions; missing ones do nothing.
    """

    add: Callable[[Obj], None] | None = None
    update: Callable[[Obj, Obj], None] | None = None
    delete: Callable[[Obj], None] | None = None

    def on_add(self, obj: Obj) -> None:
        if self.add is not None:
            self.add(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        if self.update is not None:
            self.update(old, new)

    def on_delete(self, obj: Obj) -> None:
        if self.delete is not None:
            self.delete(obj)


def object_key(obj: Obj) -> tuple[str, str]:
    """
    (namespace, name) of C{obj}; the namespace is C{""} for cluster-scoped objects.
    """
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Store:
    """
    The informer's cache, by namespace and name. Read it from the reactor thread;
    treat the objects as read-only.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Obj] = {}

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._items.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        return [
            obj
            for (ns, _), obj in self._items.items()
            if namespace is None or ns == namespace
        ]

    def keys(self) -> builtins.list[tuple[str, str]]:
        return builtins.list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._items.values()))

    def _put(self, obj: Obj) -> Obj | None:
        key = object_key(obj)
        old = self._items.get(key)
        self._items[key] = obj
        return old

    def _pop(self, obj: Obj) -> Obj | None:
        return self._items.pop(object_key(obj), None)


class _Restart(Exception):
    """
    The current watch was cut short on purpose (410 Gone).
    """


class Informer(Service):
    """
    List-then-watch of one resource, resuming each watch from the last
    resourceVersion seen, relisting when the server answers 410 Gone, and
    optionally replaying every cached object as an update each
    C{resync_period} seconds.

    @param clock: the reactor's time (a L{twisted.internet.task.Clock} in tests).
    @param api: where to list and watch.
    @param watch_timeout: C{timeoutSeconds} of each watch, so a watch never holds
        a pool thread longer and stopping is prompt.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self._clock = clock
        self._api = api
        self.resource = resource
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._resync_period = resync_period
        self._watch_timeout = watch_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.store = Store()
        self.resource_version = ""
        self.lists = 0
        self.watches = 0
        self._handlers: list[IResourceEventHandler] = []
        self._synced = False
        self._sync_waiters: list[Deferred[None]] = []
        self._current: Deferred[Any] | None = None
        self._loop: Deferred[None] | None = None
        self._resync_call: IDelayedCall | None = None
        self._gone = False

    def add_handler(self, handler: IResourceEventHandler) -> None:
        """
        Add C{handler}; if the cache is already filled, it gets C{on_add} for
        every cached object first.
        """
        self._handlers.append(handler)
        for obj in self.store:
            self._call_handler(handler.on_add, obj)

    @property
    def has_synced(self) -> bool:
        return self._synced

    def when_synced(self) -> Deferred[None]:
        """
        A Deferred that fires once the first list has filled the cache.
        """
        if self._synced:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._sync_waiters.append(d)
        return d

    # --- Service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(
            lambda f: self._log.failure(
                "Informer for {resource} died", f, resource=self.resource.plural
            )
        )
        self._schedule_resync()

    def _died(self, failure: Failure) -> None:
        self._log.failure(
            "Informer of {resource} died", failure, resource=self.resource.plural
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._resync_call is not None and self._resync_call.active():
            self._resync_call.cancel()
        self._resync_call = None
        if self._current is not None:
            self._current.cancel()
        loop, self._loop = self._loop, None
        return loop if loop is not None else succeed(None)

    # --- the loop ------------------------------------------------------------------

    async def _wait(self, d: Deferred[Any]) -> Any:
        self._current = d
        try:
            return await d
        finally:
            self._current = None

    async def _run(self) -> None:
        delay = self._backoff_initial
        need_list = True
        while self.running:
            try:
                if need_list:
                    listing = await self._wait(
                        self._api.list(
                            self.resource,
                            self._namespace,
                            self._label_selector,
                            self._field_selector,
                        )
                    )
                    self.lists += 1
                    self._replace(listing)
                    need_list = False
                self.watches += 1
                self._gone = False
                await self._wait(
                    self._api.watch(
                        self.resource,
                        self._on_event,
                        namespace=self._namespace,
                        resource_version=self.resource_version,
                        timeout_seconds=self._watch_timeout,
                        label_selector=self._label_selector,
                        field_selector=self._field_selector,
                    )
                )
                if self._gone:
                    raise _Restart()
                delay = self._backoff_initial
            except CancelledError:
                if not self.running:
                    return
                if self._gone:
                    need_list = True
                    continue
                raise
            except (Gone, _Restart):
                self._log.info(
                    "Watch of {resource} expired at resourceVersion {rv}: relisting",
                    resource=self.resource.plural,
                    rv=self.resource_version,
                )
                need_list = True
            except KubeError as e:
                self._log.warn(
                    "{what} of {resource} failed: {error}; retrying in {delay}s",
                    what="List" if need_list else "Watch",
                    resource=self.resource.plural,
                    error=str(e),
                    delay=delay,
                )
                if not await self._sleep(delay):
                    return
                delay = min(delay * 2, self._backoff_max)

    async def _sleep(self, seconds: float) -> bool:
        try:
            await self._wait(deferLater(self._clock, seconds, lambda: None))
        except CancelledError:
            return False
        return bool(self.running)

    # --- events --------------------------------------------------------------------

    def _replace(self, listing: Obj) -> None:
        items = listing.get("items") or []
        if not isinstance(items, list):
            items = []
        fresh = {object_key(o): o for o in items if isinstance(o, dict)}
        old_items = dict(self.store._items)
        self.store._items = dict(fresh)
        self.resource_version = str(
            (listing.get("metadata") or {}).get("resourceVersion") or ""
        )
        for key, obj in fresh.items():
            previous = old_items.get(key)
            if previous is None:
                self._emit("add", obj)
            elif _rv(previous) != _rv(obj):
                self._emit("update", previous, obj)
        for key, obj in old_items.items():
            if key not in fresh:
                self._emit("delete", obj)
        if not self._synced:
            self._synced = True
            waiters, self._sync_waiters = self._sync_waiters, []
            for d in waiters:
                d.callback(None)

    def _on_event(self, kind: str, obj: Obj) -> None:
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                self._gone = True
                if self._current is not None:
                    self._current.cancel()
                return
            self._log.warn(
                "Watch of {resource} reported an error: {message}",
                resource=self.resource.plural,
                message=str(obj.get("message", ""))[:200],
            )
            return
        rv = _rv(obj)
        if kind == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if kind in ("ADDED", "MODIFIED"):
            old = self.store._put(obj)
            if old is None:
                self._emit("add", obj)
            else:
                self._emit("update", old, obj)
        elif kind == "DELETED":
            self.store._pop(obj)
            self._emit("delete", obj)
        else:
            return
        if rv:
            self.resource_version = rv

    def _emit(self, what: str, *objs: Obj) -> None:
        for handler in list(self._handlers):
            method: Callable[..., None] = getattr(handler, "on_" + what)
            self._call_handler(method, *objs)

    def _call_handler(self, method: Callable[..., None], *objs: Obj) -> None:
        try:
            method(*objs)
        except Exception:
            self._log.failure(
                "Handler of {resource} events failed", resource=self.resource.plural
            )

    def _schedule_resync(self) -> None:
        if not self._resync_period or not self.running:
            return
        self._resync_call = self._clock.callLater(self._resync_period, self._resync)

    def _resync(self) -> None:
        self._resync_call = None
        if self._synced:
            for obj in self.store:
                self._emit("update", obj, obj)
        self._schedule_resync()
