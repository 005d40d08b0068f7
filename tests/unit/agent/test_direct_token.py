"""
The direct proxy's use of the agent's child token: the current value on every
request, a reload when the child answers 401 to it, and a periodic check that
stops with the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from clusternet.agent._direct import ChildProxyResource, DirectServer
from clusternet.agent._identity import IdentityPolicy
from clusternet.kube import ConnectionInfo, ITokenSource, TokenRefresher
from clusternet.kube.testing import ImmediateReactor
from clusternet.proxy import ReverseProxy, Route


class QueuedThreadPool:
    """
    Holds each call until the test runs it, as a pool thread would.
    """

    def __init__(self) -> None:
        self.queue: list[Callable[[], None]] = []

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, object], None],
        func: Callable[..., object],
        *args: object,
        **kw: object,
    ) -> None:
        self.queue.append(lambda: onResult(True, func(*args, **kw)))

    def run_one(self) -> None:
        self.queue.pop(0)()


@implementer(ITokenSource)
class FakeSource:
    """
    A rotating token: each reload gives C{t-<n>}.
    """

    rotates = True

    def __init__(self) -> None:
        self.value = "t-0"
        self.reloads = 0

    def current(self) -> str | None:
        return self.value

    def reload(self) -> None:
        self.reloads += 1
        self.value = f"t-{self.reloads}"


class Request(DummyRequest):
    """
    A DummyRequest with the C{code} of a real twisted.web request.
    """

    @property
    def code(self) -> int:
        return self.responseCode or 200


def request(**headers: str) -> Request:
    made = Request([b"api", b"v1", b"pods"])
    made.uri = b"/api/v1/pods"
    for name, value in headers.items():
        made.requestHeaders.addRawHeader(name.replace("_", "-"), value.encode())
    return made


def alice() -> Request:
    return request(X_Remote_User="alice", X_Remote_Group="devs")


def authorization(route: Route) -> list[bytes]:
    headers: Any = route.set_headers or {}
    return list(headers.get(b"Authorization", []))


class ChildProxyTokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ImmediateReactor()
        self.pool = QueuedThreadPool()
        self.source = FakeSource()
        self.refresher = TokenRefresher(
            self.clock, self.source, interval=2, threadpool=self.pool
        )
        self.child = ConnectionInfo(server="http://127.0.0.1:6443", token=self.source)

    def resource(self, mode: str = "impersonate") -> ChildProxyResource:
        proxy = ReverseProxy(self.clock, forwarded_headers=False)
        return ChildProxyResource(
            proxy, self.child, IdentityPolicy(mode=mode), self.refresher
        )

    def route(self, resource: ChildProxyResource, made: Request) -> Route:
        chosen = resource.route(cast(Any, made))
        assert isinstance(chosen, Route)
        return chosen

    def test_every_request_uses_the_current_token(self) -> None:
        resource = self.resource()
        assert authorization(self.route(resource, alice())) == [b"Bearer t-0"]
        self.source.value = "rotated"
        assert authorization(self.route(resource, alice())) == [b"Bearer rotated"]
        assert self.source.reloads == 0  # reading the token does no I/O

    def test_a_401_to_the_agent_token_reloads_it_for_the_next_request(self) -> None:
        resource = self.resource()
        refused = alice()
        self.route(resource, refused)
        refused.setResponseCode(401)
        refused.finish()
        assert len(self.pool.queue) == 1  # reloading on a thread
        self.pool.run_one()
        assert authorization(self.route(resource, alice())) == [b"Bearer t-1"]

    def test_other_answers_do_not_reload(self) -> None:
        resource = self.resource()
        for code in (200, 403, 404):
            answered = alice()
            self.route(resource, answered)
            answered.setResponseCode(code)
            answered.finish()
        lost = alice()
        self.route(resource, lost)
        lost.processingFailed(Exception("client went away"))
        assert self.pool.queue == []

    def test_a_401_to_the_callers_own_token_does_not_reload(self) -> None:
        resource = self.resource(mode="token")
        made = request(
            X_Remote_User="alice", X_Remote_Extra_Clusternet_Token="callers-own"
        )
        chosen = self.route(resource, made)
        assert authorization(chosen) == [b"Bearer callers-own"]
        made.setResponseCode(401)
        made.finish()
        assert self.pool.queue == []


class DirectServerTokenTests(SynchronousTestCase):
    def test_checks_the_token_periodically_until_closed(self) -> None:
        clock = ImmediateReactor()
        pool = QueuedThreadPool()
        source = FakeSource()
        server = DirectServer(clock, token_check_interval=3, threadpool=pool)
        child = ConnectionInfo(server="http://127.0.0.1:6443", token=source)
        factories: list[Callable[[], Any]] = [
            server(child, IdentityPolicy()),
            server(child, IdentityPolicy()),  # a second session: same refresher
        ]
        assert len(factories) == 2
        clock.advance(3)
        assert len(pool.queue) == 1
        pool.run_one()
        assert source.current() == "t-1"
        self.successResultOf(server.close())
        clock.advance(30)
        assert pool.queue == []

    def test_a_static_token_is_not_checked(self) -> None:
        clock = ImmediateReactor()
        pool = QueuedThreadPool()
        server = DirectServer(clock, token_check_interval=1, threadpool=pool)
        server(
            ConnectionInfo(server="http://127.0.0.1:80", token="x"), IdentityPolicy()
        )
        clock.advance(5)
        assert pool.queue == []
        self.successResultOf(server.close())
