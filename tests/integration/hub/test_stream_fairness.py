"""
Each user's fair share of a cluster's tunnel, on loopback: watches through
the hub, down a real WebSocket tunnel whose agent allows 8 streams, to a child
that holds them open. The user at their cap gets 429 with Retry-After while
others get through, the reserve lets in users who hold none, a stream comes
back when its watch ends or the tunnel goes, and /metrics counts the refusals.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, IResponse, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from clusternet.agent._acceptor import AgentAcceptor
from clusternet.agent._direct import direct_server
from clusternet.agent._identity import IdentityPolicy
from clusternet.health import HealthChecks, process_registry
from clusternet.hub._auth import (
    AuthConfig,
    Authenticator,
    CachingAuthorizer,
    IAccessReviewer,
    ITokenReviewer,
    RequestAttributes,
    User,
)
from clusternet.hub._fairness import StreamBudget
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.hub._tunnels import TunnelAttach
from clusternet.kube import ConnectionInfo
from clusternet.proxy import StreamingSite
from clusternet.tunnel import (
    AllowList,
    Role,
    SessionConfig,
    TunnelSession,
    connect_websocket,
)

reactor: Any = _reactor
ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
WATCH = f"/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/direct/watch"
NAMES = ("alice", "bob", "carol", "dave", "erin")
USERS = {f"{name}-token": User(name, groups=("devs",)) for name in NAMES}
USERS["agent-token"] = User("system:serviceaccount:clusternet-x:agent")


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(USERS.get(token))


@implementer(IAccessReviewer)
class AllowAll:
    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        return succeed((True, ""))


class Watches(Resource):
    """
    A child whose every GET is a watch: one event, then open until finished.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.open: list[Any] = []

    def render_GET(self, request: Any) -> int:
        self.open.append(request)
        request.notifyFinish().addBoth(lambda _: self.open.remove(request))
        request.setHeader(b"content-type", b"application/json")
        request.write(b'{"type":"ADDED"}\n')
        return NOT_DONE_YET


class UpgradeEcho(Protocol):
    """
    A child that answers an Upgrade with 101 and then echoes (an exec).
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.upgraded = False

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if self.upgraded:
            self.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            self.upgraded = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
            )


class Collect(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.waiting: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for needle, d in list(self.waiting):
            if needle in self.data:
                self.waiting.remove((needle, d))
                d.callback(None)

    def wait_for(self, needle: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if needle in self.data:
            d.callback(None)
        else:
            self.waiting.append((needle, d))
        return d


class FirstEvent(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.seen: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\n" in self.data and not self.seen.called:
            self.seen.callback(None)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        if not self.seen.called:
            self.seen.callback(None)
        self.ended.callback(None)


async def until(check: Any, what: str) -> None:
    for _ in range(500):
        if check():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


class StreamFairnessTests(TestCase):
    timeout = 60

    async def setup(self) -> None:
        self.child_watches = Watches()
        child = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(self.child_watches)
        )
        self.addCleanup(child.stopListening)
        self.exec_child = await TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1"
        ).listen(Factory.forProtocol(UpgradeEcho))
        self.addCleanup(self.exec_child.stopListening)

        self.registry = SocketRegistry(reactor)
        # Eight streams: one in the reserve (an eighth), three per user.
        self.budget = StreamBudget(max_per_user=3, reserve=4)
        self.proxy = ClusterProxy(reactor, self.registry, self.budget)
        hub = HubResource(
            reactor,
            Authenticator(AuthConfig(), Tokens(), reactor),
            CachingAuthorizer(AllowAll(), reactor),
            self.registry,
            HealthChecks(),
            attach=TunnelAttach(reactor, self.registry),
            proxy=self.proxy,
            metrics=process_registry(self.budget.collector()),
        )
        self.hub = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            StreamingSite(hub, reactor=reactor)
        )
        self.addCleanup(self.hub.stopListening)

        server = direct_server(reactor)
        self.addCleanup(server.close)
        direct = server(
            ConnectionInfo(
                server=f"http://127.0.0.1:{child.getHost().port}", token="agent-child"
            ),
            IdentityPolicy(mode="impersonate"),
        )
        acceptor = AgentAcceptor(
            reactor,
            direct,
            AllowList([f"127.0.0.1:{self.exec_child.getHost().port}"]),
            lambda host: None,
        )
        port = self.hub.getHost().port
        self.agent = await connect_websocket(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            f"ws://127.0.0.1:{port}/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}",
            lambda: TunnelSession(
                Role.DIALER,
                reactor,
                acceptor=acceptor,
                config=SessionConfig(max_streams=8),
                name="agent",
            ),
            headers={"Authorization": "Bearer agent-token"},
        )
        self.addCleanup(self.agent.abort)
        self.addCleanup(self.proxy.proxy.close)
        await until(lambda: len(self.registry), "the tunnel to attach")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = Agent(reactor, pool=pool)
        self.watching: list[FirstEvent] = []

    async def watch(self, user: str) -> IResponse:
        """
        Start a watch as C{user}; once it is open, leave it running.
        """
        response: IResponse = await self.http.request(
            b"GET",
            f"http://127.0.0.1:{self.hub.getHost().port}{WATCH}".encode(),
            Headers({b"Authorization": [f"Bearer {user}-token".encode()]}),
        )
        if response.code == 200:
            events = FirstEvent()
            response.deliverBody(events)
            await events.seen
            self.watching.append(events)
        return response

    async def refused(self, user: str) -> tuple[dict[str, Any], IResponse]:
        response = await self.watch(user)
        assert response.code == 429, response.code
        return json.loads(await readBody(response)), response

    async def test_a_fair_share_for_each_user_and_the_reserve_for_newcomers(
        self,
    ) -> None:
        await self.setup()
        for _ in range(3):
            assert (await self.watch("alice")).code == 200
        status, response = await self.refused("alice")
        assert response.headers.getRawHeaders(b"retry-after") == [b"1"]
        assert status["reason"] == "TooManyRequests"
        assert status["details"]["retryAfterSeconds"] == 1
        assert "--max-streams-per-user: 3 of 8" in status["message"]
        assert ID in status["message"]

        # Another user still gets through: their share, then the last stream
        # outside the reserve.
        for _ in range(3):
            assert (await self.watch("bob")).code == 200
        assert (await self.watch("carol")).code == 200
        status, _ = await self.refused("carol")
        assert "kept for users who hold none" in status["message"]
        # The reserve: for a user who holds none.
        assert (await self.watch("dave")).code == 200
        status, _ = await self.refused("erin")
        assert "all 8 streams" in status["message"]
        assert len(self.child_watches.open) == 8

        # A watch that ends gives its stream back.
        self.child_watches.open[0].finish()
        await self.watching[0].ended
        await until(lambda: self.budget.held(ID) == 7, "the stream back")
        assert (await self.watch("erin")).code == 200

        response = await self.http.request(
            b"GET",
            f"http://127.0.0.1:{self.hub.getHost().port}/metrics".encode(),
            Headers({b"Authorization": [b"Bearer bob-token"]}),
        )
        text = (await readBody(response)).decode()
        assert 'clusternet_hub_streams_refused_total{reason="user_limit"} 1.0' in text
        assert 'clusternet_hub_streams_refused_total{reason="cluster_full"} 2.0' in text
        assert "clusternet_hub_stream_users 5.0" in text
        assert "clusternet_hub_streams_held 8.0" in text

        # The tunnel lost: every stream back.
        self.agent.abort()
        for events in self.watching:
            await events.ended
        await until(lambda: self.budget.held(ID) == 0, "every stream back")
        assert not self.budget.holders()

    async def test_a_client_that_goes_away_gives_its_stream_back(self) -> None:
        await self.setup()
        for _ in range(3):
            assert (await self.watch("alice")).code == 200
        await self.refused("alice")
        first = self.watching[0]
        assert first.transport is not None
        first.transport.stopProducing()  # type: ignore[attr-defined]
        await first.ended
        await until(lambda: self.budget.held(ID) == 2, "the stream back")
        await until(lambda: len(self.child_watches.open) == 2, "the child to see it")
        assert (await self.watch("alice")).code == 200

    async def test_an_exec_holds_its_stream_for_its_whole_life(self) -> None:
        await self.setup()
        target = f"127.0.0.1:{self.exec_child.getHost().port}"
        collect = Collect()
        client = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.hub.getHost().port
        ).connect(Factory.forProtocol(lambda: collect))
        client.transport.write(
            f"POST /apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/http/"
            f"{target}/exec HTTP/1.1\r\n"
            "Host: hub\r\nAuthorization: Bearer alice-token\r\n"
            "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
            "".encode()
        )
        await collect.wait_for(b"\r\n\r\n")
        assert collect.data.startswith(b"HTTP/1.1 101")
        alice = self.budget.key_for(USERS["alice-token"])
        for _ in range(3):
            client.transport.write(b"keystroke")
            await deferLater(reactor, 0.05, lambda: None)
            assert self.budget.held(ID, alice) == 1
        await collect.wait_for(b"keystroke" * 3)
        client.transport.loseConnection()
        await until(lambda: self.budget.held(ID) == 0, "the stream back")
