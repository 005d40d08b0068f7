"""
The whole data path on loopback: a user's request to the hub, down the
cluster's WebSocket tunnel, to the agent's direct server, to a child HTTP
server, and back, streaming both ways.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from clusternet.agent._acceptor import AgentAcceptor
from clusternet.agent._direct import direct_server
from clusternet.agent._identity import IdentityPolicy
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
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.hub._tunnels import TunnelAttach
from clusternet.kube import ConnectionInfo
from clusternet.proxy import StreamingSite
from clusternet.tunnel import AllowList, Role, TunnelSession, connect_websocket

reactor: Any = _reactor
ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
BASE = f"/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/direct"
USERS = {
    "agent-token": User(
        "system:serviceaccount:clusternet-x:agent", groups=("system:authenticated",)
    ),
    "alice-token": User(
        "alice", groups=("devs", "system:masters", "system:authenticated")
    ),
}
BIG = 50 * 1024 * 1024


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


class Identity(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        seen = {
            k.decode().lower(): [x.decode() for x in v]
            for k, v in request.requestHeaders.getAllRawHeaders()
        }
        return json.dumps({"path": request.uri.decode(), "headers": seen}).encode()


class Big(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> int:
        chunk = bytes(range(256)) * 256  # 64 KiB
        sent = [0]

        class Producer:
            def resumeProducing(self) -> None:
                while not request.finished and sent[0] < BIG:
                    request.write(chunk)
                    sent[0] += len(chunk)
                    if paused[0]:
                        return
                if sent[0] >= BIG and not request.finished:
                    request.unregisterProducer()
                    request.finish()

            def pauseProducing(self) -> None:
                paused[0] = True

            def stopProducing(self) -> None:
                sent[0] = BIG

        paused = [False]
        producer = Producer()
        original = producer.resumeProducing

        def resume() -> None:
            paused[0] = False
            original()

        producer.resumeProducing = resume  # type: ignore[method-assign]
        request.setHeader(b"content-length", b"%d" % BIG)
        request.registerProducer(producer, True)
        resume()
        return NOT_DONE_YET


class Upload(Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        data = request.content.read()
        return json.dumps(
            {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        ).encode()


class Events(Resource):
    """
    Sends one event, then the next only when the test says so.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.request: Any = None

    def render_GET(self, request: Any) -> int:
        self.request = request
        request.setHeader(b"content-type", b"application/json")
        request.write(b'{"type":"ADDED"}\n')
        return NOT_DONE_YET


class UpgradeEcho(Protocol):
    """
    A child that answers an Upgrade with 101 and then echoes.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.upgraded = False

    def dataReceived(self, data: bytes) -> None:
        if self.upgraded:
            self.transport.write(data)  # type: ignore[union-attr]
            return
        self.buffer += data
        if b"\r\n\r\n" in self.buffer:
            _, _, rest = self.buffer.partition(b"\r\n\r\n")
            self.upgraded = True
            self.transport.write(  # type: ignore[union-attr]
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n"
            )
            if rest:
                self.transport.write(rest)  # type: ignore[union-attr]


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


class ProxyPathTests(TestCase):
    timeout = 120

    async def setup(self, mode: str = "impersonate") -> None:
        child_root = Resource()
        self.events = Events()
        for name, resource in (
            (b"identity", Identity()),
            (b"big", Big()),
            (b"upload", Upload()),
            (b"events", self.events),
        ):
            child_root.putChild(name, resource)
        self.child = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(child_root)
        )
        self.addCleanup(self.child.stopListening)
        self.upgrade_child = await TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.1"
        ).listen(Factory.forProtocol(UpgradeEcho))
        self.addCleanup(self.upgrade_child.stopListening)

        self.registry = SocketRegistry(reactor)
        proxy = ClusterProxy(reactor, self.registry)
        hub = HubResource(
            reactor,
            Authenticator(AuthConfig(), Tokens(), reactor),
            CachingAuthorizer(AllowAll(), reactor),
            self.registry,
            HealthChecks(),
            attach=TunnelAttach(reactor, self.registry),
            proxy=proxy,
        )
        self.hub = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            StreamingSite(hub, reactor=reactor)
        )
        self.addCleanup(self.hub.stopListening)

        child_info = ConnectionInfo(
            server=f"http://127.0.0.1:{self.child.getHost().port}",
            token="agent-child-token",
        )
        server = direct_server(reactor)
        self.addCleanup(server.close)
        direct = server(child_info, IdentityPolicy(mode=mode))
        acceptor = AgentAcceptor(
            reactor,
            direct,
            AllowList([f"127.0.0.1:{self.upgrade_child.getHost().port}"]),
            lambda host: None,
        )
        port = self.hub.getHost().port
        self.agent = await connect_websocket(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", port),
            f"ws://127.0.0.1:{port}/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}",
            lambda: TunnelSession(
                Role.DIALER, reactor, acceptor=acceptor, name="agent"
            ),
            headers={"Authorization": "Bearer agent-token"},
        )
        self.addCleanup(self.agent.abort)
        self.addCleanup(proxy.proxy.close)
        for _ in range(300):
            if len(self.registry):
                break
            await deferLater(reactor, 0.01, lambda: None)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = Agent(reactor, pool=pool)

    def url(self, path: str) -> bytes:
        return f"http://127.0.0.1:{self.hub.getHost().port}{path}".encode()

    def headers(self, **extra: str) -> Headers:
        headers = Headers({b"Authorization": [b"Bearer alice-token"]})
        for k, v in extra.items():
            headers.addRawHeader(k.replace("_", "-").encode(), v.encode())
        return headers

    async def test_child_sees_the_impersonated_user_and_never_parent_credentials(
        self,
    ) -> None:
        await self.setup()
        response = await self.http.request(
            b"GET",
            self.url(BASE + "/identity?labelSelector=a%3Db"),
            self.headers(X_Remote_User="mallory", Impersonate_User="root"),
        )
        body = json.loads(await readBody(response))
        assert response.code == 200
        assert body["path"] == "/identity?labelSelector=a%3Db"
        headers = body["headers"]
        assert headers["impersonate-user"] == ["alice"]
        assert headers["impersonate-group"] == [
            "devs"
        ]  # no system:masters, no implicit groups
        assert headers["authorization"] == ["Bearer agent-child-token"]
        assert "x-remote-user" not in headers

    async def test_50mb_download_and_upload_byte_exact(self) -> None:
        await self.setup()
        response = await self.http.request(
            b"GET", self.url(BASE + "/big"), self.headers()
        )
        data = await readBody(response)
        assert response.code == 200
        assert len(data) == BIG
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256((bytes(range(256)) * 256) * (BIG // 65536)).digest()
        )
        payload = bytes(range(251)) * (BIG // 251)
        import io

        response = await self.http.request(
            b"POST",
            self.url(BASE + "/upload"),
            self.headers(),
            FileBodyProducer(io.BytesIO(payload)),
        )
        result = json.loads(await readBody(response))
        assert result == {
            "length": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }

    async def test_events_arrive_as_they_happen(self) -> None:
        await self.setup()
        response = await self.http.request(
            b"GET", self.url(BASE + "/events"), self.headers()
        )
        collect = Collect()
        response.deliverBody(collect)
        await collect.wait_for(b"ADDED")
        assert b"MODIFIED" not in collect.data
        self.events.request.write(b'{"type":"MODIFIED"}\n')
        await collect.wait_for(b"MODIFIED")
        self.events.request.finish()

    async def test_upgrade_carries_bytes_both_ways(self) -> None:
        await self.setup()
        target = f"127.0.0.1:{self.upgrade_child.getHost().port}"
        collect = Collect()
        client = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.hub.getHost().port
        ).connect(Factory.forProtocol(lambda: collect))
        client.transport.write(
            f"POST /apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/http/"
            f"{target}/exec HTTP/1.1\r\n"
            "Host: hub\r\nAuthorization: Bearer alice-token\r\nConnection: Upgrade\r\n"
            "Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n".encode()
        )
        await collect.wait_for(b"\r\n\r\n")
        assert collect.data.startswith(b"HTTP/1.1 101")
        client.transport.write(b"ping-through-the-tunnel")
        await collect.wait_for(b"ping-through-the-tunnel")
        client.transport.loseConnection()

    async def test_target_outside_policy_is_403_and_disconnected_cluster_503(
        self,
    ) -> None:
        await self.setup()
        response = await self.http.request(
            b"GET",
            self.url(
                f"/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/https/10.1.2.3:6443/api"
            ),
            self.headers(),
        )
        body = json.loads(await readBody(response))
        assert response.code == 403, body
        assert body["kind"] == "Status"
        self.agent.abort()
        for _ in range(300):
            if not len(self.registry):
                break
            await deferLater(reactor, 0.01, lambda: None)
        response = await self.http.request(
            b"GET", self.url(BASE + "/identity"), self.headers()
        )
        body = json.loads(await readBody(response))
        assert response.code == 503
        assert "not connected" in body["message"]

    async def test_token_mode_uses_the_callers_child_token(self) -> None:
        await self.setup(mode="token")
        USERS["carol-token"] = User(
            "clusternet", extra={"clusternet-token": ("carols-child-token",)}
        )
        response = await self.http.request(
            b"GET",
            self.url(BASE + "/identity"),
            Headers({b"Authorization": [b"Bearer carol-token"]}),
        )
        headers = json.loads(await readBody(response))["headers"]
        assert headers["authorization"] == ["Bearer carols-child-token"]
        assert "impersonate-user" not in headers
