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
    ParentKubeconfig,
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

        monkeypatch.setattr(
            _cli_fleet,
            "load_parent_kubeconfig",
            lambda explicit: ParentKubeconfig(PARENT, (Path(explicit),)),
        )
        monkeypatch.setattr(_cli_fleet, "_api_client", lambda parent, context: self)
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


# --- output formats ---------------------------------------------------------------

SOCKET_B_FULL = {
    "metadata": {"name": B_ID},
    "status": {
        "peer": "10.1.2.3:40112",
        "attachedSince": "2026-11-26T19:00:00Z",
        "openStreams": 2,
        "attachedBy": "system:serviceaccount:clusternet-b1b2b:agent",
    },
}
GENUINE_B_FULL = {
    **GENUINE_B,
    "status": {
        **GENUINE_B["status"],
        "platform": "linux/arm64",
        "parentAPIServerURL": "https://parent.example:6443",
        "lastObservedTime": "2026-11-26T19:04:00Z",
    },
}
NOW = 1795719600.0 + 300  # 2026-11-26T19:05:00Z


def test_items_carry_the_cluster_and_its_tunnel() -> None:
    a, b = _cli_fleet.cluster_items([GENUINE_B_FULL, MCLS], {B_ID: SOCKET_B_FULL}, NOW)
    assert a["name"] == "edge-1" and a["tunnel"] == {
        "attached": False,
        "peer": None,
        "since": None,
        "age": None,
        "streams": None,
        "attachedBy": None,
    }
    assert b == {
        "name": "edge-2",
        "clusterId": B_ID,
        "namespace": "clusternet-b1b2b",
        "ready": "Unknown",
        "kubernetesVersion": "v1.31.4",
        "platform": "linux/arm64",
        "lastHeartbeat": "2026-11-26T19:04:00Z",
        "parent": "https://parent.example:6443",
        "verified": True,
        "tunnel": {
            "attached": True,
            "peer": "10.1.2.3:40112",
            "since": "2026-11-26T19:00:00Z",
            "age": "5m",
            "streams": 2,
            "attachedBy": "system:serviceaccount:clusternet-b1b2b:agent",
        },
    }


def test_wide_rows_add_the_tunnel_s_peer_streams_user_and_the_parent() -> None:
    sockets = {B_ID: SOCKET_B_FULL}
    narrow = cluster_rows([GENUINE_B_FULL, MCLS], sockets, NOW)
    wide = cluster_rows([GENUINE_B_FULL, MCLS], sockets, NOW, wide=True)
    assert [row[:8] for row in wide] == narrow
    assert [row[8:] for row in wide] == [
        ["-", "-", "-", "-"],
        [
            "10.1.2.3:40112",
            "2",
            "system:serviceaccount:clusternet-b1b2b:agent",
            "https://parent.example:6443",
        ],
    ]
    assert _cli_fleet.cluster_header(wide=True)[8:] == [
        "PEER",
        "STREAMS",
        "ATTACHED-BY",
        "PARENT",
    ]
    unverified = cluster_rows([MCLS], {}, NOW, verified=False, wide=True)
    assert unverified[0][-1] == "no"
    assert _cli_fleet.cluster_header(False, True)[-1] == "VERIFIED"


def test_json_and_yaml_are_a_list_of_the_items() -> None:
    items = _cli_fleet.cluster_items([MCLS], {}, NOW)
    for output, load in (("json", json.loads), ("yaml", yaml.safe_load)):
        listed = load(_cli_fleet.render_clusters(items, output, NOW))
        assert listed == {"apiVersion": "v1", "kind": "List", "items": items}
    with pytest.raises(CommandError, match="allowed formats are: wide,json,yaml"):
        _cli_fleet.render_clusters(items, "name", NOW)


def test_the_table_aligns_columns_under_the_header() -> None:
    items = _cli_fleet.cluster_items([MCLS, GENUINE_B_FULL], {}, NOW)
    header, *rows = _cli_fleet.render_clusters(items, None, NOW).splitlines()
    assert header.split() == list(_cli_fleet.COLUMNS)
    tunnel = header.index("TUNNEL")
    assert [row[tunnel:] for row in rows] == ["-", "-"]


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_get_clusters_as_data(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    output: str,
) -> None:
    FakeParent(monkeypatch, [MCLS, FORGED_B, GENUINE_B], DEDICATED)
    assert cli.main(["get", "clusters", "--kubeconfig", "k", "-o", output]) == 0
    out, err = capsys.readouterr()
    listed = json.loads(out) if output == "json" else yaml.safe_load(out)
    assert listed["kind"] == "List"
    assert [(i["name"], i["namespace"]) for i in listed["items"]] == [
        ("edge-1", "clusternet-x1y2z"),
        ("edge-2", "clusternet-b1b2b"),
    ]
    assert listed["items"][1]["tunnel"]["attached"] is True
    assert "ignoring ManagedCluster clusternet-x1y2z/edge-2" in err


def test_get_clusters_wide(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch, [FORGED_B, GENUINE_B], None)
    assert cli.main(["get", "clusters", "--kubeconfig", "k", "-o", "wide"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[8:] == [
        "PEER",
        "STREAMS",
        "ATTACHED-BY",
        "PARENT",
        "VERIFIED",
    ]
    assert len(rows) == 2


def test_no_clusters_is_an_empty_list_as_data(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch, [], DEDICATED)
    assert cli.main(["get", "clusters", "--kubeconfig", "k", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == []
    assert cli.main(["get", "clusters", "--kubeconfig", "k"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == "No clusters registered.\n"


def test_written_kubeconfig_is_private(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    FakeParent(monkeypatch, [MCLS], DEDICATED)
    out = tmp_path / "edge-1.kubeconfig"
    assert cli.main(["kubeconfig", "edge-1", "--kubeconfig", "k", "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    written = yaml.safe_load(out.read_text())
    assert written["clusters"][0]["cluster"]["server"].endswith(
        f"/sockets/{ID}/proxy/direct"
    )
    assert f"wrote {out}" in capsys.readouterr().err


# --- choosing the parent's kubeconfig as kubectl does -----------------------------


def _kubeconfig(
    path: Path, context: str, server: str, current: str | None = None
) -> Path:
    """
    A kubeconfig with relative file references (which exist) and an exec plugin
    given by a relative path (which does not run: the token comes first).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "token").write_text(f"token-of-{context}")
    (path.parent / "ca.crt").write_text("a CA, not read before a call")
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority": "ca.crt"},
            }
        ],
        "users": [
            {
                "name": context,
                "user": {
                    "tokenFile": "token",
                    "exec": {"command": "./bin/login", "apiVersion": "v1"},
                },
            }
        ],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": context}}
        ],
    }
    if current is not None:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubeconfig_files_follow_kubectl(tmp_path: Path) -> None:
    files = _cli_fleet.kubeconfig_files
    assert files("x", {"KUBECONFIG": "a:b"}) == ([Path("x")], True)
    a, b = tmp_path / "a", tmp_path / "b"
    assert files(None, {"KUBECONFIG": f"{a}::{b}"}) == ([a, b], False)
    assert files(None, {}) == ([Path.home() / ".kube" / "config"], True)
    assert files(None, {"KUBECONFIG": ""})[0] == [Path.home() / ".kube" / "config"]


def test_kubeconfig_list_merges_first_wins(tmp_path: Path) -> None:
    first = _kubeconfig(tmp_path / "one" / "config", "parent", "https://p:6443")
    second = _kubeconfig(
        tmp_path / "two" / "config", "parent", "https://decoy:6443", "parent"
    )
    other = _kubeconfig(tmp_path / "three" / "config", "other", "https://o", "other")
    env = {"KUBECONFIG": f"{tmp_path / 'missing'}:{first}:{second}:{other}"}
    parent = _cli_fleet.load_parent_kubeconfig(None, env)
    assert parent.files == (first, second, other)
    config = parent.config
    # the first file that sets current-context wins (the kubernetes client's
    # loader would take the last)
    assert config["current-context"] == "parent"
    assert [c["name"] for c in config["clusters"]] == ["parent", "other"]
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://p:6443"
    assert cluster["certificate-authority"] == str(first.parent / "ca.crt")
    user = config["users"][0]["user"]
    assert user["tokenFile"] == str(first.parent / "token")
    assert user["exec"]["command"] == str(first.parent / "bin" / "login")
    assert config["users"][1]["user"]["tokenFile"] == str(other.parent / "token")


def test_no_kubeconfig_at_all_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="none of \\$KUBECONFIG"):
        _cli_fleet.load_parent_kubeconfig(None, {"KUBECONFIG": str(tmp_path / "m")})
    with pytest.raises(CommandError, match="cannot read kubeconfig"):
        _cli_fleet.load_parent_kubeconfig(str(tmp_path / "m"), {})


def test_the_client_uses_the_context_kubectl_picks(tmp_path: Path) -> None:
    first = _kubeconfig(tmp_path / "one" / "config", "parent", "https://p:6443")
    second = _kubeconfig(tmp_path / "two" / "config", "decoy", "https://d", "decoy")
    # sets current-context too, but after the second file did
    third = _kubeconfig(tmp_path / "three" / "config", "x", "https://x", "parent")
    env = {"KUBECONFIG": f"{first}:{second}:{third}"}
    parent = _cli_fleet.load_parent_kubeconfig(None, env)
    assert parent.config["current-context"] == "decoy"
    client = _cli_fleet._api_client(parent, "parent")
    assert client.configuration.host == "https://p:6443"
    assert client.configuration.api_key["BearerToken"] == "Bearer token-of-parent"
    assert _cli_fleet._api_client(parent, None).configuration.host == "https://d"
    with pytest.raises(CommandError, match="no context named 'nope'"):
        _cli_fleet._api_client(parent, "nope")
