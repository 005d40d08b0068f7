"""
Cluster IDs and names, validated as the seed does (anchored, lowercase).
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusternet.apis import (
    CLUSTER_NAME_MAX_LENGTH,
    InvalidName,
    cluster_id_from_crr_name,
    crr_name,
    generate_cluster_name,
    validate_cluster_id,
    validate_cluster_name,
)

ID = "dc91021d-2361-4f6d-a404-7c33b9e01118"


def test_crr_name_round_trips_to_the_cluster_id() -> None:
    assert crr_name(ID) == "clusternet-" + ID
    assert cluster_id_from_crr_name(crr_name(ID)) == ID


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-uuid",
        ID.upper(),
        ID + "0",
        "x" + ID,
        ID.replace("-", ""),
        " " + ID,
    ],
)
def test_malformed_cluster_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        validate_cluster_id(bad)
    assert cluster_id_from_crr_name("clusternet-" + bad) is None


@given(st.uuids())
def test_every_uuid_is_a_valid_cluster_id(value: uuid.UUID) -> None:
    assert validate_cluster_id(str(value)) == str(value)


@pytest.mark.parametrize(
    "bad", ["", "-a", "a-", "A", "a_b", "a.b", "a" * (CLUSTER_NAME_MAX_LENGTH + 1)]
)
def test_bad_cluster_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        validate_cluster_name(bad)


def test_generated_names_have_the_prefix_and_five_characters() -> None:
    name = generate_cluster_name("clusternet-cluster", random.Random(1))
    assert name.startswith("clusternet-cluster-")
    assert len(name) == len("clusternet-cluster-") + 5
    assert validate_cluster_name(name) == name


def test_agent_and_apis_agree_on_the_longest_cluster_name() -> None:
    from clusternet.agent._options import CLUSTER_NAME_MAX_LENGTH as agent_max

    assert agent_max == CLUSTER_NAME_MAX_LENGTH
