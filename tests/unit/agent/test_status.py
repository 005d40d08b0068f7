"""
The child's status: collected at one frequency, reported to the parent's
ManagedCluster at another, with the right values and Ready condition; and the
heartbeat Lease beside it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clusternet.agent._status import (
    StatusReporter,
    _version,
    collect_status,
    make_reporting_service,
)
from clusternet.kube import testing
from clusternet.kube._errors import KubeUnavailable, ServerError
from clusternet.kube._interfaces import RawResponse
from clusternet.kube._resources import LEASES, MANAGED_CLUSTERS

NAMESPACE = "clusternet-abcde"
CLUSTER_ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.3",
    "platform": "linux/amd64",
}


def healthy_child(clock: Clock) -> testing.MemoryKubeAPI:
    child = testing.MemoryKubeAPI(clock=clock)
    child.raw["/version"] = RawResponse(
        200, json.dumps(VERSION).encode(), "application/json"
    )
    for probe in ("/healthz", "/readyz", "/livez"):
        child.raw[probe] = RawResponse(200, b"ok", "text/plain")
    return child


class StatusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.child = healthy_child(self.clock)
        self.parent = testing.MemoryKubeAPI(clock=self.clock)
        self.parent.create(
            MANAGED_CLUSTERS,
            {
                "metadata": {"name": "edge-1", "namespace": NAMESPACE},
                "spec": {"clusterId": CLUSTER_ID},
            },
            NAMESPACE,
        )
        self.reporter = StatusReporter(
            self.clock, self.child, self.parent, NAMESPACE, "edge-1"
        )

    def tearDown(self) -> None:
        if self.reporter.running:
            self.reporter.stopService()

    def mc_status(self) -> dict[str, Any]:
        d = self.parent.get(MANAGED_CLUSTERS, "edge-1", NAMESPACE)
        return self.successResultOf(d).get("status") or {}

    def ready(self) -> dict[str, Any]:
        (condition,) = self.mc_status()["conditions"]
        assert condition["type"] == "Ready"
        return condition  # type: ignore[no-any-return]

    def patches(self) -> int:
        return sum(1 for c in self.parent.calls if c[0] == "patch")

    def versions(self) -> int:
        return sum(1 for c in self.child.calls if c[:2] == ("raw_get", "/version"))

    def test_status_is_reported_right_after_start(self) -> None:
        self.reporter.startService()
        status = self.mc_status()
        assert status == {
            "k8sVersion": "v1.32.3",
            "platform": "linux/amd64",
            "healthz": True,
            "readyz": True,
            "livez": True,
            "lastObservedTime": "2027-01-15T08:00:00Z",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ClusterReady",
                    "message": "the child's /readyz answered 200",
                    "lastTransitionTime": "2027-01-15T08:00:00Z",
                }
            ],
        }

    def test_collect_and_report_frequencies(self) -> None:
        self.reporter.startService()
        for _ in range(400):
            self.clock.advance(1)
        # Collected at 0, 20, ..., 400; reported at 0, 180, 360.
        assert self.versions() == 21
        assert self.patches() == 3
        assert self.reporter.reports == 3
        assert self.mc_status()["lastObservedTime"] == "2027-01-15T08:06:00Z"

    def test_configured_frequencies_are_used(self) -> None:
        reporter = StatusReporter(
            self.clock,
            self.child,
            self.parent,
            NAMESPACE,
            "edge-1",
            collect_frequency=5,
            update_frequency=30,
        )
        reporter.startService()
        self.clock.pump([1] * 60)
        reporter.stopService()
        assert self.versions() == 13
        assert self.patches() == 3

    def test_the_report_says_where_the_agent_reaches_child_and_parent(self) -> None:
        reporter = StatusReporter(
            self.clock,
            self.child,
            self.parent,
            NAMESPACE,
            "edge-1",
            urls={
                "apiserverURL": "https://10.0.0.1:6443",
                "parentAPIServerURL": "https://parent.example:6443",
                "ignored": "",
            },
        )
        reporter.startService()
        reporter.stopService()
        status = self.mc_status()
        assert status["apiserverURL"] == "https://10.0.0.1:6443"
        assert status["parentAPIServerURL"] == "https://parent.example:6443"
        assert "ignored" not in status

    def test_a_report_carries_the_latest_collection(self) -> None:
        self.reporter.startService()
        self.clock.advance(100)
        self.child.raw["/readyz"] = RawResponse(500, b"[-]etcd failed")
        self.clock.pump([20] * 4)  # collected at 120, 140, 160, 180; reported
        ready = self.ready()
        assert ready["status"] == "False"
        assert ready["reason"] == "ClusterNotReady"
        assert "500" in ready["message"]
        assert ready["lastTransitionTime"] == "2027-01-15T08:03:00Z"
        assert self.mc_status()["readyz"] is False
        assert self.mc_status()["healthz"] is True

    def test_the_transition_time_moves_only_when_the_status_changes(self) -> None:
        self.reporter.startService()
        self.clock.pump([20] * 9)  # second report at 180
        assert self.ready()["lastTransitionTime"] == "2027-01-15T08:00:00Z"
        assert self.reporter.reports == 2

    def test_an_unreachable_child_is_reported_not_ready(self) -> None:
        self.child.fail_next("raw_get", KubeUnavailable("connection refused"), 4)
        self.reporter.startService()
        status = self.mc_status()
        assert (status["healthz"], status["readyz"], status["livez"]) == (
            False,
            False,
            False,
        )
        assert "k8sVersion" not in status
        assert "connection refused" in self.ready()["message"]
        assert self.ready()["status"] == "False"

    def test_a_failed_report_is_retried_at_the_next_one(self) -> None:
        self.parent.fail_next("patch", ServerError(500, "InternalError", "boom"))
        self.reporter.startService()
        assert self.reporter.reports == 0
        self.clock.pump([20] * 9)
        assert self.reporter.reports == 1
        assert self.ready()["status"] == "True"

    def test_other_conditions_are_kept(self) -> None:
        self.parent.patch(
            MANAGED_CLUSTERS,
            "edge-1",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Other",
                            "status": "True",
                            "reason": "Because",
                            "message": "",
                            "lastTransitionTime": "2020-01-01T00:00:00Z",
                        }
                    ]
                }
            },
            NAMESPACE,
            subresource="status",
        )
        self.reporter.startService()
        types = [c["type"] for c in self.mc_status()["conditions"]]
        assert types == ["Other", "Ready"]

    def test_stopping_ends_the_loop(self) -> None:
        self.reporter.startService()
        self.successResultOf(self.reporter.stopService())
        calls = len(self.child.calls) + len(self.parent.calls)
        self.clock.pump([20] * 20)
        assert len(self.child.calls) + len(self.parent.calls) == calls

    def test_a_child_that_does_not_answer_times_out(self) -> None:
        class Silent(testing.MemoryKubeAPI):
            def raw_get(self, path: str) -> Deferred[RawResponse]:
                return Deferred()

        d = Deferred.fromCoroutine(collect_status(Silent(), self.clock, timeout=10.0))
        self.clock.pump([5] * 8)
        sample = self.successResultOf(d)
        assert not sample.readyz
        assert "timed out" in sample.error


class ReportingServiceTests(SynchronousTestCase):
    def test_the_heartbeat_lease_is_renewed_every_ten_seconds(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        child = healthy_child(clock)
        parent = testing.MemoryKubeAPI(clock=clock)
        service = make_reporting_service(
            clock, child, parent, NAMESPACE, "edge-1", CLUSTER_ID, "agent-0"
        )
        service.startService()
        lease = self.successResultOf(
            parent.get(LEASES, f"clusternet-{CLUSTER_ID}", NAMESPACE)
        )
        assert lease["spec"]["holderIdentity"] == "agent-0"
        assert lease["spec"]["leaseDurationSeconds"] == 40
        first = lease["spec"]["renewTime"]
        clock.pump([1] * 30)
        lease = self.successResultOf(
            parent.get(LEASES, f"clusternet-{CLUSTER_ID}", NAMESPACE)
        )
        assert lease["spec"]["renewTime"] == "2027-01-15T08:00:30.000000Z"
        assert first == "2027-01-15T08:00:00.000000Z"
        service.stopService()


@given(st.binary(max_size=300), st.integers(100, 599))
def test_version_parsing_never_fails(body: bytes, status: int) -> None:
    version, platform = _version(RawResponse(status, body))
    assert isinstance(version, str) and isinstance(platform, str)


@given(
    st.dictionaries(
        st.sampled_from(["gitVersion", "platform", "major"]),
        st.one_of(st.text(max_size=200), st.integers(), st.none(), st.lists(st.none())),
    )
)
def test_version_fields_of_any_type_are_handled(info: dict[str, Any]) -> None:
    version, platform = _version(RawResponse(200, json.dumps(info).encode()))
    expected = info.get("gitVersion")
    assert version == (expected[:100] if isinstance(expected, str) else "")
    assert len(platform) <= 100
