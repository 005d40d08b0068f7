"""
The hub's HTTP front, in memory: authentication first, then discovery, sockets
and the Status errors a user can act on.
"""

import json
from typing import Any

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from zope.interface import implementer

from clusternet.apis import CLUSTER_NAME_LABEL, DEDICATED_FOR_LABEL
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
from clusternet.hub._health import ClusterHealth
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.kube import testing
from clusternet.kube._resources import MANAGED_CLUSTERS, NAMESPACES

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
B_ID = "0b8a3f4e-1111-4222-8333-444455556666"
C_ID = "7c1e2d3f-aaaa-4bbb-8ccc-ddddeeeeffff"
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


class HubFront(SynchronousTestCase):
    """
    The hub's resource over a registry, and a way to GET from it.
    """

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
        self.agent = RequestTraversalAgent(resource)

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


class HubResourceTests(HubFront):
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

    def test_methods_are_authorized_as_the_api_server_maps_them(self) -> None:
        """
        Methods are case-sensitive: a lower-case C{delete} or a C{PROPFIND} is
        authorized as itself (never as C{get}), and even when allowed, a child
        never sees it: 405.
        """
        self.registry.attach(ID, FakeSession(), "p", "agent")
        url = f"{BASE}/sockets/{ID}/proxy/direct/api/v1/namespaces/default"

        def send(method: bytes, token: str) -> tuple[int, bytes]:
            # Below treq, which upper-cases methods.
            response = self.successResultOf(
                self.agent.request(
                    method,
                    url.encode(),
                    Headers({b"Authorization": [f"Bearer {token}".encode()]}),
                )
            )
            return response.code, self.successResultOf(readBody(response))

        for method, verb in (
            (b"DELETE", "delete"),
            (b"delete", "delete"),
            (b"PROPFIND", "propfind"),
            (b"GET", "get"),
            (b"OPTIONS", "get"),
        ):
            assert send(method, "eve-token")[0] == 403, method
            assert self.reviews.asked[-1] == RequestAttributes(
                verb, "sockets", ID, subresource="proxy"
            )
        for method in (b"delete", b"PROPFIND"):
            code, body = send(method, "alice-token")
            assert (code, json.loads(body)["reason"]) == (405, "MethodNotAllowed")
        assert self.proxied == []

    def test_malformed_proxy_path_is_404(self) -> None:
        code, body, _ = self.get(f"{BASE}/sockets/{ID}/proxy/ftp/x/")
        assert code == 404 and "unsupported proxy scheme" in body["message"]


class ForeignManagedClusterSocketTests(HubFront):
    """
    The sockets the hub serves, with its ManagedCluster informers behind
    C{SocketRegistry.known}: cluster A (ID) wrote ManagedClusters in its own
    namespace claiming B (registered, not attached) and C (never registered),
    with forged status.
    """

    def setUp(self) -> None:
        super().setUp()
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        for namespace, cluster_id, name in (
            ("clusternet-aaaaa", ID, "edge-1"),
            ("clusternet-bbbbb", B_ID, "edge-2"),
        ):
            self.api.create(
                NAMESPACES,
                {
                    "metadata": {
                        "name": namespace,
                        "labels": {
                            DEDICATED_FOR_LABEL: cluster_id,
                            CLUSTER_NAME_LABEL: name,
                        },
                    }
                },
            )
            self.managed_cluster(namespace, name, cluster_id)
        self.managed_cluster("clusternet-aaaaa", "edge-2", B_ID)
        self.managed_cluster("clusternet-aaaaa", "edge-3", C_ID)
        self.health = ClusterHealth(
            self.clock,
            self.api,
            known=self.registry.known,
            lease_field_selector=None,
        )
        self.health._log = Logger(observer=lambda event: None)
        self.health.startService()
        self.registry.attach(ID, FakeSession(), "127.0.0.1:40000", "agent")

    def tearDown(self) -> None:
        self.health.stopService()

    def managed_cluster(self, namespace: str, name: str, cluster_id: str) -> None:
        self.api.create(
            MANAGED_CLUSTERS,
            {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"clusterId": cluster_id},
            },
            namespace,
        )

    def test_the_socket_list_and_table_show_the_attached_tunnels_only(self) -> None:
        code, body, _ = self.get(BASE + "/sockets")
        assert code == 200 and [i["metadata"]["name"] for i in body["items"]] == [ID]
        code, body, _ = self.get(
            BASE + "/sockets", Accept="application/json;as=Table;v=v1;g=meta.k8s.io"
        )
        assert [row["cells"][0] for row in body["rows"]] == [ID]

    def test_a_cluster_claimed_only_from_another_namespace_is_unknown(self) -> None:
        assert self.registry.known == {ID, B_ID}
        code, body, _ = self.get(f"{BASE}/sockets/{C_ID}/proxy/direct/api")
        assert code == 404 and body["reason"] == "NotFound"

    def test_a_registered_cluster_stays_known_whatever_is_forged(self) -> None:
        self.api.delete(MANAGED_CLUSTERS, "edge-2", "clusternet-aaaaa")
        code, body, _ = self.get(f"{BASE}/sockets/{B_ID}/proxy/direct/api")
        assert code == 503 and "agent is not connected" in body["message"]
        self.api.delete(MANAGED_CLUSTERS, "edge-2", "clusternet-bbbbb")
        self.managed_cluster("clusternet-aaaaa", "edge-2", B_ID)
        code, _, _ = self.get(f"{BASE}/sockets/{B_ID}/proxy/direct/api")
        assert code == 404
