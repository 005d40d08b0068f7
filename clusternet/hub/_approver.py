"""
Approving ClusterRegistrationRequests.

For each request the approver converges the parent to the objects the seed makes:
a dedicated namespace (generateName C{clusternet-}), the ManagedCluster, a
ServiceAccount with a token Secret, Role and RoleBinding
C{clusternet-managedcluster-role}, ClusterRole and ClusterRoleBinding
C{clusternet-<cluster-id>}; then it writes the credentials into the request's
status.  Every object is found by its labels (or fixed name) before it is made,
so replaying an approval after a crash at any step converges to the same objects
and never makes a second namespace.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from clusternet.apis import (
    AGENT_NAME,
    BOOTSTRAPPING_LABEL,
    CLUSTER_ID_LABEL,
    CLUSTER_NAME_LABEL,
    CLUSTERS_API_VERSION,
    CLUSTERS_GROUP,
    CREATED_BY_LABEL,
    CRR_PLURAL,
    HUB_NAME,
    MANAGED_CLUSTER_KIND,
    MANAGED_CLUSTER_ROLE,
    NAME_PREFIX,
    PROXIES_GROUP,
    RBAC_AUTOUPDATE_ANNOTATION,
    RBAC_DEFAULTS,
    RESULT_APPROVED,
    RESULT_DENIED,
    SOCKETS_RESOURCE,
    ClusterRegistrationRequestSpec,
    InvalidObject,
    cluster_role_name,
    crr_name,
)
from clusternet.kube._errors import AlreadyExists, KubeError, NotFound
from clusternet.kube._interfaces import IKubeAPI
from clusternet.kube._resources import (
    CLUSTER_REGISTRATION_REQUESTS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    MANAGED_CLUSTERS,
    NAMESPACES,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    Resource,
)

__all__ = ["ApprovalQueue", "Approver", "approval_objects"]

Obj = dict[str, Any]


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _owned_labels(cluster_id: str, cluster_name: str) -> dict[str, str]:
    labels = {CREATED_BY_LABEL: AGENT_NAME, CLUSTER_ID_LABEL: cluster_id}
    if cluster_name:
        labels[CLUSTER_NAME_LABEL] = cluster_name
    return labels


def _rbac_meta(name: str, namespace: str | None, cluster_id: str | None) -> Obj:
    labels = {BOOTSTRAPPING_LABEL: RBAC_DEFAULTS, CREATED_BY_LABEL: HUB_NAME}
    if cluster_id:
        labels[CLUSTER_ID_LABEL] = cluster_id
    meta: Obj = {
        "name": name,
        "labels": labels,
        "annotations": {RBAC_AUTOUPDATE_ANNOTATION: "true"},
    }
    if namespace:
        meta["namespace"] = namespace
    return meta


def approval_objects(
    cluster_id: str, namespace: str, service_account: str
) -> list[tuple[Resource, Obj]]:
    """
    The RBAC objects an approved cluster gets, in the order they are ensured.
    """
    rbac = "rbac.authorization.k8s.io"
    subject = [
        {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    ]
    cluster_role = cluster_role_name(cluster_id)
    return [
        (
            ROLES,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "Role",
                "metadata": _rbac_meta(MANAGED_CLUSTER_ROLE, namespace, None),
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            },
        ),
        (
            ROLE_BINDINGS,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "RoleBinding",
                "metadata": _rbac_meta(MANAGED_CLUSTER_ROLE, namespace, None),
                "subjects": subject,
                "roleRef": {
                    "apiGroup": rbac,
                    "kind": "Role",
                    "name": MANAGED_CLUSTER_ROLE,
                },
            },
        ),
        (
            CLUSTER_ROLES,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRole",
                "metadata": _rbac_meta(cluster_role, None, cluster_id),
                "rules": [
                    {
                        "apiGroups": [CLUSTERS_GROUP],
                        "resources": [CRR_PLURAL],
                        "verbs": ["create", "get"],
                    },
                    {
                        "apiGroups": [PROXIES_GROUP],
                        "resources": [SOCKETS_RESOURCE],
                        "resourceNames": [cluster_id],
                        "verbs": ["*"],
                    },
                ],
            },
        ),
        (
            CLUSTER_ROLE_BINDINGS,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": _rbac_meta(cluster_role, None, cluster_id),
                "subjects": subject,
                "roleRef": {
                    "apiGroup": rbac,
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
            },
        ),
    ]


def _oldest(items: list[Obj]) -> Obj | None:
    if not items:
        return None
    return min(
        items,
        key=lambda o: (
            o["metadata"].get("creationTimestamp") or "",
            o["metadata"]["name"],
        ),
    )


class Approver:
    """
    Converge one ClusterRegistrationRequest at a time.

    @param token_wait: how long to wait for the token controller to fill the
        ServiceAccount's token Secret before giving up (the request is retried).
    """

    _log = Logger()

    def __init__(
        self, kube: IKubeAPI, clock: IReactorTime, token_wait: float = 30.0
    ) -> None:
        self._kube = kube
        self._clock = clock
        self._token_wait = token_wait

    async def approve(self, crr: Obj) -> None:
        name = crr["metadata"]["name"]
        status = crr.get("status") or {}
        if status.get("result") in (RESULT_APPROVED, RESULT_DENIED):
            return
        try:
            spec = ClusterRegistrationRequestSpec.from_dict(crr.get("spec") or {})
        except InvalidObject as e:
            await self._deny(name, str(e))
            return
        problems = spec.errors()
        expected = NAME_PREFIX + spec.cluster_id
        if name != expected:
            problems.insert(
                0, f"name {name!r} does not match spec.clusterId: expected {expected!r}"
            )
        if problems:
            await self._deny(name, "; ".join(problems))
            return
        cluster_id, cluster_name = spec.cluster_id, spec.cluster_name
        labels = _owned_labels(cluster_id, cluster_name)
        namespace = await self._ensure_namespace(cluster_id, labels)
        mcls = await self._ensure_managed_cluster(namespace, spec, labels)
        account = await self._ensure_service_account(namespace, cluster_id, labels)
        for resource, body in approval_objects(cluster_id, namespace, account):
            await self._ensure_rbac(resource, body)
        token, ca = await self._token(namespace, account)
        await self._kube.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            name,
            {
                "status": {
                    "result": RESULT_APPROVED,
                    "errorMessage": "",
                    "dedicatedNamespace": namespace,
                    "managedClusterName": mcls,
                    "token": base64.b64encode(token).decode("ascii"),
                    "caCertificate": base64.b64encode(ca).decode("ascii"),
                }
            },
            subresource="status",
        )
        self._log.info(
            "Approved cluster {cluster} ({name}): namespace {namespace}",
            cluster=cluster_id,
            name=cluster_name,
            namespace=namespace,
        )

    async def _deny(self, name: str, message: str) -> None:
        self._log.warn("Denied {crr}: {why}", crr=name, why=message)
        await self._kube.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            name,
            {"status": {"result": RESULT_DENIED, "errorMessage": message[:1024]}},
            subresource="status",
        )

    async def _ensure_namespace(self, cluster_id: str, labels: dict[str, str]) -> str:
        selector = _selector(
            {CREATED_BY_LABEL: AGENT_NAME, CLUSTER_ID_LABEL: cluster_id}
        )
        found = await self._kube.list(NAMESPACES, label_selector=selector)
        existing = _oldest(
            [
                n
                for n in found.get("items", [])
                if not n["metadata"].get("deletionTimestamp")
            ]
        )
        if existing is not None:
            return str(existing["metadata"]["name"])
        created = await self._kube.create(
            NAMESPACES,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"generateName": NAME_PREFIX, "labels": labels},
            },
        )
        return str(created["metadata"]["name"])

    async def _ensure_managed_cluster(
        self,
        namespace: str,
        spec: ClusterRegistrationRequestSpec,
        labels: dict[str, str],
    ) -> str:
        selector = _selector(
            {CREATED_BY_LABEL: AGENT_NAME, CLUSTER_ID_LABEL: spec.cluster_id}
        )
        found = await self._kube.list(
            MANAGED_CLUSTERS, namespace, label_selector=selector
        )
        existing = _oldest(found.get("items", []))
        if existing is not None:
            return str(existing["metadata"]["name"])
        name = spec.cluster_name or crr_name(spec.cluster_id)
        body = {
            "apiVersion": CLUSTERS_API_VERSION,
            "kind": MANAGED_CLUSTER_KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"clusterId": spec.cluster_id, "clusterType": spec.cluster_type},
        }
        try:
            await self._kube.create(MANAGED_CLUSTERS, body, namespace)
        except AlreadyExists:
            pass  # made by an earlier attempt whose answer was lost
        return name

    async def _ensure_service_account(
        self, namespace: str, cluster_id: str, labels: dict[str, str]
    ) -> str:
        name = crr_name(cluster_id)
        for resource, body in (
            (
                SERVICE_ACCOUNTS,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": labels,
                    },
                },
            ),
            (
                SECRETS,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/service-account-token",
                    "metadata": {
                        "name": f"{name}-token",
                        "namespace": namespace,
                        "labels": labels,
                        "annotations": {"kubernetes.io/service-account.name": name},
                    },
                },
            ),
        ):
            try:
                await self._kube.create(resource, body, namespace)
            except AlreadyExists:
                pass
        return name

    async def _ensure_rbac(self, resource: Resource, body: Obj) -> None:
        meta = body["metadata"]
        namespace = meta.get("namespace")
        try:
            existing = await self._kube.get(resource, meta["name"], namespace)
        except NotFound:
            try:
                await self._kube.create(resource, body, namespace)
            except AlreadyExists:
                pass
            return
        annotations = existing["metadata"].get("annotations") or {}
        if annotations.get(RBAC_AUTOUPDATE_ANNOTATION) != "true":
            return  # an operator took it over: leave it alone
        wanted = {
            k: v for k, v in body.items() if k in ("rules", "subjects", "roleRef")
        }
        if all(existing.get(k) == v for k, v in wanted.items()):
            return
        if existing.get("roleRef", body.get("roleRef")) != body.get("roleRef"):
            # roleRef cannot change: replace the binding.
            await self._kube.delete(resource, meta["name"], namespace)
            await self._kube.create(resource, body, namespace)
            return
        updated = dict(existing)
        updated.update(wanted)
        await self._kube.update(resource, updated, namespace)

    async def _token(self, namespace: str, account: str) -> tuple[bytes, bytes]:
        deadline = self._clock.seconds() + self._token_wait
        delay = 0.1
        while True:
            secret = await self._kube.get(SECRETS, f"{account}-token", namespace)
            data = secret.get("data") or {}
            if data.get("token") and data.get("ca.crt"):
                return base64.b64decode(data["token"]), base64.b64decode(data["ca.crt"])
            if self._clock.seconds() >= deadline:
                raise KubeError(
                    0,
                    "Timeout",
                    f"the token controller did not fill {namespace}/{account}-token",
                )
            await deferLater(self._clock, delay, lambda: None)
            delay = min(delay * 2, 2.0)


class ApprovalQueue:
    """
    Run approvals one request at a time, deduplicated, retrying failures with
    capped exponential backoff.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        work: Callable[[Obj], Awaitable[None]],
        max_backoff: float = 60.0,
    ) -> None:
        self._clock = clock
        self._work = work
        self._max_backoff = max_backoff
        self._pending: dict[str, Obj] = {}
        self._failures: dict[str, int] = {}
        self._running: Deferred[None] | None = None
        self._stopped = False

    def enqueue(self, crr: Obj) -> None:
        if self._stopped:
            return
        self._pending[crr["metadata"]["name"]] = crr
        self._kick()

    def _kick(self) -> None:
        if self._running is None and self._pending and not self._stopped:
            running = ensureDeferred(self._drain())
            if not running.called:
                self._running = running

    async def _drain(self) -> None:
        try:
            while self._pending and not self._stopped:
                name, crr = next(iter(self._pending.items()))
                del self._pending[name]
                try:
                    await self._work(crr)
                except Exception as e:
                    failures = self._failures.get(name, 0) + 1
                    self._failures[name] = failures
                    delay = min(self._max_backoff, 0.5 * 2 ** min(failures, 10))
                    self._log.warn(
                        "Approval of {crr} failed ({error}); retrying in {delay}s",
                        crr=name,
                        error=str(e),
                        delay=delay,
                    )
                    self._clock.callLater(delay, self._retry, crr)
                else:
                    self._failures.pop(name, None)
        finally:
            self._running = None  # set only while a drain waits on I/O

    def _retry(self, crr: Obj) -> None:
        name = crr["metadata"]["name"]
        if name not in self._pending:
            self.enqueue(crr)

    @property
    def idle(self) -> bool:
        return self._running is None and not self._pending

    def stop(self) -> None:
        self._stopped = True
        if self._running is not None:
            self._running.cancel()
