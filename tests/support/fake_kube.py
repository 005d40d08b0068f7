"""
An in-memory IKubeAPI for unit tests of controllers: objects by resource,
namespace and name, generateName, equality label selectors, merge patches, and
fault injection (fail the Nth call) to prove crash-and-replay convergence.
"""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from clusternet.kube._errors import AlreadyExists, KubeError, NotFound
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import Resource

Obj = dict[str, Any]


class Crash(Exception):
    """
    An injected failure, as if the process died before the call's effect.
    """


def _merge(target: Obj, patch: Mapping[str, Any]) -> Obj:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


@implementer(IKubeAPI)
class FakeKube:
    def __init__(self, fill_tokens: bool = True) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_at: int | None = None
        self.fill_tokens = fill_tokens
        self._rv = itertools.count(1)
        self._names = itertools.count(1)
        self.on_write: list[Callable[[str, Obj], None]] = []

    def _key(
        self, resource: Resource, namespace: str | None, name: str
    ) -> tuple[str, str, str]:
        return (resource.plural, namespace or "", name)

    def _call(self, verb: str, resource: Resource) -> None:
        self.calls.append((verb, resource.plural))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise Crash(
                f"injected failure at call {self.fail_at}: {verb} {resource.plural}"
            )

    def _guard(
        self, verb: str, resource: Resource, func: Callable[[], Obj]
    ) -> Deferred[Obj]:
        try:
            self._call(verb, resource)
            return succeed(copy.deepcopy(func()))
        except (KubeError, Crash) as e:
            return fail(e)

    def of(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return [
            o
            for (p, ns, _), o in sorted(self.objects.items())
            if p == plural and (namespace is None or ns == (namespace or ""))
        ]

    def get(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[Obj]:
        def run() -> Obj:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')
            return obj

        return self._guard("get", resource, run)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[Obj]:
        def run() -> Obj:
            wanted = (
                dict(p.split("=", 1) for p in label_selector.split(","))
                if label_selector
                else {}
            )
            items = [
                o
                for o in self.of(resource.plural, namespace)
                if all(
                    (o["metadata"].get("labels") or {}).get(k) == v
                    for k, v in wanted.items()
                )
            ]
            return {
                "metadata": {"resourceVersion": str(next(self._rv))},
                "items": items,
            }

        return self._guard("list", resource, run)

    def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Deferred[Obj]:
        def run() -> Obj:
            obj = copy.deepcopy(dict(body))
            meta = obj.setdefault("metadata", {})
            if not meta.get("name"):
                meta["name"] = f"{meta.pop('generateName')}{next(self._names):05d}"
            if namespace:
                meta["namespace"] = namespace
            key = self._key(resource, namespace, meta["name"])
            if key in self.objects:
                raise AlreadyExists(
                    409,
                    "AlreadyExists",
                    f'{resource.plural} "{meta["name"]}" already exists',
                )
            meta["resourceVersion"] = str(next(self._rv))
            meta["creationTimestamp"] = f"2026-01-01T00:00:{len(self.objects):02d}Z"
            meta["uid"] = f"uid-{meta['name']}"
            if (
                self.fill_tokens
                and obj.get("type") == "kubernetes.io/service-account-token"
            ):
                obj["data"] = {
                    "token": base64.b64encode(
                        b"token-for-" + meta["name"].encode()
                    ).decode(),
                    "ca.crt": base64.b64encode(b"CA PEM").decode(),
                }
            self.objects[key] = obj
            for hook in self.on_write:
                hook("create", obj)
            return obj

        return self._guard("create", resource, run)

    def update(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Deferred[Obj]:
        def run() -> Obj:
            obj = copy.deepcopy(dict(body))
            key = self._key(resource, namespace, obj["metadata"]["name"])
            if key not in self.objects:
                raise NotFound(404, "NotFound", "not found")
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self.objects[key] = obj
            return obj

        return self._guard("update", resource, run)

    def patch(
        self,
        resource: Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Any],
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Deferred[Obj]:
        def run() -> Obj:
            key = self._key(resource, namespace, name)
            if key not in self.objects:
                raise NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')
            assert isinstance(patch, Mapping)
            obj = _merge(self.objects[key], patch)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            return obj

        return self._guard("patch", resource, run)

    def delete(
        self, resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[Obj]:
        def run() -> Obj:
            obj = self.objects.pop(self._key(resource, namespace, name), None)
            if obj is None:
                raise NotFound(404, "NotFound", "not found")
            return obj

        return self._guard("delete", resource, run)

    def raw_get(self, path: str) -> Deferred[Any]:
        raise NotImplementedError("raw_get is not faked")

    def watch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("watch is not faked")
