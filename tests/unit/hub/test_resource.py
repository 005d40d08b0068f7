"""
The hub's HTTP front, in memory: authentication first, then discovery, sockets
and the Status errors a user can act on.
"""

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
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

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
BASE = "https://hub.example/apis/proxies.clusternet.io/v1alpha1"
USERS = {
    "alice-token": User("alice", groups=("system:authenticated",)),
    "eve-token": User("eve"),
}


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(USERS.get(token))


@implementer(IAccessReviewer)
class OnlyAlice:
    def __init__(self) -> None:
        self.asked: list[RequestAttributes] = []

    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        self.asked.append(attributes)
        return succeed((user.name == "alice", ""))


class FakeSession:
    stream_count = 2

    def go_away(self, message: str) -> None:
        pass


class HubResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1795719600)
        self.registry = SocketRegistry(self.clock)
        self.reviews = OnlyAlice()
        self.proxied: list[Any] = []
        resource = HubResource(
            self.clock,
            Authenticator(AuthConfig(), Tokens(), self.clock),
            CachingAuthorizer(self.reviews, self.clock),
            self.registry,
            HealthChecks(),
            proxy=self._proxy,
        )
        self.treq = StubTreq(resource)

    def _proxy(self, request: Any, user: User, route: Any) -> Deferred[None]:
        self.proxied.append((user.name, route))
        request.setResponseCode(200)
        request.write(b"proxied")
        request.finish()
        return succeed(None)

    def get(
        self, url: str, token: str | None = "alice-token", **headers: str
    ) -> tuple[int, Any, Any]:
        hdrs = {k.replace("_", "-"): [v] for k, v in headers.items()}
        if token:
            hdrs["Authorization"] = [f"Bearer {token}"]
        response = self.successResultOf(self.treq.get(url, headers=hdrs))
        body = self.successResultOf(response.content())
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body
        return response.code, parsed, response.headers

    def test_no_credentials_is_401_status(self) -> None:
        code, body, _ = self.get(BASE, token=None)
        assert code == 401
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"

    def test_forged_remote_user_without_certificate_is_401(self) -> None:
        code, _, _ = self.get(
            BASE,
            token=None,
            X_Remote_User="system:admin",
            X_Remote_Group="system:masters",
        )
        assert code == 401

    def test_probes_need_no_credentials(self) -> None:
        code, body, _ = self.get("https://hub.example/healthz", token=None)
        assert (code, body) == (200, b"ok")

    def test_discovery_documents(self) -> None:
        code, body, _ = self.get(BASE)
        assert code == 200 and body["groupVersion"] == "proxies.clusternet.io/v1alpha1"
        code, body, _ = self.get("https://hub.example/apis")
        assert body["kind"] == "APIGroupList"
        code, body, headers = self.get(
            "https://hub.example/apis",
            Accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        assert body["kind"] == "APIGroupDiscoveryList"
        assert headers.getRawHeaders(b"content-type")[0].startswith(
            b"application/json;g=apidiscovery.k8s.io;v=v2"
        )
        for path in (
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/apis/proxies.clusternet.io/v1alpha1",
        ):
            code, body, _ = self.get("https://hub.example" + path)
            assert code == 200, path
        code, body, _ = self.get("https://hub.example/api/v1/pods")
        assert code == 404 and body["kind"] == "Status"

    def test_socket_list_needs_rbac(self) -> None:
        code, body, _ = self.get(BASE + "/sockets", token="eve-token")
        assert code == 403
        assert 'User "eve" cannot list resource "sockets"' in body["message"]

    def test_socket_list_and_table(self) -> None:
        self.registry.attach(ID, FakeSession(), "127.0.0.1:40000", "agent")
        code, body, _ = self.get(BASE + "/sockets")
        assert code == 200 and [i["metadata"]["name"] for i in body["items"]] == [ID]
        code, body, _ = self.get(
            BASE + "/sockets", Accept="application/json;as=Table;v=v1;g=meta.k8s.io"
        )
        assert body["kind"] == "Table"
        assert body["rows"][0]["cells"][:3] == [ID, "127.0.0.1:40000", 2]

    def test_get_unknown_socket_is_404(self) -> None:
        code, body, _ = self.get(f"{BASE}/sockets/{ID}")
        assert code == 404 and body["reason"] == "NotFound"

    def test_proxy_is_authorized_on_sockets_proxy_with_the_cluster_name(self) -> None:
        code, _, _ = self.get(
            f"{BASE}/sockets/{ID}/proxy/direct/api", token="eve-token"
        )
        assert code == 403
        assert self.reviews.asked[-1] == RequestAttributes(
            "get", "sockets", ID, subresource="proxy"
        )

    def test_proxy_to_unknown_cluster_is_404(self) -> None:
        code, _body, _ = self.get(f"{BASE}/sockets/{ID}/proxy/direct/api")
        assert code == 404

    def test_proxy_to_disconnected_cluster_is_503_with_advice(self) -> None:
        self.registry.known.add(ID)
        code, body, _ = self.get(f"{BASE}/sockets/{ID}/proxy/direct/api")
        assert code == 503
        assert "agent is not connected" in body["message"]

    def test_proxy_to_connected_cluster_reaches_the_proxy(self) -> None:
        self.registry.attach(ID, FakeSession(), "p", "agent")
        code, body, _ = self.get(
            f"{BASE}/sockets/{ID}/proxy/https/10.0.0.1:6443/version"
        )
        assert (code, body) == (200, b"proxied")
        assert self.proxied[0][0] == "alice"
        assert self.proxied[0][1].path == "/version"

    def test_malformed_proxy_path_is_404(self) -> None:
        code, body, _ = self.get(f"{BASE}/sockets/{ID}/proxy/ftp/x/")
        assert code == 404 and "unsupported proxy scheme" in body["message"]
