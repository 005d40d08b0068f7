"""
Which ManagedCluster is a cluster's own.

Whoever may create ManagedClusters in some namespace (every agent may, in its own
dedicated namespace) can write one that claims any cluster ID, with any status.
The hub and C{clusternet get clusters} believe only the ManagedCluster the hub made
for an ID, which this module decides, for both of them, from three things:

 - the Namespaces labelled C{clusters.clusternet.io/dedicated-for=<cluster-id>}
   (L{clusternet.apis.DEDICATED_FOR_LABEL}): the hub sets that label on the
   namespace it makes for a cluster on approval; a cluster's own credentials
   may neither make nor relabel a namespace;
 - the ClusterRegistrationRequest C{clusternet-<cluster-id>}, whose status
   (C{dedicatedNamespace}, C{managedClusterName}) only the hub writes;
 - the ManagedClusters claiming the ID in C{spec.clusterId}.

The rule (L{judge_claims}): a ManagedCluster is cluster I{I}'s when

 1. its C{spec.clusterId} is I{I}, a valid cluster ID;
 2. its namespace is I{I}'s dedicated namespace (L{dedicated_namespace}): a
    Namespace, not terminating, labelled C{dedicated-for=I}; when I{I}'s
    registration request names a C{status.dedicatedNamespace}, that very one;
    without it, the only such Namespace (two or more make none genuine, since
    nothing then tells the hub's from a relabelled one);
 3. its name is the one the hub gave it (L{expected_name}): the request's
    C{status.managedClusterName}; without it, the namespace's
    C{clusters.clusternet.io/cluster-name} label; without that,
    C{clusternet-<cluster-id>}.

At most one ManagedCluster passes; every other one claiming I{I} is foreign.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from clusternet.apis._constants import CLUSTER_NAME_LABEL, DEDICATED_FOR_LABEL
from clusternet.apis._names import (
    cluster_id_errors,
    cluster_id_from_crr_name,
    crr_name,
)

__all__ = [
    "ForeignManagedCluster",
    "Ownership",
    "claimed_cluster_id",
    "dedicated_for",
    "dedicated_namespace",
    "expected_name",
    "judge_claims",
    "sort_managed_clusters",
]

Obj = dict[str, Any]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


def _status(obj: Obj | None) -> Mapping[str, Any]:
    status = (obj or {}).get("status")
    return status if isinstance(status, Mapping) else {}


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def claimed_cluster_id(managed_cluster: Obj) -> str | None:
    """
    The cluster ID a ManagedCluster claims in C{spec.clusterId}, or C{None} when
    that is not a valid cluster ID.
    """
    spec = managed_cluster.get("spec")
    value = spec.get("clusterId") if isinstance(spec, Mapping) else None
    if not isinstance(value, str) or cluster_id_errors(value):
        return None
    return value


def dedicated_for(namespace: Obj) -> str | None:
    """
    The cluster ID a Namespace is labelled dedicated to, or C{None} when it has
    no valid L{DEDICATED_FOR_LABEL} or is terminating.
    """
    if _meta(namespace).get("deletionTimestamp"):
        return None
    value = _labels(namespace).get(DEDICATED_FOR_LABEL)
    if not isinstance(value, str) or cluster_id_errors(value):
        return None
    return value


def _request_for(cluster_id: str, request: Obj | None) -> Obj | None:
    if request is None or _meta(request).get("name") != crr_name(cluster_id):
        return None
    return request


def dedicated_namespace(
    cluster_id: str, namespaces: Iterable[Obj], request: Obj | None = None
) -> Obj | None:
    """
    The namespace the hub made for C{cluster_id}, or C{None} when there is none
    or it cannot be told apart (rule 2 of the module docstring).

    @param namespaces: Namespaces; those not labelled for C{cluster_id} are
        passed over.
    @param request: the cluster's ClusterRegistrationRequest, when known; one of
        another name is passed over.
    """
    candidates = [n for n in namespaces if dedicated_for(n) == cluster_id]
    pinned = _string(
        _status(_request_for(cluster_id, request)).get("dedicatedNamespace")
    )
    if pinned:
        for namespace in candidates:
            if _meta(namespace).get("name") == pinned:
                return namespace
        return None
    return candidates[0] if len(candidates) == 1 else None


def expected_name(cluster_id: str, namespace: Obj, request: Obj | None = None) -> str:
    """
    The name the hub gave the ManagedCluster of C{cluster_id} in its dedicated
    C{namespace} (rule 3 of the module docstring).
    """
    from_request = _string(
        _status(_request_for(cluster_id, request)).get("managedClusterName")
    )
    if from_request:
        return from_request
    return _string(_labels(namespace).get(CLUSTER_NAME_LABEL)) or crr_name(cluster_id)


@frozen
class ForeignManagedCluster:
    """
    A ManagedCluster that is not the one the hub made for the ID it claims.

    @ivar cluster_id: what its C{spec.clusterId} says, as it says it (possibly
        empty or not a cluster ID).
    @ivar reason: why it is not genuine, for logs and warnings.
    """

    namespace: str
    name: str
    cluster_id: str
    reason: str

    @classmethod
    def of(cls, managed_cluster: Obj, reason: str) -> ForeignManagedCluster:
        spec = managed_cluster.get("spec")
        claimed = spec.get("clusterId") if isinstance(spec, Mapping) else None
        meta = _meta(managed_cluster)
        return cls(
            _string(meta.get("namespace")),
            _string(meta.get("name")),
            str(claimed)[:80] if claimed is not None else "",
            reason,
        )


@frozen
class Ownership:
    """
    ManagedClusters sorted into the genuine (one per cluster ID at most) and the
    foreign.

    @ivar genuine: cluster ID -> its genuine ManagedCluster.
    @ivar foreign: every other ManagedCluster, with the reason.
    """

    genuine: Mapping[str, Obj] = field(factory=dict)
    foreign: tuple[ForeignManagedCluster, ...] = ()


def judge_claims(
    cluster_id: str,
    claims: Iterable[Obj],
    namespaces: Iterable[Obj],
    request: Obj | None = None,
) -> Ownership:
    """
    Decide which of the ManagedClusters C{claims} claiming C{cluster_id} is
    that cluster's: the rule of the module docstring.

    @param claims: ManagedClusters; those not claiming C{cluster_id} are passed
        over.
    @param namespaces: Namespaces (at least those labelled for C{cluster_id}).
    @param request: the ClusterRegistrationRequest C{clusternet-<cluster-id>},
        when known.
    """
    home = dedicated_namespace(cluster_id, namespaces, request)
    home_name = _string(_meta(home).get("name")) if home is not None else ""
    wanted = expected_name(cluster_id, home, request) if home is not None else ""
    genuine: dict[str, Obj] = {}
    foreign: list[ForeignManagedCluster] = []
    for mc in claims:
        if claimed_cluster_id(mc) != cluster_id:
            continue
        meta = _meta(mc)
        if home is None:
            reason = (
                f"the hub made no namespace for cluster {cluster_id}, or more than "
                f"one namespace is labelled {DEDICATED_FOR_LABEL}={cluster_id}"
            )
        elif meta.get("namespace") != home_name:
            reason = (
                f"it is not in {home_name}, the namespace the hub made for "
                f"cluster {cluster_id}"
            )
        elif meta.get("name") != wanted or cluster_id in genuine:
            reason = f"the hub named the ManagedCluster of {cluster_id} {wanted!r}"
        else:
            genuine[cluster_id] = mc
            continue
        foreign.append(ForeignManagedCluster.of(mc, reason))
    return Ownership(genuine, tuple(foreign))


def sort_managed_clusters(
    managed_clusters: Iterable[Obj],
    namespaces: Iterable[Obj],
    requests: Iterable[Obj] = (),
) -> Ownership:
    """
    Sort all of C{managed_clusters} with L{judge_claims}; those whose
    C{spec.clusterId} is not a cluster ID are foreign.

    @param namespaces: Namespaces (at least those labelled
        L{DEDICATED_FOR_LABEL}).
    @param requests: ClusterRegistrationRequests; may be empty when they cannot
        be read, which makes the rule rest on the namespaces' labels alone.
    """
    claims: dict[str, list[Obj]] = {}
    foreign: list[ForeignManagedCluster] = []
    for mc in managed_clusters:
        cluster_id = claimed_cluster_id(mc)
        if cluster_id is None:
            foreign.append(
                ForeignManagedCluster.of(
                    mc, "its spec.clusterId is missing or not a cluster ID"
                )
            )
        else:
            claims.setdefault(cluster_id, []).append(mc)
    by_id: dict[str, list[Obj]] = {}
    for namespace in namespaces:
        labelled = dedicated_for(namespace)
        if labelled is not None:
            by_id.setdefault(labelled, []).append(namespace)
    requests_by_id: dict[str, Obj] = {}
    for request in requests:
        requested = cluster_id_from_crr_name(_string(_meta(request).get("name")))
        if requested is not None:
            requests_by_id[requested] = request
    genuine: dict[str, Obj] = {}
    for cluster_id, claiming in sorted(claims.items()):
        verdict = judge_claims(
            cluster_id,
            claiming,
            by_id.get(cluster_id, []),
            requests_by_id.get(cluster_id),
        )
        genuine.update(verdict.genuine)
        foreign.extend(verdict.foreign)
    return Ownership(genuine, tuple(foreign))
