"""
Which ManagedCluster is a cluster's own: only the one in the namespace the hub
made for its ID, under the name the hub gave it.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from clusternet import apis
from clusternet.apis import (
    CLUSTER_NAME_LABEL,
    DEDICATED_FOR_LABEL,
    ForeignManagedCluster,
    _ownership,
    claimed_cluster_id,
    crr_name,
    dedicated_for,
    dedicated_namespace,
    expected_name,
    judge_claims,
    sort_managed_clusters,
)

A = "dc91021d-2361-4f6d-a404-7c33b9e01118"
B = "0b8a3f4e-1111-4222-8333-444455556666"
C = "7c1e2d3f-aaaa-4bbb-8ccc-ddddeeeeffff"
IDS = (A, B, C)


def namespace(
    name: str,
    dedicated: str | None = None,
    cluster_name: str | None = None,
    terminating: bool = False,
    **labels: str,
) -> dict[str, Any]:
    all_labels = dict(labels)
    if dedicated is not None:
        all_labels[DEDICATED_FOR_LABEL] = dedicated
    if cluster_name is not None:
        all_labels[CLUSTER_NAME_LABEL] = cluster_name
    meta: dict[str, Any] = {"name": name, "labels": all_labels}
    if terminating:
        meta["deletionTimestamp"] = "2027-01-15T08:00:00Z"
    return {"metadata": meta}


def managed_cluster(
    name: str, ns: str, cluster_id: object, version: str = "v1.32.0"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterId": cluster_id},
        "status": {
            "k8sVersion": version,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def request(
    cluster_id: str, ns: str | None = None, mcls: str | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if ns is not None:
        status = {"result": "Approved", "dedicatedNamespace": ns}
    if mcls is not None:
        status["managedClusterName"] = mcls
    return {"metadata": {"name": crr_name(cluster_id)}, "status": status}


# The fleet of the task: A in clusternet-aaaaa, B in clusternet-bbbbb; A writes a
# ManagedCluster in its own namespace claiming B's ID with a forged status.
NAMESPACES = [
    namespace("clusternet-aaaaa", A, "edge-1"),
    namespace("clusternet-bbbbb", B, "edge-2"),
]
REQUESTS = [
    request(A, "clusternet-aaaaa", "edge-1"),
    request(B, "clusternet-bbbbb", "edge-2"),
]
GENUINE_A = managed_cluster("edge-1", "clusternet-aaaaa", A)
GENUINE_B = managed_cluster("edge-2", "clusternet-bbbbb", B)
FORGED_B = managed_cluster("edge-2", "clusternet-aaaaa", B, version="v9.9.9")


def test_the_forgery_in_another_clusters_namespace_is_foreign() -> None:
    ownership = sort_managed_clusters(
        [GENUINE_A, FORGED_B, GENUINE_B], NAMESPACES, REQUESTS
    )
    assert ownership.genuine == {A: GENUINE_A, B: GENUINE_B}
    (foreign,) = ownership.foreign
    assert (foreign.namespace, foreign.name, foreign.cluster_id) == (
        "clusternet-aaaaa",
        "edge-2",
        B,
    )
    assert "clusternet-bbbbb" in foreign.reason


def test_the_forgery_alone_claims_nothing() -> None:
    """
    B has not registered (or its ManagedCluster is gone): the forgery does not
    stand in for it.
    """
    ownership = sort_managed_clusters([GENUINE_A, FORGED_B], NAMESPACES, REQUESTS)
    assert ownership.genuine == {A: GENUINE_A}
    ownership = sort_managed_clusters([FORGED_B], NAMESPACES[:1], REQUESTS[:1])
    assert ownership.genuine == {}
    assert "made no namespace" in ownership.foreign[0].reason


def test_without_requests_the_labels_decide() -> None:
    ownership = sort_managed_clusters([GENUINE_A, FORGED_B, GENUINE_B], NAMESPACES)
    assert ownership.genuine == {A: GENUINE_A, B: GENUINE_B}


def test_a_namespace_a_user_could_label_the_seeds_way_is_not_enough() -> None:
    """
    The seed's labels (created-by, cluster-id) are not the hub's mark.
    """
    seeds = namespace(
        "clusternet-bbbbb",
        None,
        "edge-2",
        **{"clusternet.io/created-by": "clusternet-agent"},
        **{"clusters.clusternet.io/cluster-id": B},
    )
    assert dedicated_for(seeds) is None
    assert sort_managed_clusters([GENUINE_B], [seeds]).genuine == {}


def test_another_name_in_the_right_namespace_is_foreign() -> None:
    copy = managed_cluster("edge-2-copy", "clusternet-bbbbb", B)
    ownership = sort_managed_clusters([copy, GENUINE_B], NAMESPACES, REQUESTS)
    assert ownership.genuine == {B: GENUINE_B}
    assert [f.name for f in ownership.foreign] == ["edge-2-copy"]
    assert "'edge-2'" in ownership.foreign[0].reason


def test_a_claim_of_another_id_from_a_dedicated_namespace_is_foreign() -> None:
    odd = managed_cluster("edge-1", "clusternet-bbbbb", A)
    ownership = sort_managed_clusters([odd], NAMESPACES, REQUESTS)
    assert ownership.genuine == {}


def test_a_relabelled_namespace_loses_to_the_one_the_request_names() -> None:
    relabelled = namespace("clusternet-aaaaa", B, "edge-2")
    namespaces = [relabelled, NAMESPACES[1]]
    assert sort_managed_clusters(
        [FORGED_B, GENUINE_B], namespaces, REQUESTS
    ).genuine == {B: GENUINE_B}
    # Without the request nothing tells them apart: neither is believed.
    assert sort_managed_clusters([FORGED_B, GENUINE_B], namespaces).genuine == {}


def test_the_request_must_name_a_labelled_namespace() -> None:
    pinned_elsewhere = [request(B, "clusternet-zzzzz", "edge-2")]
    assert (
        sort_managed_clusters([GENUINE_B], NAMESPACES, pinned_elsewhere).genuine == {}
    )
    unlabelled = [namespace("clusternet-bbbbb", None, "edge-2")]
    assert sort_managed_clusters([GENUINE_B], unlabelled, REQUESTS).genuine == {}


def test_a_pending_request_leaves_it_to_the_labels() -> None:
    assert sort_managed_clusters([GENUINE_B], NAMESPACES, [request(B)]).genuine == {
        B: GENUINE_B
    }


def test_a_terminating_namespace_is_no_ones() -> None:
    gone = [namespace("clusternet-bbbbb", B, "edge-2", terminating=True)]
    assert dedicated_for(gone[0]) is None
    assert sort_managed_clusters([GENUINE_B], gone, REQUESTS).genuine == {}


def test_invalid_or_missing_cluster_ids_are_foreign() -> None:
    for claimed in (None, "", "B", 42, A.upper()):
        mc = managed_cluster("x", "clusternet-aaaaa", claimed)
        assert claimed_cluster_id(mc) is None
        ownership = sort_managed_clusters([mc], NAMESPACES, REQUESTS)
        assert ownership.genuine == {}
        assert "not a cluster ID" in ownership.foreign[0].reason
    assert ForeignManagedCluster.of({"spec": "junk"}, "why") == ForeignManagedCluster(
        "", "", "", "why"
    )


def test_the_expected_name() -> None:
    labelled = NAMESPACES[1]
    bare = namespace("clusternet-bbbbb", B)
    assert expected_name(B, bare, request(B, "clusternet-bbbbb", "given")) == "given"
    assert expected_name(B, labelled, request(B, "clusternet-bbbbb")) == "edge-2"
    assert expected_name(B, bare) == crr_name(B)
    # A request of another cluster says nothing about B.
    assert expected_name(B, labelled, request(A, "clusternet-bbbbb", "x")) == "edge-2"


def test_a_request_of_another_cluster_pins_nothing() -> None:
    assert (
        dedicated_namespace(B, NAMESPACES, request(A, "clusternet-aaaaa"))
        is (NAMESPACES[1])
    )


def test_malformed_objects_are_foreign_not_errors() -> None:
    junk_namespaces = [{}, {"metadata": None}, {"metadata": {"labels": "x"}}]
    junk_requests = [{}, {"metadata": {"name": 7}}, {"status": "x"}]
    ownership = sort_managed_clusters(
        [GENUINE_B, {"metadata": {"name": "y"}}],
        [*junk_namespaces, *NAMESPACES],
        [*junk_requests, *REQUESTS],
    )
    assert ownership.genuine == {B: GENUINE_B}
    assert [f.name for f in ownership.foreign] == ["y"]


def test_public_names_are_the_modules_objects() -> None:
    for name in _ownership.__all__:
        assert getattr(apis, name) is getattr(_ownership, name)


# --- properties over generated fleets -------------------------------------------

NS_NAMES = ("clusternet-aaaaa", "clusternet-bbbbb", "clusternet-ccccc", "default")
MC_NAMES = ("edge-1", "edge-2", "edge-3", crr_name(A), crr_name(B))
Fleet = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    """
    ManagedClusters, Namespaces and requests: some clusters registered as the
    hub registers them, then noise: namespaces relabelled or terminating,
    requests in any state, ManagedClusters anywhere claiming anything.
    """
    namespaces: dict[str, dict[str, Any]] = {}
    requests: dict[str, dict[str, Any]] = {}
    clusters: dict[tuple[str, str], dict[str, Any]] = {}
    for index, cluster_id in enumerate(IDS):
        if draw(st.booleans()):
            ns, name = NS_NAMES[index], MC_NAMES[index]
            namespaces[ns] = namespace(ns, cluster_id, name)
            clusters[(ns, name)] = managed_cluster(name, ns, cluster_id)
            state = draw(st.sampled_from(("none", "pending", "approved")))
            if state != "none":
                requests[crr_name(cluster_id)] = (
                    request(cluster_id, ns, name)
                    if state == "approved"
                    else request(cluster_id)
                )
    for ns, dedicated, label, terminating in draw(
        st.lists(
            st.tuples(
                st.sampled_from(NS_NAMES),
                st.sampled_from((*IDS, None)),
                st.sampled_from((None, *MC_NAMES[:3])),
                st.booleans(),
            ),
            max_size=2,
        )
    ):
        namespaces[ns] = namespace(ns, dedicated, label, terminating)
    for cluster_id, ns, name in draw(
        st.lists(
            st.tuples(
                st.sampled_from(IDS),
                st.sampled_from((None, *NS_NAMES)),
                st.sampled_from((None, *MC_NAMES)),
            ),
            max_size=2,
        )
    ):
        requests[crr_name(cluster_id)] = request(cluster_id, ns, name)
    for name, ns, claimed in draw(
        st.lists(
            st.tuples(
                st.sampled_from(MC_NAMES),
                st.sampled_from(NS_NAMES),
                st.sampled_from((*IDS, "not-an-id")),
            ),
            max_size=4,
        )
    ):
        clusters[(ns, name)] = managed_cluster(name, ns, claimed, version="v9.9.9")
    return list(clusters.values()), list(namespaces.values()), list(requests.values())


def _key(mc: dict[str, Any]) -> tuple[str, str]:
    return (mc["metadata"]["namespace"], mc["metadata"]["name"])


@given(fleets())
def test_each_managed_cluster_is_either_genuine_or_foreign(fleet: Fleet) -> None:
    clusters, namespaces, requests = fleet
    ownership = sort_managed_clusters(clusters, namespaces, requests)
    genuine = sorted(_key(m) for m in ownership.genuine.values())
    foreign = sorted((f.namespace, f.name) for f in ownership.foreign)
    assert sorted(genuine + foreign) == sorted(_key(m) for m in clusters)
    assert not set(genuine) & set(foreign)


@given(fleets())
def test_a_genuine_managed_cluster_is_where_and_as_the_hub_made_it(
    fleet: Fleet,
) -> None:
    clusters, namespaces, requests = fleet
    ownership = sort_managed_clusters(clusters, namespaces, requests)
    by_name = {n["metadata"]["name"]: n for n in namespaces}
    pinned = {
        r["metadata"]["name"]: r["status"].get("dedicatedNamespace") for r in requests
    }
    for cluster_id, mc in ownership.genuine.items():
        assert mc["spec"]["clusterId"] == cluster_id
        home = by_name[mc["metadata"]["namespace"]]
        assert home["metadata"]["labels"][DEDICATED_FOR_LABEL] == cluster_id
        assert "deletionTimestamp" not in home["metadata"]
        if pinned.get(crr_name(cluster_id)):
            assert pinned[crr_name(cluster_id)] == home["metadata"]["name"]
        else:
            rivals = [n for n in namespaces if dedicated_for(n) == cluster_id]
            assert rivals == [home]


@given(
    fleets(),
    st.lists(
        st.tuples(
            st.sampled_from(MC_NAMES),
            st.sampled_from(NS_NAMES),
            st.sampled_from(IDS),
        ),
        max_size=4,
    ),
)
def test_claims_from_outside_the_genuine_namespace_change_nothing(
    fleet: Fleet, forgeries: list[tuple[str, str, str]]
) -> None:
    """
    Whoever may write ManagedClusters in namespaces other than a cluster's own
    cannot change which ManagedCluster is that cluster's, whatever they claim.
    """
    clusters, namespaces, requests = fleet
    before = sort_managed_clusters(clusters, namespaces, requests)
    by_request = {r["metadata"]["name"]: r for r in requests}
    homes = {mc["metadata"]["namespace"] for mc in before.genuine.values()} | {
        n["metadata"]["name"]
        for cluster_id in IDS
        if (
            n := dedicated_namespace(
                cluster_id, namespaces, by_request.get(crr_name(cluster_id))
            )
        )
        is not None
    }
    taken = {_key(m) for m in clusters}
    added = [
        managed_cluster(name, ns, cluster_id, version="v9.9.9")
        for name, ns, cluster_id in forgeries
        if ns not in homes and (ns, name) not in taken
    ]
    after = sort_managed_clusters([*clusters, *added], namespaces, requests)
    assert after.genuine == before.genuine


@given(fleets(), st.randoms(use_true_random=False))
def test_the_order_of_the_objects_does_not_matter(
    fleet: Fleet, rng: random.Random
) -> None:
    clusters, namespaces, requests = fleet
    before = sort_managed_clusters(clusters, namespaces, requests)
    for objects in (clusters, namespaces, requests):
        rng.shuffle(objects)
    after = sort_managed_clusters(clusters, namespaces, requests)
    assert after.genuine == before.genuine
    assert set(after.foreign) == set(before.foreign)


@given(fleets())
def test_the_hubs_per_id_judgement_agrees_with_the_whole_fleets(
    fleet: Fleet,
) -> None:
    """
    The hub judges one cluster ID at a time (L{judge_claims}); the CLI sorts
    the whole fleet: the same answer.
    """
    clusters, namespaces, requests = fleet
    whole = sort_managed_clusters(clusters, namespaces, requests)
    by_request = {r["metadata"]["name"]: r for r in requests}
    for cluster_id in IDS:
        one = judge_claims(
            cluster_id, clusters, namespaces, by_request.get(crr_name(cluster_id))
        )
        assert one.genuine.get(cluster_id) == whole.genuine.get(cluster_id)
        assert set(one.foreign) <= set(whole.foreign)
