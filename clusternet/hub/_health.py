"""
Cluster health on the hub: a ManagedCluster whose agent stopped renewing its
heartbeat Lease turns C{Ready=Unknown}.

Each agent renews the Lease C{clusternet-<cluster-id>} in its dedicated namespace
every 10 s. L{ClusterHealth} watches ManagedClusters and Leases (informers, so no
polling of the API server) and, every C{check_interval} seconds, compares for each
ManagedCluster the time its Lease last changed with C{--cluster-lease-grace-period}
(40 s):

 - older: patch C{Ready} to C{Unknown}, reason C{ClusterLeaseExpired}, message
   "... has not renewed its lease for Ns". A cluster that never created its Lease
   counts from when the hub first saw its ManagedCluster.
 - renewed again after that: C{Ready} goes back to what the agent last reported
   (C{True} when its C{status.readyz} is true, else C{False}); the agent's next
   status report refreshes it. A fresh Lease never overrides the agent's own
   C{True}/C{False}.

Time is measured on the hub's own clock from when it I{observed} the Lease's
C{renewTime} change (as client-go's leader election does), so clock skew between
parent and children does not matter. The price: after a hub restart, a child that
was already dead is marked only one grace period later.

The hub writes only when the condition's status or reason must change: no
flapping, no write per check. A C{set[str]} of known cluster IDs (the hub's
C{SocketRegistry.known}) can be kept current from the ManagedClusters.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from clusternet.apis import (
    CONDITION_READY,
    NAME_PREFIX,
    InvalidObject,
    ManagedClusterStatus,
    cluster_id_errors,
    get_condition,
    heartbeat_lease_name,
    now,
    set_condition,
)
from clusternet.kube._errors import Conflict, KubeError, NotFound
from clusternet.kube._informer import EventHandler, Informer, object_key
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import LEASES, MANAGED_CLUSTERS

__all__ = [
    "DEFAULT_LEASE_FIELD_SELECTOR",
    "REASON_LEASE_EXPIRED",
    "ClusterHealth",
]

REASON_LEASE_EXPIRED = "ClusterLeaseExpired"
REASON_READY = "ClusterReady"
REASON_NOT_READY = "ClusterNotReady"
# Every node renews a Lease in kube-node-lease every 10 s: not ours, not cached.
DEFAULT_LEASE_FIELD_SELECTOR = "metadata.namespace!=kube-node-lease"

Obj = dict[str, Any]
Key = tuple[str, str]


def _cluster_id(mc: Obj) -> str | None:
    value = (mc.get("spec") or {}).get("clusterId")
    if not isinstance(value, str) or cluster_id_errors(value):
        return None
    return value


class ClusterHealth(MultiService):
    """
    Turn C{Ready} to C{Unknown} for clusters whose heartbeat Lease expired (see
    the module docstring).

    @param clock: the reactor's time.
    @param api: the parent's API server.
    @param grace_period: C{--cluster-lease-grace-period} in seconds.
    @param check_interval: seconds between checks.
    @param known: a set to keep filled with the cluster IDs of the
        ManagedClusters (the hub's C{SocketRegistry.known}).
    @param clusters: an informer on ManagedClusters in all namespaces to share;
        one is made (and run by this service) when absent.
    @param leases: likewise for Leases.
    @param lease_field_selector: the field selector of the Lease informer made
        here.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        grace_period: float = 40.0,
        check_interval: float = 5.0,
        known: set[str] | None = None,
        clusters: Informer | None = None,
        leases: Informer | None = None,
        lease_field_selector: str | None = DEFAULT_LEASE_FIELD_SELECTOR,
    ) -> None:
        super().__init__()
        if grace_period <= 0 or check_interval <= 0:
            raise ValueError("grace_period and check_interval must be positive")
        self._clock = clock
        self._api = api
        self.grace_period = grace_period
        self.check_interval = check_interval
        self.known = known if known is not None else set()
        if clusters is None:
            clusters = Informer(clock, api, MANAGED_CLUSTERS)
            clusters.setServiceParent(self)
        if leases is None:
            leases = Informer(clock, api, LEASES, field_selector=lease_field_selector)
            leases.setServiceParent(self)
        self.clusters = clusters
        self.leases = leases
        # (namespace, lease name) -> (renewTime, hub time it was seen to change)
        self._renewals: dict[Key, tuple[str, float]] = {}
        # ManagedCluster key -> hub time it was first seen, and its cluster ID
        self._first_seen: dict[Key, float] = {}
        self._ids: dict[Key, str] = {}
        self._patching: set[Key] = set()
        self._loop: LoopingCall | None = None
        self.patches = 0
        clusters.add_handler(
            EventHandler(
                add=self._cluster_seen,
                update=lambda old, new: self._cluster_seen(new),
                delete=self._cluster_gone,
            )
        )
        leases.add_handler(
            EventHandler(
                add=self._lease_seen,
                update=lambda old, new: self._lease_seen(new),
                delete=self._lease_gone,
            )
        )

    # --- Service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        loop = LoopingCall(self.check)
        loop.clock = self._clock
        self._loop = loop
        d = loop.start(self.check_interval, now=False)
        d.addErrback(lambda f: self._log.failure("Cluster health checks died", f))

    def stopService(self) -> Deferred[None]:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        result: Deferred[None] = super().stopService()
        return result

    # --- events --------------------------------------------------------------------

    def _cluster_seen(self, mc: Obj) -> None:
        key = object_key(mc)
        self._first_seen.setdefault(key, self._clock.seconds())
        cluster_id = _cluster_id(mc)
        old = self._ids.pop(key, None)
        if cluster_id is not None:
            self._ids[key] = cluster_id
            self.known.add(cluster_id)
        if old is not None and old != cluster_id:
            self._forget_id(old)

    def _cluster_gone(self, mc: Obj) -> None:
        key = object_key(mc)
        self._first_seen.pop(key, None)
        self._patching.discard(key)
        old = self._ids.pop(key, None)
        if old is not None:
            self._forget_id(old)

    def _forget_id(self, cluster_id: str) -> None:
        if cluster_id not in self._ids.values():
            self.known.discard(cluster_id)

    def _lease_seen(self, lease: Obj) -> None:
        key = object_key(lease)
        if not key[1].startswith(NAME_PREFIX):
            return
        renew = str((lease.get("spec") or {}).get("renewTime") or "")
        previous = self._renewals.get(key)
        if previous is None or previous[0] != renew:
            self._renewals[key] = (renew, self._clock.seconds())

    def _lease_gone(self, lease: Obj) -> None:
        self._renewals.pop(object_key(lease), None)

    # --- checks --------------------------------------------------------------------

    def check(self) -> Deferred[Any]:
        """
        Check every ManagedCluster once; fires when the patches it made are done.
        Does nothing until both informers have synced.
        """
        if not (self.clusters.has_synced and self.leases.has_synced):
            return succeed(None)
        pending = []
        for mc in self.clusters.store:
            d = self._check_one(mc)
            if d is not None:
                pending.append(d)
        return DeferredList(pending, consumeErrors=True) if pending else succeed(None)

    def _check_one(self, mc: Obj) -> Deferred[None] | None:
        key = object_key(mc)
        cluster_id = self._ids.get(key)
        if cluster_id is None or key in self._patching:
            return None
        namespace, name = key
        lease_name = heartbeat_lease_name(cluster_id)
        current_time = self._clock.seconds()
        renewal = self._renewals.get((namespace, lease_name))
        if renewal is not None:
            age = current_time - renewal[1]
            what = f"has not renewed its lease {lease_name} for {int(age)}s"
        else:
            age = current_time - self._first_seen.setdefault(key, current_time)
            what = f"has not created its lease {lease_name} in {int(age)}s"
        try:
            status = ManagedClusterStatus.from_dict(mc.get("status") or {})
        except InvalidObject:
            status = ManagedClusterStatus()
        ready = get_condition(status.conditions, CONDITION_READY)
        if age > self.grace_period:
            if (
                ready is not None
                and ready.status == "Unknown"
                and ready.reason == REASON_LEASE_EXPIRED
            ):
                return None
            message = (
                f"cluster {cluster_id} {what} (grace period {self.grace_period:g}s)"
            )
            self._log.warn(
                "ManagedCluster {namespace}/{name}: {problem}; Ready=Unknown",
                namespace=namespace,
                name=name,
                problem=message,
            )
            change = ("Unknown", REASON_LEASE_EXPIRED, message)
        elif (
            ready is not None
            and ready.status == "Unknown"
            and ready.reason == REASON_LEASE_EXPIRED
        ):
            change = (
                ("True", REASON_READY, "the lease is renewed again; readyz is true")
                if status.readyz
                else (
                    "False",
                    REASON_NOT_READY,
                    "the lease is renewed again; readyz is false",
                )
            )
            self._log.info(
                "ManagedCluster {namespace}/{name}: lease renewed again; "
                "Ready={status}",
                namespace=namespace,
                name=name,
                status=change[0],
            )
        else:
            return None
        return self._patch(mc, status, change)

    def _patch(
        self,
        mc: Obj,
        status: ManagedClusterStatus,
        change: tuple[str, str, str],
    ) -> Deferred[None]:
        key = object_key(mc)
        namespace, name = key
        conditions = set_condition(
            status.conditions, CONDITION_READY, *change, now(self._clock)
        )
        patch = {
            "metadata": {
                "resourceVersion": (mc.get("metadata") or {}).get("resourceVersion")
            },
            "status": {"conditions": [c.to_dict() for c in conditions]},
        }
        self._patching.add(key)
        d = self._api.patch(
            MANAGED_CLUSTERS, name, patch, namespace, subresource="status"
        )

        def done(result: object) -> None:
            self._patching.discard(key)
            self.patches += 1

        def failed(failure: Any) -> None:
            self._patching.discard(key)
            if failure.check(Conflict, NotFound):
                return  # changed or gone meanwhile: the next check sees it
            failure.trap(KubeError)
            self._log.warn(
                "Updating Ready of {namespace}/{name} failed: {error}",
                namespace=namespace,
                name=name,
                error=failure.getErrorMessage(),
            )

        return d.addCallbacks(done, failed)
