"""
Health probes and Prometheus metrics as C{twisted.web} resources.

Both the hub and the agent serve C{/healthz}, C{/readyz}, C{/livez} (with
C{?verbose} listing each check, as the Kubernetes API server does) and C{/metrics}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from twisted.web.resource import Resource
from twisted.web.server import Request

__all__ = [
    "HealthChecks",
    "MetricsResource",
    "ProbeResource",
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
