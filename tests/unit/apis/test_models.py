"""
ClusterRegistrationRequest and ManagedCluster: JSON round trips, validation,
conditions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.apis import (
    CLUSTER_ID_LABEL,
    CLUSTER_NAME_LABEL,
    REGISTERED_BY_LABEL,
    ClusterRegistrationRequest,
    ClusterRegistrationRequestStatus,
    Condition,
    InvalidName,
    InvalidObject,
    ManagedCluster,
    ManagedClusterStatus,
    get_condition,
    set_condition,
)

ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"
T0 = datetime(2026, 11, 26, 19, 0, tzinfo=UTC)


def test_new_request_has_the_seeds_name_labels_and_spec() -> None:
    crr = ClusterRegistrationRequest.new(ID, "edge-1")
    data = crr.to_dict()
    assert data["apiVersion"] == "clusters.clusternet.io/v1beta1"
    assert data["kind"] == "ClusterRegistrationRequest"
    assert data["metadata"]["name"] == "clusternet-" + ID
    assert data["metadata"]["labels"] == {
        REGISTERED_BY_LABEL: "clusternet-agent",
        CLUSTER_ID_LABEL: ID,
        CLUSTER_NAME_LABEL: "edge-1",
    }
    assert data["spec"] == {
        "clusterId": ID,
        "clusterType": "EdgeClusterSelfProvisioned",
        "clusterName": "edge-1",
    }
    assert crr.errors() == []


def test_new_request_refuses_malformed_ids() -> None:
    with pytest.raises(InvalidName):
        ClusterRegistrationRequest.new("nope", "edge-1")


def test_status_round_trips_bytes_as_base64_and_hides_the_token_in_repr() -> None:
    crr = ClusterRegistrationRequest.new(ID, "edge-1").with_status(
        result="Approved",
        dedicated_namespace="clusternet-abcde",
        managed_cluster_name="edge-1",
        token=b"secret-token",
        ca_certificate=b"-----BEGIN CERTIFICATE-----\n",
    )
    data = json.loads(json.dumps(crr.to_dict()))
    assert data["status"]["token"] == "c2VjcmV0LXRva2Vu"
    assert ClusterRegistrationRequest.from_dict(data) == crr
    assert "secret-token" not in repr(crr)


def test_request_whose_name_and_id_disagree_has_an_error() -> None:
    crr = ClusterRegistrationRequest.new(ID, "edge-1")
    data = crr.to_dict()
    data["spec"]["clusterId"] = "aaaaaaaa-2361-4f6d-a404-7c33b9e01118"
    errors = ClusterRegistrationRequest.from_dict(data).errors()
    assert errors and "does not match" in errors[0]


def test_request_with_malformed_id_and_name_lists_both_errors() -> None:
    data = {
        "metadata": {"name": "clusternet-bad"},
        "spec": {"clusterId": "bad", "clusterName": "Bad_Name"},
    }
    errors = ClusterRegistrationRequest.from_dict(data).errors()
    assert any("UUID" in e for e in errors)
    assert any("cluster name" in e for e in errors)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"kind": "Pod"},
        {"apiVersion": "v1"},
        {"spec": {"clusterId": 5}},
        {"spec": "x"},
        {"metadata": {"labels": {"a": 1}}},
        {"spec": {"clusterId": ID}, "status": {"result": "Maybe"}},
        {"spec": {"clusterId": ID}, "status": {"token": "not base64!"}},
        {"metadata": {"creationTimestamp": "yesterday"}},
    ],
)
def test_malformed_requests_raise_invalid_object(data: object) -> None:
    with pytest.raises(InvalidObject):
        ClusterRegistrationRequest.from_dict(data)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]),
        json_values,
    )
)
def test_decoding_anything_fails_only_with_invalid_object(data: dict) -> None:
    for model in (ClusterRegistrationRequest, ManagedCluster):
        try:
            model.from_dict(data)
        except InvalidObject:
            pass


def test_metadata_fields_we_do_not_model_survive_a_round_trip() -> None:
    data = ClusterRegistrationRequest.new(ID, "edge-1").to_dict()
    data["metadata"]["finalizers"] = ["x/y"]
    data["metadata"]["resourceVersion"] = "42"
    data["metadata"]["creationTimestamp"] = "2026-11-26T19:29:57Z"
    assert ClusterRegistrationRequest.from_dict(data).to_dict() == data


def test_managed_cluster_status_round_trips_with_conditions() -> None:
    conditions = set_condition((), "Ready", "True", "ClusterReady", "lease renewed", T0)
    mc = ManagedCluster.new("clusternet-abcde", ID, "edge-1")
    mc = ManagedCluster(
        metadata=mc.metadata,
        spec=mc.spec,
        status=ManagedClusterStatus(
            k8s_version="v1.32.4",
            platform="linux/amd64",
            healthz=True,
            readyz=True,
            livez=True,
            last_observed_time=T0,
            conditions=conditions,
        ),
    )
    data = json.loads(json.dumps(mc.to_dict()))
    assert data["status"]["conditions"][0]["lastTransitionTime"] == (
        "2026-11-26T19:00:00Z"
    )
    assert ManagedCluster.from_dict(data) == mc


def test_readyz_false_is_written_so_the_column_shows_it() -> None:
    assert ManagedClusterStatus().to_dict()["readyz"] is False


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    later = T0 + timedelta(minutes=1)
    first = set_condition((), "Ready", "True", "ClusterReady", "ok", T0)
    same = set_condition(first, "Ready", "True", "ClusterReady", "still ok", later)
    ready = get_condition(same, "Ready")
    assert ready is not None
    assert ready.last_transition_time == T0
    assert ready.message == "still ok"
    changed = set_condition(same, "Ready", "Unknown", "LeaseExpired", "gone", later)
    ready = get_condition(changed, "Ready")
    assert ready is not None
    assert (ready.status, ready.last_transition_time) == ("Unknown", later)
    assert len(changed) == 1


def test_condition_refuses_bad_status_and_reason() -> None:
    with pytest.raises(ValueError):
        Condition("Ready", "Maybe", "Reason", T0)
    with pytest.raises(ValueError):
        Condition("Ready", "True", "not a reason", T0)


def test_empty_status_is_left_out() -> None:
    crr = ClusterRegistrationRequest.new(ID, "edge-1")
    assert "status" not in crr.to_dict()
    assert ClusterRegistrationRequestStatus().to_dict() == {}


def test_sample_from_the_seeds_readme_decodes() -> None:
    path = Path(__file__).with_name("seed_crr.json")
    crr = ClusterRegistrationRequest.from_dict(json.loads(path.read_text()))
    assert crr.errors() == []
    assert crr.status.result == "Approved"
