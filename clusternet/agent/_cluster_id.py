"""
The cluster ID: the UID of the child's C{kube-system} namespace, stable across agent
restarts, re-installs and leader changes, or the C{--cluster-id} override.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from clusternet.apis import cluster_id_errors
from clusternet.kube._errors import Forbidden, NotFound, Unauthorized
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import NAMESPACES

__all__ = ["KUBE_SYSTEM", "ClusterIDError", "discover_cluster_id", "resolve_cluster_id"]

KUBE_SYSTEM = "kube-system"


class ClusterIDError(Exception):
    """
    No valid cluster ID: a malformed override, or the child's kube-system
    namespace cannot be read (or has no usable UID). Retrying will not help
    unless the configuration changes (except for L{KubeError}s passed through).
    """


def _checked(cluster_id: str, source: str) -> str:
    errors = cluster_id_errors(cluster_id)
    if errors:
        raise ClusterIDError(f"{source}: " + "; ".join(errors))
    return cluster_id


async def discover_cluster_id(child: IKubeAPI, override: str | None = None) -> str:
    """
    The cluster ID: C{override} (validated) when given, else the UID of the child's
    C{kube-system} namespace.

    @raise ClusterIDError: the override is malformed, the namespace is missing or
        unreadable (401/403), or its UID is not a lowercase UUID.
    @raise clusternet.kube.KubeError: the child API server could not be asked
        (retry later).
    """
    if override is not None:
        return _checked(override.strip(), "--cluster-id")
    try:
        namespace = await child.get(NAMESPACES, KUBE_SYSTEM)
    except (Forbidden, Unauthorized) as e:
        raise ClusterIDError(
            f"cannot read the {KUBE_SYSTEM} namespace of the child cluster ({e}); "
            "grant the agent get on namespaces/kube-system or pass --cluster-id"
        ) from None
    except NotFound:
        raise ClusterIDError(
            f"the child cluster has no {KUBE_SYSTEM} namespace; pass --cluster-id"
        ) from None
    uid = (namespace.get("metadata") or {}).get("uid")
    if not isinstance(uid, str):
        raise ClusterIDError(f"the {KUBE_SYSTEM} namespace has no metadata.uid")
    return _checked(uid, f"UID of the {KUBE_SYSTEM} namespace")


def resolve_cluster_id(child: IKubeAPI, override: str | None = None) -> Deferred[str]:
    """
    L{discover_cluster_id} as a Deferred.
    """
    return Deferred.fromCoroutine(discover_cluster_id(child, override))
