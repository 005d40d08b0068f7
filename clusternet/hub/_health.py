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

Only each cluster's genuine ManagedCluster counts, as
L{clusternet.apis.judge_claims} decides from the dedicated namespaces (a
Namespace informer on L{clusternet.apis.DEDICATED_FOR_LABEL}) and the
registration requests: one that claims a cluster ID from outside the namespace
the hub made for it is never checked, patched nor known, and is logged once
(when it has been foreign for a whole check interval: the hub's own
ManagedCluster may reach its informer before its Namespace does).
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
    DEDICATED_FOR_LABEL,
    NAME_PREFIX,
    ForeignManagedCluster,
    InvalidObject,
    ManagedClusterStatus,
    claimed_cluster_id,
    cluster_id_from_crr_name,
    crr_name,
    dedicated_for,
    get_condition,
    heartbeat_lease_name,
    judge_claims,
    now,
    set_condition,
)
from clusternet.kube._errors import Conflict, KubeError, NotFound
from clusternet.kube._informer import EventHandler, Informer, object_key
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    LEASES,
    MANAGED_CLUSTERS,
    NAMESPACES,
)

__all__ = [
    "DEDICATED_NAMESPACE_SELECTOR",
    "DEFAULT_LEASE_FIELD_SELECTOR",
    "REASON_LEASE_EXPIRED",
    "ClusterHealth",
    "dedicated_namespaces",
]

REASON_LEASE_EXPIRED = "ClusterLeaseExpired"
REASON_READY = "ClusterReady"
REASON_NOT_READY = "ClusterNotReady"
# Every node renews a Lease in kube-node-lease every 10 s: not ours, not cached.
DEFAULT_LEASE_FIELD_SELECTOR = "metadata.namespace!=kube-node-lease"
# Only the namespaces the hub made for a cluster (the label exists).
DEDICATED_NAMESPACE_SELECTOR = DEDICATED_FOR_LABEL

Obj = dict[str, Any]
Key = tuple[str, str]


def dedicated_namespaces(clock: IReactorTime, api: IKubeAPI) -> Informer:
    """
    An informer on the Namespaces the hub made for clusters (those labelled
    L{DEDICATED_FOR_LABEL}), for L{ClusterHealth}'s C{namespaces}.
    """
    return Informer(clock, api, NAMESPACES, label_selector=DEDICATED_NAMESPACE_SELECTOR)


class ClusterHealth(MultiService):
    """
    Turn C{Ready} to C{Unknown} for clusters whose heartbeat Lease expired (see
    the module docstring).

    @param clock: the reactor's time.
    @param api: the parent's API server.
    @param grace_period: C{--cluster-lease-grace-period} in seconds.
    @param check_interval: seconds between checks.
    @param known: a set to keep filled with the cluster IDs of the genuine
        ManagedClusters (the hub's C{SocketRegistry.known}).
    @param clusters: an informer on ManagedClusters in all namespaces to share;
        one is made (and run by this service) when absent.
    @param leases: likewise for Leases.
    @param namespaces: likewise for the Namespaces labelled
        L{DEDICATED_FOR_LABEL} (selector L{DEDICATED_NAMESPACE_SELECTOR}).
    @param requests: likewise for ClusterRegistrationRequests.
    @param lease_field_selector: the field selector of the Lease informer made
        here.

    @ivar genuine: cluster ID -> (namespace, name) of its genuine
        ManagedCluster, the only ones checked.
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
        namespaces: Informer | None = None,
        requests: Informer | None = None,
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
        if namespaces is None:
            namespaces = dedicated_namespaces(clock, api)
            namespaces.setServiceParent(self)
        if requests is None:
            requests = Informer(clock, api, CLUSTER_REGISTRATION_REQUESTS)
            requests.setServiceParent(self)
        self.clusters = clusters
        self.leases = leases
        self.namespaces = namespaces
        self.requests = requests
        # (namespace, lease name) -> (renewTime, hub time it was seen to change)
        self._renewals: dict[Key, tuple[str, float]] = {}
        # ManagedCluster key -> hub time it was first seen
        self._first_seen: dict[Key, float] = {}
        # ManagedCluster key <-> the cluster ID it claims
        self._claimed: dict[Key, str] = {}
        self._claims: dict[str, set[Key]] = {}
        # Namespace name <-> the cluster ID it is labelled dedicated to
        self._labelled: dict[str, str] = {}
        self._dedicated: dict[str, set[str]] = {}
        self.genuine: dict[str, Key] = {}
        # foreign ManagedClusters: why, and since when; those logged, with the
        # cluster ID they claimed
        self._foreign: dict[Key, tuple[ForeignManagedCluster, float]] = {}
        self._warned: dict[Key, str] = {}
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
        namespaces.add_handler(
            EventHandler(
                add=self._namespace_seen,
                update=lambda old, new: self._namespace_seen(new),
                delete=self._namespace_gone,
            )
        )
        requests.add_handler(
            EventHandler(
                add=self._request_seen,
                update=lambda old, new: self._request_seen(new),
                delete=self._request_seen,
            )
        )
        for informer in (clusters, namespaces, requests):
            informer.when_synced().addCallback(lambda _: self._judge_all())

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

    # --- which ManagedCluster is genuine -------------------------------------------

    @property
    def _judging(self) -> bool:
        return (
            self.clusters.has_synced
            and self.namespaces.has_synced
            and self.requests.has_synced
        )

    def _judge_all(self) -> None:
        if not self._judging:
            return
        for cluster_id in set(self._claims) | set(self._dedicated) | set(self.genuine):
            self._judge(cluster_id)

    def _judge(self, cluster_id: str | None) -> None:
        """
        Decide again which ManagedCluster claiming C{cluster_id} is genuine.
        """
        if cluster_id is None or not self._judging:
            return
        claims = [
            mc
            for namespace, name in sorted(self._claims.get(cluster_id, ()))
            if (mc := self.clusters.store.get(name, namespace)) is not None
        ]
        namespaces = [
            ns
            for name in sorted(self._dedicated.get(cluster_id, ()))
            if (ns := self.namespaces.store.get(name)) is not None
        ]
        request = self.requests.store.get(crr_name(cluster_id))
        verdict = judge_claims(cluster_id, claims, namespaces, request)
        mc = verdict.genuine.get(cluster_id)
        if mc is not None:
            key = object_key(mc)
            self.genuine[cluster_id] = key
            self.known.add(cluster_id)
            self._absolve(key)
        elif self.genuine.pop(cluster_id, None) is not None:
            self.known.discard(cluster_id)
        for foreign in verdict.foreign:
            self._suspect(foreign)

    def _suspect(self, foreign: ForeignManagedCluster) -> None:
        key = (foreign.namespace, foreign.name)
        previous = self._foreign.get(key)
        since = self._clock.seconds()
        if previous is not None and previous[0].cluster_id == foreign.cluster_id:
            since = previous[1]
        self._foreign[key] = (foreign, since)

    def _absolve(self, key: Key) -> None:
        self._foreign.pop(key, None)
        self._warned.pop(key, None)

    def _warn_foreign(self) -> None:
        """
        Log, once, each ManagedCluster foreign for a whole check interval: one
        the hub just made is foreign for as long as its Namespace has not yet
        reached the namespace informer, and must not be reported.
        """
        current_time = self._clock.seconds()
        for key, (foreign, since) in sorted(self._foreign.items()):
            if current_time - since < self.check_interval:
                continue
            if self._warned.get(key) == foreign.cluster_id:
                continue
            self._warned[key] = foreign.cluster_id
            self._log.warn(
                "Ignoring ManagedCluster {namespace}/{name}, which claims cluster "
                "{cluster}: {reason}",
                namespace=foreign.namespace,
                name=foreign.name,
                cluster=foreign.cluster_id,
                reason=foreign.reason,
            )

    # --- events --------------------------------------------------------------------

    def _cluster_seen(self, mc: Obj) -> None:
        key = object_key(mc)
        self._first_seen.setdefault(key, self._clock.seconds())
        cluster_id = claimed_cluster_id(mc)
        old = self._unclaim(key)
        if cluster_id is not None:
            self._claimed[key] = cluster_id
            self._claims.setdefault(cluster_id, set()).add(key)
        else:
            self._suspect(
                ForeignManagedCluster.of(
                    mc, "its spec.clusterId is missing or not a cluster ID"
                )
            )
        if old != cluster_id:
            self._judge(old)
        self._judge(cluster_id)

    def _cluster_gone(self, mc: Obj) -> None:
        key = object_key(mc)
        self._first_seen.pop(key, None)
        self._patching.discard(key)
        self._absolve(key)
        self._judge(self._unclaim(key))

    def _unclaim(self, key: Key) -> str | None:
        old = self._claimed.pop(key, None)
        if old is not None:
            keys = self._claims.get(old, set())
            keys.discard(key)
            if not keys:
                self._claims.pop(old, None)
        return old

    def _namespace_seen(self, namespace: Obj) -> None:
        name = object_key(namespace)[1]
        cluster_id = dedicated_for(namespace)
        old = self._unlabel(name)
        if cluster_id is not None:
            self._labelled[name] = cluster_id
            self._dedicated.setdefault(cluster_id, set()).add(name)
        if old != cluster_id:
            self._judge(old)
        self._judge(cluster_id)

    def _namespace_gone(self, namespace: Obj) -> None:
        self._judge(self._unlabel(object_key(namespace)[1]))

    def _unlabel(self, name: str) -> str | None:
        old = self._labelled.pop(name, None)
        if old is not None:
            names = self._dedicated.get(old, set())
            names.discard(name)
            if not names:
                self._dedicated.pop(old, None)
        return old

    def _request_seen(self, request: Obj) -> None:
        self._judge(cluster_id_from_crr_name(object_key(request)[1]))

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
        Check every genuine ManagedCluster once; fires when the patches it made
        are done. Does nothing until the informers have synced.
        """
        if not (self._judging and self.leases.has_synced):
            return succeed(None)
        self._warn_foreign()
        pending = []
        for cluster_id, (namespace, name) in sorted(self.genuine.items()):
            mc = self.clusters.store.get(name, namespace)
            if mc is None:
                continue
            d = self._check_one(mc, cluster_id)
            if d is not None:
                pending.append(d)
        return DeferredList(pending, consumeErrors=True) if pending else succeed(None)

    def _check_one(self, mc: Obj, cluster_id: str) -> Deferred[None] | None:
        key = object_key(mc)
        if key in self._patching:
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
