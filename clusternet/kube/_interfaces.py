"""
The seam between controllers and the API server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen

from twisted.internet.defer import Deferred
from zope.interface import Interface

from clusternet.kube._resources import Resource

__all__ = ["IKubeAPI", "RawResponse", "WatchEventCallback"]

# Called on the reactor thread with the event type (ADDED, MODIFIED, DELETED,
# BOOKMARK, ERROR) and the object (a Status for ERROR).
WatchEventCallback = Callable[[str, dict[str, Any]], None]


@frozen
class RawResponse:
    """
    An answer to L{IKubeAPI.raw_get}, whatever its status.
    """

    status: int
    body: bytes
    content_type: str = ""


class IKubeAPI(Interface):
    """
    Calls to one Kubernetes API server. Every method returns a Deferred that fires
    on the reactor thread with decoded JSON objects, or fails with a
    L{clusternet.kube.KubeError}; cancelling it abandons the call.
    """

    def get(
        resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """
        Read one object.
        """

    def list(
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        List objects (all namespaces when C{namespace} is C{None}); the answer
        carries C{metadata.resourceVersion} and C{items}.
        """

    def create(
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Deferred[dict[str, Any]]:
        """
        Create an object (POST to the collection, or to C{name}'s C{subresource}
        such as C{serviceaccounts/<name>/token}).
        """

    def update(
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        Replace an object (PUT); its name and resourceVersion come from C{body}.
        A stale resourceVersion fails with L{clusternet.kube.Conflict}.
        """

    def patch(
        resource: Resource,
        name: str,
        patch: Mapping[str, Any] | Sequence[Any],
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
    ) -> Deferred[dict[str, Any]]:
        """
        Patch an object: C{patch_type} C{merge} (RFC 7386), C{json} (RFC 6902, a
        list of operations) or C{strategic} (built-in kinds only).
        """

    def delete(
        resource: Resource, name: str, namespace: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """
        Delete an object.
        """

    def watch(
        resource: Resource,
        on_event: WatchEventCallback,
        namespace: str | None = None,
        resource_version: str = "",
        timeout_seconds: int = 300,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Deferred[None]:
        """
        Watch from C{resource_version}, calling C{on_event} for each event. The
        Deferred fires when the server ends the watch (after about
        C{timeout_seconds}); cancelling it stops the watch.
        """

    def raw_get(path: str) -> Deferred[RawResponse]:
        """
        GET a path such as C{/version} or C{/readyz}; any HTTP status is an
        answer, only a failure to get one is an error.
        """
