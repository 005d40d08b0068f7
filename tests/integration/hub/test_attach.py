"""
Agents attach tunnels to the hub over real loopback WebSockets: only with the
right credentials and RBAC, a new attach replaces the old, and the hub reaches
targets through the agent's dial policy.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.server import Site
from zope.interface import implementer

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
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.hub._tunnels import TunnelAttach
from clusternet.tunnel import (
    AllowList,
    DialingAcceptor,
    Role,
    StreamOpenFailed,
    TunnelClosed,
    TunnelSession,
    UpgradeNotSupported,
    connect_upgrade,
    connect_websocket,
)

reactor: Any = _reactor
A = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
B = "11111111-2222-3333-4444-555555555555"
AGENTS = {
    "token-a": User(
        "system:serviceaccount:clusternet-aaaaa:clusternet-a",
        groups=("system:authenticated",),
    ),
}


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(AGENTS.get(token))


@implementer(IAccessReviewer)
class ClusterRoleOfA:
    """
    As the approver's ClusterRole: agent A may do anything on socket A only.
    """

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        return succeed(
            (user.name.endswith("clusternet-a") and attributes.name == A, "")
        )


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class Collect(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.got: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= 5 and not self.got.called:
            self.got.callback(self.received)


class AttachTests(TestCase):
    timeout = 30

    async def setup(self) -> None:
        self.registry = SocketRegistry(reactor)
        resource = HubResource(
            reactor,
            Authenticator(AuthConfig(), Tokens(), reactor),
            CachingAuthorizer(ClusterRoleOfA(), reactor),
            self.registry,
            HealthChecks(),
            attach=TunnelAttach(reactor, self.registry),
        )
        self.hub = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(resource)
        )
        self.addCleanup(self.hub.stopListening)
        self.echo = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Echo)
        )
        self.addCleanup(self.echo.stopListening)

    def agent_session(self) -> TunnelSession:
        acceptor = DialingAcceptor(
            AllowList([f"127.0.0.1:{self.echo.getHost().port}"]),
            lambda host, port: TCP4ClientEndpoint(reactor, host, port),
            reactor,
        )
        return TunnelSession(Role.DIALER, reactor, acceptor=acceptor, name="agent")

    def attach(self, cluster: str, token: str) -> Deferred[TunnelSession]:
        port = self.hub.getHost().port
        url = f"ws://127.0.0.1:{port}/apis/proxies.clusternet.io/v1alpha1/sockets/{cluster}"
        return connect_websocket(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            url,
            self.agent_session,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def wait_attached(self, cluster: str, count: int = 1) -> Any:
        for _ in range(200):
            if cluster in {i.cluster_id for i in self.registry.infos()}:
                return self.registry.session_for(cluster)
            await deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("never attached")

    async def test_agent_attaches_and_hub_reaches_allowed_target(self) -> None:
        await self.setup()
        agent = await self.attach(A, "token-a")
        self.addCleanup(agent.abort)
        session = await self.wait_attached(A)
        collect = Collect()
        stream_protocol = await session.endpoint_for(
            f"127.0.0.1:{self.echo.getHost().port}"
        ).connect(Factory.forProtocol(lambda: collect))
        stream_protocol.transport.write(b"hello")
        assert await collect.got == b"hello"
        stream_protocol.transport.loseConnection()

    async def test_target_outside_the_agents_policy_is_refused(self) -> None:
        await self.setup()
        agent = await self.attach(A, "token-a")
        self.addCleanup(agent.abort)
        session = await self.wait_attached(A)
        with self.assertRaises(StreamOpenFailed) as caught:
            await session.endpoint_for("127.0.0.1:22").connect(
                Factory.forProtocol(Protocol)
            )
        assert caught.exception.http_status == 403

    async def test_agent_of_cluster_a_cannot_attach_as_b(self) -> None:
        await self.setup()
        with self.assertRaises(TunnelClosed):
            await self.attach(B, "token-a")
        assert len(self.registry) == 0

    async def test_bad_token_cannot_attach(self) -> None:
        await self.setup()
        with self.assertRaises(TunnelClosed):
            await self.attach(A, "forged")
        assert len(self.registry) == 0

    async def test_second_attach_replaces_the_first_and_old_one_drains(self) -> None:
        await self.setup()
        first = await self.attach(A, "token-a")
        self.addCleanup(first.abort)
        old = await self.wait_attached(A)
        second = await self.attach(A, "token-a")
        self.addCleanup(second.abort)
        for _ in range(200):
            if self.registry.session_for(A) is not old:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert self.registry.session_for(A) is not old
        reason = await first.when_closed()
        assert reason
        assert len(self.registry) == 1


class UpgradeAttachTests(AttachTests):
    """
    The same, with the agent attaching through the tunnel's own HTTP upgrade
    (what agents ask for first) instead of WebSocket.
    """

    def attach(self, cluster: str, token: str) -> Deferred[TunnelSession]:
        port = self.hub.getHost().port
        url = f"http://127.0.0.1:{port}/apis/proxies.clusternet.io/v1alpha1/sockets/{cluster}"
        return connect_upgrade(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            url,
            self.agent_session,
            headers={"Authorization": f"Bearer {token}"},
        )

    async def test_a_refusal_says_why(self) -> None:
        await self.setup()
        with self.assertRaises(TunnelClosed) as caught:
            await self.attach(B, "token-a")
        message = str(caught.exception)
        assert "403 Forbidden" in message, message
        assert "sockets" in message, message
        with self.assertRaises(TunnelClosed) as caught:
            await self.attach(A, "forged")
        assert "401 Unauthorized" in str(caught.exception)
        assert not isinstance(caught.exception, UpgradeNotSupported)
        assert "forged" not in str(caught.exception)
