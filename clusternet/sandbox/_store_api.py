"""
The seam between the sandbox's object store and the code that reads or reacts to it
(authentication, authorization, controllers).

A resource is named C{"<group>/<plural>"}, with the empty group for the core API:
C{"/secrets"}, C{"/namespaces"}, C{"rbac.authorization.k8s.io/clusterrolebindings"},
C{"clusters.clusternet.io/managedclusters"}.  Objects are plain JSON dicts exactly as
the API serves them (C{apiVersion}, C{kind}, C{metadata}, ...).  Everything here runs
on the reactor thread and returns at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from attrs import frozen

__all__ = ["ObjectReader", "ObjectWriter", "StoreError", "StoreEvent"]

JSONObject = dict[str, Any]


class StoreError(Exception):
    """
    A write the store refused, with the HTTP code and reason the API would answer.
    """

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@frozen
class StoreEvent:
    """
    One committed change, delivered to subscribers after it is stored.
    """

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    resource: str
    object: JSONObject
    old_object: JSONObject | None = None


class ObjectReader(Protocol):
    def get(self, resource: str, namespace: str | None, name: str) -> JSONObject | None:
        """
        The object, or C{None}.  C{namespace} is C{None} for cluster-scoped ones.
        """

    def list(self, resource: str, namespace: str | None = None) -> list[JSONObject]:
        """
        Every object of C{resource}, in one namespace or (C{None}) all of them.
        """


class ObjectWriter(ObjectReader, Protocol):
    def create(
        self, resource: str, namespace: str | None, obj: JSONObject
    ) -> JSONObject:
        """
        Store a new object (C{metadata.generateName} honoured) and return it as
        stored; raise L{StoreError} (409 AlreadyExists, 404 namespace missing, ...).
        """

    def update(
        self, resource: str, namespace: str | None, obj: JSONObject
    ) -> JSONObject:
        """
        Replace an object; when C{metadata.resourceVersion} is set it must match
        (else L{StoreError} 409 Conflict).  Returns the stored object.
        """

    def delete(
        self, resource: str, namespace: str | None, name: str
    ) -> JSONObject | None:
        """
        Delete (honouring finalizers) and return the object as last stored.
        """

    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """
        Call C{callback} after every committed change; returns an unsubscribe
        function.  Callbacks may write to the store (their writes are delivered
        after the current event).
        """
