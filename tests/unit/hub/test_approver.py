"""
Approval of ClusterRegistrationRequests: the seed's objects, denial of bad
requests, and convergence when the hub dies at any step.
"""

import base64
from collections.abc import Callable, Mapping
from typing import Any

from attrs import define

from twisted.internet.defer import Deferred, ensureDeferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clusternet.hub._approver import ApprovalQueue, Approver
from clusternet.kube import testing
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    MANAGED_CLUSTERS,
    NAMESPACES,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    Resource,
)

BY_PLURAL = {
    r.plural: r
    for r in (
        CLUSTER_REGISTRATION_REQUESTS,
        CLUSTER_ROLE_BINDINGS,
        CLUSTER_ROLES,
        MANAGED_CLUSTERS,
        NAMESPACES,
        ROLES,
        SERVICE_ACCOUNTS,
    )
}


class Crash(Exception):
    """
    An injected failure, as if the hub died before the call took effect.
    """


@define
class FakeKube(testing.MemoryKubeAPI):
    """
    The in-memory parent, plus a token controller and a crash at the Nth call.
    """

    fail_at: int | None = None

    def _answer(
        self,
        method: str,
        resource: Resource,
        name: str,
        make: Callable[[], dict[str, Any]],
    ) -> Deferred[dict[str, Any]]:
        if self.fail_at is not None and len(self.calls) + 1 == self.fail_at:
            self.calls.append((method, resource.plural, name))
            return fail(
                Crash(f"crash at call {self.fail_at}: {method} {resource.plural}")
            )
        return super()._answer(method, resource, name, make)

    def create(
        self,
        resource: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        **kw: Any,
    ) -> Deferred[dict[str, Any]]:
        if (
            resource == SECRETS
            and body.get("type") == "kubernetes.io/service-account-token"
        ):
            body = dict(body)
            body["data"] = {
                "token": base64.b64encode(
                    b"token-for-" + body["metadata"]["name"].encode()
                ).decode(),
                "ca.crt": base64.b64encode(b"CA PEM").decode(),
            }
        return super().create(resource, body, namespace, **kw)

    def of(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects(BY_PLURAL[plural])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]


ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"


def crr(
    cluster_id: str = ID, name: str | None = None, cluster_name: str = "edge-1"
) -> dict[str, Any]:
    return {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": name or f"clusternet-{cluster_id}"},
        "spec": {
            "clusterId": cluster_id,
            "clusterName": cluster_name,
            "clusterType": "EdgeClusterSelfProvisioned",
        },
    }


class ApproverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kube = FakeKube()
        self.clock = Clock()
        self.approver = Approver(self.kube, self.clock)

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        self.successResultOf(self.kube.create(CLUSTER_REGISTRATION_REQUESTS, request))
        return request

    def approve(self, request: dict[str, Any]) -> Any:
        return ensureDeferred(self.approver.approve(request))

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["metadata"]["name"]
        stored = self.successResultOf(
            self.kube.get(CLUSTER_REGISTRATION_REQUESTS, name)
        )
        return stored.get("status") or {}

    def test_approval_creates_the_seed_objects(self) -> None:
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        status = self.status(request)
        assert status["result"] == "Approved"
        [namespace] = self.kube.of("namespaces")
        ns = namespace["metadata"]["name"]
        assert ns.startswith("clusternet-")
        assert (
            namespace["metadata"]["labels"]["clusters.clusternet.io/cluster-id"] == ID
        )
        assert status["dedicatedNamespace"] == ns
        [mcls] = self.kube.of("managedclusters", ns)
        assert mcls["spec"] == {
            "clusterId": ID,
            "clusterType": "EdgeClusterSelfProvisioned",
        }
        assert status["managedClusterName"] == mcls["metadata"]["name"] == "edge-1"
        assert base64.b64decode(status["token"]).startswith(b"token-for-")
        assert base64.b64decode(status["caCertificate"]) == b"CA PEM"
        [role] = self.kube.of("roles", ns)
        assert role["metadata"]["name"] == "clusternet-managedcluster-role"
        assert role["rules"] == [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
        ]
        [cluster_role] = self.kube.of("clusterroles")
        assert cluster_role["metadata"]["name"] == f"clusternet-{ID}"
        assert {
            "apiGroups": ["proxies.clusternet.io"],
            "resources": ["sockets"],
            "resourceNames": [ID],
            "verbs": ["*"],
        } in cluster_role["rules"]
        assert (
            cluster_role["metadata"]["annotations"][
                "clusters.clusternet.io/rbac-autoupdate"
            ]
            == "true"
        )
        assert (
            cluster_role["metadata"]["labels"]["clusters.clusternet.io/bootstrapping"]
            == "rbac-defaults"
        )
        [binding] = self.kube.of("clusterrolebindings")
        assert binding["subjects"][0]["namespace"] == ns

    def test_name_and_id_disagreeing_is_denied_and_nothing_is_made(self) -> None:
        other = "11111111-2222-3333-4444-555555555555"
        request = self.submit(crr(name=f"clusternet-{other}"))
        self.successResultOf(self.approve(request))
        status = self.status(request)
        assert status["result"] == "Denied"
        assert "does not match spec.clusterId" in status["errorMessage"]
        assert self.kube.of("namespaces") == []

    def test_malformed_id_is_denied(self) -> None:
        request = self.submit(crr(cluster_id="not-a-uuid!"))
        self.successResultOf(self.approve(request))
        assert self.status(request)["result"] == "Denied"
        assert self.kube.of("namespaces") == []

    def test_a_crash_at_any_step_converges_on_replay(self) -> None:
        clean = FakeKube()
        clean.create(CLUSTER_REGISTRATION_REQUESTS, crr())
        clean.calls.clear()
        self.successResultOf(ensureDeferred(Approver(clean, Clock()).approve(crr())))
        total_calls = len(clean.calls)
        assert total_calls > 10
        for step in range(1, total_calls + 1):
            self.kube = FakeKube()
            self.approver = Approver(self.kube, self.clock)
            request = self.submit(crr())
            self.kube.calls.clear()
            self.kube.fail_at = step
            self.failureResultOf(self.approve(request), Crash)
            self.kube.fail_at = None
            self.successResultOf(self.approve(request))
            assert len(self.kube.of("namespaces")) == 1, step
            assert len(self.kube.of("managedclusters")) == 1, step
            assert len(self.kube.of("serviceaccounts")) == 1, step
            assert self.status(request)["result"] == "Approved", step

    def test_operator_owned_rbac_is_left_alone(self) -> None:
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        [cluster_role] = self.kube.of("clusterroles")
        cluster_role["metadata"]["annotations"][
            "clusters.clusternet.io/rbac-autoupdate"
        ] = "false"
        cluster_role["rules"] = [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
        ]
        request["status"] = {}
        self.successResultOf(
            self.kube.patch(
                CLUSTER_REGISTRATION_REQUESTS,
                request["metadata"]["name"],
                {"status": None},
                subresource="status",
            )
        )
        self.successResultOf(self.kube.update(CLUSTER_ROLES, cluster_role))
        self.successResultOf(self.approve(request))
        [after] = self.kube.of("clusterroles")
        assert after["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
        ]

    def test_already_decided_requests_are_skipped(self) -> None:
        request = crr()
        request["status"] = {"result": "Approved"}
        self.successResultOf(self.approve(request))
        assert self.kube.calls == []


class ApprovalQueueTests(SynchronousTestCase):
    def test_failures_are_retried_with_backoff_until_they_succeed(self) -> None:
        clock = Clock()
        attempts: list[str] = []

        async def work(request: dict[str, Any]) -> None:
            attempts.append(request["metadata"]["name"])
            if len(attempts) < 3:
                raise RuntimeError("parent unavailable")

        queue = ApprovalQueue(clock, work)
        queue.enqueue(crr())
        assert len(attempts) == 1
        clock.advance(1.0)
        assert len(attempts) == 2
        clock.advance(2.0)
        assert len(attempts) == 3
        clock.advance(100)
        assert len(attempts) == 3
        assert queue.idle
