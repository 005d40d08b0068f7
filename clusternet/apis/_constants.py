# ruff: noqa: S105 - secret *names* and keys, no secret values
"""
Names, labels and annotations shared by the hub and the agent, as the seed spells them.
"""

from __future__ import annotations

__all__ = [
    "AGENT_NAME",
    "APPROVAL_RESULTS",
    "BOOTSTRAPPING_LABEL",
    "BOOTSTRAP_GROUP",
    "CLUSTERS_API_VERSION",
    "CLUSTERS_GROUP",
    "CLUSTERS_VERSION",
    "CLUSTER_ID_LABEL",
    "CLUSTER_LEASE_DURATION_SECONDS",
    "CLUSTER_LEASE_RENEW_INTERVAL",
    "CLUSTER_NAME_LABEL",
    "CLUSTER_NAME_MAX_LENGTH",
    "CLUSTER_NAME_PREFIX",
    "CLUSTER_NAME_RANDOM_LENGTH",
    "CLUSTER_TYPES",
    "CLUSTER_TYPE_EDGE_SELF_PROVISIONED",
    "CONDITION_READY",
    "CREATED_BY_LABEL",
    "CREDENTIALS_AUTO",
    "CRR_KIND",
    "CRR_PLURAL",
    "DEDICATED_FOR_LABEL",
    "EDGE_SYSTEM_NAMESPACE",
    "HUB_NAME",
    "HUB_NAMESPACE",
    "MANAGED_CLUSTER_KIND",
    "MANAGED_CLUSTER_PLURAL",
    "MANAGED_CLUSTER_ROLE",
    "NAME_PREFIX",
    "PARENT_SECRET_CA_KEY",
    "PARENT_SECRET_KEY_KEY",
    "PARENT_SECRET_NAME",
    "PARENT_SECRET_NAMESPACE_KEY",
    "PARENT_SECRET_TOKEN_KEY",
    "PARENT_SECRET_URL_KEY",
    "PROXIES_API_VERSION",
    "PROXIES_GROUP",
    "PROXIES_VERSION",
    "RBAC_AUTOUPDATE_ANNOTATION",
    "RBAC_DEFAULTS",
    "REGISTERED_BY_LABEL",
    "REGISTRATION_SECRET_NAME",
    "REGISTRATION_SECRET_TOKEN_KEY",
    "REGISTRATION_SECRET_URL_KEY",
    "RESULT_APPROVED",
    "RESULT_DENIED",
    "RESULT_FAILED",
    "RESULT_PENDING",
    "ROTATE_ANNOTATION",
    "SELF_CLUSTER_LEASE_NAME",
    "SOCKETS_RESOURCE",
    "TOKEN_FOR_LABEL",
]

# API groups.
CLUSTERS_GROUP = "clusters.clusternet.io"
CLUSTERS_VERSION = "v1beta1"
CLUSTERS_API_VERSION = f"{CLUSTERS_GROUP}/{CLUSTERS_VERSION}"
PROXIES_GROUP = "proxies.clusternet.io"
PROXIES_VERSION = "v1alpha1"
PROXIES_API_VERSION = f"{PROXIES_GROUP}/{PROXIES_VERSION}"

CRR_KIND = "ClusterRegistrationRequest"
CRR_PLURAL = "clusterregistrationrequests"
MANAGED_CLUSTER_KIND = "ManagedCluster"
MANAGED_CLUSTER_PLURAL = "managedclusters"
SOCKETS_RESOURCE = "sockets"

# Label keys (the seed's pkg/known/labels.go).
REGISTERED_BY_LABEL = "clusters.clusternet.io/registered-by"
CLUSTER_ID_LABEL = "clusters.clusternet.io/cluster-id"
CLUSTER_NAME_LABEL = "clusters.clusternet.io/cluster-name"
BOOTSTRAPPING_LABEL = "clusters.clusternet.io/bootstrapping"
CREATED_BY_LABEL = "clusternet.io/created-by"
# On the namespaces the hub makes: the cluster ID each is dedicated to (only the
# hub sets it: the parent's users and clusters may not make namespaces).
DEDICATED_FOR_LABEL = "clusters.clusternet.io/dedicated-for"
# On the Secrets each parent token of a cluster is bound to (deleting one
# revokes its token).
TOKEN_FOR_LABEL = "clusters.clusternet.io/token-for"
# On a ClusterRegistrationRequest: change its value to have the hub issue the
# cluster a new token now (and revoke the one before).
ROTATE_ANNOTATION = "clusters.clusternet.io/rotate-credentials"

# Label values.
CREDENTIALS_AUTO = "credentials-auto"
RBAC_DEFAULTS = "rbac-defaults"
AGENT_NAME = "clusternet-agent"
HUB_NAME = "clusternet-hub"

# Annotation: objects the hub made carry "true"; anything else stops the hub from
# rewriting them (an operator's hand edit wins).
RBAC_AUTOUPDATE_ANNOTATION = "clusters.clusternet.io/rbac-autoupdate"

# Object names.
NAME_PREFIX = "clusternet-"
MANAGED_CLUSTER_ROLE = "clusternet-managedcluster-role"
HUB_NAMESPACE = "clusternet-system"
EDGE_SYSTEM_NAMESPACE = "edge-system"
SELF_CLUSTER_LEASE_NAME = "self-cluster"
BOOTSTRAP_GROUP = "system:bootstrappers:clusternet:register-cluster-token"

# The registration secret in the child (deploy/templates/clusternet_agent_secret.yaml).
REGISTRATION_SECRET_NAME = "clusternet-agent-cluster-registration"
REGISTRATION_SECRET_URL_KEY = "parentURL"
REGISTRATION_SECRET_TOKEN_KEY = "regToken"

# The credentials the agent keeps in the child after approval.
PARENT_SECRET_NAME = "parent-cluster"
PARENT_SECRET_CA_KEY = "ca.crt"
PARENT_SECRET_TOKEN_KEY = "token"
PARENT_SECRET_NAMESPACE_KEY = "namespace"
PARENT_SECRET_URL_KEY = "parent-url"
# The agent's private key (X25519, PEM): the parent's tokens are sealed to it.
PARENT_SECRET_KEY_KEY = "agent.key"

# Cluster types and names.
CLUSTER_TYPE_EDGE_SELF_PROVISIONED = "EdgeClusterSelfProvisioned"
CLUSTER_TYPES = (CLUSTER_TYPE_EDGE_SELF_PROVISIONED,)
CLUSTER_NAME_PREFIX = "clusternet-cluster"
CLUSTER_NAME_MAX_LENGTH = 60
CLUSTER_NAME_RANDOM_LENGTH = 5

# ClusterRegistrationRequest results.
RESULT_PENDING = "Pending"
RESULT_APPROVED = "Approved"
RESULT_DENIED = "Denied"
RESULT_FAILED = "Failed"
APPROVAL_RESULTS = (RESULT_PENDING, RESULT_APPROVED, RESULT_DENIED, RESULT_FAILED)

# ManagedCluster conditions.
CONDITION_READY = "Ready"

# The heartbeat Lease the agent renews in its dedicated namespace.
CLUSTER_LEASE_DURATION_SECONDS = 40
CLUSTER_LEASE_RENEW_INTERVAL = 10.0
