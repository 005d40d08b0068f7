"""
The resource types the sandbox serves: the built-in ones and those that
CustomResourceDefinitions add, looked up by group, version and plural.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from attrs import define, field, frozen

from clusternet.sandbox._store_api import JSONObject

__all__ = ["ALL_VERBS", "BUILTINS", "Registry", "ResourceType"]

ALL_VERBS = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@frozen
class ResourceType:
    """
    One resource in one group/version.

    @ivar key: the store's name for it, C{"<group>/<plural>"}.
    @ivar name_rule: how C{metadata.name} is validated (see L{validate_name}).
    @ivar generation: whether C{metadata.generation} is kept.
    @ivar subresources: served subresources (C{status}, ...).
    @ivar strategic: strategic merge patch is accepted (built-in kinds).
    @ivar return_deleted: DELETE answers the object rather than a Status.
    @ivar schema: the CRD's openAPIV3Schema for this version.
    @ivar printer_columns: the CRD's additionalPrinterColumns.
    @ivar handler: for create-only resources served by code (reviews,
        TokenRequest): called with (user, namespace, name, body).
    """

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    name_rule: str = "subdomain"
    generation: bool = False
    strategic: bool = True
    return_deleted: bool = False
    crd: bool = False
    schema: JSONObject | None = field(default=None, eq=False)
    printer_columns: tuple[JSONObject, ...] = field(default=(), eq=False)
    field_selectors: tuple[str, ...] = ()
    handler: Callable[..., Any] | None = field(default=None, eq=False)
    subresource_kinds: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def status_subresource(self) -> bool:
        return "status" in self.subresources

    @property
    def stored(self) -> bool:
        return self.handler is None


def _core(
    plural: str, singular: str, kind: str, namespaced: bool = True, **kw: Any
) -> ResourceType:
    return ResourceType("", "v1", plural, singular, kind, namespaced, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core("configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    _core("endpoints", "endpoints", "Endpoints", short_names=("ep",)),
    _core(
        "events",
        "event",
        "Event",
        short_names=("ev",),
        field_selectors=(
            "involvedObject.kind",
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type",
            "source",
        ),
    ),
    _core(
        "namespaces",
        "namespace",
        "Namespace",
        False,
        short_names=("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources=("finalize", "status"),
        name_rule="label",
        return_deleted=True,
        field_selectors=("status.phase",),
    ),
    _core(
        "pods",
        "pod",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=("status",),
        return_deleted=True,
        field_selectors=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    _core("secrets", "secret", "Secret", field_selectors=("type",)),
    _core(
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        short_names=("sa",),
    ),
    _core(
        "services",
        "service",
        "Service",
        short_names=("svc",),
        categories=("all",),
        subresources=("status",),
        name_rule="dns1035",
        return_deleted=True,
    ),
    ResourceType(
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "apiservice",
        "APIService",
        False,
        categories=("api-extensions",),
        subresources=("status",),
        name_rule="path",
        strategic=True,
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    # Workloads as plain objects: stored and served, no controllers act on them.
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        True,
        short_names=("deploy",),
        categories=("all",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        True,
        short_names=("rs",),
        categories=("all",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        True,
        short_names=("ds",),
        categories=("all",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        True,
        short_names=("sts",),
        categories=("all",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        True,
        categories=("all",),
        subresources=("status",),
        generation=True,
    ),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        short_names=("ev",),
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        False,
        name_rule="path",
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        False,
        name_rule="path",
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        True,
        name_rule="path",
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        True,
        name_rule="path",
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
        generation=True,
        return_deleted=True,
    ),
)

# The order groups appear in discovery, as the real server lists them.
GROUP_ORDER = (
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "coordination.k8s.io",
)


@define
class Registry:
    """
    Every served resource type, by (group, version, plural) and by store key.
    """

    _types: dict[tuple[str, str, str], ResourceType] = field(factory=dict)
    _listeners: list[Callable[[], None]] = field(factory=list)

    @classmethod
    def with_builtins(cls) -> Registry:
        registry = cls()
        for resource in BUILTINS:
            registry.add(resource)
        return registry

    def add(self, resource: ResourceType) -> None:
        self._types[(resource.group, resource.version, resource.plural)] = resource
        self._changed()

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[key]
        self._changed()

    def replace_crd(
        self, group: str, plural: str, versions: list[ResourceType]
    ) -> None:
        for key in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[key]
        for resource in versions:
            self._types[(resource.group, resource.version, resource.plural)] = resource
        self._changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_key(self, key: str) -> ResourceType | None:
        """
        The type of store key C{"<group>/<plural>"} (its first served version).
        """
        group, _, plural = key.partition("/")
        for (g, _v, p), resource in self._types.items():
            if g == group and p == plural:
                return resource
        return None

    def has_version(self, group: str, version: str) -> bool:
        return any(g == group and v == version for g, v, _ in self._types)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types.values()))

    def groups(self) -> list[tuple[str, list[str]]]:
        """
        (group, [versions, preferred first]) in discovery order.
        """
        found: dict[str, list[str]] = {}
        for group, version, _ in self._types:
            versions = found.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        order = {name: i for i, name in enumerate(GROUP_ORDER)}
        names = sorted(found, key=lambda g: (order.get(g, len(order)), g))
        return [(g, sorted(found[g], key=_version_priority)) for g in names]

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (r for (g, v, _), r in self._types.items() if g == group and v == version),
            key=lambda r: r.plural,
        )


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """
    Kubernetes version ordering: GA > beta > alpha, higher numbers first.
    """
    import re

    match = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[match.group(2) or ""]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)
