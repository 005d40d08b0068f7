"""
Approval of ClusterRegistrationRequests: the seed's objects, denial of bad
requests, and convergence when the hub dies at any step.
"""

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from attrs import define, field

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
from clusternet.sealing import (
    SealingError,
    generate_key,
    open_sealed,
    public_key_pem,
    seal,
    sealing_context,
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
    The in-memory parent, plus the TokenRequest API and a crash at the Nth call.
    """

    fail_at: int | None = None
    issued: list[str] = field(factory=list)

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
        name: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Deferred[dict[str, Any]]:
        if resource == SERVICE_ACCOUNTS and subresource == "token":
            bound = body["spec"]["boundObjectRef"]["name"]

            def token() -> dict[str, Any]:
                value = f"token-of-{name}-bound-to-{bound}"
                self.issued.append(value)
                return {
                    "status": {
                        "token": value,
                        "expirationTimestamp": "2030-01-01T00:00:00Z",
                    }
                }

            return self._answer("create", resource, f"{name}/token", token)
        return super().create(resource, body, namespace, name, subresource, dry_run)

    def of(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects(BY_PLURAL[plural])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]


ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
KEY = generate_key()


def crr(
    cluster_id: str = ID,
    name: str | None = None,
    cluster_name: str = "edge-1",
    public_key: str | None = None,
) -> dict[str, Any]:
    spec = {
        "clusterId": cluster_id,
        "clusterName": cluster_name,
        "clusterType": "EdgeClusterSelfProvisioned",
        "publicKey": public_key_pem(KEY) if public_key is None else public_key,
    }
    if not spec["publicKey"]:
        del spec["publicKey"]
    return {
        "apiVersion": "clusters.clusternet.io/v1beta1",
        "kind": "ClusterRegistrationRequest",
        "metadata": {"name": name or f"clusternet-{cluster_id}"},
        "spec": spec,
    }


class ApproverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kube = FakeKube()
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # 2027-01; the tokens expire in 2030
        self.approver = Approver(self.kube, self.clock)

    def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        self.successResultOf(self.kube.create(CLUSTER_REGISTRATION_REQUESTS, request))
        return self.stored(request)

    def stored(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["metadata"]["name"]
        found: dict[str, Any] = self.successResultOf(
            self.kube.get(CLUSTER_REGISTRATION_REQUESTS, name)
        )
        return found

    def approve(self, request: dict[str, Any]) -> Any:
        return ensureDeferred(self.approver.approve(request))

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.stored(request).get("status") or {}

    def token(self, request: dict[str, Any]) -> str:
        stored = self.stored(request)
        context = sealing_context(ID, stored["metadata"]["uid"])
        sealed = stored["status"]["sealedToken"]
        return open_sealed(KEY, sealed, context).decode()

    def token_secrets(self) -> list[str]:
        return sorted(
            s["metadata"]["name"]
            for s in self.kube.objects(SECRETS)
            if "clusters.clusternet.io/token-for" in s["metadata"].get("labels", {})
        )

    def test_approval_creates_the_objects_and_seals_a_token_to_the_agents_key(
        self,
    ) -> None:
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        status = self.status(request)
        assert status["result"] == "Approved"
        assert "token" not in status  # never a token anyone may read
        [namespace] = self.kube.of("namespaces")
        ns = namespace["metadata"]["name"]
        labels = namespace["metadata"]["labels"]
        assert ns.startswith("clusternet-")
        assert labels["clusters.clusternet.io/cluster-id"] == ID
        assert labels["clusters.clusternet.io/dedicated-for"] == ID
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert status["dedicatedNamespace"] == ns
        [mcls] = self.kube.of("managedclusters", ns)
        assert mcls["spec"] == {
            "clusterId": ID,
            "clusterType": "EdgeClusterSelfProvisioned",
        }
        assert status["managedClusterName"] == mcls["metadata"]["name"] == "edge-1"
        account = f"clusternet-{ID}"
        assert self.token(request) == (f"token-of-{account}-bound-to-{account}-token-1")
        assert self.token_secrets() == [f"{account}-token-1"]
        assert status["tokenExpirationTimestamp"] == "2030-01-01T00:00:00Z"
        with pytest.raises(SealingError):
            open_sealed(
                generate_key(),
                status["sealedToken"],
                sealing_context(ID, self.stored(request)["metadata"]["uid"]),
            )
        [role] = self.kube.of("roles", ns)
        assert role["metadata"]["name"] == "clusternet-managedcluster-role"
        assert {"*"} not in [set(r["verbs"]) for r in role["rules"]]
        assert {r["resources"][0] for r in role["rules"]} == {
            "managedclusters",
            "managedclusters/status",
            "leases",
        }
        [cluster_role] = self.kube.of("clusterroles")
        assert cluster_role["metadata"]["name"] == f"clusternet-{ID}"
        assert cluster_role["rules"] == [
            {
                "apiGroups": ["clusters.clusternet.io"],
                "resources": ["clusterregistrationrequests"],
                "resourceNames": [f"clusternet-{ID}"],
                "verbs": ["get"],
            },
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": [ns],
                "verbs": ["get"],
            },
            {
                "apiGroups": ["proxies.clusternet.io"],
                "resources": ["sockets"],
                "resourceNames": [ID],
                "verbs": ["get", "create"],
            },
        ]
        assert (
            cluster_role["metadata"]["annotations"][
                "clusters.clusternet.io/rbac-autoupdate"
            ]
            == "true"
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

    def test_malformed_id_or_key_is_denied(self) -> None:
        for request in (
            crr(cluster_id="not-a-uuid!"),
            crr(public_key=""),
            crr(
                public_key="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            ),
        ):
            self.kube = FakeKube()
            self.approver = Approver(self.kube, self.clock)
            request = self.submit(request)
            self.successResultOf(self.approve(request))
            assert self.status(request)["result"] == "Denied"
            assert self.kube.of("namespaces") == []
        assert "publicKey" in self.status(request)["errorMessage"]

    def test_a_crash_at_any_step_converges_on_replay(self) -> None:
        clean = FakeKube()
        clean.create(CLUSTER_REGISTRATION_REQUESTS, crr())
        stored = clean.get(CLUSTER_REGISTRATION_REQUESTS, f"clusternet-{ID}")
        clean.calls.clear()
        approver = Approver(clean, self.clock)
        self.successResultOf(ensureDeferred(approver.approve(stored.result)))  # type: ignore[attr-defined]
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
            self.successResultOf(self.approve(self.stored(request)))
            assert len(self.kube.of("namespaces")) == 1, step
            assert len(self.kube.of("managedclusters")) == 1, step
            assert len(self.kube.of("serviceaccounts")) == 1, step
            assert self.status(request)["result"] == "Approved", step
            assert self.token(request).startswith("token-of-"), step

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
        self.successResultOf(
            self.kube.patch(
                CLUSTER_REGISTRATION_REQUESTS,
                request["metadata"]["name"],
                {"status": None},
                subresource="status",
            )
        )
        self.successResultOf(self.kube.update(CLUSTER_ROLES, cluster_role))
        self.successResultOf(self.approve(self.stored(request)))
        [after] = self.kube.of("clusterroles")
        assert after["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
        ]

    def test_denied_requests_are_skipped(self) -> None:
        request = crr()
        request["status"] = {"result": "Denied"}
        self.successResultOf(self.approve(request))
        assert self.kube.calls == []

    def test_an_approval_the_hub_did_not_write_is_not_believed(self) -> None:
        """
        A status naming a namespace the hub did not make for the cluster (here
        kube-system, with a token of the forger's) is approved anew.
        """
        request = self.submit(crr())
        self.successResultOf(
            self.kube.create(NAMESPACES, {"metadata": {"name": "kube-system"}})
        )
        forged = {
            "result": "Approved",
            "dedicatedNamespace": "kube-system",
            "sealedToken": seal(
                public_key_pem(KEY), b"forged", sealing_context(ID, "")
            ),
        }
        self.successResultOf(
            self.kube.patch(
                CLUSTER_REGISTRATION_REQUESTS,
                request["metadata"]["name"],
                {"status": forged},
                subresource="status",
            )
        )
        self.successResultOf(self.approve(self.stored(request)))
        status = self.status(request)
        assert status["dedicatedNamespace"].startswith("clusternet-")
        assert self.token(request).startswith("token-of-")

    def test_a_token_is_replaced_before_it_expires_and_older_ones_revoked(
        self,
    ) -> None:
        approver = Approver(self.kube, self.clock, token_lifetime=3600.0)
        request = self.submit(crr())
        self.successResultOf(ensureDeferred(approver.approve(request)))
        first = self.token(request)
        account = f"clusternet-{ID}"
        # Far from expiry (2030): nothing to do.
        calls = len(self.kube.calls)
        self.successResultOf(ensureDeferred(approver.approve(self.stored(request))))
        assert self.token(request) == first
        assert not [
            c for c in self.kube.calls[calls:] if c[0] in ("create", "patch", "delete")
        ]
        # Within a fifth of the lifetime of its expiry: the next one.
        self.clock.advance(
            1_893_456_000 - self.clock.seconds() - 0.1 * 3600
        )  # 2030-01-01 less 6 minutes
        self.successResultOf(ensureDeferred(approver.approve(self.stored(request))))
        second = self.token(request)
        assert second != first
        assert self.token_secrets() == [f"{account}-token-1", f"{account}-token-2"]
        self.successResultOf(ensureDeferred(approver.approve(self.stored(request))))
        assert self.token_secrets() == [f"{account}-token-2", f"{account}-token-3"]

    def test_a_verified_approval_is_rechecked_without_calls_until_it_changes(
        self,
    ) -> None:
        """
        The informer's resync brings every request back each minute: one found
        as the hub left it costs no call to the parent until it changes or its
        token nears its end.
        """
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        stored = self.stored(request)
        self.successResultOf(self.approve(stored))  # verified once
        calls = len(self.kube.calls)
        for _ in range(3):
            self.successResultOf(self.approve(stored))
        assert self.kube.calls[calls:] == []
        # A changed status (say, someone else's) is verified again.
        changed = dict(stored, status=dict(stored["status"], sealedToken="v1.x"))
        self.successResultOf(self.approve(changed))
        assert len(self.kube.calls) > calls

    def test_an_operator_asks_for_a_new_token_and_the_old_is_revoked(self) -> None:
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        first = self.token(request)
        stored = self.stored(request)
        stored["metadata"]["annotations"] = {
            "clusters.clusternet.io/rotate-credentials": "stolen-box"
        }
        self.successResultOf(self.kube.update(CLUSTER_REGISTRATION_REQUESTS, stored))
        self.successResultOf(self.approve(self.stored(request)))
        assert self.token(request) != first
        assert self.token_secrets() == [f"clusternet-{ID}-token-2"]
        # Asked once: the next check changes nothing.
        self.successResultOf(self.approve(self.stored(request)))
        assert self.token_secrets() == [f"clusternet-{ID}-token-2"]

    def test_a_deleted_request_revokes_every_token_of_its_cluster(self) -> None:
        request = self.submit(crr())
        self.successResultOf(self.approve(request))
        assert self.token_secrets()
        self.successResultOf(ensureDeferred(self.approver.revoke_all(request)))
        assert self.token_secrets() == []

    def test_manual_approval_waits_for_an_operator(self) -> None:
        approver = Approver(self.kube, self.clock, policy="manual")
        request = self.submit(crr())
        self.successResultOf(ensureDeferred(approver.approve(request)))
        status = self.status(request)
        assert status["result"] == "Pending"
        assert "clusternet approve" in status["errorMessage"]
        assert self.kube.of("namespaces") == []
        # Once more: no second write.
        calls = len(self.kube.calls)
        self.successResultOf(ensureDeferred(approver.approve(self.stored(request))))
        assert not [c for c in self.kube.calls[calls:] if c[0] == "patch"]
        self.successResultOf(
            self.kube.patch(
                CLUSTER_REGISTRATION_REQUESTS,
                request["metadata"]["name"],
                {"status": {"result": "Approved"}},
                subresource="status",
            )
        )
        self.successResultOf(ensureDeferred(approver.approve(self.stored(request))))
        assert self.status(request)["result"] == "Approved"
        assert self.token(request).startswith("token-of-")

    def test_too_many_waiting_requests_are_denied(self) -> None:
        approver = Approver(self.kube, self.clock, max_pending=5, pending=lambda: 6)
        request = self.submit(crr())
        self.successResultOf(ensureDeferred(approver.approve(request)))
        status = self.status(request)
        assert status["result"] == "Denied"
        assert "more than 5" in status["errorMessage"]
        assert self.kube.of("namespaces") == []


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
