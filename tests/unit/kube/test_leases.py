"""
Leader election and the heartbeat Lease against the in-memory API server.
"""

from __future__ import annotations

import random
import re

import pytest

from twisted.internet.task import Clock

from clusternet.kube import (
    LEASES,
    Conflict,
    HeartbeatLease,
    KubeUnavailable,
    LeaderElector,
)
from clusternet.kube.testing import MemoryKubeAPI

MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class Candidate:
    def __init__(self, clock: Clock, api: MemoryKubeAPI, identity: str) -> None:
        self.log: list[str] = []
        self.leaders: list[str] = []
        self.elector = LeaderElector(
            clock,
            api,
            "edge-system",
            "self-cluster",
            identity,
            on_started_leading=lambda: self.log.append("started"),
            on_stopped_leading=lambda: self.log.append("stopped"),
            on_new_leader=self.leaders.append,
            lease_duration=15,
            renew_deadline=10,
            retry_period=2,
            rng=random.Random(0),
        )


def lease(api: MemoryKubeAPI) -> dict:
    return api.objects(LEASES)[0]


def test_first_candidate_creates_the_lease_with_microtimes() -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    api = MemoryKubeAPI(clock=clock)
    a = Candidate(clock, api, "a")
    a.elector.startService()
    assert a.log == ["started"]
    spec = lease(api)["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert MICRO.fullmatch(spec["renewTime"]) and MICRO.fullmatch(spec["acquireTime"])


def test_only_one_leader_and_standby_takes_over_after_lease_duration() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    a, b = Candidate(clock, api, "a"), Candidate(clock, api, "b")
    a.elector.startService()
    b.elector.startService()
    for _ in range(20):
        clock.advance(1)
    assert a.elector.is_leader and not b.elector.is_leader
    assert b.leaders == ["a"]
    # The leader's API server connection dies: it cannot renew.
    a.elector._api = MemoryKubeAPI(clock=clock)  # a now talks to a dead end
    a.elector._api.fail_next("get", KubeUnavailable("down"), times=1000)
    elapsed = 0
    while not b.elector.is_leader and elapsed < 60:
        clock.advance(1)
        elapsed += 1
    assert b.elector.is_leader
    # Within the lease duration of a's last renewal (at most one retry period
    # ago), plus one jittered retry period and one tick.
    assert elapsed <= 2 + 15 + 2 * 1.2 + 1
    assert a.log == ["started", "stopped"]
    assert lease(api)["spec"]["leaseTransitions"] == 1
    assert lease(api)["spec"]["holderIdentity"] == "b"


def test_leader_renews_while_healthy() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    a = Candidate(clock, api, "a")
    a.elector.startService()
    first = lease(api)["spec"]["renewTime"]
    for _ in range(30):
        clock.advance(1)
    assert a.elector.is_leader
    assert lease(api)["spec"]["renewTime"] != first
    assert lease(api)["spec"]["acquireTime"] == lease(api)["spec"]["acquireTime"]
    assert a.log == ["started"]


def test_stop_releases_so_the_standby_takes_over_at_once() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    a, b = Candidate(clock, api, "a"), Candidate(clock, api, "b")
    a.elector.startService()
    b.elector.startService()
    clock.advance(1)
    a.elector.stopService()
    assert a.log == ["started", "stopped"]
    assert lease(api)["spec"]["holderIdentity"] == ""
    clock.advance(2.5)
    assert b.elector.is_leader


def test_stop_releases_even_when_the_last_lease_seen_is_stale() -> None:
    """
    A renewal that reached the server after the elector last looked (say, one the
    stop cancelled) must not make the release conflict and leave the standby
    waiting out the whole lease.
    """
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    a, b = Candidate(clock, api, "a"), Candidate(clock, api, "b")
    a.elector.startService()
    b.elector.startService()
    clock.advance(1)
    late = lease(api)
    late["spec"]["renewTime"] = (
        late["spec"]["renewTime"].replace(".", ".9", 1)[:-2] + "Z"
    )
    api.update(LEASES, late, "edge-system")  # the resourceVersion moves on
    a.elector.stopService()
    assert lease(api)["spec"]["holderIdentity"] == ""
    clock.advance(2.5)
    assert b.elector.is_leader


def test_conflicting_update_loses_the_round() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    api.create(
        LEASES,
        {
            "metadata": {"name": "self-cluster"},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": 15},
        },
        "edge-system",
    )
    a = Candidate(clock, api, "a")
    # Another candidate wrote the lease between our read and our write.
    api.fail_next("update", Conflict(409, "Conflict", "the object has been modified"))
    a.elector.startService()
    assert not a.elector.is_leader
    clock.advance(2.4)
    assert a.elector.is_leader


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError):
        LeaderElector(
            Clock(),
            MemoryKubeAPI(),
            "ns",
            "n",
            "a",
            lambda: None,
            lambda: None,
            lease_duration=5,
            renew_deadline=10,
            retry_period=2,
        )


def test_heartbeat_creates_then_renews_every_interval() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    hb = HeartbeatLease(clock, api, "clusternet-abcde", "clusternet-x", "agent-1")
    hb.startService()
    assert hb.renewals == 1
    spec = lease(api)["spec"]
    assert spec["leaseDurationSeconds"] == 40
    assert MICRO.fullmatch(spec["renewTime"])
    clock.advance(10)
    clock.advance(10)
    assert hb.renewals == 3
    assert hb.last_renewed == 20


def test_heartbeat_recreates_a_deleted_lease_and_survives_errors() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    hb = HeartbeatLease(clock, api, "ns", "hb", "agent-1")
    hb.startService()
    api.delete(LEASES, "hb", "ns")
    api.fail_next("get", KubeUnavailable("down"))
    clock.advance(10)
    assert hb.renewals == 1
    clock.advance(10)
    assert hb.renewals == 2
    assert len(api.objects(LEASES)) == 1
    d = hb.stopService()
    assert d.called
    clock.advance(100)
    assert hb.renewals == 2
