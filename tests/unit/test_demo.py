"""
The demo and its fleet apply the manifests users apply by hand.
"""

from pathlib import Path

import pytest
import yaml

from clusternet.apis import crds
from clusternet.demo import DemoError, _fresh
from clusternet.fleet import BOOTSTRAP_TOKEN, shipped_objects, shipped_root

REPO = Path(__file__).resolve().parents[2]


def test_the_fleet_applies_the_shipped_files_of_this_tree() -> None:
    assert shipped_root() == REPO
    (secret, *_) = shipped_objects("manifests/samples/cluster_bootstrap_token.yaml")
    data = secret["stringData"]
    assert f"{data['token-id']}.{data['token-secret']}" == BOOTSTRAP_TOKEN
    (filled,) = shipped_objects(
        "deploy/templates/clusternet_agent_secret.yaml",
        {"PARENTURL": "https://parent:6443", "REGTOKEN": BOOTSTRAP_TOKEN},
    )
    assert filled["stringData"] == {
        "parentURL": "https://parent:6443",
        "regToken": BOOTSTRAP_TOKEN,
    }


def test_crds_are_the_manifests() -> None:
    on_disk = [
        yaml.safe_load(p.read_text())
        for p in sorted((REPO / "manifests" / "crds").glob("*.yaml"))
    ]
    assert sorted(on_disk, key=lambda c: c["metadata"]["name"]) == sorted(
        crds(), key=lambda c: c["metadata"]["name"]
    )


def test_demo_refuses_to_empty_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not made by the demo"):
        _fresh(tmp_path)
    assert (tmp_path / "precious.txt").exists()
    ours = tmp_path / "demo"
    _fresh(ours)
    (ours / "state").write_text("old")
    _fresh(ours)
    assert not (ours / "state").exists()
