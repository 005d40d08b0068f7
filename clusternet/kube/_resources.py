"""
API resources by group, version and plural, and their URL paths.
"""

from __future__ import annotations

from urllib.parse import quote

from attrs import frozen

from clusternet.apis import (
    CLUSTERS_GROUP,
    CLUSTERS_VERSION,
    CRR_KIND,
    CRR_PLURAL,
    MANAGED_CLUSTER_KIND,
    MANAGED_CLUSTER_PLURAL,
)

__all__ = [
    "APISERVICES",
    "CLUSTER_REGISTRATION_REQUESTS",
    "CLUSTER_ROLES",
    "CLUSTER_ROLE_BINDINGS",
    "CONFIG_MAPS",
    "CUSTOM_RESOURCE_DEFINITIONS",
    "EVENTS",
    "LEASES",
    "MANAGED_CLUSTERS",
    "NAMESPACES",
    "ROLES",
    "ROLE_BINDINGS",
    "SECRETS",
    "SERVICE_ACCOUNTS",
    "SUBJECT_ACCESS_REVIEWS",
    "TOKEN_REVIEWS",
    "Resource",
]


def _segment(value: str, what: str) -> str:
    if not value or value in (".", "..") or "/" in value:
        raise ValueError(f"{what} {value!r} cannot be part of a URL path")
    return quote(value, safe="")


@frozen
class Resource:
    """
    One kind of object on the API server: C{group}/C{version}, C{plural}.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """
        The URL path of the collection, or of the object C{name} (and its
        C{subresource}). C{namespace} is required for a namespaced object and
        optional for a list (all namespaces when absent).
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else "/api/v1"
        if self.namespaced and namespace:
            base += "/namespaces/" + _segment(namespace, "namespace")
        elif self.namespaced and name is not None:
            raise ValueError(f"{self.plural} are namespaced: a namespace is required")
        elif not self.namespaced and namespace:
            raise ValueError(f"{self.plural} are cluster-scoped: no namespace")
        base += "/" + self.plural
        if name is not None:
            base += "/" + _segment(name, "name")
            if subresource:
                base += "/" + _segment(subresource, "subresource")
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return base


NAMESPACES = Resource("", "v1", "namespaces", "Namespace", False)
SECRETS = Resource("", "v1", "secrets", "Secret", True)
EVENTS = Resource("", "v1", "events", "Event", True)
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap", True)
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount", True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", True)
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True)
ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True
)
CLUSTER_ROLES = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False
)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io",
    "v1",
    "clusterrolebindings",
    "ClusterRoleBinding",
    False,
)
TOKEN_REVIEWS = Resource(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False
)
SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io",
    "v1",
    "subjectaccessreviews",
    "SubjectAccessReview",
    False,
)
CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    False,
)
APISERVICES = Resource(
    "apiregistration.k8s.io", "v1", "apiservices", "APIService", False
)
CLUSTER_REGISTRATION_REQUESTS = Resource(
    CLUSTERS_GROUP, CLUSTERS_VERSION, CRR_PLURAL, CRR_KIND, False
)
MANAGED_CLUSTERS = Resource(
    CLUSTERS_GROUP, CLUSTERS_VERSION, MANAGED_CLUSTER_PLURAL, MANAGED_CLUSTER_KIND, True
)
