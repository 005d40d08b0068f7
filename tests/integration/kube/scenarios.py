"""
Scenarios run in a subprocess with the real reactor against a sandbox API server:
C{python scenarios.py <kubeconfig> <scenario>}. Each prints one JSON line of
observations for the test to check.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from clusternet.apis import ClusterRegistrationRequest, crds, format_microtime
from clusternet.kube import (
    CLUSTER_REGISTRATION_REQUESTS,
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    LEASES,
    NAMESPACES,
    AlreadyExists,
    EventHandler,
    Informer,
    KubeClient,
    KubeError,
    LeaderElector,
    NotFound,
    load_api_client,
)

ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"


async def sleep(clock: IReactorTime, seconds: float) -> None:
    await task.deferLater(clock, seconds, lambda: None)


async def until(clock: IReactorTime, check: Any, timeout: float) -> float:
    start = clock.seconds()
    while not check():
        if clock.seconds() - start > timeout:
            return -1.0
        await sleep(clock, 0.05)
    return clock.seconds() - start


async def crud(reactor: Any, kube: KubeClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for crd in crds():
        try:
            await kube.create(CUSTOM_RESOURCE_DEFINITIONS, crd)
        except AlreadyExists:
            pass
    await sleep(reactor, 0.5)
    crr = ClusterRegistrationRequest.new(ID, "edge-1").to_dict()
    created = await kube.create(CLUSTER_REGISTRATION_REQUESTS, crr)
    out["created_rv"] = created["metadata"]["resourceVersion"]
    try:
        await kube.create(CLUSTER_REGISTRATION_REQUESTS, crr)
    except AlreadyExists as e:
        out["second_create"] = [e.status, e.reason]
    bad = dict(crr, metadata={"name": "clusternet-bad"}, spec={"clusterId": "bad"})
    try:
        await kube.create(CLUSTER_REGISTRATION_REQUESTS, bad)
        out["bad_create"] = "accepted"
    except KubeError as e:
        out["bad_create"] = [e.status, e.reason]
    got = await kube.get(CLUSTER_REGISTRATION_REQUESTS, crr["metadata"]["name"])
    parsed = ClusterRegistrationRequest.from_dict(got)
    updated = parsed.with_status(result="Approved", token=b"tok").to_dict()
    await kube.update(CLUSTER_REGISTRATION_REQUESTS, updated, subresource="status")
    got = await kube.get(CLUSTER_REGISTRATION_REQUESTS, crr["metadata"]["name"])
    out["status"] = ClusterRegistrationRequest.from_dict(got).status.result
    stale = dict(updated)
    try:
        await kube.update(CLUSTER_REGISTRATION_REQUESTS, stale)
        out["stale_update"] = "accepted"
    except KubeError as e:
        out["stale_update"] = [e.status, e.reason]
    listing = await kube.list(
        CLUSTER_REGISTRATION_REQUESTS,
        label_selector="clusters.clusternet.io/cluster-id=" + ID,
    )
    out["listed"] = [i["metadata"]["name"] for i in listing["items"]]
    await kube.delete(CLUSTER_REGISTRATION_REQUESTS, crr["metadata"]["name"])
    try:
        await kube.get(CLUSTER_REGISTRATION_REQUESTS, crr["metadata"]["name"])
    except NotFound as e:
        out["after_delete"] = e.status
    version = await kube.raw_get("/version")
    out["version"] = [version.status, json.loads(version.body).get("gitVersion")]
    out["readyz"] = (await kube.raw_get("/readyz")).status
    out["missing"] = (await kube.raw_get("/no/such/path")).status
    lease = {
        "metadata": {"name": "whole-second"},
        "spec": {
            "holderIdentity": "a",
            "renewTime": format_microtime(datetime(2026, 11, 26, 10, 0, tzinfo=UTC)),
        },
    }
    made = await kube.create(LEASES, lease, "default")
    out["microtime"] = made["spec"]["renewTime"]
    return out


async def informer(reactor: Any, kube: KubeClient) -> dict[str, Any]:
    await kube.create(NAMESPACES, {"metadata": {"name": "inf"}})
    await kube.create(CONFIG_MAPS, {"metadata": {"name": "before"}}, "inf")
    events: list[list[str]] = []
    inf = Informer(reactor, kube, CONFIG_MAPS, namespace="inf", watch_timeout=2)
    inf.add_handler(
        EventHandler(
            add=lambda o: events.append(["add", o["metadata"]["name"]]),
            update=lambda a, b: events.append(["update", b["metadata"]["name"]]),
            delete=lambda o: events.append(["delete", o["metadata"]["name"]]),
        )
    )
    inf.startService()
    await inf.when_synced()
    await kube.create(CONFIG_MAPS, {"metadata": {"name": "during"}}, "inf")
    await kube.patch(CONFIG_MAPS, "before", {"data": {"k": "v"}}, "inf")
    await until(reactor, lambda: len(events) >= 4, 10)
    # Let the 2 s watch end and resume.
    await sleep(reactor, 2.5)
    await kube.delete(CONFIG_MAPS, "during", "inf")
    await until(reactor, lambda: len(events) >= 5, 10)
    started = reactor.seconds()
    await inf.stopService()
    return {
        "events": events,
        "lists": inf.lists,
        "watches": inf.watches,
        "cache": sorted(n for _, n in inf.store.keys()),
        "stop_seconds": reactor.seconds() - started,
    }


async def election(reactor: Any, kube: KubeClient) -> dict[str, Any]:
    log: list[str] = []

    def elector(name: str, lease: float = 3) -> LeaderElector:
        return LeaderElector(
            reactor,
            kube,
            "default",
            "self-cluster",
            name,
            on_started_leading=lambda: log.append("start " + name),
            on_stopped_leading=lambda: log.append("stop " + name),
            lease_duration=lease,
            renew_deadline=lease * 2 / 3,
            retry_period=0.5,
        )

    # A long lease for the release: a takeover well before it would expire shows
    # the release worked, however loaded the machine is.
    a, b = elector("a", 10), elector("b", 10)
    a.startService()
    await until(reactor, lambda: a.is_leader, 5)
    b.startService()
    await sleep(reactor, 2)
    both = [a.is_leader, b.is_leader]
    await a.stopService()
    takeover = await until(reactor, lambda: b.is_leader, 10)
    lease = await kube.get(LEASES, "self-cluster", "default")
    # b dies without releasing: a (restarted) waits out the lease duration.
    b._release_on_stop = False
    await b.stopService()
    a2 = elector("a2", 10)
    a2.startService()
    expiry = await until(reactor, lambda: a2.is_leader, 25)
    await a2.stopService()
    return {
        "both": both,
        "takeover": takeover,
        "expiry_takeover": expiry,
        "log": log,
        "holder": lease["spec"]["holderIdentity"],
        "transitions": lease["spec"]["leaseTransitions"],
    }


def main(reactor: Any, kubeconfig: str, scenario: str) -> defer.Deferred[None]:
    kube = KubeClient(reactor, load_api_client(kubeconfig, threads=4), threads=4)
    kube.startService()

    async def run() -> None:
        try:
            result = await {"crud": crud, "informer": informer, "election": election}[
                scenario
            ](reactor, kube)
            sys.stdout.write(json.dumps(result) + "\n")
        finally:
            await kube.stopService()

    return defer.Deferred.fromCoroutine(run())


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
