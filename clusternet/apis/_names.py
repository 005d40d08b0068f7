"""
Validation of cluster IDs and names, and the names derived from them.
"""

from __future__ import annotations

import random
import re

from clusternet.apis._constants import (
    CLUSTER_NAME_MAX_LENGTH,
    CLUSTER_NAME_RANDOM_LENGTH,
    NAME_PREFIX,
)

__all__ = [
    "CLUSTER_ID_PATTERN",
    "CLUSTER_NAME_PATTERN",
    "DNS_LABEL_PATTERN",
    "InvalidName",
    "cluster_id_errors",
    "cluster_id_from_crr_name",
    "cluster_name_errors",
    "cluster_role_name",
    "crr_name",
    "generate_cluster_name",
    "heartbeat_lease_name",
    "is_dns_label",
    "validate_cluster_id",
    "validate_cluster_name",
]

# A UUID in its canonical lowercase form, as Kubernetes writes object UIDs. Upper
# case is refused because the ID becomes part of object names
# (clusternet-<id>), which must be lowercase.
CLUSTER_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# A DNS-1123 label: the seed's nameFmt, anchored.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CLUSTER_NAME_PATTERN = DNS_LABEL_PATTERN

_CLUSTER_ID = re.compile(CLUSTER_ID_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)

# k8s.io/apimachinery/pkg/util/rand: no vowels, no confusable characters.
_RANDOM_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class InvalidName(ValueError):
    """
    A cluster ID or name that does not have the required form.
    """


def is_dns_label(text: str, max_length: int = 63) -> bool:
    return (
        isinstance(text, str)
        and 0 < len(text) <= max_length
        and _DNS_LABEL.match(text) is not None
    )


def cluster_id_errors(cluster_id: object) -> list[str]:
    """
    What is wrong with C{cluster_id}; empty when it is a valid cluster ID.
    """
    if not isinstance(cluster_id, str) or not cluster_id:
        return ["cluster ID is required"]
    if _CLUSTER_ID.match(cluster_id) is None:
        return [
            f"cluster ID {cluster_id[:80]!r} is not a lowercase UUID such as "
            "dc91021d-2361-4f6d-a404-7c33b9e01118"
        ]
    return []


def cluster_name_errors(name: object) -> list[str]:
    """
    What is wrong with the cluster name C{name}; empty when it is valid.
    """
    if not isinstance(name, str) or not name:
        return ["cluster name is required"]
    errors = []
    if len(name) > CLUSTER_NAME_MAX_LENGTH:
        errors.append(
            f"cluster name is {len(name)} characters long, more than "
            f"{CLUSTER_NAME_MAX_LENGTH}"
        )
    if _DNS_LABEL.match(name) is None:
        errors.append(
            f"cluster name {name[:80]!r} must consist of lowercase letters, digits "
            "and '-', and start and end with a letter or digit"
        )
    return errors


def validate_cluster_id(cluster_id: str) -> str:
    """
    Return C{cluster_id} if it is a valid cluster ID.

    @raise InvalidName: it is not.
    """
    errors = cluster_id_errors(cluster_id)
    if errors:
        raise InvalidName("; ".join(errors))
    return cluster_id


def validate_cluster_name(name: str) -> str:
    """
    Return C{name} if it is a valid cluster name.

    @raise InvalidName: it is not.
    """
    errors = cluster_name_errors(name)
    if errors:
        raise InvalidName("; ".join(errors))
    return name


def crr_name(cluster_id: str) -> str:
    """
    The name of the ClusterRegistrationRequest of C{cluster_id}:
    C{clusternet-<cluster-id>}.
    """
    return NAME_PREFIX + validate_cluster_id(cluster_id)


def cluster_role_name(cluster_id: str) -> str:
    """
    The ClusterRole and ClusterRoleBinding the hub makes for C{cluster_id}.
    """
    return NAME_PREFIX + validate_cluster_id(cluster_id)


def heartbeat_lease_name(cluster_id: str) -> str:
    """
    The Lease the agent renews in its dedicated namespace in the parent.
    """
    return NAME_PREFIX + validate_cluster_id(cluster_id)


def cluster_id_from_crr_name(name: str) -> str | None:
    """
    The cluster ID a ClusterRegistrationRequest's name claims, or C{None} when the
    name does not have the form C{clusternet-<cluster-id>}.
    """
    if not isinstance(name, str) or not name.startswith(NAME_PREFIX):
        return None
    rest = name[len(NAME_PREFIX) :]
    return rest if not cluster_id_errors(rest) else None


def generate_cluster_name(prefix: str, rng: random.Random | None = None) -> str:
    """
    C{<prefix>-<5 random characters>}, as the seed names a cluster when no name
    is given.

    @raise InvalidName: the result would not be a valid cluster name.
    """
    chooser = rng if rng is not None else random.SystemRandom()
    suffix = "".join(
        chooser.choice(_RANDOM_ALPHABET) for _ in range(CLUSTER_NAME_RANDOM_LENGTH)
    )
    return validate_cluster_name(f"{prefix}-{suffix}")
