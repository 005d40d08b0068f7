"""
L{KubeClient}: the C{kubernetes} client, called on a dedicated thread pool.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import quote

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from clusternet._runtime import stop_within
from clusternet.kube._errors import KubeError, KubeUnavailable, error_for
from clusternet.kube._interfaces import IKubeAPI, RawResponse, WatchEventCallback
from clusternet.kube._resources import Resource

__all__ = ["PATCH_CONTENT_TYPES", "IThreadPool", "KubeClient"]

_T = TypeVar("_T")

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

# Seconds to connect, and to wait for an ordinary answer.
_CONNECT_TIMEOUT = 10.0
_READ_TIMEOUT = 60.0
# Longest line (one watch event) we accept from a watch stream.
_MAX_EVENT_BYTES = 16 * 1024 * 1024


class IThreadPool(Protocol):
    """
    What L{KubeClient} needs of L{twisted.python.threadpool.ThreadPool}.
    """

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, object], None],
        func: Callable[..., object],
        *args: object,
        **kw: object,
    ) -> None: ...


def _query(params: Sequence[tuple[str, str]]) -> str:
    if not params:
        return ""
    return "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


@implementer(IKubeAPI)
class KubeClient(Service):
    """
    Every call runs on a thread of a pool this service owns (started and stopped
    with it), and its result comes back to the reactor thread as a Deferred.
    Watches hold a pool thread each for at most their C{timeoutSeconds}.

    @param reactor: the reactor (C{callFromThread}, C{callLater}).
    @param api_client: a configured C{kubernetes.client.ApiClient} (see
        L{clusternet.kube.load_api_client}).
    @param threads: size of the pool; at most this many calls (watches included)
        run at once, the others wait for a thread.
    @param pool: a pool to use instead of a new L{ThreadPool} (tests pass one
        that runs calls synchronously).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        api_client: ApiClient,
        threads: int = 10,
        name: str = "kube",
        pool: IThreadPool | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self._reactor = reactor
        self._clock: IReactorTime = (
            clock if clock is not None else cast(IReactorTime, reactor)
        )
        self._api = api_client
        self.setName(name)
        self._pool: IThreadPool = (
            pool
            if pool is not None
            else ThreadPool(minthreads=0, maxthreads=threads, name=f"clusternet-{name}")
        )
        self._watches: dict[int, tuple[threading.Event, builtins.list[Any]]] = {}
        self._next_watch = 0

    @property
    def server(self) -> str:
        return str(self._api.configuration.host)

    # --- Service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._pool.start()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        for key in list(self._watches):
            self._stop_watch(key)
        done: Deferred[None] = Deferred()

        def stop_pool() -> None:
            try:
                self._pool.stop()
            finally:
                self._reactor.callFromThread(done.callback, None)

        # ThreadPool.stop joins its workers: do it off the reactor thread, and do
        # not wait for a stuck call longer than a few seconds.
        threading.Thread(
            target=stop_pool, name="clusternet-kube-stop", daemon=True
        ).start()
        return stop_within(self._clock, 10.0, [done])

    # --- running blocking calls -------------------------------------------------------

    def _in_pool(
        self,
        func: Callable[..., _T],
        *args: Any,
        on_cancel: Callable[[], None] | None = None,
    ) -> Deferred[_T]:
        def cancel(d: Deferred[_T]) -> None:
            if on_cancel is not None:
                on_cancel()

        result: Deferred[_T] = Deferred(cancel)

        def deliver(ok: bool, value: object) -> None:
            if result.called:
                # Cancelled meanwhile: the late answer is dropped.
                if not ok and isinstance(value, Failure):
                    value.trap(Exception)
                return
            if ok:
                result.callback(value)  # type: ignore[arg-type]
            else:
                result.errback(value)  # type: ignore[arg-type]

        def on_result(ok: bool, value: object) -> None:
            self._reactor.callFromThread(deliver, ok, value)

        self._pool.callInThreadWithCallback(on_result, func, *args)
        return result

    def _send(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str | None = None,
        timeout: tuple[float, float] = (_CONNECT_TIMEOUT, _READ_TIMEOUT),
    ) -> Any:
        # Runs on a pool thread. Returns the RESTResponse without reading it.
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self._api.param_serialize(
            method,
            path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        url += _query(params)
        try:
            return self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=timeout
            )
        except ApiException as e:
            # The client's own wrapping of TLS errors (status 0).
            if not e.status:
                raise KubeUnavailable(f"{method} {path}: {e.reason}") from None
            body = e.body.encode("utf-8") if isinstance(e.body, str) else e.body
            raise error_for(e.status, body, e.reason or "") from None
        except urllib3.exceptions.HTTPError as e:
            raise KubeUnavailable(f"{method} {path}: {e}") from None
        except OSError as e:
            raise KubeUnavailable(f"{method} {path}: {e}") from None

    def _json_call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: object = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        response = self._send(method, path, params, body, content_type)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(f"{method} {path}: {e}") from None
        if not 200 <= response.status < 300:
            raise error_for(response.status, data, response.reason or "")
        try:
            decoded = json.loads(data)
        except ValueError:
            raise KubeError(
                response.status, "BadResponse", f"{method} {path}: answer is not JSON"
            ) from None
        if not isinstance(decoded, dict):
            raise KubeError(
                response.status, "BadResponse", f"{method} {path}: not an object"
            )
        return decoded

    def request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | Sequence[Any] | None = None,
        content_type: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        Any JSON call: C{method} C{path}?C{params} with a JSON C{body}.
        """
        return self._in_pool(self._json_call, method, path, params, body, content_type)

    # --- IKubeAPI ------------------------------------------------------------------

    def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[dict[str, Any]]:
        return self.request("GET", resource.path(namespace, name))

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        params = []
        if label_selector:
            params.append(("labelSelector", label_selector))
        if field_selector:
            params.append(("fieldSelector", field_selector))
        return self.request("GET", resource.path(namespace), params)

    def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Deferred[dict[str, Any]]:
        params = [("dryRun", "All")] if dry_run else []
        return self.request(
            "POST", resource.path(namespace, name, subresource), params, dict(body)
        )

    def update(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        name = (body.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("update needs metadata.name in the body")
        return self.request(
            "PUT", resource.path(namespace, name, subresource), (), dict(body)
        )

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Any],
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        content_type = PATCH_CONTENT_TYPES[patch_type]
        body: object = list(patch) if patch_type == "json" else dict(patch)
        return self.request(
            "PATCH",
            resource.path(namespace, name, subresource),
            (),
            body,  # type: ignore[arg-type]
            content_type,
        )

    def delete(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[dict[str, Any]]:
        return self.request("DELETE", resource.path(namespace, name))

    def raw_get(self, path: str) -> Deferred[RawResponse]:
        return self._in_pool(self._raw_get, path)

    def _raw_get(self, path: str) -> RawResponse:
        response = self._send("GET", path)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubeUnavailable(f"GET {path}: {e}") from None
        return RawResponse(
            status=response.status,
            body=bytes(data or b""),
            content_type=str(response.getheader("Content-Type", "") or ""),
        )

    # --- watch ---------------------------------------------------------------------

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
        params = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(int(timeout_seconds))),
        ]
        if resource_version:
            params.append(("resourceVersion", resource_version))
        if label_selector:
            params.append(("labelSelector", label_selector))
        if field_selector:
            params.append(("fieldSelector", field_selector))
        path = resource.path(namespace)
        key = self._next_watch
        self._next_watch += 1
        stop = threading.Event()
        holder: builtins.list[Any] = []
        self._watches[key] = (stop, holder)

        def finished(result: object) -> object:
            self._watches.pop(key, None)
            return result

        d = self._in_pool(
            self._watch_blocking,
            path,
            params,
            float(timeout_seconds),
            stop,
            holder,
            on_event,
            on_cancel=lambda: self._stop_watch(key),
        )
        d.addBoth(finished)
        return d

    def _stop_watch(self, key: int) -> None:
        entry = self._watches.pop(key, None)
        if entry is None:
            return
        stop, holder = entry
        stop.set()
        for response in list(holder):
            _shutdown(response)

    def _watch_blocking(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        timeout: float,
        stop: threading.Event,
        holder: builtins.list[Any],
        on_event: WatchEventCallback,
    ) -> None:
        if stop.is_set():
            return None
        response = self._send(
            "GET", path, params, timeout=(_CONNECT_TIMEOUT, timeout + 30.0)
        )
        raw = response.response
        holder.append(raw)
        try:
            if stop.is_set():
                return None
            if response.status != 200:
                raise error_for(response.status, raw.read(), response.reason or "")
            buffer = b""
            try:
                for chunk in raw.stream(65536):
                    if stop.is_set():
                        return None
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        self._deliver_line(line, on_event, stop)
                    if len(buffer) > _MAX_EVENT_BYTES:
                        raise KubeError(200, "BadResponse", "watch event too large")
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if stop.is_set():
                    return None
                raise KubeUnavailable(f"watch {path}: {e}") from None
            self._deliver_line(buffer, on_event, stop)
            return None
        finally:
            _shutdown(raw)

    def _deliver_line(
        self, line: bytes, on_event: WatchEventCallback, stop: threading.Event
    ) -> None:
        if not line.strip() or stop.is_set():
            return
        try:
            event = json.loads(line)
            kind = event["type"]
            obj = event["object"]
            if not isinstance(kind, str) or not isinstance(obj, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise KubeError(200, "BadResponse", "malformed watch event") from None
        self._reactor.callFromThread(self._dispatch, on_event, kind, obj, stop)

    def _dispatch(
        self,
        on_event: WatchEventCallback,
        kind: str,
        obj: dict[str, Any],
        stop: threading.Event,
    ) -> None:
        if stop.is_set():
            return
        try:
            on_event(kind, obj)
        except Exception:
            self._log.failure("Watch event handler failed")


def _shutdown(raw: Any) -> None:
    # Unblock a read in another thread, then give the connection up.
    for name in ("shutdown", "close"):
        method = getattr(raw, name, None)
        if method is None:
            continue
        try:
            method()
        except Exception:  # noqa: S110 - best effort on a dying connection
            pass
