"""
Cluster health on the hub: Ready turns Unknown when the heartbeat Lease stops
being renewed, within the grace period, without flapping.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clusternet.hub._health import (
    DEFAULT_LEASE_FIELD_SELECTOR,
    REASON_LEASE_EXPIRED,
    ClusterHealth,
)
from clusternet.kube import HeartbeatLease, testing
from clusternet.kube._errors import Conflict
from clusternet.kube._resources import LEASES, MANAGED_CLUSTERS

NAMESPACE = "clusternet-abcde"
CLUSTER_ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"
OTHER_ID = "0b8a3f4e-1111-4222-8333-444455556666"
LEASE = f"clusternet-{CLUSTER_ID}"


class HealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        self.make_cluster("edge-1", NAMESPACE, CLUSTER_ID, ready="True", readyz=True)
        self.heartbeat = HeartbeatLease(
            self.clock, self.api, NAMESPACE, LEASE, "agent-0"
        )
        self.heartbeat.startService()
        self.known: set[str] = set()
        self.health = ClusterHealth(
            self.clock,
            self.api,
            grace_period=40.0,
            check_interval=5.0,
            known=self.known,
            lease_field_selector=None,
        )
        self.health.startService()

    def tearDown(self) -> None:
        for service in (self.health, self.heartbeat):
            if service.running:
                service.stopService()

    def make_cluster(
        self,
        name: str,
        namespace: str,
        cluster_id: str,
        ready: str | None = None,
        readyz: bool = False,
    ) -> None:
        self.api.create(
            MANAGED_CLUSTERS,
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"clusterId": cluster_id},
            },
            namespace,
        )
        if ready is not None:
            self.api.patch(
                MANAGED_CLUSTERS,
                name,
                {
                    "status": {
                        "readyz": readyz,
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": ready,
                                "reason": "ClusterReady",
                                "message": "",
                                "lastTransitionTime": "2027-01-15T07:00:00Z",
                            }
                        ],
                    }
                },
                namespace,
                subresource="status",
            )

    def ready(self, name: str = "edge-1", namespace: str = NAMESPACE) -> dict[str, Any]:
        mc = self.successResultOf(self.api.get(MANAGED_CLUSTERS, name, namespace))
        (condition,) = [c for c in mc["status"]["conditions"] if c["type"] == "Ready"]
        return condition  # type: ignore[no-any-return]

    def status_patches(self) -> int:
        return sum(
            1 for c in self.api.calls if c[0] == "patch" and c[1] == "managedclusters"
        )

    def test_a_renewed_lease_changes_nothing(self) -> None:
        patches = self.status_patches()
        self.clock.pump([1] * 600)
        assert self.ready()["status"] == "True"
        assert self.status_patches() == patches
        assert self.health.patches == 0

    def test_an_expired_lease_turns_ready_unknown_within_the_grace_period(
        self,
    ) -> None:
        self.clock.pump([1] * 30)
        self.heartbeat.stopService()  # the agent dies; last renewal at +30 s
        self.clock.pump([1] * 40)  # +70: exactly the grace period, not beyond
        assert self.ready()["status"] == "True"
        self.clock.pump([1] * 5)  # the next check after the grace period
        ready = self.ready()
        assert ready["status"] == "Unknown"
        assert ready["reason"] == REASON_LEASE_EXPIRED
        assert "has not renewed its lease" in ready["message"]
        assert CLUSTER_ID in ready["message"]
        assert ready["lastTransitionTime"] == "2027-01-15T08:01:15Z"

    def test_an_expired_cluster_is_patched_once_not_on_every_check(self) -> None:
        self.heartbeat.stopService()
        self.clock.pump([1] * 300)
        assert self.ready()["status"] == "Unknown"
        assert self.health.patches == 1

    def test_a_lease_renewed_again_restores_what_the_agent_reported(self) -> None:
        self.heartbeat.stopService()
        self.clock.pump([1] * 60)
        assert self.ready()["status"] == "Unknown"
        self.heartbeat.startService()
        self.clock.pump([1] * 5)
        ready = self.ready()
        assert ready["status"] == "True"
        assert ready["reason"] == "ClusterReady"
        assert self.health.patches == 2
        self.clock.pump([1] * 300)
        assert self.health.patches == 2

    def test_a_not_ready_cluster_comes_back_not_ready(self) -> None:
        self.api.patch(
            MANAGED_CLUSTERS,
            "edge-1",
            {"status": {"readyz": False}},
            NAMESPACE,
            subresource="status",
        )
        self.heartbeat.stopService()
        self.clock.pump([1] * 60)
        self.heartbeat.startService()
        self.clock.pump([1] * 5)
        assert self.ready()["status"] == "False"

    def test_the_agents_own_report_is_never_overridden_while_renewing(self) -> None:
        self.api.patch(
            MANAGED_CLUSTERS,
            "edge-1",
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "ClusterNotReady",
                            "message": "readyz 500",
                            "lastTransitionTime": "2027-01-15T08:00:00Z",
                        }
                    ]
                }
            },
            NAMESPACE,
            subresource="status",
        )
        self.clock.pump([1] * 120)
        assert self.ready()["status"] == "False"
        assert self.health.patches == 0

    def test_a_cluster_that_never_created_its_lease_turns_unknown(self) -> None:
        self.make_cluster("edge-2", "clusternet-fghij", OTHER_ID)
        self.clock.pump([1] * 40)
        mc = self.successResultOf(
            self.api.get(MANAGED_CLUSTERS, "edge-2", "clusternet-fghij")
        )
        assert "status" not in mc
        self.clock.pump([1] * 6)
        ready = self.ready("edge-2", "clusternet-fghij")
        assert ready["status"] == "Unknown"
        assert "has not created its lease" in ready["message"]

    def test_renewals_with_a_skewed_clock_count_from_when_the_hub_saw_them(
        self,
    ) -> None:
        """
        The agent's clock is an hour behind: its renewTime is always "old", but it
        changes every 10 s, so the cluster is alive.
        """
        self.heartbeat.stopService()
        skewed = Clock()
        skewed.advance(self.clock.seconds() - 3600)
        lease = HeartbeatLease(skewed, self.api, NAMESPACE, LEASE, "agent-0")
        lease.startService()
        for _ in range(300):
            self.clock.advance(1)
            skewed.advance(1)
        lease.stopService()
        assert self.ready()["status"] == "True"
        assert self.health.patches == 0

    def test_known_cluster_ids_follow_the_managed_clusters(self) -> None:
        assert self.known == {CLUSTER_ID}
        self.make_cluster("edge-2", "clusternet-fghij", OTHER_ID)
        assert self.known == {CLUSTER_ID, OTHER_ID}
        self.api.delete(MANAGED_CLUSTERS, "edge-2", "clusternet-fghij")
        assert self.known == {CLUSTER_ID}

    def test_a_conflicting_patch_is_tried_again_at_the_next_check(self) -> None:
        self.heartbeat.stopService()
        self.api.fail_next("patch", Conflict(409, "Conflict", "changed"))
        self.clock.pump([1] * 46)
        assert self.ready()["status"] == "True"
        self.clock.pump([1] * 5)
        assert self.ready()["status"] == "Unknown"

    def test_a_deleted_lease_counts_from_the_cluster(self) -> None:
        self.heartbeat.stopService()
        self.api.delete(LEASES, LEASE, NAMESPACE)
        self.clock.pump([1] * 60)
        assert "has not created its lease" in self.ready()["message"]

    def test_stopping_stops_the_checks(self) -> None:
        self.heartbeat.stopService()
        self.health.stopService()
        self.clock.pump([1] * 120)
        assert self.ready()["status"] == "True"


class ConstructionTests(SynchronousTestCase):
    def test_node_leases_are_not_watched_by_default(self) -> None:
        health = ClusterHealth(Clock(), testing.MemoryKubeAPI())
        assert health.leases._field_selector == DEFAULT_LEASE_FIELD_SELECTOR
        assert DEFAULT_LEASE_FIELD_SELECTOR == "metadata.namespace!=kube-node-lease"

    def test_nothing_is_checked_before_the_informers_sync(self) -> None:
        api = testing.MemoryKubeAPI()
        health = ClusterHealth(Clock(), api, lease_field_selector=None)
        self.successResultOf(health.check())
        assert api.calls == []
