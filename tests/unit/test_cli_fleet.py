"""
The fleet helpers of the `clusternet` command, without a parent.
"""

from pathlib import Path

import pytest
import yaml

from clusternet import cli
from clusternet._cli_fleet import (
    build_child_kubeconfig,
    child_server_url,
    cluster_rows,
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
