"""
The CustomResourceDefinitions of C{clusters.clusternet.io}, as data.

These dicts are the source of C{manifests/crds/*.yaml} (and the identical copies in
C{deploy/hub/}); the tests check the files and the object models agree with them.
Regenerate the files with L{write_crd_manifests} (once for C{manifests/crds}, once
for C{deploy/hub}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clusternet.apis._clusters import CONDITION_REASON_PATTERN, CONDITION_STATUSES
from clusternet.apis._constants import (
    APPROVAL_RESULTS,
    CLUSTER_NAME_MAX_LENGTH,
    CLUSTER_TYPES,
    CLUSTERS_GROUP,
    CLUSTERS_VERSION,
    CRR_KIND,
    CRR_PLURAL,
    MANAGED_CLUSTER_KIND,
    MANAGED_CLUSTER_PLURAL,
)
from clusternet.apis._names import CLUSTER_ID_PATTERN, CLUSTER_NAME_PATTERN

__all__ = [
    "CRD_FILE_NAMES",
    "cluster_registration_request_crd",
    "crds",
    "managed_cluster_crd",
    "render_crd",
    "write_crd_manifests",
]

_CATEGORIES = ["clusternet"]


def _meta_properties() -> dict[str, Any]:
    return {
        "apiVersion": {
            "description": "APIVersion defines the versioned schema of this "
            "representation of an object.",
            "type": "string",
        },
        "kind": {
            "description": "Kind is a string value representing the REST resource "
            "this object represents.",
            "type": "string",
        },
        "metadata": {"type": "object"},
    }


def _cluster_id() -> dict[str, Any]:
    return {
        "description": "ClusterID is the UID of the child cluster's kube-system "
        "namespace (or the agent's --cluster-id): a lowercase UUID, stable across "
        "agent restarts and re-installs.",
        "type": "string",
        "pattern": CLUSTER_ID_PATTERN,
    }


def _cluster_type() -> dict[str, Any]:
    return {
        "description": "ClusterType denotes the type of the child cluster.",
        "type": "string",
        "enum": list(CLUSTER_TYPES),
    }


def _version(
    columns: list[dict[str, Any]], spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": CLUSTERS_VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": columns,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {**_meta_properties(), "spec": spec, "status": status},
            }
        },
    }


def _crd(
    kind: str, plural: str, short: str, scope: str, version: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{CLUSTERS_GROUP}"},
        "spec": {
            "group": CLUSTERS_GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": list(_CATEGORIES),
            },
            "scope": scope,
            "versions": [version],
        },
    }


def cluster_registration_request_crd() -> dict[str, Any]:
    """
    The CRD of ClusterRegistrationRequest (cluster-scoped, short name C{clsrr}).
    """
    spec = {
        "description": "What the agent asks for.",
        "type": "object",
        "required": ["clusterId"],
        "properties": {
            "clusterId": _cluster_id(),
            "clusterName": {
                "description": "ClusterName is the name of the cluster: lowercase "
                "letters, digits and '-', starting and ending with a letter or digit.",
                "type": "string",
                "maxLength": CLUSTER_NAME_MAX_LENGTH,
                "pattern": CLUSTER_NAME_PATTERN,
            },
            "clusterType": _cluster_type(),
            "publicKey": {
                "description": "The agent's X25519 public key (PEM): the parent's "
                "tokens for this cluster are sealed to it, so only that agent can "
                "use them.",
                "type": "string",
                "maxLength": 1024,
            },
        },
    }
    status = {
        "description": "What the hub decided.",
        "type": "object",
        "properties": {
            "result": {
                "description": "Result of the request.",
                "type": "string",
                "enum": list(APPROVAL_RESULTS),
            },
            "errorMessage": {
                "description": "Why the request was not approved.",
                "type": "string",
            },
            "dedicatedNamespace": {
                "description": "The namespace in the parent dedicated to the cluster.",
                "type": "string",
            },
            "managedClusterName": {
                "description": "Name of the cluster's ManagedCluster in the "
                "dedicated namespace.",
                "type": "string",
            },
            "token": {
                "description": "Unused (the seed's token in clear text, which any "
                "reader of the request could use): always empty.",
                "type": "string",
                "format": "byte",
            },
            "sealedToken": {
                "description": "The token of the cluster's service account in the "
                "parent, sealed to spec.publicKey: only the agent holding the "
                "private key can open it.",
                "type": "string",
                "maxLength": 16384,
            },
            "tokenExpirationTimestamp": {
                "description": "When the sealed token expires; the hub issues the "
                "next one before.",
                "type": "string",
                "format": "date-time",
            },
            "caCertificate": {
                "description": "PEM CA bundle of the parent's API server.",
                "type": "string",
                "format": "byte",
            },
        },
    }
    columns = [
        {
            "name": "CLUSTER-ID",
            "type": "string",
            "jsonPath": ".spec.clusterId",
            "description": "The unique ID of the cluster",
        },
        {
            "name": "STATUS",
            "type": "string",
            "jsonPath": ".status.result",
            "description": "The status of the registration request",
        },
        {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return _crd(
        CRR_KIND, CRR_PLURAL, "clsrr", "Cluster", _version(columns, spec, status)
    )


def managed_cluster_crd() -> dict[str, Any]:
    """
    The CRD of ManagedCluster (namespaced, short name C{mcls}).
    """
    spec = {
        "description": "Which cluster this is.",
        "type": "object",
        "required": ["clusterId"],
        "properties": {"clusterId": _cluster_id(), "clusterType": _cluster_type()},
    }
    condition = {
        "description": "A standard condition (metav1.Condition).",
        "type": "object",
        "required": ["type", "status", "reason", "message", "lastTransitionTime"],
        "properties": {
            "type": {"type": "string", "maxLength": 316},
            "status": {"type": "string", "enum": list(CONDITION_STATUSES)},
            "reason": {
                "type": "string",
                "maxLength": 1024,
                "minLength": 1,
                "pattern": CONDITION_REASON_PATTERN,
            },
            "message": {"type": "string", "maxLength": 32768},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
            },
        },
    }
    status = {
        "description": "What the agent last reported, and the hub's conditions.",
        "type": "object",
        "properties": {
            "k8sVersion": {
                "description": "Kubernetes version of the cluster (gitVersion).",
                "type": "string",
            },
            "platform": {
                "description": "Platform of the cluster's API server, such as "
                "linux/amd64.",
                "type": "string",
            },
            "apiserverURL": {
                "description": "URL of the cluster's API server, as the agent "
                "reaches it.",
                "type": "string",
            },
            "parentAPIServerURL": {
                "description": "URL of the parent API server the agent registered "
                "with.",
                "type": "string",
            },
            "healthz": {
                "description": "The cluster's /healthz answered 200.",
                "type": "boolean",
            },
            "readyz": {
                "description": "The cluster's /readyz answered 200.",
                "type": "boolean",
            },
            "livez": {
                "description": "The cluster's /livez answered 200.",
                "type": "boolean",
            },
            "lastObservedTime": {
                "description": "When the agent last collected this status.",
                "type": "string",
                "format": "date-time",
            },
            "conditions": {
                "description": "Conditions of the cluster; Ready follows the "
                "heartbeat Lease.",
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }
    columns: list[dict[str, Any]] = [
        {
            "name": "CLUSTER-ID",
            "type": "string",
            "jsonPath": ".spec.clusterId",
            "description": "The unique ID of the cluster",
        },
        {
            "name": "CLUSTER-TYPE",
            "type": "string",
            "jsonPath": ".spec.clusterType",
            "description": "The type of the cluster",
        },
        {"name": "KUBERNETES", "type": "string", "jsonPath": ".status.k8sVersion"},
        {"name": "READYZ", "type": "string", "jsonPath": ".status.readyz"},
        {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "PLATFORM",
            "type": "string",
            "jsonPath": ".status.platform",
            "priority": 1,
        },
        {
            "name": "READY",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "priority": 1,
        },
        {
            "name": "LAST-OBSERVED",
            "type": "date",
            "jsonPath": ".status.lastObservedTime",
            "priority": 1,
        },
    ]
    return _crd(
        MANAGED_CLUSTER_KIND,
        MANAGED_CLUSTER_PLURAL,
        "mcls",
        "Namespaced",
        _version(columns, spec, status),
    )


def crds() -> list[dict[str, Any]]:
    return [cluster_registration_request_crd(), managed_cluster_crd()]


# File name of each CRD, as the seed names them.
CRD_FILE_NAMES = {
    f"{CRR_PLURAL}.{CLUSTERS_GROUP}": (f"{CLUSTERS_GROUP}_{CRR_PLURAL}.yaml"),
    f"{MANAGED_CLUSTER_PLURAL}.{CLUSTERS_GROUP}": (
        f"{CLUSTERS_GROUP}_{MANAGED_CLUSTER_PLURAL}.yaml"
    ),
}


def render_crd(crd: dict[str, Any]) -> str:
    """
    The YAML text of C{crd}, as the manifests hold it.
    """
    header = (
        "# Generated from clusternet/apis/_crds.py by "
        "clusternet.apis.write_crd_manifests; do not edit by hand.\n"
    )
    return header + yaml.safe_dump(crd, sort_keys=False, width=88)


def write_crd_manifests(directory: str | Path) -> list[Path]:
    """
    Write every CRD as YAML into C{directory} under the seed's file names.
    """
    written = []
    for crd in crds():
        path = Path(directory) / CRD_FILE_NAMES[crd["metadata"]["name"]]
        path.write_text(render_crd(crd), encoding="utf-8")
        written.append(path)
    return written
