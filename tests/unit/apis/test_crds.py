"""
The CRD manifests agree with the object models and with each other.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from clusternet import apis
from clusternet.apis import (
    APPROVAL_RESULTS,
    CLUSTER_TYPES,
    CRD_FILE_NAMES,
    ClusterRegistrationRequest,
    ClusterRegistrationRequestSpec,
    ClusterRegistrationRequestStatus,
    ManagedCluster,
    ManagedClusterSpec,
    ManagedClusterStatus,
    ObjectMeta,
    crds,
    parse_time,
    render_crd,
    set_condition,
    write_crd_manifests,
)

ROOT = Path(__file__).resolve().parents[3]


def _load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """
    The structural-schema checks a real API server makes, for the keywords our
    CRDs use. Unknown fields count as errors: the server would prune them.
    """
    errors: list[str] = []
    kind = schema.get("type")
    checks = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
    }
    if kind in checks and not isinstance(value, checks[kind]):
        return [f"{path}: expected {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match pattern")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: too long")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: too short")
        if schema.get("format") == "byte":
            base64.b64decode(value, validate=True)
        if schema.get("format") == "date-time":
            parse_time(value)
    if isinstance(value, dict) and kind == "object" and "properties" in schema:
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required")
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{path}.{key}: unknown field (would be pruned)")
            elif key != "metadata":
                errors += validate(item, schema["properties"][key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


@pytest.mark.parametrize("directory", ["manifests/crds", "deploy/hub"])
def test_crd_files_are_generated_from_the_models_module(directory: str) -> None:
    for crd in crds():
        path = ROOT / directory / CRD_FILE_NAMES[crd["metadata"]["name"]]
        assert path.read_text() == render_crd(crd), (
            f"{path} is stale: regenerate with clusternet.apis.write_crd_manifests"
        )
        assert _load(path) == crd


def test_deploy_hub_carries_the_same_crds_as_manifests() -> None:
    for name in CRD_FILE_NAMES.values():
        assert (ROOT / "deploy/hub" / name).read_bytes() == (
            ROOT / "manifests/crds" / name
        ).read_bytes()


def test_write_crd_manifests_writes_every_crd(tmp_path: Path) -> None:
    written = write_crd_manifests(tmp_path)
    assert sorted(p.name for p in written) == sorted(CRD_FILE_NAMES.values())


def test_crds_have_names_scopes_categories_and_status_subresource() -> None:
    crr, mcls = crds()
    assert crr["spec"]["scope"] == "Cluster"
    assert crr["spec"]["names"]["shortNames"] == ["clsrr"]
    assert mcls["spec"]["scope"] == "Namespaced"
    assert mcls["spec"]["names"]["shortNames"] == ["mcls"]
    for crd in (crr, mcls):
        assert crd["spec"]["names"]["categories"] == ["clusternet"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert version["served"] and version["storage"]


def test_printer_columns() -> None:
    crr, mcls = crds()

    def columns(crd: dict[str, Any], priority: int) -> list[str]:
        return [
            c["name"]
            for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
            if c.get("priority", 0) == priority
        ]

    assert columns(crr, 0) == ["CLUSTER-ID", "STATUS", "AGE"]
    assert columns(mcls, 0) == [
        "CLUSTER-ID",
        "CLUSTER-TYPE",
        "KUBERNETES",
        "READYZ",
        "AGE",
    ]
    assert columns(mcls, 1) == ["PLATFORM", "READY", "LAST-OBSERVED"]


def test_enums_and_required_fields_match_the_models() -> None:
    crr, mcls = crds()
    crr_props = _schema(crr)["properties"]
    assert crr_props["status"]["properties"]["result"]["enum"] == list(APPROVAL_RESULTS)
    assert crr_props["spec"]["properties"]["clusterType"]["enum"] == list(CLUSTER_TYPES)
    assert crr_props["spec"]["required"] == ["clusterId"]
    assert _schema(mcls)["properties"]["spec"]["required"] == ["clusterId"]


def test_schema_refuses_what_the_models_refuse() -> None:
    crr, _ = crds()
    good = ClusterRegistrationRequest.new(
        "dc91021d-2361-4f6d-a404-7c33b9e01118", "edge-1"
    ).to_dict()
    assert validate(good, _schema(crr)) == []
    bad = dict(good, spec={"clusterId": "not-a-uuid", "clusterName": "Bad_Name"})
    assert len(validate(bad, _schema(crr))) == 2


names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=0))


@given(
    cluster_id=st.uuids().map(str),
    name=names,
    result=st.sampled_from((None, *APPROVAL_RESULTS)),
    token=st.binary(max_size=40),
    message=st.text(max_size=20),
)
def test_every_request_the_models_make_fits_the_schema(
    cluster_id: str, name: str, result: str | None, token: bytes, message: str
) -> None:
    crr = ClusterRegistrationRequest(
        metadata=ObjectMeta(name="clusternet-" + cluster_id),
        spec=ClusterRegistrationRequestSpec(cluster_id=cluster_id, cluster_name=name),
        status=ClusterRegistrationRequestStatus(
            result=result, error_message=message, token=token, ca_certificate=token
        ),
    )
    assert validate(crr.to_dict(), _schema(crds()[0])) == []


@given(
    cluster_id=st.uuids().map(str),
    version=st.text(max_size=10),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    when=times,
    status=st.sampled_from(apis.CONDITION_STATUSES),
)
def test_every_managed_cluster_the_models_make_fits_the_schema(
    cluster_id: str,
    version: str,
    flags: tuple[bool, bool, bool],
    when: datetime,
    status: str,
) -> None:
    mc = ManagedCluster(
        metadata=ObjectMeta(name="edge-1", namespace="clusternet-abcde"),
        spec=ManagedClusterSpec(cluster_id=cluster_id),
        status=ManagedClusterStatus(
            k8s_version=version,
            platform="linux/amd64",
            apiserver_url="https://10.0.0.1:6443",
            parent_apiserver_url="https://parent:6443",
            healthz=flags[0],
            readyz=flags[1],
            livez=flags[2],
            last_observed_time=when,
            conditions=set_condition((), "Ready", status, "LeaseRenewed", "", when),
        ),
    )
    assert validate(mc.to_dict(), _schema(crds()[1])) == []


def test_public_names_are_the_private_modules_objects() -> None:
    from clusternet.apis import _clusters, _names, _time

    assert apis.ClusterRegistrationRequest is _clusters.ClusterRegistrationRequest
    assert apis.validate_cluster_id is _names.validate_cluster_id
    assert apis.format_microtime is _time.format_microtime
    for name in apis.__all__:
        assert hasattr(apis, name), name
