"""
clusternet.kube against a real process: the sandbox API server, with the real
reactor and thread pool (each scenario runs in its own process), and every
manifest of the deploy tree through `kubectl apply --dry-run=server`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.sandbox import KUBECTL, REPO, Sandbox, running_sandbox

pytestmark = pytest.mark.slow

SCENARIOS = Path(__file__).with_name("scenarios.py")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("parent")) as running:
        yield running


def run(sandbox: Sandbox, scenario: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, str(SCENARIOS), str(sandbox.kubeconfig), scenario],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_crud_errors_and_raw_paths(sandbox: Sandbox) -> None:
    out = run(sandbox, "crud")
    assert out["second_create"] == [409, "AlreadyExists"]
    assert out["bad_create"][0] == 422
    assert out["status"] == "Approved"
    assert out["stale_update"] == [409, "Conflict"]
    assert out["listed"] == ["clusternet-dc91021d-2361-4f6d-a404-7c33b9e01118"]
    assert out["after_delete"] == 404
    assert out["version"][0] == 200 and out["version"][1].startswith("v")
    assert out["readyz"] == 200
    assert out["missing"] == 404
    assert out["microtime"] == "2026-11-26T10:00:00.000000Z"


def test_informer_sees_list_and_watch_events_and_stops_promptly(
    sandbox: Sandbox,
) -> None:
    out = run(sandbox, "informer")
    # The namespace's kube-root-ca.crt (made by the server) comes and goes too.
    events = [e for e in out["events"] if e[1] != "kube-root-ca.crt"]
    assert events == [
        ["add", "before"],
        ["add", "during"],
        ["update", "before"],
        ["delete", "during"],
    ]
    assert out["lists"] == 1
    assert out["watches"] >= 2
    assert [n for n in out["cache"] if n != "kube-root-ca.crt"] == ["before"]
    assert out["stop_seconds"] < 5


def test_leader_election_between_two_electors(sandbox: Sandbox) -> None:
    out = run(sandbox, "election")
    assert out["both"] == [True, False]
    # Released: the standby takes it long before the 10 s lease would expire.
    assert 0 <= out["takeover"] < 8
    # Not released: the next candidate waits out the 10 s lease, then takes it.
    assert 10 <= out["expiry_takeover"] < 10 + 8
    assert out["log"][:3] == ["start a", "stop a", "start b"]
    assert out["holder"] == "b" and out["transitions"] >= 1


def manifest_documents() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted((REPO / "deploy").rglob("*.yaml")) + sorted(
        (REPO / "manifests").rglob("*.yaml")
    ):
        text = path.read_text()
        text = text.replace("$PARENTURL", "https://parent.example.com:6443")
        text = text.replace("$REGTOKEN", "07401b.f395accd246ae52d")
        for i, doc in enumerate(d for d in yaml.safe_load_all(text) if d):
            found.append((str(path.relative_to(REPO)), i, doc))
    return found


DOCUMENTS = manifest_documents()


@pytest.fixture(scope="module")
def served_kinds(sandbox: Sandbox) -> set[tuple[str, str]]:
    sandbox.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                for n in ("clusternet-system", "edge-system")
            ]
        ),
    )
    listing = sandbox.kubectl("api-resources", "--no-headers", "-o", "wide").stdout
    kinds = set()
    for line in listing.splitlines():
        words = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...
        for i, word in enumerate(words):
            if word in ("true", "false"):
                kinds.add((words[i - 1], words[i + 1]))
                break
    return kinds


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.parametrize(
    "path, index, doc",
    DOCUMENTS,
    ids=[f"{p}#{i}-{d['kind']}" for p, i, d in DOCUMENTS],
)
def test_manifest_applies_with_server_dry_run(
    sandbox: Sandbox,
    served_kinds: set[tuple[str, str]],
    path: str,
    index: int,
    doc: dict[str, Any],
) -> None:
    if (doc["apiVersion"], doc["kind"]) not in served_kinds:
        pytest.xfail(f"the sandbox does not serve {doc['apiVersion']} {doc['kind']}")
    result = sandbox.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout
