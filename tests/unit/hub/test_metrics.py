"""
The hub's request and tunnel metrics, scraped from C{/metrics} after requests
driven in memory through the hub's resource and its proxy.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface import implementer

from clusternet.health import (
    DURATION_BUCKETS,
    METHOD_VERBS,
    HealthChecks,
    RequestMetrics,
    SnapshotCollector,
    process_registry,
)
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
from clusternet.hub._metrics import (
    ClusterTunnelMetrics,
    MeteredResource,
    proxy_request_metrics,
)
from clusternet.hub._options import HubOptions
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import PROXIED_METHODS, HubResource, verb_for
from clusternet.hub._tunnels import TunnelAttach
from clusternet.proxy import StreamingSite
from clusternet.tunnel import Hello, Role, TunnelMetrics, TunnelSession
from clusternet.tunnel._memory import MemoryLink

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
KNOWN = "7c1e2d3f-aaaa-4bbb-8ccc-ddddeeeeffff"
GROUP = "https://hub.example/apis/proxies.clusternet.io/v1alpha1"
DIRECT = f"{GROUP}/sockets/{ID}/proxy/direct"
PODS = f"{DIRECT}/api/v1/namespaces/default/pods"
USERS = {
    "alice-token": User("alice", groups=("system:authenticated",)),
    "eve-token": User("eve"),
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@implementer(ITokenReviewer)
class Tokens:
    def review(self, token: str) -> Deferred[User | None]:
        return succeed(USERS.get(token))


@implementer(IAccessReviewer)
class NotEve:
    def review(
        self, user: User, attributes: RequestAttributes
    ) -> Deferred[tuple[bool, str]]:
        return succeed((user.name != "eve", ""))


class HeldEndpoint:
    """
    Every connection a stream that answers only when the test says so.
    """

    def __init__(self, session: FakeSession) -> None:
        self._session = session

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 0))
        assert protocol is not None
        protocol.makeConnection(StringTransport())
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


def samples(text: str) -> Samples:
    """
    Every sample of a Prometheus text exposition, by name and labels.
    """
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


class HubFront(SynchronousTestCase):
    """
    The hub's resource with its metrics, over the real proxy to a cluster
    whose tunnel streams answer only when the test says so.
    """

    per_cluster = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1795719600)
        self.registry = SocketRegistry(self.clock)
        self.session = FakeSession(max_streams=8)
        self.registry.attach(ID, self.session, "p", "agent")
        self.registry.known.add(KNOWN)
        self.requests = proxy_request_metrics(self.clock, self.per_cluster)
        budget = StreamBudget(max_per_user=2, reserve=1)
        self.metrics = process_registry(budget.collector(), self.requests)
        hub = HubResource(
            self.clock,
            Authenticator(AuthConfig(), Tokens(), self.clock),
            CachingAuthorizer(NotEve(), self.clock),
            self.registry,
            HealthChecks(),
            proxy=ClusterProxy(self.clock, self.registry, budget),
            metrics=self.metrics,
        )
        self.treq_resource = MeteredResource(hub, self.requests, self.registry)
        self.treq: Any = StubTreq(self.treq_resource)

    def start(
        self,
        url: str,
        method: str = "GET",
        token: str | None = "alice-token",
        **headers: str,
    ) -> Deferred[Any]:
        sent = {k.replace("_", "-"): [v] for k, v in headers.items()}
        if token:
            sent["Authorization"] = [f"Bearer {token}"]
        return self.treq.request(method, url, headers=Headers(sent))

    def code(self, pending: Deferred[Any]) -> int:
        self.treq.flush()
        response = self.successResultOf(pending)
        self.successResultOf(response.content())
        return int(response.code)

    def scrape(self) -> Samples:
        pending = self.start("https://hub.example/metrics")
        self.treq.flush()
        response = self.successResultOf(pending)
        assert response.code == 200
        return samples(self.successResultOf(response.content()).decode())


class HubRequestMetricsTests(HubFront):
    def test_answered_requests_are_counted_by_verb_and_code(self) -> None:
        got = self.start(PODS)
        self.treq.flush()
        answer(self.session.upstreams[0])
        assert self.code(got) == 200
        posted = self.start(PODS, "POST")
        self.treq.flush()
        self.session.upstreams[-1].dataReceived(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.code(posted) == 500
        patched = self.start(f"{PODS}/web", "PATCH")
        self.treq.flush()
        lose(self.session.upstreams[-1])  # the tunnel lost: the hub answers 502
        assert self.code(patched) == 502
        deleted = self.start(f"{PODS}/web", "DELETE")
        self.treq.flush()
        self.session.upstreams[-1].dataReceived(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        )
        assert self.code(deleted) == 404
        found = self.scrape()
        total = "clusternet_hub_proxy_requests_total"
        assert value(found, total, verb="get", code="200") == 1
        assert value(found, total, verb="create", code="500") == 1
        assert value(found, total, verb="patch", code="502") == 1
        assert value(found, total, verb="delete", code="404") == 1
        # Only the proxy is counted: the scrape itself and other paths are not.
        assert sum(v for (n, _), v in found.items() if n == total) == 4

    def test_the_hubs_own_refusals_show_in_the_code(self) -> None:
        assert self.code(self.start(PODS, token=None)) == 401
        assert self.code(self.start(PODS, token="eve-token")) == 403
        assert self.code(self.start(PODS.replace(ID, "no-such-cluster"))) == 404
        assert self.code(self.start(PODS.replace(ID, KNOWN))) == 503
        assert self.code(self.start(PODS, "PURGE")) == 405
        watches = [self.start(f"{PODS}?watch=true") for _ in range(2)]
        self.treq.flush()
        assert self.code(self.start(PODS)) == 429  # alice holds her two streams
        found = self.scrape()
        total = "clusternet_hub_proxy_requests_total"
        for code in ("401", "403", "404", "503", "429"):
            assert value(found, total, verb="get", code=code) == 1, code
        # Methods outside the API's are one bounded "other" verb.
        assert value(found, total, verb="other", code="405") == 1
        for watch in watches:
            self.assertNoResult(watch)

    def test_latency_is_observed_in_the_histogram(self) -> None:
        got = self.start(PODS)
        self.treq.flush()
        self.clock.advance(0.3)
        answer(self.session.upstreams[0])
        assert self.code(got) == 200
        found = self.scrape()
        bucket = "clusternet_hub_proxy_request_duration_seconds_bucket"
        assert value(found, bucket, verb="get", le="0.25") == 0
        assert value(found, bucket, verb="get", le="0.5") == 1
        assert value(found, bucket, verb="get", le="+Inf") == 1
        count = "clusternet_hub_proxy_request_duration_seconds_count"
        assert value(found, count, verb="get") == 1
        assert value(found, count, verb="create") == 0  # bound ahead, at zero
        seconds = value(
            found, "clusternet_hub_proxy_request_duration_seconds_sum", verb="get"
        )
        assert seconds is not None and abs(seconds - 0.3) < 1e-6

    def test_a_watch_is_in_the_gauge_while_open_and_not_in_the_histogram(
        self,
    ) -> None:
        gauge = "clusternet_hub_proxy_longrunning_requests"
        watch = self.start(f"{PODS}?labelSelector=app%3Dweb&watch=true")
        self.treq.flush()
        upstream = self.session.upstreams[0]
        upstream.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'10\r\n{"type":"ADDED"}\r\n'
        )
        self.treq.flush()
        found = self.scrape()
        assert value(found, gauge, verb="watch") == 1
        assert value(found, gauge, verb="get") == 0
        self.clock.advance(600)
        upstream.dataReceived(b"0\r\n\r\n")
        assert self.code(watch) == 200
        found = self.scrape()
        assert value(found, gauge, verb="watch") == 0
        total = "clusternet_hub_proxy_requests_total"
        assert value(found, total, verb="watch", code="200") == 1
        count = "clusternet_hub_proxy_request_duration_seconds_count"
        assert value(found, count, verb="watch") is None
        assert value(found, count, verb="get") == 0

    def test_a_followed_log_is_long_running_as_get(self) -> None:
        log = self.start(f"{PODS}/web/log?follow=true")
        self.treq.flush()
        found = self.scrape()
        assert value(found, "clusternet_hub_proxy_longrunning_requests", verb="get")
        answer(self.session.upstreams[0])
        assert self.code(log) == 200
        found = self.scrape()
        total = "clusternet_hub_proxy_requests_total"
        assert value(found, total, verb="get", code="200") == 1
        assert not value(found, "clusternet_hub_proxy_longrunning_requests", verb="get")

    def test_tunnel_attach_and_discovery_are_not_proxy_requests(self) -> None:
        for url in (
            GROUP,
            f"{GROUP}/sockets",
            f"{GROUP}/sockets/{ID}",
            f"{GROUP}/sockets/{ID}/",
            "https://hub.example/apis",
        ):
            self.code(self.start(url))
        found = self.scrape()
        assert not [
            key for key in found if key[0] == "clusternet_hub_proxy_requests_total"
        ]


class StreamingSiteTests(HubFront):
    def test_requests_on_the_hubs_streaming_site_are_counted(self) -> None:
        reactor = MemoryReactorClock()
        site = StreamingSite(self.treq_resource, reactor=reactor, access_log=None)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        path = PODS.removeprefix("https://hub.example").encode()
        channel.dataReceived(
            b"GET " + path + b" HTTP/1.1\r\nHost: hub\r\n"
            b"Authorization: Bearer alice-token\r\n\r\n"
        )
        answer(self.session.upstreams[-1])
        reactor.advance(0)
        assert transport.value().startswith(b"HTTP/1.1 200 OK")
        found = self.scrape()
        total = "clusternet_hub_proxy_requests_total"
        assert value(found, total, verb="get", code="200") == 1


class PerClusterHubMetricsTests(HubFront):
    per_cluster = True

    def test_known_clusters_label_their_series_and_others_do_not(self) -> None:
        got = self.start(PODS)
        self.treq.flush()
        answer(self.session.upstreams[0])
        assert self.code(got) == 200
        assert self.code(self.start(PODS.replace(ID, KNOWN))) == 503
        for invented in ("a", "b", "c"):
            assert self.code(self.start(PODS.replace(ID, invented))) == 404
        found = self.scrape()
        total = "clusternet_hub_proxy_requests_total"
        assert value(found, total, cluster=ID, verb="get", code="200") == 1
        assert value(found, total, cluster=KNOWN, verb="get", code="503") == 1
        assert value(found, total, cluster="", verb="get", code="404") == 3
        clusters = {
            dict(labels).get("cluster")
            for name, labels in found
            if name.startswith("clusternet_hub_proxy_")
        }
        assert clusters == {ID, KNOWN, ""}
        # Per cluster, only the verbs in use have series.
        count = "clusternet_hub_proxy_request_duration_seconds_count"
        assert value(found, count, cluster=ID, verb="get") == 1
        assert value(found, count, cluster=ID, verb="create") is None


class Request:
    """
    What L{RequestMetrics} reads of a twisted.web request.
    """

    def __init__(
        self, method: bytes = b"GET", uri: bytes = b"/api/v1/pods", **headers: str
    ) -> None:
        self.method = method
        self.uri = uri
        self.requestHeaders = Headers({k: [v] for k, v in headers.items()})
        self.code = 200
        self.startedWriting = 0
        self._notify: list[Deferred[None]] = []

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._notify.append(d)
        return d

    def answer(self, code: int) -> None:
        self.code = code
        self.startedWriting = 1

    def finish(self) -> None:
        for d in self._notify:
            d.callback(None)

    def lose(self) -> None:
        for d in self._notify:
            d.errback(Failure(ConnectionDone()))


class RequestMetricsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = RequestMetrics("test", self.clock, what="tested")
        self.registry = CollectorRegistry()
        self.registry.register(self.metrics)

    def scrape(self) -> Samples:
        return samples(generate_latest(self.registry).decode())

    def test_the_verbs_are_the_hubs_authorization_verbs(self) -> None:
        assert {m: verb_for(m) for m in PROXIED_METHODS} == dict(METHOD_VERBS)

    def test_an_upgrade_is_connect_in_the_gauge_until_its_connection_ends(
        self,
    ) -> None:
        exec_ = Request(
            b"POST",
            b"/api/v1/namespaces/d/pods/web/exec?command=sh&stdin=true",
            Connection="Upgrade",
            Upgrade="SPDY/3.1",
        )
        self.metrics.observe(exec_)
        assert value(self.scrape(), "test_longrunning_requests", verb="connect") == 1
        exec_.answer(101)
        self.clock.advance(3600)
        exec_.finish()
        found = self.scrape()
        assert value(found, "test_longrunning_requests", verb="connect") == 0
        assert value(found, "test_requests_total", verb="connect", code="101") == 1
        assert value(found, "test_request_duration_seconds_count", verb="create") == 0

    def test_a_client_gone_before_an_answer_is_code_0(self) -> None:
        gone = Request()
        self.metrics.observe(gone)
        gone.lose()
        late = Request(uri=b"/api/v1/pods?watch=1")
        self.metrics.observe(late)
        late.answer(200)
        late.lose()  # a watch ended by its client: it was answered 200
        found = self.scrape()
        assert value(found, "test_requests_total", verb="get", code="0") == 1
        assert value(found, "test_requests_total", verb="watch", code="200") == 1
        assert value(found, "test_longrunning_requests", verb="watch") == 0

    def test_watch_false_and_other_parameters_are_not_long_running(self) -> None:
        for uri in (
            b"/api/v1/pods?watch=false",
            b"/api/v1/pods?allowWatchBookmarks=true",
            b"/api/v1/pods?xwatch=true&resourceVersion=1",
            b"/api/v1/namespaces/d/pods/web/log?follow=0",
        ):
            request = Request(uri=uri)
            self.metrics.observe(request)
            request.answer(200)
            request.finish()
        found = self.scrape()
        assert value(found, "test_requests_total", verb="get", code="200") == 4
        assert value(found, "test_request_duration_seconds_count", verb="get") == 4

    def test_a_watch_with_another_method_is_not_a_watch(self) -> None:
        request = Request(b"DELETE", b"/api/v1/pods?watch=true")
        self.metrics.observe(request)
        request.finish()
        found = self.scrape()
        assert value(found, "test_requests_total", verb="delete", code="200") == 1

    def test_buckets_span_kube_requests(self) -> None:
        assert DURATION_BUCKETS[0] == 0.005 and DURATION_BUCKETS[-1] == 60
        assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)
        slow = Request()
        self.metrics.observe(slow)
        self.clock.advance(61)
        slow.finish()
        found = self.scrape()
        bucket = "test_request_duration_seconds_bucket"
        assert value(found, bucket, verb="get", le="60.0") == 0
        assert value(found, bucket, verb="get", le="+Inf") == 1

    def test_help_and_types_follow_prometheus_naming(self) -> None:
        families = {
            f.name: f
            for f in text_string_to_metric_families(
                generate_latest(self.registry).decode()
            )
        }
        assert families["test_requests"].type == "counter"
        assert families["test_request_duration_seconds"].type == "histogram"
        assert families["test_longrunning_requests"].type == "gauge"
        assert all(f.documentation for f in families.values())


def test_hub_flag_for_per_cluster_metrics_and_its_former_name() -> None:
    options = HubOptions()
    options.parseOptions([])
    assert options["metrics-per-cluster"] is False
    options = HubOptions()
    options.parseOptions(["--metrics-per-cluster=true"])
    assert options["metrics-per-cluster"] is True
    assert options["stream-metrics-per-cluster"] is False


class ClusterTunnelMetricsTests(SynchronousTestCase):
    def attach(self, per_cluster: bool) -> tuple[ClusterTunnelMetrics, TunnelSession]:
        clock = Clock()
        registry = SocketRegistry(clock)
        attach = TunnelAttach(clock, registry)
        tunnels = ClusterTunnelMetrics(registry, attach.metrics, per_cluster)
        hub = attach.session_for(ID, "192.0.2.1:4000", "agent")
        agent = TunnelSession(Role.DIALER, clock, metrics=TunnelMetrics())
        link = MemoryLink(agent, hub)
        link.pump()
        assert registry.infos()[0].cluster_id == ID
        # The agent accepts no streams: one refused open, bytes both ways.
        opening = hub.open_stream("127.0.0.1:80")
        link.pump()
        self.failureResultOf(opening)
        self.addCleanup(link.sever)
        return tunnels, hub

    def scrape(self, tunnels: ClusterTunnelMetrics) -> Samples:
        registry = CollectorRegistry()
        registry.register(tunnels)
        return samples(generate_latest(registry).decode())

    def test_off_the_totals_are_as_before(self) -> None:
        tunnels, hub = self.attach(per_cluster=False)
        assert hub.metrics is tunnels.base
        before = CollectorRegistry()
        before.register(
            SnapshotCollector(
                "clusternet_tunnel",
                tunnels.base.snapshot,
                frozenset({"sessions_open", "streams_open"}),
                "Tunnel",
            )
        )
        assert self.scrape(tunnels) == samples(generate_latest(before).decode())

    def test_on_bytes_and_streams_are_per_cluster_and_sum_to_the_totals(
        self,
    ) -> None:
        tunnels, hub = self.attach(per_cluster=True)
        assert hub.metrics is tunnels.clusters[ID]
        found = self.scrape(tunnels)
        received = value(found, "clusternet_tunnel_bytes_in_total", cluster=ID)
        sent = value(found, "clusternet_tunnel_bytes_out_total", cluster=ID)
        assert received and sent
        refused = "clusternet_tunnel_open_refused_total"
        assert value(found, refused, cluster=ID) == 1
        assert value(found, "clusternet_tunnel_streams_open", cluster=ID) == 0
        # Sessions stay one series: a session counts before it attaches.
        assert value(found, "clusternet_tunnel_sessions_open") == 1
        totals = tunnels.snapshot()
        for name in ("bytes_in", "bytes_out", "open_refused"):
            family = f"clusternet_tunnel_{name}_total"
            assert totals[name] == sum(v for (n, _), v in found.items() if n == family)
