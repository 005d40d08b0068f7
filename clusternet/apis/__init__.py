"""
Object models, names and CRDs of clusternet's API groups: C{clusters.clusternet.io}
(ClusterRegistrationRequest, ManagedCluster) and C{proxies.clusternet.io} (sockets).
"""

from clusternet.apis._clusters import (
    CONDITION_STATUSES,
    ClusterRegistrationRequest,
    ClusterRegistrationRequestSpec,
    ClusterRegistrationRequestStatus,
    Condition,
    ManagedCluster,
    ManagedClusterSpec,
    ManagedClusterStatus,
    get_condition,
    set_condition,
)
from clusternet.apis._constants import *  # noqa: F403
from clusternet.apis._constants import __all__ as _constants_all
from clusternet.apis._crds import (
    CRD_FILE_NAMES,
    cluster_registration_request_crd,
    crds,
    managed_cluster_crd,
    render_crd,
    write_crd_manifests,
)
from clusternet.apis._meta import InvalidObject, ObjectMeta
from clusternet.apis._names import (
    CLUSTER_ID_PATTERN,
    CLUSTER_NAME_PATTERN,
    InvalidName,
    cluster_id_errors,
    cluster_id_from_crr_name,
    cluster_name_errors,
    cluster_role_name,
    crr_name,
    generate_cluster_name,
    heartbeat_lease_name,
    is_dns_label,
    validate_cluster_id,
    validate_cluster_name,
)
from clusternet.apis._proxies import (
    SOCKETS_CATEGORIES,
    SOCKETS_KIND,
    SOCKETS_PROXY_VERBS,
    SOCKETS_SHORT_NAMES,
    SOCKETS_VERBS,
    proxies_api_group,
    proxies_api_group_discovery,
    proxies_api_resource_list,
)
from clusternet.apis._time import format_microtime, format_time, now, parse_time

__all__ = [
    *_constants_all,
    "CLUSTER_ID_PATTERN",
    "CLUSTER_NAME_PATTERN",
    "CONDITION_STATUSES",
    "CRD_FILE_NAMES",
    "SOCKETS_CATEGORIES",
    "SOCKETS_KIND",
    "SOCKETS_PROXY_VERBS",
    "SOCKETS_SHORT_NAMES",
    "SOCKETS_VERBS",
    "ClusterRegistrationRequest",
    "ClusterRegistrationRequestSpec",
    "ClusterRegistrationRequestStatus",
    "Condition",
    "InvalidName",
    "InvalidObject",
    "ManagedCluster",
    "ManagedClusterSpec",
    "ManagedClusterStatus",
    "ObjectMeta",
    "cluster_id_errors",
    "cluster_id_from_crr_name",
    "cluster_name_errors",
    "cluster_registration_request_crd",
    "cluster_role_name",
    "crds",
    "crr_name",
    "format_microtime",
    "format_time",
    "generate_cluster_name",
    "get_condition",
    "heartbeat_lease_name",
    "is_dns_label",
    "managed_cluster_crd",
    "now",
    "parse_time",
    "proxies_api_group",
    "proxies_api_group_discovery",
    "proxies_api_resource_list",
    "render_crd",
    "set_condition",
    "validate_cluster_id",
    "validate_cluster_name",
    "write_crd_manifests",
]
