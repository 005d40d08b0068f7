"""
Health probes and Prometheus metrics as C{twisted.web} resources.

Both the hub and the agent serve C{/healthz}, C{/readyz}, C{/livez} (with
C{?verbose} listing each check, as the Kubernetes API server does) and C{/metrics}.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = [
    "DURATION_BUCKETS",
    "METHOD_VERBS",
    "HealthChecks",
    "MetricsResource",
    "ProbeResource",
    "RequestMetrics",
    "SnapshotCollector",
    "add_probes",
    "process_registry",
]

Check = Callable[[], str | None]
"""
A health check returns C{None} when healthy, else a short reason.
"""


class HealthChecks:
    """
    Named checks, in the order they were added, shared by the probes.

    As in the Kubernetes API server, C{/readyz} runs every check, while
    C{/healthz} and C{/livez} run only those added with C{liveness=True}: a hub
    still waiting for its caches is alive but not ready.
    """

    def __init__(self) -> None:
        self._checks: dict[str, tuple[Check, bool]] = {"ping": (lambda: None, True)}

    def add(self, name: str, check: Check, liveness: bool = False) -> None:
        self._checks[name] = (check, liveness)

    def run(self, readiness: bool = True) -> list[tuple[str, str | None]]:
        results = []
        for name, (check, liveness) in self._checks.items():
            if not readiness and not liveness:
                continue
            try:
                reason = check()
            except Exception as e:  # a broken check is a failed check
                reason = f"check raised {type(e).__name__}"
            results.append((name, reason))
        return results


class ProbeResource(Resource):
    """
    C{/healthz}-style probe: C{200 ok} when every check passes, else C{500}.
    """

    isLeaf = True

    def __init__(self, name: str, checks: HealthChecks) -> None:
        super().__init__()
        self._name = name
        self._checks = checks

    def render_GET(self, request: Request) -> bytes:
        results = self._checks.run(readiness=self._name == "readyz")
        healthy = all(reason is None for _, reason in results)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache, private")
        if not healthy:
            request.setResponseCode(500)
        if b"verbose" not in (request.args or {}) and healthy:
            return b"ok"
        lines = []
        for check, reason in results:
            if reason is None:
                lines.append(f"[+]{check} ok")
            else:
                lines.append(f"[-]{check} failed: {reason}")
        verdict = "passed" if healthy else "failed"
        lines.append(f"{self._name} check {verdict}")
        return ("\n".join(lines) + "\n").encode("utf-8")

    render_HEAD = render_GET


class MetricsResource(Resource):
    """
    Prometheus text exposition of a registry.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return bytes(generate_latest(self._registry))


def add_probes(
    root: Resource, checks: HealthChecks, registry: CollectorRegistry = REGISTRY
) -> None:
    """
    Put C{/healthz}, C{/readyz}, C{/livez} and C{/metrics} under C{root}.
    """
    for name in (b"healthz", b"readyz", b"livez"):
        root.putChild(name, ProbeResource(name.decode("ascii"), checks))
    root.putChild(b"metrics", MetricsResource(registry))


class SnapshotCollector(Collector):
    """
    Export a dict of counters (such as C{TunnelMetrics.snapshot()}) as Prometheus
    metrics C{<prefix>_<name>}: gauges for the names in C{gauges}, counters for
    the rest.
    """

    def __init__(
        self,
        prefix: str,
        snapshot: Callable[[], dict[str, int]],
        gauges: frozenset[str] = frozenset(),
        documentation: str = "",
    ) -> None:
        self._prefix = prefix
        self._snapshot = snapshot
        self._gauges = gauges
        self._documentation = documentation

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._snapshot().items()):
            full = f"{self._prefix}_{name}"
            doc = f"{self._documentation} {name.replace('_', ' ')}".strip()
            if name in self._gauges:
                yield GaugeMetricFamily(full, doc, value=value)
            else:
                yield CounterMetricFamily(full.removesuffix("_total"), doc, value=value)


def process_registry(*collectors: Collector) -> CollectorRegistry:
    """
    A registry with the process, platform and GC metrics and C{collectors}: one
    per server, so several can run in one process (tests) without clashing.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    return registry


#: Upper bounds (seconds) of the buckets of the request duration histograms:
#: from a get served from the child's cache to a large list near the minute
#: kube-apiserver allows a request.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_BUCKET_BOUNDS = (*(floatToGoString(b) for b in DURATION_BUCKETS), "+Inf")

#: The C{verb} label of a request method: the verb the Kubernetes API server
#: authorizes it as (the hub's L{verb_for <clusternet.hub._resource.verb_for>}).
#: A request with C{watch=true} is C{watch}, an HTTP upgrade (exec, attach,
#: port-forward) C{connect}, any other method C{other}.
METHOD_VERBS: Mapping[bytes, str] = {
    b"GET": "get",
    b"HEAD": "get",
    b"OPTIONS": "get",
    b"POST": "create",
    b"PUT": "update",
    b"PATCH": "patch",
    b"DELETE": "delete",
}
WATCH = "watch"
CONNECT = "connect"
OTHER = "other"
# Values of a boolean query parameter that the API server reads as true
# (Go's strconv.ParseBool).
_TRUE = frozenset({b"1", b"t", b"T", b"true", b"TRUE", b"True"})


def _query_flags(uri: bytes) -> tuple[bool, bool]:
    """
    Whether the query of C{uri} asks to C{watch}, and to C{follow} (a log).
    """
    watch = follow = False
    for pair in uri.partition(b"?")[2].split(b"&"):
        name, _, value = pair.partition(b"=")
        if value in _TRUE:
            if name == b"watch":
                watch = True
            elif name == b"follow":
                follow = True
    return watch, follow


class _Series:
    """
    The counts of one verb (of one cluster).
    """

    __slots__ = ("buckets", "codes", "open", "started", "sum")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.buckets = [0] * len(_BUCKET_BOUNDS)
        self.sum = 0.0
        self.open = 0
        self.started = 0


class RequestMetrics(Collector):
    """
    Rate, errors and duration of the requests a server proxies, counted the
    way kube-apiserver counts its own, as

        - C{<prefix>_requests_total{verb,code}}: requests that have ended;
          C{code} is the status answered (C{101} for an upgrade, counted when
          its connection closes), C{0} when the client went away before any
          answer;
        - C{<prefix>_request_duration_seconds{verb}}: a histogram of the time
          from the request's head to its end, of requests that are not
          long-running;
        - C{<prefix>_longrunning_requests{verb}}: long-running requests open
          now: watches (C{watch=true}), followed logs (C{follow=true}) and
          upgrades (exec, attach, port-forward).

    With C{per_cluster}, each also has a C{cluster} label, whose values the
    caller must bound (the hub passes only clusters it knows, else C{""}).

    The counts are plain numbers updated on the reactor thread, with the label
    values bound ahead: counting a request costs a few dictionary lookups and
    the callback on C{request.notifyFinish()}.
    """

    def __init__(
        self,
        prefix: str,
        clock: IReactorTime,
        *,
        what: str,
        per_cluster: bool = False,
        verbs: Mapping[bytes, str] = METHOD_VERBS,
    ) -> None:
        self.prefix = prefix
        self.per_cluster = per_cluster
        self._what = what
        self._clock = clock
        self._verbs = dict(verbs)
        self._all_verbs = (*dict.fromkeys(self._verbs.values()), WATCH, CONNECT, OTHER)
        self._clusters: dict[str, dict[str, _Series]] = {}
        self._add_cluster("")

    def _add_cluster(self, cluster: str) -> dict[str, _Series]:
        series = {verb: _Series() for verb in self._all_verbs}
        self._clusters[cluster] = series
        return series

    def observe(self, request: Any, cluster: str = "") -> None:
        """
        Count C{request}, from now until it ends (answered, or its client
        gone).
        """
        by_verb = self._clusters.get(cluster)
        if by_verb is None:
            by_verb = self._add_cluster(cluster)
        verb = self._verbs.get(request.method, OTHER)
        long_running = False
        uri = request.uri
        if verb == "get" and (b"watch=" in uri or b"follow=" in uri):
            watch, follow = _query_flags(uri)
            if watch:
                verb = WATCH
            long_running = watch or follow
        if request.requestHeaders.hasHeader(b"upgrade"):
            verb = CONNECT
            long_running = True
        series = by_verb[verb]
        series.started += 1
        if long_running:
            series.open += 1
            request.notifyFinish().addBoth(self._long_ended, request, series)
        else:
            request.notifyFinish().addBoth(
                self._ended, request, series, self._clock.seconds()
            )

    def _ended(
        self, result: Failure | None, request: Any, series: _Series, started: float
    ) -> None:
        code = request.code if result is None or request.startedWriting else 0
        codes = series.codes
        codes[code] = codes.get(code, 0) + 1
        seconds = self._clock.seconds() - started
        series.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        series.sum += seconds

    def _long_ended(
        self, result: Failure | None, request: Any, series: _Series
    ) -> None:
        code = request.code if result is None or request.startedWriting else 0
        codes = series.codes
        codes[code] = codes.get(code, 0) + 1
        series.open -= 1

    def collect(self) -> Iterator[Metric]:
        cluster_label = ["cluster"] if self.per_cluster else []
        requests = CounterMetricFamily(
            f"{self.prefix}_requests",
            f"Requests {self._what} that ended, by verb and HTTP status code "
            "(0: the client went away before an answer)",
            labels=[*cluster_label, "verb", "code"],
        )
        durations = HistogramMetricFamily(
            f"{self.prefix}_request_duration_seconds",
            f"Time from head to end of requests {self._what}, by verb; "
            "long-running requests (watch, follow, upgrades) are not counted",
            labels=[*cluster_label, "verb"],
        )
        long_running = GaugeMetricFamily(
            f"{self.prefix}_longrunning_requests",
            f"Long-running requests {self._what} open now (watch, follow, "
            "upgrades for exec, attach and port-forward), by verb",
            labels=[*cluster_label, "verb"],
        )
        for cluster, by_verb in sorted(self._clusters.items()):
            labels = [cluster] if self.per_cluster else []
            for verb, series in by_verb.items():
                if self.per_cluster and not series.started:
                    continue  # a series per cluster and verb only once used
                for code, count in sorted(series.codes.items()):
                    requests.add_metric([*labels, verb, str(code)], count)
                if verb not in (WATCH, CONNECT):
                    cumulative = 0
                    buckets = []
                    for bound, count in zip(
                        _BUCKET_BOUNDS, series.buckets, strict=True
                    ):
                        cumulative += count
                        buckets.append((bound, float(cumulative)))
                    durations.add_metric([*labels, verb], buckets, series.sum)
                if verb in (WATCH, CONNECT, "get"):
                    long_running.add_metric([*labels, verb], series.open)
        yield requests
        yield durations
        yield long_running
