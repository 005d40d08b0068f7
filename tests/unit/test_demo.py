"""
The demo's parent objects agree with the manifests users apply by hand.
"""

from pathlib import Path

import pytest
import yaml

from clusternet.apis import crds
from clusternet.demo import DemoError, _fresh, bootstrap_token_objects

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_objects_are_the_sample_manifest() -> None:
    sample = REPO / "manifests" / "samples" / "cluster_bootstrap_token.yaml"
    assert list(yaml.safe_load_all(sample.read_text())) == bootstrap_token_objects()


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
