"""
Leases (C{coordination.k8s.io/v1}): leader election among replicas, and the
cluster heartbeat the agent renews in its dedicated namespace.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from clusternet.apis import (
    CLUSTER_LEASE_DURATION_SECONDS,
    CLUSTER_LEASE_RENEW_INTERVAL,
    format_microtime,
    now,
)
from clusternet.kube._errors import AlreadyExists, Conflict, KubeError, NotFound
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import LEASES

__all__ = ["HeartbeatLease", "LeaderElector"]

Obj = dict[str, Any]


def _record(lease: Obj) -> tuple[Any, ...]:
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity") or "",
        spec.get("renewTime"),
        spec.get("acquireTime"),
        spec.get("leaseTransitions"),
        spec.get("leaseDurationSeconds"),
    )


class LeaderElector(Service):
    """
    Leader election with a Lease, as client-go does it.

    A candidate tries every C{retry_period} (with jitter) to take the Lease: it
    takes it when there is none, when it is released (no holder), or when the
    holder has not renewed for C{lease_duration} as measured by the candidate's
    own clock since it last saw the Lease change (so clock skew between hosts does
    not matter). The leader renews every C{retry_period}; when it has not managed
    to for C{renew_deadline}, it calls C{on_stopped_leading} and becomes a candidate
    again. Stopping the service ends leadership the same way and releases the
    Lease so a standby takes over at once.

    Every update carries the Lease's resourceVersion: two candidates never both
    win a round.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        namespace: str,
        name: str,
        identity: str,
        on_started_leading: Callable[[], object],
        on_stopped_leading: Callable[[], object],
        on_new_leader: Callable[[str], object] | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_stop: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                "expected lease_duration > renew_deadline > retry_period > 0"
            )
        if not identity:
            raise ValueError("identity must not be empty")
        self._clock = clock
        self._api = api
        self.namespace = namespace
        self.lease_name = name
        self.identity = identity
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._on_new_leader = on_new_leader
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._release_on_stop = release_on_stop
        self._rng = rng if rng is not None else random.Random()
        self.is_leader = False
        self.observed_leader = ""
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_time = 0.0
        self._observed_lease: Obj | None = None
        self._current: Deferred[Any] | None = None
        self._loop: Deferred[None] | None = None

    # --- Service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._died)

    def _died(self, failure: Failure) -> None:
        self._log.failure("Leader election on {lease} died", failure, lease=self._where)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._current is not None:
            self._current.cancel()
        loop, self._loop = self._loop, None
        done = loop if loop is not None else succeed(None)
        if self.is_leader:
            self._lose("stopping")
            if self._release_on_stop:
                done.addCallback(lambda _: self._release())
        return done

    @property
    def _where(self) -> str:
        return f"{self.namespace}/{self.lease_name}"

    # --- the loop ------------------------------------------------------------------

    async def _wait(self, d: Deferred[Any], timeout: float | None = None) -> Any:
        if timeout is not None:
            d.addTimeout(timeout, self._clock)
        self._current = d
        try:
            return await d
        finally:
            self._current = None

    async def _sleep(self, seconds: float) -> bool:
        try:
            await self._wait(deferLater(self._clock, seconds, lambda: None))
        except CancelledError:
            return False
        return bool(self.running)

    async def _run(self) -> None:
        while self.running:
            # Candidate.
            while self.running and not self.is_leader:
                if await self._attempt(self.renew_deadline):
                    self.is_leader = True
                    self._log.info(
                        "Became leader on {lease} as {identity}",
                        lease=self._where,
                        identity=self.identity,
                    )
                    self._call(self._on_started)
                    break
                jitter = 1.0 + 0.2 * self._rng.random()
                if not await self._sleep(self.retry_period * jitter):
                    return
            # Leader.
            last_renewed = self._clock.seconds()
            while self.running and self.is_leader:
                if not await self._sleep(self.retry_period):
                    return
                left = last_renewed + self.renew_deadline - self._clock.seconds()
                if left > 0 and await self._attempt(left):
                    last_renewed = self._clock.seconds()
                    continue
                if not self.running:
                    return
                if self._clock.seconds() - last_renewed >= self.renew_deadline:
                    self._lose("could not renew within the renew deadline")

    def _lose(self, why: str) -> None:
        if not self.is_leader:
            return
        self.is_leader = False
        self._log.warn("Lost leadership of {lease} ({why})", lease=self._where, why=why)
        self._call(self._on_stopped)

    def _call(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            self._log.failure("Leader election callback failed")

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await self._wait(self._try_acquire_or_renew(), timeout)
        except CancelledError:
            if not self.running:
                raise
            self._log.warn("Lease {lease}: no answer in time", lease=self._where)
            return False
        except KubeError as e:
            self._log.warn("Lease {lease}: {error}", lease=self._where, error=str(e))
            return False

    def _try_acquire_or_renew(self) -> Deferred[bool]:
        return Deferred.fromCoroutine(self._try())

    def _spec(self, acquire_time: str, transitions: int) -> Obj:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": format_microtime(now(self._clock)),
            "leaseTransitions": transitions,
        }

    def _observe(self, lease: Obj) -> None:
        record = _record(lease)
        if record != self._observed_record:
            self._observed_record = record
            self._observed_time = self._clock.seconds()
        self._observed_lease = lease
        holder = record[0]
        if holder != self.observed_leader:
            self.observed_leader = holder
            if holder and self._on_new_leader is not None:
                try:
                    self._on_new_leader(holder)
                except Exception:
                    self._log.failure("on_new_leader failed")

    async def _try(self) -> bool:
        stamp = format_microtime(now(self._clock))
        try:
            lease = await self._api.get(LEASES, self.lease_name, self.namespace)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.lease_name, "namespace": self.namespace},
                "spec": self._spec(stamp, 0),
            }
            try:
                created = await self._api.create(LEASES, body, self.namespace)
            except (AlreadyExists, Conflict):
                return False
            self._observe(created)
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds")
        if not isinstance(duration, int | float) or duration <= 0:
            duration = self.lease_duration
        if (
            holder
            and holder != self.identity
            and self._observed_time + duration > self._clock.seconds()
        ):
            return False
        transitions = spec.get("leaseTransitions")
        if not isinstance(transitions, int):
            transitions = 0
        if holder == self.identity:
            acquire = spec.get("acquireTime") or stamp
        else:
            acquire = stamp
            transitions += 1
        updated = dict(lease)
        updated["spec"] = {**spec, **self._spec(acquire, transitions)}
        try:
            result = await self._api.update(LEASES, updated, self.namespace)
        except Conflict:
            return False
        self._observe(result)
        return True

    def _release(self) -> Deferred[None]:
        """
        Give the Lease up so a standby takes it at once, not after it expires.

        The Lease is read afresh (a renewal cancelled by the stop may still have
        reached the server, so the last one we saw can be stale) and released
        only while we hold it; a conflict is retried.  The whole release is
        bounded by the renew deadline (5 s at most).
        """
        d = Deferred.fromCoroutine(self._release_now())
        d.addTimeout(min(self.renew_deadline, 5.0), self._clock)

        def failed(failure: Failure) -> None:
            self._log.warn(
                "Could not release {lease}: {error}",
                lease=self._where,
                error=failure.getErrorMessage(),
            )

        return d.addErrback(failed)

    async def _release_now(self) -> None:
        for _ in range(3):
            lease = await self._api.get(LEASES, self.lease_name, self.namespace)
            if _record(lease)[0] != self.identity:
                return
            stamp = format_microtime(now(self._clock))
            released = dict(lease)
            released["spec"] = {
                **(lease.get("spec") or {}),
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": stamp,
                "renewTime": stamp,
            }
            try:
                await self._api.update(LEASES, released, self.namespace)
            except Conflict:
                continue
            self._log.info("Released {lease}", lease=self._where)
            return


class HeartbeatLease(Service):
    """
    Keep a Lease renewed every C{interval} seconds (creating it when missing): the
    cluster heartbeat the hub watches to tell whether a child is alive.

    @ivar last_renewed: C{clock.seconds()} of the last successful renewal, or
        C{None}.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        namespace: str,
        name: str,
        holder_identity: str,
        lease_duration_seconds: int = CLUSTER_LEASE_DURATION_SECONDS,
        interval: float = CLUSTER_LEASE_RENEW_INTERVAL,
    ) -> None:
        self._clock = clock
        self._api = api
        self.namespace = namespace
        self.lease_name = name
        self.holder_identity = holder_identity
        self.lease_duration_seconds = lease_duration_seconds
        self.interval = interval
        self.last_renewed: float | None = None
        self.renewals = 0
        self._current: Deferred[Any] | None = None
        self._loop: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(
            lambda f: self._log.failure("Heartbeat lease loop died", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._current is not None:
            self._current.cancel()
        loop, self._loop = self._loop, None
        return loop if loop is not None else succeed(None)

    async def _run(self) -> None:
        while self.running:
            try:
                d = self.renew()
                d.addTimeout(self.interval, self._clock)
                self._current = d
                await d
            except CancelledError:
                if not self.running:
                    return
                self._log.warn(
                    "Heartbeat lease {namespace}/{name}: no answer in time",
                    namespace=self.namespace,
                    name=self.lease_name,
                )
            except KubeError as e:
                self._log.warn(
                    "Could not renew heartbeat lease {namespace}/{name}: {error}",
                    namespace=self.namespace,
                    name=self.lease_name,
                    error=str(e),
                )
            finally:
                self._current = None
            try:
                sleep = deferLater(self._clock, self.interval, lambda: None)
                self._current = sleep
                await sleep
            except CancelledError:
                return
            finally:
                self._current = None

    def renew(self) -> Deferred[Obj]:
        """
        Renew the Lease once now (create it if it is missing).
        """
        return Deferred.fromCoroutine(self._renew())

    async def _renew(self) -> Obj:
        for _ in range(3):
            stamp = format_microtime(now(self._clock))
            spec = {
                "holderIdentity": self.holder_identity,
                "leaseDurationSeconds": self.lease_duration_seconds,
                "renewTime": stamp,
            }
            try:
                lease = await self._api.get(LEASES, self.lease_name, self.namespace)
            except NotFound:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.lease_name, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": stamp},
                }
                try:
                    result = await self._api.create(LEASES, body, self.namespace)
                except AlreadyExists:
                    continue
            else:
                updated = dict(lease)
                updated["spec"] = {**(lease.get("spec") or {}), **spec}
                try:
                    result = await self._api.update(LEASES, updated, self.namespace)
                except Conflict:
                    continue
            self.last_renewed = self._clock.seconds()
            self.renewals += 1
            return result
        raise Conflict(409, "Conflict", "the lease kept changing under us")
