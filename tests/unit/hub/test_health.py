"""
Cluster health on the hub: Ready turns Unknown when the heartbeat Lease stops
being renewed, within the grace period, without flapping.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from clusternet.apis import CLUSTER_NAME_LABEL, DEDICATED_FOR_LABEL, crr_name
from clusternet.hub._health import (
    DEDICATED_NAMESPACE_SELECTOR,
    DEFAULT_LEASE_FIELD_SELECTOR,
    REASON_LEASE_EXPIRED,
    ClusterHealth,
)
from clusternet.kube import HeartbeatLease, testing
from clusternet.kube._errors import Conflict
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    LEASES,
    MANAGED_CLUSTERS,
    NAMESPACES,
)

NAMESPACE = "clusternet-abcde"
CLUSTER_ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"
OTHER_ID = "0b8a3f4e-1111-4222-8333-444455556666"
THIRD_ID = "7c1e2d3f-aaaa-4bbb-8ccc-ddddeeeeffff"
B_NAMESPACE = "clusternet-fghij"
LEASE = f"clusternet-{CLUSTER_ID}"


def make_namespace(
    api: testing.MemoryKubeAPI,
    name: str,
    cluster_id: str | None,
    cluster_name: str | None = None,
) -> None:
    """
    A namespace as the hub makes one for C{cluster_id}; an unlabelled one for
    C{None}.
    """
    labels = {}
    if cluster_id is not None:
        labels[DEDICATED_FOR_LABEL] = cluster_id
    if cluster_name is not None:
        labels[CLUSTER_NAME_LABEL] = cluster_name
    api.create(NAMESPACES, {"metadata": {"name": name, "labels": labels}})


class HealthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        self.logged: list[dict[str, Any]] = []
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
        self.health._log = Logger(observer=self.logged.append)
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
        genuine: bool = True,
    ) -> None:
        """
        A ManagedCluster; with C{genuine}, in a namespace made for it as the hub
        makes one, unless that namespace exists already.
        """
        namespaces = self.successResultOf(self.api.list(NAMESPACES))["items"]
        if genuine and namespace not in [n["metadata"]["name"] for n in namespaces]:
            make_namespace(self.api, namespace, cluster_id, name)
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


class ForeignManagedClusterTests(SynchronousTestCase):
    """
    Cluster A (edge-1, in NAMESPACE) writes a ManagedCluster in its own
    namespace claiming cluster B's ID (edge-2, in its namespace B_NAMESPACE) with
    a forged status: the hub neither checks, patches nor knows it, and says so
    once.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        self.logged: list[dict[str, Any]] = []
        make_namespace(self.api, NAMESPACE, CLUSTER_ID, "edge-1")
        make_namespace(self.api, B_NAMESPACE, OTHER_ID, "edge-2")
        self.cluster("edge-1", NAMESPACE, CLUSTER_ID, "True")
        self.cluster("edge-2", B_NAMESPACE, OTHER_ID, "True")
        self.cluster("edge-2", NAMESPACE, OTHER_ID, "True", version="v9.9.9")
        self.leases = [
            HeartbeatLease(self.clock, self.api, namespace, lease, "agent-0")
            for namespace, lease in (
                (NAMESPACE, LEASE),
                (B_NAMESPACE, f"clusternet-{OTHER_ID}"),
            )
        ]
        for lease in self.leases:
            lease.startService()
        self.known: set[str] = set()
        self.health = ClusterHealth(
            self.clock,
            self.api,
            grace_period=40.0,
            check_interval=5.0,
            known=self.known,
            lease_field_selector=None,
        )
        self.health._log = Logger(observer=self.logged.append)
        self.health.startService()

    def tearDown(self) -> None:
        for service in (self.health, *self.leases):
            if service.running:
                service.stopService()

    def cluster(
        self,
        name: str,
        namespace: str,
        cluster_id: str,
        ready: str,
        version: str = "v1.32.0",
    ) -> None:
        self.api.create(
            MANAGED_CLUSTERS,
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"clusterId": cluster_id},
            },
            namespace,
        )
        self.api.patch(
            MANAGED_CLUSTERS,
            name,
            {
                "status": {
                    "k8sVersion": version,
                    "readyz": ready == "True",
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

    def ready(self, name: str, namespace: str) -> str:
        mc = self.successResultOf(self.api.get(MANAGED_CLUSTERS, name, namespace))
        (condition,) = [c for c in mc["status"]["conditions"] if c["type"] == "Ready"]
        return str(condition["status"])

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.logged if "Ignoring ManagedCluster" in e["log_format"]]

    def test_only_the_genuine_managed_clusters_are_checked_and_known(self) -> None:
        assert self.health.genuine == {
            CLUSTER_ID: (NAMESPACE, "edge-1"),
            OTHER_ID: (B_NAMESPACE, "edge-2"),
        }
        assert self.known == {CLUSTER_ID, OTHER_ID}

    def test_the_forged_one_is_logged_once_with_namespace_name_and_id(self) -> None:
        self.clock.pump([1] * 120)
        (warning,) = self.warnings()
        assert warning["log_level"].name == "warn"
        assert (warning["namespace"], warning["name"], warning["cluster"]) == (
            NAMESPACE,
            "edge-2",
            OTHER_ID,
        )
        assert B_NAMESPACE in warning["reason"]
        self.api.patch(
            MANAGED_CLUSTERS,
            "edge-2",
            {"status": {"k8sVersion": "v9.9.10"}},
            NAMESPACE,
            subresource="status",
        )
        assert len(self.warnings()) == 1

    def test_a_dead_cluster_turns_unknown_whatever_the_forgery_says(self) -> None:
        forged = self.successResultOf(
            self.api.get(MANAGED_CLUSTERS, "edge-2", NAMESPACE)
        )
        self.leases[1].stopService()  # B's agent dies
        self.clock.pump([1] * 60)
        assert self.ready("edge-2", B_NAMESPACE) == "Unknown"
        assert self.ready("edge-2", NAMESPACE) == "True"  # never touched
        assert self.health.patches == 1
        after = self.successResultOf(
            self.api.get(MANAGED_CLUSTERS, "edge-2", NAMESPACE)
        )
        assert after == forged

    def test_the_forgery_is_never_patched_even_without_a_lease(self) -> None:
        """
        No Lease C{clusternet-<B>} exists in A's namespace: were the forgery
        checked, it would turn Unknown after the grace period.
        """
        self.clock.pump([1] * 300)
        assert self.ready("edge-2", NAMESPACE) == "True"
        assert self.health.patches == 0

    def test_deleting_the_forgery_keeps_the_genuine_cluster_known(self) -> None:
        self.api.delete(MANAGED_CLUSTERS, "edge-2", NAMESPACE)
        assert self.known == {CLUSTER_ID, OTHER_ID}
        assert self.health.genuine[OTHER_ID] == (B_NAMESPACE, "edge-2")

    def test_a_claim_of_an_unregistered_id_makes_it_not_known(self) -> None:
        self.cluster("ghost", NAMESPACE, THIRD_ID, "True")
        assert THIRD_ID not in self.known
        assert THIRD_ID not in self.health.genuine

    def test_a_managed_cluster_with_another_name_in_the_right_namespace_is_foreign(
        self,
    ) -> None:
        self.cluster("edge-2-copy", B_NAMESPACE, OTHER_ID, "True")
        assert self.health.genuine[OTHER_ID] == (B_NAMESPACE, "edge-2")
        self.clock.pump([1] * 10)
        assert ("edge-2-copy", OTHER_ID) in {
            (w["name"], w["cluster"]) for w in self.warnings()
        }

    def test_a_relabelled_namespace_loses_to_the_one_the_request_names(self) -> None:
        self.request(OTHER_ID, B_NAMESPACE, "edge-2")
        self.api.patch(
            NAMESPACES,
            NAMESPACE,
            {"metadata": {"labels": {DEDICATED_FOR_LABEL: OTHER_ID}}},
        )
        assert self.health.genuine == {OTHER_ID: (B_NAMESPACE, "edge-2")}
        assert self.known == {OTHER_ID}

    def test_two_namespaces_for_one_id_and_no_request_make_none_genuine(self) -> None:
        self.api.patch(
            NAMESPACES,
            NAMESPACE,
            {"metadata": {"labels": {DEDICATED_FOR_LABEL: OTHER_ID}}},
        )
        assert self.health.genuine == {}
        assert self.known == set()
        self.request(OTHER_ID, B_NAMESPACE, "edge-2")
        assert self.health.genuine == {OTHER_ID: (B_NAMESPACE, "edge-2")}

    def test_a_managed_cluster_counts_once_its_namespace_is_labelled(self) -> None:
        self.api.create(NAMESPACES, {"metadata": {"name": "clusternet-late"}})
        self.cluster("edge-3", "clusternet-late", THIRD_ID, "True")
        assert THIRD_ID not in self.known
        self.clock.pump([1] * 3)
        self.api.patch(
            NAMESPACES,
            "clusternet-late",
            {"metadata": {"labels": {DEDICATED_FOR_LABEL: THIRD_ID}}},
        )
        self.request(THIRD_ID, "clusternet-late", "edge-3")
        assert self.health.genuine[THIRD_ID] == ("clusternet-late", "edge-3")
        assert THIRD_ID in self.known
        self.clock.pump([1] * 30)
        assert "edge-3" not in {w["name"] for w in self.warnings()}
        self.api.delete(NAMESPACES, "clusternet-late")
        assert THIRD_ID not in self.known

    def test_a_managed_cluster_seen_before_its_namespace_is_not_reported(
        self,
    ) -> None:
        """
        The hub makes the Namespace, then the ManagedCluster; their informers
        may hear of them the other way round.
        """
        self.clock.pump([1] * 3)  # a check falls between the two events
        self.cluster("edge-3", "clusternet-new", THIRD_ID, "True")
        self.clock.pump([1] * 4)
        assert THIRD_ID not in self.known
        make_namespace(self.api, "clusternet-new", THIRD_ID, "edge-3")
        assert THIRD_ID in self.known
        self.clock.pump([1] * 60)
        assert "edge-3" not in {w["name"] for w in self.warnings()}

    def test_an_invalid_cluster_id_is_ignored_and_logged(self) -> None:
        self.cluster("odd", NAMESPACE, "not-an-id", "True")
        self.clock.pump([1] * 10)
        assert ("odd", "not-an-id") in {
            (w["name"], w["cluster"]) for w in self.warnings()
        }
        assert "not-an-id" not in self.known

    def request(self, cluster_id: str, namespace: str, name: str) -> None:
        self.api.create(
            CLUSTER_REGISTRATION_REQUESTS,
            {"metadata": {"name": crr_name(cluster_id)}, "spec": {}},
        )
        self.api.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            crr_name(cluster_id),
            {
                "status": {
                    "result": "Approved",
                    "dedicatedNamespace": namespace,
                    "managedClusterName": name,
                }
            },
            subresource="status",
        )


class ConstructionTests(SynchronousTestCase):
    def test_node_leases_are_not_watched_by_default(self) -> None:
        health = ClusterHealth(Clock(), testing.MemoryKubeAPI())
        assert health.leases._field_selector == DEFAULT_LEASE_FIELD_SELECTOR
        assert DEFAULT_LEASE_FIELD_SELECTOR == "metadata.namespace!=kube-node-lease"

    def test_only_the_dedicated_namespaces_are_watched(self) -> None:
        health = ClusterHealth(Clock(), testing.MemoryKubeAPI())
        assert health.namespaces.resource == NAMESPACES
        assert health.namespaces._label_selector == DEDICATED_NAMESPACE_SELECTOR
        assert DEDICATED_NAMESPACE_SELECTOR == "clusters.clusternet.io/dedicated-for"

    def test_nothing_is_checked_before_the_informers_sync(self) -> None:
        api = testing.MemoryKubeAPI()
        health = ClusterHealth(Clock(), api, lease_field_selector=None)
        self.successResultOf(health.check())
        assert api.calls == []
