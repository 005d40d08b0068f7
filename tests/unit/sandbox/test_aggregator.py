"""
The aggregation layer in memory: what is authorized before an aggregated
backend sees a request, compared with what a real kube-apiserver answered
(../shared/kube-wire 093).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from treq.testing import RequestTraversalAgent
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from clusternet.pki import issue_certificate, make_ca
from clusternet.sandbox._aggregator import AggregationRoot, Aggregator
from clusternet.sandbox._auth_api import IAuthenticator, RequestCredentials, UserInfo
from clusternet.sandbox._http import SandboxAPI
from clusternet.sandbox._resources import Registry
from clusternet.sandbox._store import Store
from clusternet.sandbox._wiring import store_key_of
from clusternet.sandbox.auth import default_rbac_objects, new_authorizer
from tests.support.wire import recorded

GROUP, VERSION = "proxies.clusternet.io", "v1alpha1"
ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def wire(name: str) -> dict[str, Any]:
    return recorded(name)


@implementer(IAuthenticator)
class HeaderOrAnonymous:
    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        users = credentials.headers.get("x-test-user")
        if not users:
            return ANONYMOUS
        return UserInfo(users[0], groups=("system:authenticated",))


class Harness:
    """
    A sandbox API with the default RBAC and anonymous users, and an aggregator
    that routes C{proxies.clusternet.io/v1alpha1} to a backend it never
    reaches (what is refused is refused before).
    """

    def __init__(self) -> None:
        self.clock = Clock()
        registry = Registry.with_builtins()
        self.store = Store(registry, self.clock, rng=random.Random(0))
        for namespace in ("kube-system", "kube-public"):
            self.store.create("/namespaces", None, {"metadata": {"name": namespace}})
        for obj in default_rbac_objects():
            key = store_key_of(obj)
            self.store.create(key, obj["metadata"].get("namespace"), obj)
        self.store.create(
            "/configmaps",
            "kube-public",
            {"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "x"}},
        )
        authorizer = new_authorizer(self.store)
        self.api = SandboxAPI(
            self.store, registry, self.clock, HeaderOrAnonymous(), authorizer
        )
        front_proxy = issue_certificate(make_ca("front-proxy-ca"), "front-proxy")
        self.aggregator = Aggregator(
            MemoryReactorClock(),
            self.store,
            front_proxy,
            self.api.identify,
            overrides={(GROUP, VERSION): "https://127.0.0.1:1"},
            authorize=authorizer.authorize,
        )
        self.api.aggregator = self.aggregator
        self.agent = RequestTraversalAgent(AggregationRoot(self.api, self.aggregator))

    def request(self, method: bytes, path: str, user: str = "") -> tuple[int, Any]:
        headers = Headers({b"accept": [b"application/json"]})
        if user:
            headers.setRawHeaders(b"x-test-user", [user.encode()])
        answers: list[Any] = []
        requested = self.agent.request(
            method, b"https://sandbox" + path.encode(), headers
        )

        def read(response: Any) -> Any:
            answers.append(response.code)
            return readBody(response).addCallback(answers.append)

        requested.addCallback(read)
        self.agent.flush()
        assert len(answers) == 2, answers
        try:
            return answers[0], json.loads(answers[1])
        except ValueError:
            return answers[0], answers[1]

    def admitted(self, method: bytes, path: str, user: str = "") -> bool:
        request = DummyRequest([b""])
        request.method = method
        request.path = request.uri = path.encode()
        if user:
            request.requestHeaders.setRawHeaders(b"x-test-user", [user.encode()])
        request.channel = None
        return self.aggregator.admit(request)


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.mark.filterwarnings("ignore:Using readBody")
def test_anonymous_discovery_of_an_aggregated_group_version_is_403(
    h: Harness,
) -> None:
    real = wire("093-anonymous-aggregated-discovery.json")
    assert real["request"]["path"] == f"/apis/{GROUP}/{VERSION}"
    code, body = h.request(b"GET", real["request"]["path"])
    assert (code, body) == (real["response"]["status"], real["response"]["body"])
    assert not h.admitted(b"GET", f"/apis/{GROUP}/{VERSION}")


@pytest.mark.filterwarnings("ignore:Using readBody")
def test_anonymous_requests_of_an_aggregated_group_are_authorized_first(
    h: Harness,
) -> None:
    code, body = h.request(b"GET", f"/apis/{GROUP}/{VERSION}/sockets")
    assert code == 403
    assert body["message"] == (
        f'sockets.{GROUP} is forbidden: User "system:anonymous" cannot list resource '
        f'"sockets" in API group "{GROUP}" at the cluster scope'
    )
    assert not h.admitted(b"GET", f"/apis/{GROUP}/{VERSION}/sockets/c1/proxy/direct")


@pytest.mark.filterwarnings("ignore:Using readBody")
def test_anonymous_discovery_is_403_and_public_info_is_not(h: Harness) -> None:
    for path in ("/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1"):
        code, body = h.request(b"GET", path)
        assert (code, body["message"]) == (
            403,
            f'forbidden: User "system:anonymous" cannot get path "{path}"',
        ), path
    for path in ("/version", "/healthz", "/livez", "/readyz"):
        assert h.request(b"GET", path)[0] == 200, path
    code, body = h.request(
        b"GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info"
    )
    assert code == 200 and body["data"] == {"kubeconfig": "x"}


def test_authenticated_users_reach_the_backend_which_authorizes_them(
    h: Harness,
) -> None:
    assert h.admitted(b"GET", f"/apis/{GROUP}/{VERSION}", user="alice")
    assert h.admitted(b"GET", f"/apis/{GROUP}/{VERSION}/sockets", user="alice")
    # Methods pass as sent: an unknown one is the backend's to refuse.
    assert h.admitted(b"frob", f"/apis/{GROUP}/{VERSION}/sockets/c1", user="alice")
