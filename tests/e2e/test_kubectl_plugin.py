"""
C{kubectl clusternet} as users run it: the real kubectl finding the installed
C{kubectl-clusternet} on PATH, against a fleet of real processes (a parent
sandbox, the hub, one child with its agent).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet.fleet import Fleet

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    if not (BIN / "kubectl-clusternet").exists():
        pytest.skip("kubectl-clusternet is not installed beside this Python")
    data = tmp_path_factory.mktemp("plugin-fleet")
    fleet = Fleet(data, children=1, say=lambda line: None)
    try:
        fleet.start()
        fleet.wait_ready(120)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        fleet.stop()


def kubectl(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """
    Run the real kubectl with this installation's bin folder first on PATH and
    no $KUBECONFIG unless C{env} sets one.
    """
    environ = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    environ["PATH"] = f"{BIN}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(env or {})
    done = subprocess.run(
        ["kubectl", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def parent(fleet: Fleet) -> str:
    assert fleet.parent is not None
    return str(fleet.parent.kubeconfig)


def clusters_as_json(fleet: Fleet) -> list[dict[str, Any]]:
    listed = json.loads(
        kubectl(
            "clusternet", "get", "clusters", "--kubeconfig", parent(fleet), "-o", "json"
        ).stdout
    )
    assert listed["kind"] == "List"
    items: list[dict[str, Any]] = listed["items"]
    return items


def attached(fleet: Fleet, timeout: float = 60.0) -> dict[str, Any]:
    """
    child-1's item, once it is Ready with its tunnel attached.
    """
    deadline = time.monotonic() + timeout
    while True:
        (item,) = clusters_as_json(fleet)
        if item["ready"] == "True" and item["tunnel"]["attached"]:
            return item
        assert time.monotonic() < deadline, item
        time.sleep(1)


def test_plugin_list_shows_it(fleet: Fleet) -> None:
    listed = kubectl("plugin", "list", check=False)
    assert str(BIN / "kubectl-clusternet") in listed.stdout, listed.stderr


def test_get_clusters(fleet: Fleet) -> None:
    attached(fleet)
    done = kubectl("clusternet", "get", "clusters", "--kubeconfig", parent(fleet))
    header, *rows = done.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "CLUSTER-ID",
        "NAMESPACE",
        "READY",
        "KUBERNETES",
        "PLATFORM",
        "HEARTBEAT",
        "TUNNEL",
    ]
    (row,) = rows
    name, _, _, ready, version, *_ = row.split()
    assert (name, ready) == ("child-1", "True")
    assert version.startswith("v1.")
    assert done.stderr == ""


def test_get_clusters_as_json_and_yaml(fleet: Fleet) -> None:
    item = attached(fleet)
    assert item["name"] == "child-1"
    assert item["namespace"].startswith("clusternet-")
    assert item["kubernetesVersion"].startswith("v1.")
    assert "/" in item["platform"]
    assert item["lastHeartbeat"] and item["verified"] is True
    assert item["tunnel"]["peer"] and item["tunnel"]["age"]
    assert item["tunnel"]["attachedBy"]
    # status.parentAPIServerURL, when the agent reports it
    assert item["parent"] is None or item["parent"].startswith("https://")
    as_yaml = yaml.safe_load(
        kubectl(
            "clusternet", "get", "clusters", "--kubeconfig", parent(fleet), "-oyaml"
        ).stdout
    )
    assert [i["clusterId"] for i in as_yaml["items"]] == [item["clusterId"]]


def test_get_clusters_wide(fleet: Fleet) -> None:
    item = attached(fleet)
    done = kubectl(
        "clusternet", "get", "clusters", "--kubeconfig", parent(fleet), "-o", "wide"
    )
    header, row = done.stdout.splitlines()
    assert header.split()[8:] == ["PEER", "STREAMS", "ATTACHED-BY", "PARENT"]
    peer, streams, user, parent_url = row.split()[8:]
    assert peer == item["tunnel"]["peer"]
    assert streams.isdigit()
    assert user == item["tunnel"]["attachedBy"]
    assert parent_url == (item["parent"] or "-")


def test_kubeconfig_from_the_environment_as_kubectl_reads_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    """
    $KUBECONFIG is a list: files that do not exist are skipped, and the first
    file's current context wins over a later file's.
    """
    decoy = tmp_path / "decoy.kubeconfig"
    decoy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "decoy", "cluster": {"server": "https://127.0.0.1:1"}}
                ],
                "users": [{"name": "decoy", "user": {"token": "x"}}],
                "contexts": [
                    {"name": "decoy", "context": {"cluster": "decoy", "user": "decoy"}}
                ],
                "current-context": "decoy",
            }
        )
    )
    env = {
        "KUBECONFIG": os.pathsep.join([str(tmp_path / "no"), parent(fleet), str(decoy)])
    }
    done = kubectl("clusternet", "get", "clusters", env=env)
    assert "child-1" in done.stdout
    refused = kubectl(
        "clusternet", "get", "clusters", "--context", "decoy", env=env, check=False
    )
    assert refused.returncode == 1
    (line,) = refused.stderr.splitlines()
    assert line.startswith("error: cannot reach the parent")
    unknown = kubectl(
        "clusternet", "--context", "nope", "get", "clusters", env=env, check=False
    )
    assert unknown.returncode == 1
    assert unknown.stderr == "error: kubeconfig has no context named 'nope'\n"


def test_kubeconfig_reaches_the_child(fleet: Fleet, tmp_path: Path) -> None:
    attached(fleet)
    out = tmp_path / "child-1.kubeconfig"
    done = kubectl(
        "clusternet",
        "kubeconfig",
        "child-1",
        "--kubeconfig",
        parent(fleet),
        "-o",
        str(out),
    )
    assert f"wrote {out}" in done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    namespaces = kubectl("--kubeconfig", str(out), "get", "ns", "-o", "name").stdout
    assert "namespace/kube-system" in namespaces.split()


def test_help_and_errors(fleet: Fleet) -> None:
    top = kubectl("clusternet", "--help").stdout
    assert top.startswith("usage: kubectl clusternet")
    assert "kubeconfig" in top and "get" in top
    get = kubectl("clusternet", "get", "--help").stdout
    assert "{wide,json,yaml}" in get
    wrong = kubectl(
        "clusternet",
        "get",
        "clusters",
        "--kubeconfig",
        parent(fleet),
        "-o",
        "name",
        check=False,
    )
    assert wrong.returncode == 1
    (line,) = wrong.stderr.splitlines()
    assert line.startswith("error: argument -o/--output: invalid choice: 'name'")
    missing = kubectl(
        "clusternet",
        "kubeconfig",
        "child-9",
        "--kubeconfig",
        parent(fleet),
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        "error: no cluster 'child-9' in the parent (known: child-1)"
    ]
