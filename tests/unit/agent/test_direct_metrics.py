"""
The agent's request metrics: every request its direct server proxies to the
child, scraped from the agent's C{/metrics}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from treq.testing import StubTreq
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from clusternet.agent._direct import ChildProxyResource, DirectServer
from clusternet.agent._identity import IdentityPolicy
from clusternet.agent._options import AgentOptions
from clusternet.agent._service import make_agent_service
from clusternet.health import MetricsResource, process_registry
from clusternet.kube import ConnectionInfo
from clusternet.proxy import ReverseProxy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CHILD = "http://127.0.0.1:6443"
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: child
  cluster: {server: "http://127.0.0.1:6443"}
users:
- name: agent
  user: {token: "agent-token"}
contexts:
- name: child
  context: {cluster: child, user: agent}
current-context: child
"""


class HeldChild:
    """
    The child API server: every connection answers only when the test says so.
    """

    def __init__(self) -> None:
        self.upstreams: list[Any] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 6443))
        assert protocol is not None
        protocol.makeConnection(StringTransport())
        self.upstreams.append(protocol)
        return succeed(protocol)


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


class AgentRequestMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.direct = DirectServer(self.clock)
        self.child = HeldChild()
        resource = ChildProxyResource(
            ReverseProxy(self.clock, forwarded_headers=False),
            ConnectionInfo(server=CHILD),
            IdentityPolicy(mode="impersonate"),
            metrics=self.direct.request_metrics,
        )
        resource._agent_endpoint = self.child  # type: ignore[assignment]
        self.treq: Any = StubTreq(resource)
        root = Resource()
        root.putChild(
            b"metrics", MetricsResource(process_registry(self.direct.request_metrics))
        )
        self.scraper: Any = StubTreq(root)

    def start(self, method: str, path: str, **headers: str) -> Deferred[Any]:
        sent = {k.replace("_", "-"): [v] for k, v in headers.items()}
        sent["X-Remote-User"] = ["alice"]
        return self.treq.request(method, f"https://direct{path}", headers=Headers(sent))

    def code(self, pending: Deferred[Any]) -> int:
        self.treq.flush()
        response = self.successResultOf(pending)
        self.successResultOf(response.content())
        return int(response.code)

    def scrape(self) -> Samples:
        response = self.successResultOf(self.scraper.get("http://agent/metrics"))
        assert response.code == 200
        return samples(self.successResultOf(response.content()).decode())

    def test_requests_to_the_child_are_counted_by_verb_and_code(self) -> None:
        got = self.start("GET", "/api/v1/namespaces/d/pods")
        self.treq.flush()
        self.clock.advance(0.02)
        self.child.upstreams[-1].dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        assert self.code(got) == 200
        denied = self.start("POST", "/api/v1/namespaces/d/pods")
        self.treq.flush()
        self.child.upstreams[-1].dataReceived(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.code(denied) == 403
        broken = self.start("PATCH", "/api/v1/namespaces/d/pods/web")
        self.treq.flush()
        self.child.upstreams[-1].connectionLost(Failure(ConnectionLost("child gone")))
        assert self.code(broken) == 502
        found = self.scrape()
        total = "clusternet_agent_requests_total"
        assert value(found, total, verb="get", code="200") == 1
        assert value(found, total, verb="create", code="403") == 1
        assert value(found, total, verb="patch", code="502") == 1
        bucket = "clusternet_agent_request_duration_seconds_bucket"
        assert value(found, bucket, verb="get", le="0.01") == 0
        assert value(found, bucket, verb="get", le="0.025") == 1

    def test_a_watch_is_in_the_gauge_while_open(self) -> None:
        gauge = "clusternet_agent_longrunning_requests"
        watch = self.start("GET", "/api/v1/pods?watch=true&resourceVersion=10")
        self.treq.flush()
        upstream = self.child.upstreams[-1]
        upstream.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'10\r\n{"type":"ADDED"}\r\n'
        )
        self.treq.flush()
        assert value(self.scrape(), gauge, verb="watch") == 1
        upstream.dataReceived(b"0\r\n\r\n")
        assert self.code(watch) == 200
        found = self.scrape()
        assert value(found, gauge, verb="watch") == 0
        assert value(found, "clusternet_agent_requests_total", verb="watch", code="200")

    def test_the_agents_own_refusals_are_counted(self) -> None:
        # Without a parent identity the impersonate mode refuses (401).
        refused = self.treq.request("GET", "https://direct/api/v1/pods")
        assert self.code(refused) == 401
        found = self.scrape()
        assert value(found, "clusternet_agent_requests_total", verb="get", code="401")
        assert not self.child.upstreams


def test_the_direct_servers_sites_count_into_its_metrics() -> None:
    clock = MemoryReactorClock()
    direct = DirectServer(clock)
    protocol: Any = direct(ConnectionInfo(server=CHILD), IdentityPolicy())()
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(
        b"GET /api/v1/pods HTTP/1.1\r\nHost: direct\r\nX-Remote-User: alice\r\n\r\n"
    )
    assert direct.request_metrics._clusters[""]["get"].started == 1


def test_the_agents_metrics_listener_serves_the_request_metrics(
    tmp_path: Any,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    options = AgentOptions()
    options.parseOptions(
        [
            f"--kubeconfig={kubeconfig}",
            "--metrics-listen=tcp:0",
            "--cluster-reg-parent-url=https://127.0.0.1:2",
            "--cluster-reg-token=abcdef.0123456789abcdef",
        ]
    )
    clock = MemoryReactorClock()
    top: Any = make_agent_service(clock, options, DirectServer(clock))
    [listener] = [s for s in top if isinstance(s, StreamServerEndpointService)]
    metrics = listener.factory.resource.children[b"metrics"]
    text = metrics.render_GET(_GetRequest()).decode()
    assert "# TYPE clusternet_agent_requests_total counter" in text
    assert "clusternet_agent_request_duration_seconds_bucket" in text
    assert "clusternet_agent_longrunning_requests" in text
    assert "clusternet_tunnel_sessions_open" in text


class _GetRequest:
    def setHeader(self, name: bytes, value: bytes) -> None:
        pass
