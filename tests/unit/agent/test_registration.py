"""
The agent's registration: fresh registration, reuse of stored credentials,
Denied, Failed, refused tokens, stable cluster names, and backoff.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from clusternet.agent._bootstrap import BootstrapError, ParentTrust
from clusternet.agent._cluster_id import ClusterIDError, discover_cluster_id
from clusternet.agent._credentials import CredentialRefresh
from clusternet.agent._registration import (
    ParentCredentials,
    Registration,
    RegistrationDenied,
    RegistrationError,
    RetryBackoff,
    read_registration_secret,
)
from clusternet.apis import DEDICATED_FOR_LABEL
from clusternet.kube import MutableToken, testing
from clusternet.kube._errors import Forbidden, KubeUnavailable, Unauthorized
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    NAMESPACES,
    SECRETS,
)
from clusternet.sealing import (
    load_private_key,
    private_key_pem,
    public_key_pem,
    seal,
    sealing_context,
)

PARENT_URL = "https://parent.example:6443"
BOOTSTRAP = "07401b.f395accd246ae52d"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nparent\n-----END CERTIFICATE-----\n"


class AuthenticatingParent:
    """
    The parent as seen with one token: every call fails with 401 unless the token
    is currently valid.
    """

    def __init__(self, api: testing.MemoryKubeAPI, token: str, valid: set[str]):
        self._api = api
        self._token = token
        self._valid = valid

    def __getattr__(self, name: str) -> Callable[..., Deferred[Any]]:
        method = getattr(self._api, name)

        def call(*args: Any, **kw: Any) -> Deferred[Any]:
            if self._token not in self._valid:
                return fail(Unauthorized(401, "Unauthorized", "Unauthorized"))
            result: Deferred[Any] = method(*args, **kw)
            return result

        return call


class World:
    """
    A child and a parent in memory, and what the agent is configured with.
    """

    def __init__(self) -> None:
        self.clock = Clock()
        self.child = testing.MemoryKubeAPI(clock=self.clock)
        self.parent = testing.MemoryKubeAPI(clock=self.clock)
        self.valid_tokens = {BOOTSTRAP}
        self.made: list[tuple[str, bytes | None, bool]] = []
        self.trust_calls = 0
        self.trust_result: Callable[[], Deferred[ParentTrust]] = lambda: succeed(
            ParentTrust(CA_PEM, False, "cluster-info")
        )
        created = self.child.create(NAMESPACES, {"metadata": {"name": "kube-system"}})
        self.cluster_id = created.result["metadata"]["uid"]  # type: ignore[attr-defined]
        self.crr = f"clusternet-{self.cluster_id}"
        self.namespaces: set[str] = set()

    def parent_api(self, token: str, ca: bytes | None, insecure: bool) -> IKubeAPI:
        self.made.append((token, ca, insecure))
        return AuthenticatingParent(self.parent, token, self.valid_tokens)  # type: ignore[return-value]

    def trust(self) -> Deferred[ParentTrust]:
        self.trust_calls += 1
        return self.trust_result()

    def registration(self, **kw: Any) -> Registration:
        kw.setdefault("bootstrap_token", BOOTSTRAP)
        kw.setdefault("rng", random.Random(7))
        return Registration(
            self.clock,
            self.child,
            self.parent_api,
            kw.pop("parent_url", PARENT_URL),
            self.trust,
            **kw,
        )

    def set_result(self, result: str, message: str = "", token: str = "sa-1") -> None:
        """
        Answer the request as the hub does: an approval seals C{token} to the
        key in the request's spec, naming the namespace made for the cluster.
        """
        status: dict[str, Any] = {"result": result, "errorMessage": message}
        if result == "Approved":
            self.valid_tokens.add(token)
            crr = self.parent.get(CLUSTER_REGISTRATION_REQUESTS, self.crr).result  # type: ignore[attr-defined]
            context = sealing_context(self.cluster_id, crr["metadata"]["uid"])
            status.update(
                dedicatedNamespace=self.namespace(),
                managedClusterName="mc-name",
                sealedToken=seal(crr["spec"]["publicKey"], token.encode(), context),
                caCertificate=base64.b64encode(CA_PEM).decode(),
            )
        self.parent.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            self.crr,
            {"status": status},
            None,
            subresource="status",
        )

    def namespace(self, name: str = "clusternet-abcde") -> str:
        """
        The dedicated namespace the hub made (labelled for the cluster ID).
        """
        if name not in self.namespaces:
            labels = {DEDICATED_FOR_LABEL: self.cluster_id}
            self.parent.create(
                NAMESPACES, {"metadata": {"name": name, "labels": labels}}
            )
            self.namespaces.add(name)
        return name

    def creates(self) -> int:
        return sum(
            1
            for method, plural, _ in self.parent.calls
            if method == "create" and plural == "clusterregistrationrequests"
        )

    def secret(self) -> dict[str, Any]:
        d = self.child.get(SECRETS, "parent-cluster", "edge-system")
        return d.result  # type: ignore[attr-defined,no-any-return]

    def advance(self, seconds: float, step: float = 1.0) -> None:
        for _ in range(int(seconds / step)):
            self.clock.advance(step)


def _decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


class RegistrationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.world = World()

    def registered(self, **kw: Any) -> ParentCredentials:
        d = self.world.registration(**kw).register()
        self.world.advance(30)
        return self.successResultOf(d)

    def test_a_fresh_agent_creates_its_request_and_waits_for_approval(self) -> None:
        w = self.world
        d = w.registration(cluster_name="edge-1").register()
        self.assertNoResult(d)
        (crr,) = w.parent.objects(CLUSTER_REGISTRATION_REQUESTS)
        assert crr["metadata"]["name"] == w.crr
        assert crr["metadata"]["labels"] == {
            "clusters.clusternet.io/cluster-id": w.cluster_id,
            "clusters.clusternet.io/cluster-name": "edge-1",
            "clusters.clusternet.io/registered-by": "clusternet-agent",
        }
        key = load_private_key(_decoded(w.secret())["agent.key"])
        assert crr["spec"] == {
            "clusterId": w.cluster_id,
            "clusterName": "edge-1",
            "clusterType": "EdgeClusterSelfProvisioned",
            "publicKey": public_key_pem(key),
        }
        w.advance(60)
        self.assertNoResult(d)
        w.set_result("Approved")
        w.advance(11)
        creds = self.successResultOf(d)
        assert creds == ParentCredentials(
            parent_url=PARENT_URL,
            ca_pem=CA_PEM,
            source=MutableToken("sa-1"),
            namespace="clusternet-abcde",
            cluster_id=w.cluster_id,
            cluster_name="edge-1",
            managed_cluster_name="mc-name",
        )
        assert creds.token == "sa-1"
        assert "sa-1" not in repr(creds)
        assert w.made[0] == (BOOTSTRAP, CA_PEM, False)
        secret = w.secret()
        assert _decoded(secret) == {
            "ca.crt": CA_PEM,
            "token": b"sa-1",
            "namespace": b"clusternet-abcde",
            "parent-url": PARENT_URL.encode(),
            "agent.key": private_key_pem(key),
        }
        assert secret["metadata"]["labels"] == {
            "clusters.clusternet.io/bootstrapping": "credentials-auto",
            "clusters.clusternet.io/cluster-id": w.cluster_id,
            "clusters.clusternet.io/cluster-name": "edge-1",
        }

    def test_polling_a_pending_request_backs_off_to_a_cap(self) -> None:
        w = self.world
        self.world.registration().register()
        w.advance(600)
        gets = [c for c in w.parent.calls if c[0] == "get"]
        # 0.5 s growing by 1.5 to at most 10 s: about 60 polls in 10 minutes,
        # not 1200 (every 0.5 s) and not a handful (unbounded growth).
        assert 55 <= len(gets) <= 130

    def test_a_restarted_agent_reuses_its_credentials(self) -> None:
        w = self.world
        d = w.registration().register()
        w.set_result("Approved")
        w.advance(30)
        first = self.successResultOf(d)
        creates, trusts = w.creates(), w.trust_calls
        again = self.registered()
        assert again == first
        assert w.creates() == creates == 1
        assert w.trust_calls == trusts == 1
        assert w.made[-1] == ("sa-1", CA_PEM, False)

    def test_the_generated_name_is_stable_across_restarts(self) -> None:
        w = self.world
        d = w.registration(rng=random.Random(1)).register()
        w.set_result("Approved")
        w.advance(30)
        first = self.successResultOf(d)
        assert first.cluster_name.startswith("clusternet-cluster-")
        # The stored token stops working: the agent registers again, and a
        # different random generator must not rename the cluster.
        w.valid_tokens.discard("sa-1")
        w.set_result("Approved", token="sa-2")
        again = self.registered(rng=random.Random(99))
        assert again.cluster_name == first.cluster_name
        assert again.token == "sa-2"

    def test_rejected_stored_credentials_register_again_without_a_second_request(
        self,
    ) -> None:
        w = self.world
        d = w.registration().register()
        w.set_result("Approved", token="sa-1")
        w.advance(30)
        self.successResultOf(d)
        w.valid_tokens.discard("sa-1")  # 401 for the stored token
        w.set_result("Approved", token="sa-2")
        creds = self.registered()
        assert creds.token == "sa-2"
        assert w.creates() == 1
        assert _decoded(w.secret())["token"] == b"sa-2"

    def test_a_changed_parent_url_registers_again(self) -> None:
        w = self.world
        d = w.registration().register()
        w.set_result("Approved")
        w.advance(30)
        self.successResultOf(d)
        self.registered(parent_url="https://other.example:6443")
        assert w.trust_calls == 2
        assert _decoded(w.secret())["parent-url"] == b"https://other.example:6443"

    def test_denied_stops_with_one_clear_error(self) -> None:
        w = self.world
        d = w.registration().register()
        w.set_result("Denied", "cluster ID is not allowed")
        w.advance(30)
        failure = self.failureResultOf(d, RegistrationDenied)
        assert "cluster ID is not allowed" in str(failure.value)
        calls = len(w.parent.calls)
        w.advance(600)
        assert len(w.parent.calls) == calls

    def test_failed_is_retried_until_approved(self) -> None:
        w = self.world
        d = w.registration().register()
        w.set_result("Failed", "namespace quota")
        w.advance(120)
        self.assertNoResult(d)
        w.set_result("Approved")
        w.advance(70)
        assert self.successResultOf(d).token == "sa-1"

    def test_a_refused_bootstrap_token_is_retried_with_backoff(self) -> None:
        w = self.world
        w.valid_tokens.clear()
        registration = w.registration()
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            d = registration.register()
            w.advance(300)
        finally:
            globalLogPublisher.removeObserver(events.append)
        self.assertNoResult(d)
        # One clear line, not one per attempt, and never a traceback.
        refused = [
            e for e in events if "refused the bootstrap token" in str(e.get("problem"))
        ]
        assert len(refused) == 1
        assert refused[0]["log_level"] == LogLevel.error
        assert BOOTSTRAP not in str(refused[0])
        assert not [e for e in events if "log_failure" in e]
        attempts = registration.attempts
        # 1, 2, 4, ... capped at 60 s with jitter: a handful of tries, not hundreds.
        assert 4 <= attempts <= 20
        w.valid_tokens.add(BOOTSTRAP)
        w.advance(70)
        w.set_result("Approved")
        w.advance(30)
        assert self.successResultOf(d).namespace == "clusternet-abcde"

    def test_a_forbidden_bootstrap_token_is_retried(self) -> None:
        w = self.world
        w.parent.fail_next("get", Forbidden(403, "Forbidden", "no"), times=3)
        d = w.registration().register()
        w.advance(60)
        w.set_result("Approved")
        w.advance(70)
        self.successResultOf(d)

    def test_failed_trust_is_retried(self) -> None:
        w = self.world
        w.trust_result = lambda: fail(BootstrapError("signature does not verify"))
        d = w.registration().register()
        w.advance(30)
        self.assertNoResult(d)
        assert not w.made
        w.trust_result = lambda: succeed(ParentTrust(None, True, "insecure"))
        w.advance(70)
        w.set_result("Approved")
        w.advance(30)
        creds = self.successResultOf(d)
        # The CA from the approved request replaces the insecure bootstrap.
        assert creds.ca_pem == CA_PEM
        assert not creds.insecure_skip_tls_verify
        assert w.made[0] == (BOOTSTRAP, None, True)

    def test_an_unreachable_child_is_retried(self) -> None:
        w = self.world
        w.child.fail_next("get", KubeUnavailable("connection refused"), times=2)
        d = w.registration().register()
        w.advance(10)
        self.assertNoResult(d)
        w.set_result("Approved")
        w.advance(30)
        self.successResultOf(d)

    def test_the_key_is_stored_before_the_request_is_made(self) -> None:
        """
        A restart while the request waits must keep the key the request names:
        a failed write of the key is retried, and nothing is sent before.
        """
        w = self.world
        w.child.fail_next("create", Forbidden(403, "Forbidden", "no"))
        d = w.registration().register()
        assert w.creates() == 0
        w.advance(5)
        assert w.creates() == 1
        w.set_result("Approved")
        w.advance(30)
        assert self.successResultOf(d).token == "sa-1"

    def test_without_a_bootstrap_token_or_stored_credentials_it_is_an_error(
        self,
    ) -> None:
        d = self.world.registration(bootstrap_token=None).register()
        self.failureResultOf(d, RegistrationError)

    def test_a_malformed_cluster_id_override_is_an_error(self) -> None:
        d = self.world.registration(cluster_id="NOT-A-UUID").register()
        failure = self.failureResultOf(d, RegistrationError)
        assert "--cluster-id" in str(failure.value)

    def test_a_cluster_id_override_is_used(self) -> None:
        w = self.world
        other = str(uuid.uuid4())
        w.registration(cluster_id=other).register()
        (crr,) = w.parent.objects(CLUSTER_REGISTRATION_REQUESTS)
        assert crr["spec"]["clusterId"] == other

    def test_cancelling_stops_the_loop(self) -> None:
        w = self.world
        d = w.registration().register()
        d.cancel()
        self.failureResultOf(d)
        calls = len(w.parent.calls)
        w.advance(300)
        assert len(w.parent.calls) == calls


class ClusterIDTests(SynchronousTestCase):
    def test_the_id_is_the_kube_system_uid(self) -> None:
        w = World()
        d = Deferred.fromCoroutine(discover_cluster_id(w.child))
        assert self.successResultOf(d) == w.cluster_id

    def test_a_forbidden_kube_system_asks_for_the_override(self) -> None:
        w = World()
        w.child.fail_next("get", Forbidden(403, "Forbidden", "no"))
        d = Deferred.fromCoroutine(discover_cluster_id(w.child))
        assert "--cluster-id" in str(self.failureResultOf(d, ClusterIDError).value)

    def test_a_missing_kube_system_is_an_error(self) -> None:
        child = testing.MemoryKubeAPI()
        d = Deferred.fromCoroutine(discover_cluster_id(child))
        self.failureResultOf(d, ClusterIDError)


class RegistrationSecretTests(SynchronousTestCase):
    def test_url_and_token_are_read(self) -> None:
        child = testing.MemoryKubeAPI()
        child.create(
            SECRETS,
            {
                "metadata": {"name": "clusternet-agent-cluster-registration"},
                "data": {
                    "parentURL": base64.b64encode(PARENT_URL.encode()).decode(),
                    "regToken": base64.b64encode(BOOTSTRAP.encode()).decode(),
                },
            },
            "edge-system",
        )
        result = self.successResultOf(read_registration_secret(child))
        assert result == (PARENT_URL, BOOTSTRAP)

    def test_a_missing_secret_gives_nothing(self) -> None:
        result = self.successResultOf(read_registration_secret(testing.MemoryKubeAPI()))
        assert result == (None, None)


@given(
    attempt=st.integers(0, 10_000),
    initial=st.floats(0.01, 10),
    maximum=st.floats(1, 600),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_capped_and_jittered(
    attempt: int, initial: float, maximum: float, seed: int
) -> None:
    backoff = RetryBackoff(initial, maximum, 2.0, 0.5, random.Random(seed))
    delay = backoff.delay(attempt)
    ceiling = min(maximum, initial * 2.0 ** min(attempt, 64))
    assert ceiling * 0.5 <= delay <= ceiling


def test_backoff_without_jitter_doubles() -> None:
    backoff = RetryBackoff(1.0, 8.0, 2.0, 0.0)
    assert [backoff.delay(n) for n in range(6)] == [1, 2, 4, 8, 8, 8]


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "x" * 61])
def test_an_invalid_cluster_name_is_refused_at_once(name: str) -> None:
    from clusternet.apis import InvalidName

    with pytest.raises(InvalidName):
        World().registration(cluster_name=name)


class OwnershipTests(SynchronousTestCase):
    """
    A cluster ID belongs to the key that registered it; the agent believes only
    what the hub made for it.
    """

    def setUp(self) -> None:
        self.world = World()

    def test_a_second_agent_with_another_key_gets_nothing(self) -> None:
        w = self.world
        first = w.registration(cluster_name="edge-1").register()
        w.advance(2)
        w.set_result("Approved")
        w.advance(11)
        assert self.successResultOf(first).token == "sa-1"
        # Another box claims the same cluster ID (the kube-system UID is no
        # secret), with the bootstrap token and a key of its own.
        thief = World()
        thief.clock = w.clock
        thief.parent = w.parent
        thief.cluster_id, thief.crr = w.cluster_id, w.crr
        errors: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.error:
                errors.append(str(event.get("problem", "")))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        d = thief.registration(cluster_id=w.cluster_id).register()
        thief.advance(120)
        self.assertNoResult(d)
        assert any("registered in the parent with another key" in e for e in errors)
        assert w.creates() == 1
        d.cancel()
        self.failureResultOf(d)

    def test_an_approval_naming_a_namespace_not_made_for_the_cluster_is_refused(
        self,
    ) -> None:
        w = self.world
        d = w.registration().register()
        w.advance(2)
        w.namespaces.add("kube-system")
        w.parent.create(NAMESPACES, {"metadata": {"name": "kube-system"}})
        crr = w.parent.get(CLUSTER_REGISTRATION_REQUESTS, w.crr).result  # type: ignore[attr-defined]
        context = sealing_context(w.cluster_id, crr["metadata"]["uid"])
        w.valid_tokens.add("forged")
        w.parent.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            w.crr,
            {
                "status": {
                    "result": "Approved",
                    "dedicatedNamespace": "kube-system",
                    "sealedToken": seal(crr["spec"]["publicKey"], b"forged", context),
                }
            },
            None,
            subresource="status",
        )
        w.advance(60)
        self.assertNoResult(d)
        w.set_result("Approved")
        w.advance(120)
        assert self.successResultOf(d).namespace == "clusternet-abcde"

    def test_a_restart_while_pending_keeps_the_key(self) -> None:
        w = self.world
        d = w.registration().register()
        w.advance(2)
        key = _decoded(w.secret())["agent.key"]
        d.cancel()
        self.failureResultOf(d)
        again = w.registration().register()
        w.advance(2)
        assert _decoded(w.secret())["agent.key"] == key
        w.set_result("Approved")
        w.advance(20)
        assert self.successResultOf(again).token == "sa-1"
        assert w.creates() == 1


class CredentialRefreshTests(SynchronousTestCase):
    def test_the_agent_takes_the_next_sealed_token(self) -> None:
        w = World()
        d = w.registration().register()
        w.advance(2)
        w.set_result("Approved", token="sa-1")
        w.advance(11)
        credentials = self.successResultOf(d)
        stored: list[str] = []

        async def store(c: ParentCredentials) -> None:
            stored.append(c.token)

        refresh = CredentialRefresh(
            w.clock,
            credentials,
            lambda token: w.parent_api(token, None, False),
            BOOTSTRAP,
            store,
            interval=30.0,
        )
        refresh.startService()
        w.advance(31)
        assert credentials.token == "sa-1" and refresh.changes == 0
        w.set_result("Approved", token="sa-2")
        # The old token revoked: the request is read with the bootstrap token.
        w.valid_tokens.discard("sa-1")
        w.advance(31)
        assert credentials.token == "sa-2"
        assert stored == ["sa-2"]
        refresh.stopService()
