"""
The hub's request and tunnel metrics (docs/metrics.md).

    - C{clusternet_hub_proxy_requests_total{verb,code}},
      C{clusternet_hub_proxy_request_duration_seconds{verb}} and
      C{clusternet_hub_proxy_longrunning_requests{verb}}: every request under
      C{/sockets/<id>/...} (the proxy to child clusters), whoever answers it:
      the child, the hub's proxy (502, 503, 504) or the hub itself (401, 403,
      404, 405, 429, 503), see L{clusternet.health.RequestMetrics};
    - C{clusternet_tunnel_*}: the tunnels' counters, with a C{cluster} label on
      the bytes and streams under C{--metrics-per-cluster}.

With C{--metrics-per-cluster}, the C{cluster} label takes only the IDs of
clusters the hub knows (L{SocketRegistry.known}): a request for any other ID
counts under C{cluster=""}, so nobody can make series by inventing IDs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import fields
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from zope.interface import implementer

from clusternet.health import RequestMetrics, SnapshotCollector
from clusternet.hub._registry import (
    ClusterNotConnected,
    SocketRegistry,
    UnknownCluster,
)
from clusternet.hub._resource import PROXIED_METHODS, verb_for
from clusternet.hub._routes import GROUP_PREFIX
from clusternet.proxy import IStreamingResource, StreamingRequest
from clusternet.tunnel import TunnelMetrics

__all__ = [
    "TUNNEL_GAUGES",
    "ClusterTunnelMetrics",
    "MeteredResource",
    "proxy_request_metrics",
]

_SOCKETS = (GROUP_PREFIX + "/sockets/").encode("ascii")
_ID_AT = len(_SOCKETS)

#: The tunnel counters that are gauges.
TUNNEL_GAUGES = frozenset({"sessions_open", "streams_open"})
#: The tunnel counters a cluster's sessions count on their own under
#: C{--metrics-per-cluster}, from their attach on; the others (sessions,
#: failures) stay one series for the hub.
PER_CLUSTER_TUNNEL = (
    "bytes_in",
    "bytes_out",
    "frames_in",
    "frames_out",
    "streams_open",
    "streams_total",
    "streams_reset",
    "open_refused",
)


def proxy_request_metrics(
    clock: IReactorTime, per_cluster: bool = False
) -> RequestMetrics:
    """
    The C{clusternet_hub_proxy_*} request metrics; the verbs are those the
    hub authorizes a proxied request as (L{verb_for}).
    """
    return RequestMetrics(
        "clusternet_hub_proxy",
        clock,
        what="to child clusters through the hub",
        per_cluster=per_cluster,
        verbs={method: verb_for(method) for method in sorted(PROXIED_METHODS)},
    )


@implementer(IStreamingResource)
class MeteredResource(Resource):
    """
    The hub's root resource, with the requests to child clusters counted in
    C{metrics} before C{resource} handles them.

    @param known: the registry whose known clusters may be C{cluster} label
        values, under C{metrics.per_cluster}.
    """

    isLeaf = True

    def __init__(
        self,
        resource: IResource,
        metrics: RequestMetrics,
        known: SocketRegistry | None = None,
    ) -> None:
        super().__init__()
        self.resource = resource
        self.metrics = metrics
        self._known = known

    def _observe(self, request: Request) -> None:
        path = request.path
        if not path.startswith(_SOCKETS):
            return
        end = path.find(b"/", _ID_AT)
        if end < 0 or end + 1 == len(path):
            return  # sockets/<id>: get or attach, not the proxy
        cluster = ""
        if self.metrics.per_cluster and self._known is not None:
            name = path[_ID_AT:end].decode("utf-8", "replace")
            if name in self._known.known:
                cluster = name
        self.metrics.observe(request, cluster)

    def renderStreaming(self, request: StreamingRequest) -> None:
        self._observe(request)
        self.resource.renderStreaming(request)  # type: ignore[attr-defined]

    def render(self, request: Request) -> Any:
        self._observe(request)
        return self.resource.render(request)


class ClusterTunnelMetrics(Collector):
    """
    The C{clusternet_tunnel_*} metrics of the hub's tunnels: the counters of
    L{TunnelAttach <clusternet.hub._tunnels.TunnelAttach>} (C{base}), and under
    C{per_cluster}, those of each cluster apart.

    Under C{per_cluster}, a session counts into its cluster's own
    L{TunnelMetrics} from the moment it attaches (the registry's change
    listener gives it those), so counting stays a plain attribute increment;
    what it counted before (its handshake, C{sessions_*}) stays in C{base}.
    Every series sums to the hub's total; the clusters are those that attached
    (authorized by the parent), so the label is bounded by the fleet.
    """

    def __init__(
        self, registry: SocketRegistry, base: TunnelMetrics, per_cluster: bool = False
    ) -> None:
        self.base = base
        self.per_cluster = per_cluster
        self.clusters: dict[str, TunnelMetrics] = {}
        self._registry = registry
        self._totals = SnapshotCollector(
            "clusternet_tunnel", self.snapshot, TUNNEL_GAUGES, "Tunnel"
        )
        if per_cluster:
            registry.on_change(self._changed)

    def _changed(self, cluster_id: str, attached: bool) -> None:
        if not attached:
            return
        try:
            session: Any = self._registry.session_for(cluster_id)
        except (UnknownCluster, ClusterNotConnected):
            return
        if getattr(session, "metrics", None) is not self.base:
            return
        own = self.clusters.get(cluster_id)
        if own is None:
            own = self.clusters[cluster_id] = TunnelMetrics()
        session.metrics = own

    def snapshot(self) -> dict[str, int]:
        """
        The hub's totals, as L{TunnelMetrics.snapshot}.
        """
        totals = self.base.snapshot()
        for own in self.clusters.values():
            for name, value in own.snapshot().items():
                totals[name] += value
        return totals

    def collect(self) -> Iterator[Metric]:
        if not self.per_cluster:
            yield from self._totals.collect()
            return
        shared = {name: 0 for name in (f.name for f in fields(TunnelMetrics))}
        by_cluster = {"": self.base.snapshot()}
        for cluster, own in self.clusters.items():
            by_cluster[cluster] = own.snapshot()
        for values in by_cluster.values():
            for name in shared:
                if name not in PER_CLUSTER_TUNNEL:
                    shared[name] += values[name]
        for name in sorted(shared):
            doc = f"Tunnel {name.replace('_', ' ')}"
            full = f"clusternet_tunnel_{name}"
            family: CounterMetricFamily | GaugeMetricFamily
            if name in PER_CLUSTER_TUNNEL:
                doc += ', by cluster ("": before a session attached)'
                if name in TUNNEL_GAUGES:
                    family = GaugeMetricFamily(full, doc, labels=["cluster"])
                else:
                    family = CounterMetricFamily(
                        full.removesuffix("_total"), doc, labels=["cluster"]
                    )
                for cluster in sorted(by_cluster):
                    family.add_metric([cluster], by_cluster[cluster][name])
            elif name in TUNNEL_GAUGES:
                family = GaugeMetricFamily(full, doc, value=shared[name])
            else:
                family = CounterMetricFamily(
                    full.removesuffix("_total"), doc, value=shared[name]
                )
            yield family
