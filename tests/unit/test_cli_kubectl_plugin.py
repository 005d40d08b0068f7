"""
C{kubectl clusternet}, the kubectl plugin front end of the fleet commands,
without a parent.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from clusternet import _cli_fleet, cli, kubectl_plugin
from clusternet._cli_fleet import ParentKubeconfig

ID = "0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d"
MCLS = {
    "metadata": {
        "name": "child-1",
        "namespace": "clusternet-x1y2z",
        "labels": {"clusters.clusternet.io/cluster-name": "child-1"},
    },
    "spec": {"clusterId": ID},
    "status": {
        "k8sVersion": "v1.32.0",
        "platform": "linux/amd64",
        "parentAPIServerURL": "https://127.0.0.1:6443",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}
SOCKET = {
    "metadata": {"name": ID},
    "status": {
        "peer": "127.0.0.1:50000",
        "attachedSince": "2026-11-26T19:00:00Z",
        "openStreams": 0,
        "attachedBy": "system:serviceaccount:clusternet-x1y2z:agent",
    },
}
NAMESPACES = [
    {
        "metadata": {
            "name": "clusternet-x1y2z",
            "labels": {
                "clusters.clusternet.io/dedicated-for": ID,
                "clusters.clusternet.io/cluster-name": "child-1",
            },
        }
    }
]
PARENT = {
    "current-context": "admin",
    "clusters": [{"name": "parent", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "admin", "user": {"token": "t"}}],
    "contexts": [{"name": "admin", "context": {"cluster": "parent", "user": "admin"}}],
}


class FakeParent:
    """
    The parent as the fleet commands read it; records the kubeconfig and
    context they were given.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kubeconfigs: list[str | None] = []
        self.contexts: list[str | None] = []

        def load(explicit: str | None) -> ParentKubeconfig:
            self.kubeconfigs.append(explicit)
            return ParentKubeconfig(PARENT, (Path(explicit or "default"),))

        def client(parent: ParentKubeconfig, context: str | None) -> FakeParent:
            self.contexts.append(context)
            return self

        monkeypatch.setattr(_cli_fleet, "load_parent_kubeconfig", load)
        monkeypatch.setattr(_cli_fleet, "_api_client", client)
        monkeypatch.setattr(_cli_fleet, "_list_managed_clusters", lambda c: [MCLS])
        monkeypatch.setattr(
            _cli_fleet, "_list_dedicated_namespaces", lambda c: NAMESPACES
        )
        monkeypatch.setattr(_cli_fleet, "_list_registration_requests", lambda c: [])
        monkeypatch.setattr(_cli_fleet, "_sockets", lambda c: {ID: SOCKET})


def test_installed_as_kubectl_clusternet() -> None:
    """
    The console script kubectl finds on PATH runs L{kubectl_plugin.main}.
    """
    (script,) = entry_points(group="console_scripts", name="kubectl-clusternet")
    assert script.value == "clusternet.kubectl_plugin:main"


def test_the_commands_are_clusternet_s_own() -> None:
    parser = kubectl_plugin.build_plugin_parser()
    for argv in (
        ["get", "clusters"],
        ["kubeconfig", "child-1"],
        ["approve", "child-1"],
        ["deny", "child-1"],
    ):
        args = parser.parse_args(argv)
        assert args._run is cli.COMMANDS[argv[0]].run


def test_help_lists_commands_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        kubectl_plugin.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kubectl clusternet ")
    for word in ("get", "kubeconfig", "approve", "deny", "--kubeconfig", "--context"):
        assert word in out
    assert "$KUBECONFIG" in out


def test_get_help_shows_the_output_formats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit:
        kubectl_plugin.main(["get", "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kubectl clusternet get ")
    assert "{wide,json,yaml}" in out
    assert "kubectl clusternet get clusters -o wide" in out


def test_kubeconfig_help_names_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        kubectl_plugin.main(["kubeconfig", "--help"])
    plugin = " ".join(capsys.readouterr().out.split())
    assert "as `kubectl clusternet get clusters` lists" in plugin
    with pytest.raises(SystemExit):
        cli.main(["kubeconfig", "--help"])
    clusternet = " ".join(capsys.readouterr().out.split())
    assert "as `clusternet get clusters` lists" in clusternet


def test_without_a_command_it_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert kubectl_plugin.main([]) == 0
    assert "usage: kubectl clusternet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "pods"],
        ["get", "clusters", "-o", "name"],
        ["get", "clusters", "--no-such-flag"],
        ["nope"],
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        kubectl_plugin.main(argv)
    assert exit.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ")


def test_failures_are_one_kubectl_style_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    assert kubectl_plugin.main(["get", "clusters", "--kubeconfig", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"error: cannot read kubeconfig {missing}: No such file or directory"
    ]


def test_kubeconfig_is_honoured_from_the_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert kubectl_plugin.main(["get", "clusters"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: no kubeconfig: none of $KUBECONFIG "
        f"({tmp_path / 'a'}:{tmp_path / 'b'}) exists"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "clusters", "--kubeconfig", "k", "--context", "c"],
        ["--kubeconfig", "k", "--context", "c", "get", "clusters"],
        ["--kubeconfig=k", "get", "clusters", "--context=c"],
        # the command's own flags win
        "--kubeconfig o --context x get clusters --kubeconfig k --context c".split(),
    ],
)
def test_kubeconfig_and_context_before_or_after_the_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    parent = FakeParent(monkeypatch)
    assert kubectl_plugin.main(argv) == 0
    assert parent.kubeconfigs == ["k"] and parent.contexts == ["c"]
    assert "child-1" in capsys.readouterr().out


def test_defaults_are_left_to_the_kubeconfig(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = FakeParent(monkeypatch)
    assert kubectl_plugin.main(["get", "clusters"]) == 0
    assert parent.kubeconfigs == [None] and parent.contexts == [None]


@pytest.mark.parametrize("output", [[], ["-o", "wide"], ["-o", "json"], ["-oyaml"]])
def test_output_is_the_same_as_clusternet_s(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    output: list[str],
) -> None:
    FakeParent(monkeypatch)
    monkeypatch.setattr(_cli_fleet.time, "time", lambda: 1795719600.0)
    assert kubectl_plugin.main(["get", "clusters", *output]) == 0
    plugin = capsys.readouterr()
    assert cli.main(["get", "clusters", *output]) == 0
    assert capsys.readouterr() == plugin
    assert ID in plugin.out


def test_json_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch)
    assert kubectl_plugin.main(["get", "clusters", "--output=json"]) == 0
    listed: dict[str, Any] = json.loads(capsys.readouterr().out)
    (item,) = listed["items"]
    assert item["name"] == "child-1" and item["ready"] == "True"
    assert item["tunnel"]["attached"] is True
    assert item["tunnel"]["peer"] == "127.0.0.1:50000"


def test_wide_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeParent(monkeypatch)
    assert kubectl_plugin.main(["get", "clusters", "-o", "wide"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[8:] == ["PEER", "STREAMS", "ATTACHED-BY", "PARENT"]
    assert row.split()[8:] == [
        "127.0.0.1:50000",
        "0",
        "system:serviceaccount:clusternet-x1y2z:agent",
        "https://127.0.0.1:6443",
    ]
