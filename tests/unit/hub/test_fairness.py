"""
Each user's fair share of a cluster's tunnel streams: the budget itself (a
state machine over any sequence of takes and gives back), and the hub's
answer through its HTTP front: 429 with Retry-After for the user at their cap,
while another user still gets through, and the refusals in /metrics.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)
from prometheus_client import CollectorRegistry, generate_latest

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

import clusternet.hub
from clusternet.health import HealthChecks
from clusternet.hub._auth import (
    AuthConfig,
    Authenticator,
    CachingAuthorizer,
    IAccessReviewer,
    ITokenReviewer,
    RequestAttributes,
    User,
)
from clusternet.hub._fairness import (
    CLUSTER_FULL,
    USER_LIMIT,
    StreamBudget,
    StreamRefused,
    StreamSlot,
    coerce_stream_reserve,
    coerce_streams_per_user,
    stream_limits,
)
from clusternet.hub._options import HubOptions
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.tunnel import Hello

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
OTHER = "7c1e2d3f-aaaa-4bbb-8ccc-ddddeeeeffff"
BASE = "https://hub.example/apis/proxies.clusternet.io/v1alpha1"
WATCH = f"{BASE}/sockets/{ID}/proxy/https/10.0.0.1:6443/api/v1/pods?watch=1"


# -- the limits ------------------------------------------------------------------


def test_defaults_for_the_usual_session() -> None:
    limits = stream_limits(1024, None)
    assert (limits.limit, limits.per_user, limits.reserve) == (1024, 256, 32)


def test_small_sessions_keep_a_smaller_reserve_and_a_cap_of_at_least_one() -> None:
    assert stream_limits(16, None).reserve == 2
    assert stream_limits(16, None).per_user == 4
    assert stream_limits(1, None) == stream_limits(1, 5)
    assert stream_limits(1, None).per_user == 1
    assert stream_limits(1, None).reserve == 0


@given(
    limit=st.integers(1, 65536),
    per_user=st.none() | st.integers(1, 100_000),
    reserve=st.integers(0, 100_000),
)
def test_the_cap_never_eats_into_the_reserve(
    limit: int, per_user: int | None, reserve: int
) -> None:
    limits = stream_limits(limit, per_user, reserve)
    assert 0 <= limits.reserve <= min(reserve, limit // 8)
    assert 1 <= limits.per_user <= limit - limits.reserve
    if per_user is not None:
        assert limits.per_user <= per_user


def test_flags_parse_and_reject_nonsense() -> None:
    assert coerce_streams_per_user("auto") is None
    assert coerce_streams_per_user("12") == 12
    assert coerce_stream_reserve("0") == 0
    for bad in ("0", "-1", "many"):
        try:
            coerce_streams_per_user(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)
    for bad in ("-1", "x"):
        try:
            coerce_stream_reserve(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)


def test_hub_options_defaults_and_values() -> None:
    options = HubOptions()
    options.parseOptions([])
    assert options["max-streams-per-user"] is None
    assert options["stream-reserve"] == 32
    assert options["stream-metrics-per-cluster"] is False
    options = HubOptions()
    options.parseOptions(
        [
            "--max-streams-per-user=64",
            "--stream-reserve=8",
            "--stream-metrics-per-cluster=true",
        ]
    )
    assert options["max-streams-per-user"] == 64
    assert options["stream-reserve"] == 8
    assert options["stream-metrics-per-cluster"] is True


def test_exported_from_the_package() -> None:
    assert clusternet.hub.StreamBudget is StreamBudget
    assert clusternet.hub.StreamRefused is StreamRefused


# -- who is who ------------------------------------------------------------------


def test_token_mode_callers_are_told_apart_by_their_credential() -> None:
    budget = StreamBudget()
    carol = User("clusternet", extra={"clusternet-token": ("carols-token",)})
    dan = User("clusternet", extra={"clusternet-token": ("dans-token",)})
    cert = User("clusternet", extra={"clusternet-certificate": ("PEM",)})
    keys = {budget.key_for(u) for u in (carol, dan, cert)}
    assert len(keys) == 3
    assert budget.key_for(carol) == budget.key_for(
        User("clusternet", groups=("x",), extra={"clusternet-token": ("carols-token",)})
    )
    assert "carols-token" not in repr(budget.key_for(carol))
    # Keyed by this process's secret: no offline guess of a weak token.
    assert StreamBudget().key_for(carol) != budget.key_for(carol)


def test_other_users_are_their_name() -> None:
    budget = StreamBudget()
    alice = User("alice", extra={"acme.com/project": ("x",)})
    assert budget.key_for(alice) == ("alice", "")
    assert budget.key_for(alice) != budget.key_for(User("clusternet"))


# -- taking and giving back --------------------------------------------------------


def refusal(budget: StreamBudget, user: Hashable, limit: int) -> StreamRefused:
    try:
        budget.acquire(ID, user, limit)
    except StreamRefused as refused:
        return refused
    raise AssertionError("not refused")


def test_cap_then_reserve_then_full() -> None:
    budget = StreamBudget(max_per_user=3, reserve=1)
    slots = [budget.acquire(ID, "alice", 8) for _ in range(3)]
    refused = refusal(budget, "alice", 8)
    assert refused.reason == USER_LIMIT
    assert "--max-streams-per-user: 3 of 8" in refused.message
    assert ID in refused.message
    slots += [budget.acquire(ID, "bob", 8) for _ in range(3)]
    slots.append(budget.acquire(ID, "carol", 8))
    # Only the reserve is left: for those who hold none.
    assert refusal(budget, "carol", 8).reason == CLUSTER_FULL
    slots.append(budget.acquire(ID, "dave", 8))
    refused = refusal(budget, "erin", 8)
    assert refused.reason == CLUSTER_FULL
    assert "all 8 streams" in refused.message
    assert budget.refused == {USER_LIMIT: 1, CLUSTER_FULL: 2}
    # Another cluster is another budget.
    budget.acquire(OTHER, "erin", 8).release()
    slots[0].release()
    slots[0].release()
    assert budget.held(ID, "alice") == 2
    assert refusal(budget, "alice", 8).reason == CLUSTER_FULL
    budget.acquire(ID, "erin", 8)
    for slot in slots[1:]:
        slot.release()
    assert budget.held(ID) == 1
    assert budget.holders() == {ID: 1}


def test_streams_the_session_has_open_count_too() -> None:
    budget = StreamBudget(max_per_user=3, reserve=1)
    # Eight streams open (idle in a pool, still closing): nothing is free.
    assert refusal_busy(budget, busy=8).reason == CLUSTER_FULL
    # Seven: the last one, which a user who holds none may take.
    budget.acquire(ID, "alice", 8, busy=7)


def refusal_busy(budget: StreamBudget, busy: int) -> StreamRefused:
    try:
        budget.acquire(ID, "alice", 8, busy=busy)
    except StreamRefused as refused:
        return refused
    raise AssertionError("not refused")


def test_sessions_of_one_cluster_are_counted_apart() -> None:
    """
    A replaced session drains its streams; the new one starts empty.
    """
    budget = StreamBudget(max_per_user=2, reserve=0)
    old, new = object(), object()
    for _ in range(2):
        budget.acquire(ID, "alice", 2, session=old)
    for _ in range(2):
        budget.acquire(ID, "alice", 2, session=new)
    assert budget.held(ID, "alice") == 4
    assert budget.holders() == {ID: 1}


def test_refusal_status_and_retry_after() -> None:
    budget = StreamBudget(max_per_user=1, reserve=0, retry_after=3)
    budget.acquire(ID, "alice", 4)
    refused = refusal(budget, "alice", 4)
    status = json.loads(refused.status())
    assert status["code"] == 429
    assert status["reason"] == "TooManyRequests"
    assert status["details"] == {
        "name": ID,
        "group": "proxies.clusternet.io",
        "kind": "sockets",
        "retryAfterSeconds": 3,
    }
    assert refused.retry_after == 3


def test_metrics() -> None:
    budget = StreamBudget(max_per_user=1, reserve=0)
    registry = CollectorRegistry()
    registry.register(budget.collector())
    budget.acquire(ID, "alice", 4)
    budget.acquire(ID, "bob", 4)
    budget.acquire(OTHER, "alice", 4)
    refusal(budget, "alice", 4)
    text = generate_latest(registry).decode()
    assert 'clusternet_hub_streams_refused_total{reason="user_limit"} 1.0' in text
    assert 'clusternet_hub_streams_refused_total{reason="cluster_full"} 0.0' in text
    assert "clusternet_hub_stream_users 3.0" in text
    assert "clusternet_hub_streams_held 3.0" in text
    assert "alice" not in text
    per_cluster = StreamBudget(per_cluster_metrics=True)
    registry = CollectorRegistry()
    registry.register(per_cluster.collector())
    per_cluster.acquire(ID, "alice", 4)
    text = generate_latest(registry).decode()
    assert f'clusternet_hub_stream_users{{cluster="{ID}"}} 1.0' in text
    assert f'clusternet_hub_streams_held{{cluster="{ID}"}} 1.0' in text


# -- any sequence ------------------------------------------------------------------

USERS = ("alice", "bob", "carol", "dave", "erin")


@define
class Held:
    user: str
    slot: StreamSlot | None


@define
class Model:
    held: dict[str, int] = field(factory=dict)

    @property
    def total(self) -> int:
        return sum(self.held.values())


class BudgetMachine(RuleBasedStateMachine):
    """
    Any sequence of takes and gives back, by several users, on one session:
    nobody exceeds the cap, the session never exceeds its limit, a user who
    holds none gets a stream while any is free, counts follow the releases
    exactly and never go below zero.
    """

    slots = Bundle("slots")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.budget = StreamBudget()
        self.limit = 1
        self.released: list[StreamSlot] = []

    @initialize(
        limit=st.integers(1, 24),
        per_user=st.none() | st.integers(1, 30),
        reserve=st.integers(0, 6),
    )
    def setup(self, limit: int, per_user: int | None, reserve: int) -> None:
        self.budget = StreamBudget(per_user, reserve)
        self.limit = limit
        self.limits = self.budget.limits(limit)

    @rule(target=slots, user=st.sampled_from(USERS))
    def acquire(self, user: str) -> Any:
        holds = self.model.held.get(user, 0)
        free = self.limit - self.model.total
        try:
            slot = self.budget.acquire(ID, user, self.limit)
        except StreamRefused as refused:
            assert holds > 0 or free <= 0, "a user holding none was refused"
            if refused.reason == USER_LIMIT:
                assert holds >= self.limits.per_user
            else:
                assert free <= self.limits.reserve
            return Held(user, None)
        assert holds < self.limits.per_user
        assert free > self.limits.reserve or (holds == 0 and free > 0)
        self.model.held[user] = holds + 1
        return Held(user, slot)

    @rule(held=consumes(slots))
    def release(self, held: Held) -> None:
        if held.slot is None:
            return
        held.slot.release()
        self.model.held[held.user] -= 1
        if not self.model.held[held.user]:
            del self.model.held[held.user]
        self.released.append(held.slot)

    @rule()
    def release_again(self) -> None:
        if self.released:
            self.released[-1].release()

    @invariant()
    def counts_match(self) -> None:
        for user in USERS:
            held = self.budget.held(ID, user)
            assert held == self.model.held.get(user, 0)
            assert 0 <= held <= self.limits.per_user
        assert self.budget.held(ID) == self.model.total <= self.limit
        if not self.model.total:
            assert not self.budget._pools

    @invariant()
    def a_new_user_gets_one_while_any_is_free(self) -> None:
        if self.model.total < self.limit:
            slot = self.budget.acquire(ID, "newcomer", self.limit)
            slot.release()


BudgetMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60)
TestBudgetMachine = BudgetMachine.TestCase


# -- through the hub's front ---------------------------------------------------------

TOKENS = {
    "alice-token": User("alice", groups=("system:authenticated",)),
    "bob-token": User("bob", groups=("system:authenticated",)),
    "carol-token": User("clusternet", extra={"clusternet-token": ("carols-child",)}),
    "dan-token": User("clusternet", extra={"clusternet-token": ("dans-child",)}),
}


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(TOKENS.get(token))


@implementer(IAccessReviewer)
class AllowAll:
    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        return succeed((True, ""))


class HeldEndpoint:
    """
    Every connection a stream that answers only when the test says so.
    """

    def __init__(self, session: FakeSession) -> None:
        self._session = session

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 0))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        self._session.upstreams.append(protocol)
        return succeed(protocol)


class FakeSession:
    def __init__(self, max_streams: int) -> None:
        self.peer_hello = Hello(max_streams=max_streams)
        self.upstreams: list[Any] = []

    @property
    def stream_count(self) -> int:
        return sum(1 for p in self.upstreams if p.transport is not None)

    def go_away(self, message: str) -> None:
        pass

    def endpoint_for(self, target: str) -> HeldEndpoint:
        return HeldEndpoint(self)


def answer(upstream: Any) -> None:
    upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def lose(upstream: Any) -> None:
    upstream.connectionLost(Failure(ConnectionLost("tunnel lost")))


class HubRefusesBeyondTheShareTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = SocketRegistry(self.clock)
        self.session = FakeSession(max_streams=8)
        self.registry.attach(ID, self.session, "p", "agent")
        self.budget = StreamBudget(max_per_user=2, reserve=1)
        metrics = CollectorRegistry()
        metrics.register(self.budget.collector())
        self.proxy = ClusterProxy(self.clock, self.registry, self.budget)
        resource = HubResource(
            self.clock,
            Authenticator(AuthConfig(), Tokens(), self.clock),
            CachingAuthorizer(AllowAll(), self.clock),
            self.registry,
            HealthChecks(),
            proxy=self.proxy,
            metrics=metrics,
        )
        self.treq = StubTreq(resource)

    def start(self, token: str, url: str = WATCH) -> Deferred[Any]:
        return self.treq.get(url, headers={"Authorization": [f"Bearer {token}"]})

    def finished(self, pending: Deferred[Any]) -> tuple[int, Any, Any]:
        self.treq.flush()
        response = self.successResultOf(pending)
        body = self.successResultOf(response.content())
        return response.code, body, response.headers

    def test_the_user_at_their_cap_gets_429_and_another_user_gets_through(
        self,
    ) -> None:
        watches = [self.start("alice-token") for _ in range(2)]
        self.treq.flush()
        for watch in watches:
            self.assertNoResult(watch)
        assert len(self.session.upstreams) == 2

        code, body, headers = self.finished(self.start("alice-token"))
        assert code == 429
        assert headers.getRawHeaders(b"retry-after") == [b"1"]
        status = json.loads(body)
        assert status["reason"] == "TooManyRequests"
        assert status["details"]["retryAfterSeconds"] == 1
        assert "alice" in status["message"] and ID in status["message"]
        assert len(self.session.upstreams) == 2  # no stream was opened

        bobs = self.start("bob-token")
        self.treq.flush()
        self.assertNoResult(bobs)
        assert len(self.session.upstreams) == 3

        code, body, _ = self.finished(
            self.start("alice-token", "https://hub.example/metrics")
        )
        text = body.decode()
        assert 'clusternet_hub_streams_refused_total{reason="user_limit"} 1.0' in text
        assert "clusternet_hub_stream_users 2.0" in text
        assert "clusternet_hub_streams_held 3.0" in text

    def test_the_slot_comes_back_when_the_stream_ends_however_it_ends(self) -> None:
        watches = [self.start("alice-token") for _ in range(2)]
        self.treq.flush()
        first, second = self.session.upstreams
        answer(first)
        assert self.finished(watches[0])[:2] == (200, b"ok")
        assert self.budget.held(ID) == 1
        # The tunnel lost under the other: a 502, and the slot back.
        lose(second)
        assert self.finished(watches[1])[0] == 502
        assert self.budget.held(ID) == 0
        again = [self.start("alice-token") for _ in range(2)]
        self.treq.flush()
        for watch in again:
            self.assertNoResult(watch)
        assert self.budget.held(ID, ("alice", "")) == 2
        assert self.finished(self.start("alice-token"))[0] == 429

    def test_token_mode_callers_each_have_their_share(self) -> None:
        carols = [self.start("carol-token") for _ in range(2)]
        self.treq.flush()
        assert self.finished(self.start("carol-token"))[0] == 429
        dans = self.start("dan-token")
        self.treq.flush()
        self.assertNoResult(dans)
        for watch in carols:
            self.assertNoResult(watch)

    def test_the_reserve_is_for_users_who_hold_none(self) -> None:
        tokens = ["alice-token", "bob-token", "carol-token"]
        for token in tokens:
            for _ in range(2):
                self.start(token)
        self.treq.flush()
        assert self.budget.held(ID) == 6
        dans = self.start("dan-token")  # the last outside the reserve
        self.treq.flush()
        self.assertNoResult(dans)
        code, body, _ = self.finished(self.start("dan-token"))
        assert code == 429
        assert "kept for users who hold none" in json.loads(body)["message"]
        TOKENS["erin-token"] = User("erin")
        self.addCleanup(TOKENS.pop, "erin-token")
        erins = self.start("erin-token")
        self.treq.flush()
        self.assertNoResult(erins)
        assert self.budget.held(ID) == 8
        assert self.budget.refused == {USER_LIMIT: 0, CLUSTER_FULL: 1}
