"""
The Grafana dashboard in deploy/dashboards uses only metrics the hub and the
agent export.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from treq.testing import StubTreq
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.testing import MemoryReactorClock, StringTransport

from clusternet.agent._direct import DirectServer
from clusternet.agent._identity import IdentityPolicy
from clusternet.agent._options import AgentOptions
from clusternet.agent._service import make_agent_service
from clusternet.hub._options import HubOptions
from clusternet.hub._service import HubParts
from clusternet.kube import ConnectionInfo

DASHBOARD = (
    Path(__file__).resolve().parents[2]
    / "deploy"
    / "dashboards"
    / "clusternet-grafana.json"
)
METRIC = re.compile(r"clusternet_[a-z_]+")
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "http://127.0.0.1:1"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
"""
PROXY = "/apis/proxies.clusternet.io/v1alpha1/sockets/c1/proxy/direct/api/v1/pods"


def expressions(node: Any) -> list[str]:
    """
    Every query of the dashboard: panel targets and template variables.
    """
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


def exported(text: str) -> set[str]:
    """
    The names of the samples in C{text}.
    """
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def declared(text: str) -> set[str]:
    """
    The names the metrics declared in C{text} have samples under, with
    samples or not yet (a series per cluster appears once the cluster is in
    use).
    """
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }


def hub_names(tmp_path: Path, per_cluster: bool) -> set[str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    options = HubOptions()
    options.parseOptions(
        [
            f"--kubeconfig={kubeconfig}",
            "--listen=tcp:0",
            f"--metrics-per-cluster={str(per_cluster).lower()}",
        ]
    )
    parts = HubParts(MemoryReactorClock(), options)
    # A few proxied requests (refused: nobody is authenticated here).
    treq: Any = StubTreq(parts.resource)
    for _ in range(3):
        response = treq.get(f"https://hub{PROXY}")
        treq.flush()
        assert response.result.code == 401
    text = generate_latest(parts.metrics).decode()
    return declared(text) if per_cluster else exported(text)


def agent_names(tmp_path: Path) -> set[str]:
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
    reactor = MemoryReactorClock()
    direct = DirectServer(reactor)
    top: Any = make_agent_service(reactor, options, direct)
    [listener] = [s for s in top if isinstance(s, StreamServerEndpointService)]
    # A few requests down a tunnel stream (refused: no parent identity).
    protocol: Any = direct(
        ConnectionInfo(server="http://127.0.0.1:1"), IdentityPolicy()
    )()
    transport = StringTransport()
    protocol.makeConnection(transport)
    for _ in range(3):
        protocol.dataReceived(b"GET /api/v1/pods HTTP/1.1\r\nHost: direct\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 401 ") == 3
    registry = listener.factory.resource.children[b"metrics"]._registry
    return exported(generate_latest(registry).decode())


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"], panel["title"]


def test_every_metric_the_dashboard_uses_is_exported(tmp_path: Path) -> None:
    used = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in METRIC.findall(expr)
    }
    assert "clusternet_hub_proxy_requests_total" in used
    assert "clusternet_agent_request_duration_seconds_bucket" in used
    for per_cluster in (False, True):
        names = hub_names(tmp_path, per_cluster) | agent_names(tmp_path)
        missing = used - names
        assert not missing, (per_cluster, sorted(missing))
