"""
The child's status, collected from the child and reported to the parent.

L{StatusReporter} collects every C{--cluster-status-collect-frequency} (20 s):
C{GET /version} (C{gitVersion} and C{platform}) and C{/healthz}, C{/readyz},
C{/livez} (true only on HTTP 200). It reports right after it starts and then every
C{--cluster-status-update-frequency} (3 m) by patching the ManagedCluster's
C{/status} in the dedicated namespace of the parent, with a C{Ready} condition:
C{True} when C{/readyz} answered 200, else C{False} with the reason.

Between reports the heartbeat Lease (L{clusternet.kube.HeartbeatLease}) is renewed
every 10 s; L{make_reporting_service} builds both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from clusternet.apis import (
    CLUSTER_LEASE_DURATION_SECONDS,
    CLUSTER_LEASE_RENEW_INTERVAL,
    CONDITION_READY,
    InvalidObject,
    ManagedClusterStatus,
    format_time,
    heartbeat_lease_name,
    now,
    set_condition,
)
from clusternet.kube._errors import Conflict, KubeError
from clusternet.kube._interfaces import IKubeAPI, RawResponse
from clusternet.kube._leases import HeartbeatLease
from clusternet.kube._resources import MANAGED_CLUSTERS

__all__ = [
    "REASON_CLUSTER_NOT_READY",
    "REASON_CLUSTER_READY",
    "ClusterStatusSample",
    "StatusReporter",
    "collect_status",
    "make_reporting_service",
]

REASON_CLUSTER_READY = "ClusterReady"
REASON_CLUSTER_NOT_READY = "ClusterNotReady"
PROBES = ("healthz", "readyz", "livez")
# An answer of /version larger than this is not a version.
_MAX_VERSION_BYTES = 64 * 1024


@frozen
class ClusterStatusSample:
    """
    One observation of the child.

    @ivar error: why the child could not be asked, or C{""}.
    @ivar readyz_status: the HTTP status of C{/readyz} (0: no answer).
    """

    k8s_version: str
    platform: str
    healthz: bool
    readyz: bool
    livez: bool
    observed: datetime
    readyz_status: int = 0
    error: str = ""

    def ready_condition(self) -> tuple[str, str, str]:
        """
        (status, reason, message) of the C{Ready} condition this sample implies.
        """
        if self.readyz:
            return ("True", REASON_CLUSTER_READY, "the child's /readyz answered 200")
        if self.error:
            why = f"the child API server did not answer: {self.error}"
        else:
            why = f"the child's /readyz answered {self.readyz_status}"
        return ("False", REASON_CLUSTER_NOT_READY, why[:1000])

    def status_patch(self, conditions: list[dict[str, Any]]) -> dict[str, Any]:
        status: dict[str, Any] = {
            "healthz": self.healthz,
            "readyz": self.readyz,
            "livez": self.livez,
            "lastObservedTime": format_time(self.observed),
            "conditions": conditions,
        }
        if self.k8s_version:
            status["k8sVersion"] = self.k8s_version
        if self.platform:
            status["platform"] = self.platform
        return status


def _version(response: RawResponse) -> tuple[str, str]:
    if response.status != 200 or len(response.body) > _MAX_VERSION_BYTES:
        return ("", "")
    try:
        info = json.loads(response.body)
    except ValueError:
        return ("", "")
    if not isinstance(info, dict):
        return ("", "")
    version = info.get("gitVersion")
    platform = info.get("platform")
    return (
        version[:100] if isinstance(version, str) else "",
        platform[:100] if isinstance(platform, str) else "",
    )


async def collect_status(
    child: IKubeAPI, clock: IReactorTime, timeout: float = 10.0
) -> ClusterStatusSample:
    """
    Ask the child for C{/version}, C{/healthz}, C{/readyz} and C{/livez} (each at
    most C{timeout} seconds). Never fails: an unreachable child is a sample with
    every probe false and C{error} set.
    """
    answers: dict[str, RawResponse] = {}
    error = ""
    for path in ("/version", *(f"/{p}" for p in PROBES)):
        d = child.raw_get(path)
        d.addTimeout(timeout, clock)
        try:
            answers[path] = await d
        except KubeError as e:
            error = error or str(e)
        except defer.TimeoutError:
            error = error or f"GET {path} timed out after {timeout:g}s"
    version, platform = ("", "")
    if "/version" in answers:
        version, platform = _version(answers["/version"])
    probes = {p: answers[f"/{p}"].status == 200 for p in PROBES if f"/{p}" in answers}
    readyz = answers.get("/readyz")
    return ClusterStatusSample(
        k8s_version=version,
        platform=platform,
        healthz=probes.get("healthz", False),
        readyz=probes.get("readyz", False),
        livez=probes.get("livez", False),
        observed=now(clock),
        readyz_status=readyz.status if readyz is not None else 0,
        error=error[:300],
    )


class StatusReporter(Service):
    """
    Collect the child's status every C{collect_frequency} seconds and patch it into
    the ManagedCluster C{managed_cluster} in C{namespace} on the parent every
    C{update_frequency} seconds, the first time right after starting.

    @ivar last_sample: the latest L{ClusterStatusSample}, or C{None}.
    @ivar reports: how many reports the parent accepted.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        child: IKubeAPI,
        parent: IKubeAPI,
        namespace: str,
        managed_cluster: str,
        collect_frequency: float = 20.0,
        update_frequency: float = 180.0,
        request_timeout: float = 10.0,
        urls: Mapping[str, str] | None = None,
    ) -> None:
        if collect_frequency <= 0 or update_frequency <= 0:
            raise ValueError("frequencies must be positive")
        self._clock = clock
        self._child = child
        self._parent = parent
        self.namespace = namespace
        self.managed_cluster = managed_cluster
        self.collect_frequency = collect_frequency
        self.update_frequency = update_frequency
        self._timeout = request_timeout
        # apiserverURL and parentAPIServerURL: where the agent reaches each.
        self._urls = {k: v for k, v in (urls or {}).items() if v}
        self.last_sample: ClusterStatusSample | None = None
        self.collections = 0
        self.reports = 0
        self._reported_state: tuple[str, str] | None = None
        self._current: Deferred[Any] | None = None
        self._loop: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(lambda f: self._log.failure("Status reporter died", f))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._current is not None:
            self._current.cancel()
        loop, self._loop = self._loop, None
        return loop if loop is not None else succeed(None)

    async def _wait(self, d: Deferred[Any]) -> Any:
        self._current = d
        try:
            return await d
        finally:
            self._current = None

    async def _run(self) -> None:
        start = self._clock.seconds()
        next_collect = start
        next_report = start
        try:
            while self.running:
                t = self._clock.seconds()
                if t >= next_collect:
                    self.last_sample = await self._wait(
                        Deferred.fromCoroutine(
                            collect_status(self._child, self._clock, self._timeout)
                        )
                    )
                    self.collections += 1
                    next_collect = t + self.collect_frequency
                if t >= next_report and self.last_sample is not None:
                    await self._report(self.last_sample)
                    next_report = t + self.update_frequency
                wait = min(next_collect, next_report) - self._clock.seconds()
                await self._wait(deferLater(self._clock, max(wait, 0.0), lambda: None))
        except CancelledError:
            return

    async def _report(self, sample: ClusterStatusSample) -> None:
        """
        Patch the ManagedCluster's status; errors are logged (the next report
        tries again).
        """
        try:
            for _ in range(3):
                current = await self._wait(
                    self._parent.get(
                        MANAGED_CLUSTERS, self.managed_cluster, self.namespace
                    )
                )
                try:
                    existing = ManagedClusterStatus.from_dict(
                        current.get("status") or {}
                    ).conditions
                except InvalidObject:
                    existing = ()
                status, reason, message = sample.ready_condition()
                conditions = set_condition(
                    existing,
                    CONDITION_READY,
                    status,
                    reason,
                    message,
                    sample.observed,
                )
                patch = {
                    "metadata": {
                        "resourceVersion": (current.get("metadata") or {}).get(
                            "resourceVersion"
                        )
                    },
                    "status": {
                        **self._urls,
                        **sample.status_patch([c.to_dict() for c in conditions]),
                    },
                }
                try:
                    await self._wait(
                        self._parent.patch(
                            MANAGED_CLUSTERS,
                            self.managed_cluster,
                            patch,
                            self.namespace,
                            subresource="status",
                        )
                    )
                except Conflict:
                    continue
                self.reports += 1
                if (status, reason) != self._reported_state:
                    self._log.info(
                        "Reported {namespace}/{name}: Ready={status} ({reason}), "
                        "Kubernetes {version}",
                        namespace=self.namespace,
                        name=self.managed_cluster,
                        status=status,
                        reason=reason,
                        version=sample.k8s_version or "unknown",
                    )
                    self._reported_state = (status, reason)
                return
            raise Conflict(409, "Conflict", "the ManagedCluster kept changing")
        except KubeError as e:
            self._log.warn(
                "Reporting status of {namespace}/{name} failed: {error}",
                namespace=self.namespace,
                name=self.managed_cluster,
                error=str(e),
            )


def make_reporting_service(
    clock: IReactorTime,
    child: IKubeAPI,
    parent: IKubeAPI,
    namespace: str,
    managed_cluster: str,
    cluster_id: str,
    holder_identity: str,
    collect_frequency: float = 20.0,
    update_frequency: float = 180.0,
    lease_interval: float = CLUSTER_LEASE_RENEW_INTERVAL,
    lease_duration_seconds: int = CLUSTER_LEASE_DURATION_SECONDS,
    child_url: str = "",
    parent_url: str = "",
) -> MultiService:
    """
    The L{StatusReporter} and the heartbeat L{HeartbeatLease}
    C{<namespace>/clusternet-<cluster-id>} (renewed every C{lease_interval}
    seconds), as one service to start once registered (and stop on losing the
    leadership).
    """
    top = MultiService()
    reporter = StatusReporter(
        clock,
        child,
        parent,
        namespace,
        managed_cluster,
        collect_frequency=collect_frequency,
        update_frequency=update_frequency,
        urls={"apiserverURL": child_url, "parentAPIServerURL": parent_url},
    )
    reporter.setName("status")
    reporter.setServiceParent(top)
    lease = HeartbeatLease(
        clock,
        parent,
        namespace,
        heartbeat_lease_name(cluster_id),
        holder_identity,
        lease_duration_seconds=lease_duration_seconds,
        interval=lease_interval,
    )
    lease.setName("heartbeat")
    lease.setServiceParent(top)
    return top
