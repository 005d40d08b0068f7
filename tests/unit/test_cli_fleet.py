"""
The fleet helpers of the `clusternet` command, without a parent.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet import _cli_fleet, cli
from clusternet._cli_fleet import (
    CannotVerify,
    build_child_kubeconfig,
    child_server_url,
    cluster_rows,
    fleet_view,
    resolve_cluster,
)
from clusternet.cli import CommandError

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
MCLS = {
    "metadata": {
        "name": "clusternet-cluster-abcde",
        "namespace": "clusternet-x1y2z",
        "labels": {"clusters.clusternet.io/cluster-name": "edge-1"},
    },
    "spec": {"clusterId": ID, "clusterType": "EdgeClusterSelfProvisioned"},
    "status": {
        "k8sVersion": "v1.32.0",
        "platform": "linux/amd64",
        "lastObservedTime": "2026-11-26T19:00:00Z",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}
PARENT = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "admin",
    "clusters": [
        {
            "name": "parent",
            "cluster": {
                "server": "https://127.0.0.1:6443/",
                "certificate-authority": "ca.crt",
            },
        }
    ],
    "users": [
        {
            "name": "admin",
            "user": {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"},
        }
    ],
    "contexts": [{"name": "admin", "context": {"cluster": "parent", "user": "admin"}}],
}


def test_resolve_by_name_label_or_id() -> None:
    for wanted in ("edge-1", "clusternet-cluster-abcde", ID):
        assert resolve_cluster([MCLS], wanted) is MCLS


def test_resolve_unknown_lists_known_ones() -> None:
    with pytest.raises(CommandError, match="known: edge-1"):
        resolve_cluster([MCLS], "edge-9")


def test_direct_url_and_targets() -> None:
    assert child_server_url("https://p:6443/", ID, "direct", None) == (
        f"https://p:6443/apis/proxies.clusternet.io/v1alpha1/sockets/{ID}/proxy/direct"
    )
    assert child_server_url("https://p", ID, "https", "10.0.0.1:6443").endswith(
        f"{ID}/proxy/https/10.0.0.1:6443"
    )
    with pytest.raises(CommandError, match="--target"):
        child_server_url("https://p", ID, "http", None)


def test_child_kubeconfig_keeps_credentials_and_absolutizes_paths(
    tmp_path: Path,
) -> None:
    config = build_child_kubeconfig(
        PARENT, tmp_path / "parent.kubeconfig", None, ID, "edge-1", "direct", None
    )
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].endswith(f"/sockets/{ID}/proxy/direct")
    assert cluster["certificate-authority"] == str((tmp_path / "ca.crt").resolve())
    assert config["users"][0]["user"]["client-key-data"] == "a2V5"
    assert config["current-context"] == "clusternet-edge-1"
    yaml.safe_dump(config)


def test_child_kubeconfig_unknown_context() -> None:
    with pytest.raises(CommandError, match="no context named 'nope'"):
        build_child_kubeconfig(PARENT, Path("/x/k"), "nope", ID, "e", "direct", None)


def test_rows_show_readiness_version_and_tunnel() -> None:
    sockets = {ID: {"status": {"attachedSince": "2026-11-26T19:00:00Z"}}}
    [row] = cluster_rows([MCLS], sockets, now=1795719600.0 + 300)
    assert row[:6] == [
        "edge-1",
        ID,
        "clusternet-x1y2z",
        "True",
        "v1.32.0",
        "linux/amd64",
    ]
    assert row[6] == row[7] == "5m"


def test_kubeconfig_command_reports_missing_file_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main(
        ["kubeconfig", "edge-1", "--kubeconfig", "/nonexistent/kubeconfig"]
    )
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("Error: cannot read kubeconfig /nonexistent/kubeconfig")


# --- only genuine ManagedClusters ------------------------------------------------

B_ID = "0b8a3f4e-1111-4222-8333-444455556666"
GENUINE_B = {
    "metadata": {
        "name": "edge-2",
        "namespace": "clusternet-b1b2b",
        "labels": {"clusters.clusternet.io/cluster-name": "edge-2"},
    },
    "spec": {"clusterId": B_ID},
    "status": {"k8sVersion": "v1.31.4", "conditions": [{"type": "Ready"}]},
}
# Written by cluster A in A's own namespace, claiming B's ID.
FORGED_B = {
    "metadata": {
        "name": "edge-2",
        "namespace": "clusternet-x1y2z",
        "labels": {"clusters.clusternet.io/cluster-name": "edge-2"},
    },
    "spec": {"clusterId": B_ID},
    "status": {
        "k8sVersion": "v9.9.9",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}
DEDICATED = [
    {
        "metadata": {
            "name": "clusternet-x1y2z",
            "labels": {
                "clusters.clusternet.io/dedicated-for": ID,
                "clusters.clusternet.io/cluster-name": "clusternet-cluster-abcde",
            },
        }
    },
    {
        "metadata": {
            "name": "clusternet-b1b2b",
            "labels": {
                "clusters.clusternet.io/dedicated-for": B_ID,
                "clusters.clusternet.io/cluster-name": "edge-2",
            },
        }
    },
]
REQUESTS = [
    {
        "metadata": {"name": f"clusternet-{ID}"},
        "status": {
            "dedicatedNamespace": "clusternet-x1y2z",
            "managedClusterName": "clusternet-cluster-abcde",
        },
    }
]
SOCKET_B = {
    "metadata": {"name": B_ID},
    "status": {"attachedSince": "2026-11-26T19:00:00Z"},
}


def test_the_fleet_view_keeps_only_genuine_managed_clusters() -> None:
    view = fleet_view([MCLS, FORGED_B, GENUINE_B], DEDICATED, REQUESTS)
    assert view.verified
    assert sorted(c["metadata"]["namespace"] for c in view.clusters) == [
        "clusternet-b1b2b",
        "clusternet-x1y2z",
    ]
    (ignored,) = view.ignored
    assert (ignored.namespace, ignored.name, ignored.cluster_id) == (
        "clusternet-x1y2z",
        "edge-2",
        B_ID,
    )


def test_a_forgery_does_not_make_a_name_ambiguous() -> None:
    view = fleet_view([MCLS, FORGED_B, GENUINE_B], DEDICATED, REQUESTS)
    assert resolve_cluster(view.clusters, "edge-2") is GENUINE_B
    assert resolve_cluster(view.clusters, B_ID) is GENUINE_B


def test_without_namespaces_every_row_is_marked_unverified() -> None:
    view = fleet_view([MCLS, FORGED_B], None, [])
    assert not view.verified
    assert view.clusters == [MCLS, FORGED_B]
    rows = cluster_rows(view.clusters, {}, 0.0, verified=view.verified)
    assert [row[-1] for row in rows] == ["no", "no"]
    assert len(cluster_rows(view.clusters, {}, 0.0)[0]) == len(rows[0]) - 1


class FakeParent:
    """
    What C{clusternet get clusters} reads from the parent, in place of the
    kubernetes client.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        clusters: list[dict[str, Any]],
        namespaces: list[dict[str, Any]] | None,
    ) -> None:
        def dedicated(api_client: object) -> list[dict[str, Any]]:
            if namespaces is None:
                raise CannotVerify("cannot list namespaces (403 Forbidden)")
            return namespaces

        monkeypatch.setattr(_cli_fleet, "_api_client", lambda path, context: self)
        monkeypatch.setattr(_cli_fleet, "_list_managed_clusters", lambda c: clusters)
        monkeypatch.setattr(_cli_fleet, "_list_dedicated_namespaces", dedicated)
        monkeypatch.setattr(_cli_fleet, "_list_registration_requests", lambda c: [])
        monkeypatch.setattr(_cli_fleet, "_sockets", lambda c: {B_ID: SOCKET_B})


def test_get_clusters_leaves_the_forgery_out_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch, [MCLS, FORGED_B, GENUINE_B], DEDICATED)
    assert cli.main(["get", "clusters", "--kubeconfig", "unused"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "CLUSTER-ID",
        "NAMESPACE",
        "READY",
        "KUBERNETES",
        "PLATFORM",
        "HEARTBEAT",
        "TUNNEL",
    ]
    assert "v9.9.9" not in out
    (row_b,) = [line for line in lines if B_ID in line]
    assert "clusternet-b1b2b" in row_b and "v1.31.4" in row_b
    assert len(lines) == 3
    (warning,) = err.splitlines()
    assert warning.startswith(
        "Warning: ignoring ManagedCluster clusternet-x1y2z/edge-2"
    )
    assert B_ID in warning


def test_get_clusters_without_namespaces_marks_every_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch, [FORGED_B, GENUINE_B], None)
    assert cli.main(["get", "clusters", "--kubeconfig", "unused"]) == 0
    out, err = capsys.readouterr()
    header, *rows = out.splitlines()
    assert header.split()[-1] == "VERIFIED"
    assert len(rows) == 2 and all(row.split()[-1] == "no" for row in rows)
    assert "cannot list namespaces (403 Forbidden)" in err
    assert "may be forged" in err


def test_kubeconfig_resolves_only_genuine_clusters(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    FakeParent(monkeypatch, [MCLS, FORGED_B], DEDICATED)
    parent = tmp_path / "parent.kubeconfig"
    parent.write_text(yaml.safe_dump(PARENT))
    assert cli.main(["kubeconfig", "edge-2", "--kubeconfig", str(parent)]) == 1
    assert "no cluster 'edge-2'" in capsys.readouterr().err


class FakeCoreV1:
    answer: Any = None

    def __init__(self, api_client: object) -> None:
        pass

    def list_namespace(self, **kwargs: Any) -> Any:
        assert kwargs["label_selector"] == "clusters.clusternet.io/dedicated-for"
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_listing_the_dedicated_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    monkeypatch.setattr(client, "CoreV1Api", FakeCoreV1)

    class Response:
        data = json.dumps({"items": DEDICATED}).encode()

    FakeCoreV1.answer = Response()
    assert _cli_fleet._list_dedicated_namespaces(object()) == DEDICATED
    FakeCoreV1.answer = ApiException(status=403, reason="Forbidden")
    with pytest.raises(CannotVerify, match="403 Forbidden"):
        _cli_fleet._list_dedicated_namespaces(object())
    FakeCoreV1.answer = ApiException(status=500, reason="Internal Server Error")
    with pytest.raises(CommandError, match="listing namespaces failed: 500"):
        _cli_fleet._list_dedicated_namespaces(object())
