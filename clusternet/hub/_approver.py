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
    DEDICATED_FOR_LABEL,
    HUB_NAME,
    MANAGED_CLUSTER_KIND,
    MANAGED_CLUSTER_PLURAL,
    MANAGED_CLUSTER_ROLE,
    NAME_PREFIX,
    PROXIES_GROUP,
    RBAC_AUTOUPDATE_ANNOTATION,
    RBAC_DEFAULTS,
    RESULT_APPROVED,
    RESULT_DENIED,
    RESULT_PENDING,
    ROTATE_ANNOTATION,
    SOCKETS_RESOURCE,
    TOKEN_FOR_LABEL,
    ClusterRegistrationRequestSpec,
    InvalidObject,
    cluster_role_name,
    crr_name,
    heartbeat_lease_name,
)
from clusternet.apis._time import parse_time
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
from clusternet.sealing import fingerprint, seal, sealing_context

__all__ = ["APPROVAL_POLICIES", "ApprovalQueue", "Approver", "approval_objects"]

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
    cluster_id: str, namespace: str, service_account: str, managed_cluster: str
) -> list[tuple[Resource, Obj]]:
    """
    The RBAC objects an approved cluster gets, in the order they are ensured:
    what its agent needs and nothing more (docs/rbac.md).

    In its namespace: read its ManagedCluster and patch its status; make and
    renew its heartbeat Lease. Cluster-wide: read its own registration request
    (the next sealed token) and its own namespace (the agent checks the hub
    made it), and attach its own tunnel.
    """
    rbac = "rbac.authorization.k8s.io"
    subject = [
        {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    ]
    cluster_role = cluster_role_name(cluster_id)
    lease = heartbeat_lease_name(cluster_id)
    return [
        (
            ROLES,
            {
                "apiVersion": f"{rbac}/v1",
                "kind": "Role",
                "metadata": _rbac_meta(MANAGED_CLUSTER_ROLE, namespace, None),
                "rules": [
                    {
                        "apiGroups": [CLUSTERS_GROUP],
                        "resources": [MANAGED_CLUSTER_PLURAL],
                        "resourceNames": [managed_cluster],
                        "verbs": ["get"],
                    },
                    {
                        "apiGroups": [CLUSTERS_GROUP],
                        "resources": [f"{MANAGED_CLUSTER_PLURAL}/status"],
                        "resourceNames": [managed_cluster],
                        "verbs": ["patch"],
                    },
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "verbs": ["create"],
                    },
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "resourceNames": [lease],
                        "verbs": ["get", "update"],
                    },
                ],
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
                        "resourceNames": [crr_name(cluster_id)],
                        "verbs": ["get"],
                    },
                    {
                        "apiGroups": [""],
                        "resources": ["namespaces"],
                        "resourceNames": [namespace],
                        "verbs": ["get"],
                    },
                    {
                        "apiGroups": [PROXIES_GROUP],
                        "resources": [SOCKETS_RESOURCE],
                        "resourceNames": [cluster_id],
                        "verbs": ["get", "create"],
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


# Pod Security for the dedicated namespaces: nothing privileged runs there.
POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}": "restricted"
    for mode in ("enforce", "audit", "warn")
}
GENERATION_ANNOTATION = "clusters.clusternet.io/token-generation"


def _annotations(obj: Obj) -> dict[str, str]:
    found = (obj.get("metadata") or {}).get("annotations") or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _generation(secret: Obj) -> int:
    try:
        return int(_annotations(secret).get(GENERATION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _fingerprint(crr: Obj) -> tuple[str, ...]:
    """
    What a verified approval must keep for the verification to hold: the
    request, the status the hub wrote and the rotation asked for.
    """
    status = crr.get("status") or {}
    return (
        str((crr.get("metadata") or {}).get("uid") or ""),
        str(status.get("dedicatedNamespace") or ""),
        str(status.get("sealedToken") or ""),
        _annotations(crr).get(ROTATE_ANNOTATION, ""),
    )


def _seconds(text: object) -> float | None:
    try:
        return parse_time(text).timestamp() if isinstance(text, str) else None
    except ValueError:
        return None


def _newest(secrets: list[Obj]) -> Obj | None:
    return max(secrets, key=_generation, default=None)


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


APPROVAL_POLICIES = ("auto", "manual")
# What a request waiting for an operator says in its status.
WAITING_MESSAGE = (
    "waiting for an operator to approve it: clusternet approve {name} (or set "
    "status.result to Approved with kubectl patch --subresource=status)"
)
# A token is replaced when less than this part of its lifetime is left.
ROTATE_AT_REMAINING = 0.2


class Approver:
    """
    Converge one ClusterRegistrationRequest at a time; keep the token of each
    approved cluster fresh.

    Credentials: the agent puts its X25519 public key in C{spec.publicKey}; the
    hub requests a token for the cluster's ServiceAccount from the TokenRequest
    API, bound to a Secret of the dedicated namespace (deleting it revokes the
    token) and expiring after C{token_lifetime}, and writes it into the status
    only sealed to that key (L{clusternet.sealing}): another cluster, a
    bootstrap-token holder or a reader of the request cannot use it. Before it
    expires the hub issues the next one, and revokes the one before.

    Trust: an C{Approved} status is believed only when the namespace it names
    is the one the hub made for that cluster ID (labelled
    C{clusters.clusternet.io/dedicated-for}) and it holds a sealed token;
    anything else is approved anew, overwriting what someone else wrote.

    @param policy: C{auto} approves every valid request; C{manual} waits until
        an operator sets C{status.result} to C{Approved} (only holders of
        C{clusterregistrationrequests/status} may write it).
    @param max_pending: requests waiting at once beyond which new ones are
        denied; C{pending} counts them.
    @param ca_pem: the parent's CA bundle written into the status.
    """

    _log = Logger()

    def __init__(
        self,
        kube: IKubeAPI,
        clock: IReactorTime,
        policy: str = "auto",
        token_lifetime: float = 24 * 3600.0,
        max_pending: int = 100,
        pending: Callable[[], int] | None = None,
        ca_pem: bytes | None = None,
    ) -> None:
        if policy not in APPROVAL_POLICIES:
            raise ValueError(f"approval policy {policy!r}")
        self._kube = kube
        self._clock = clock
        self._policy = policy
        self._lifetime = token_lifetime
        self._max_pending = max_pending
        self._pending = pending if pending is not None else (lambda: 0)
        self._ca_pem = ca_pem or b""
        # Approved requests found as the hub left them (cluster ID ->
        # _fingerprint): the informer's resync re-checks them without a call
        # to the parent until their token nears its end or they change.
        self._verified: dict[str, tuple[str, ...]] = {}

    async def approve(self, crr: Obj) -> None:
        name = crr["metadata"]["name"]
        status = crr.get("status") or {}
        result = status.get("result")
        if result == RESULT_DENIED:
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
        if not spec.public_key:
            problems.append(
                "spec.publicKey is missing: the parent's credentials are sealed to "
                "the agent's key; upgrade the agent"
            )
        if problems:
            await self._deny(name, "; ".join(problems))
            return
        if result == RESULT_APPROVED:
            if self._verified.get(spec.cluster_id) == _fingerprint(crr) and not (
                self._due(status)
            ):
                return  # as the hub left it, and its token is not ending yet
            namespace = await self._dedicated_namespace(spec.cluster_id)
            if (
                namespace is not None
                and namespace == status.get("dedicatedNamespace")
                and status.get("sealedToken")
            ):
                await self._keep_fresh(crr, spec, namespace)
                return
            if self._policy == "auto" or status.get("sealedToken"):
                self._log.warn(
                    "{crr} says Approved, but not as the hub wrote it (namespace "
                    "{namespace!r} is not the one made for {cluster}): approving "
                    "it anew",
                    crr=name,
                    namespace=status.get("dedicatedNamespace"),
                    cluster=spec.cluster_id,
                )
        elif self._policy == "manual":
            await self._wait_for_operator(name, status)
            return
        elif self._pending() > self._max_pending:
            await self._deny(
                name,
                f"more than {self._max_pending} registration requests are waiting; "
                "delete this one to try again later",
            )
            return
        await self._approve(crr, spec)

    async def _wait_for_operator(self, name: str, status: Obj) -> None:
        message = WAITING_MESSAGE.format(name=name)
        if status.get("result") == RESULT_PENDING and status.get("errorMessage") == (
            message
        ):
            return
        if self._pending() > self._max_pending:
            await self._deny(
                name,
                f"more than {self._max_pending} registration requests are waiting "
                "for an operator; delete this one to try again later",
            )
            return
        self._log.info("{crr} waits for an operator's approval", crr=name)
        await self._kube.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            name,
            {"status": {"result": RESULT_PENDING, "errorMessage": message}},
            subresource="status",
        )

    async def _approve(self, crr: Obj, spec: ClusterRegistrationRequestSpec) -> None:
        cluster_id, cluster_name = spec.cluster_id, spec.cluster_name
        labels = _owned_labels(cluster_id, cluster_name)
        namespace = await self._ensure_namespace(cluster_id, labels)
        mcls = await self._ensure_managed_cluster(namespace, spec, labels)
        account = await self._ensure_service_account(namespace, cluster_id, labels)
        for resource, body in approval_objects(cluster_id, namespace, account, mcls):
            await self._ensure_rbac(resource, body)
        await self._issue(crr, spec, namespace, account, mcls, revoke_previous=True)
        self._log.info(
            "Approved cluster {cluster} ({name}): namespace {namespace}, key {key}",
            cluster=cluster_id,
            name=cluster_name,
            namespace=namespace,
            key=fingerprint(spec.public_key),
        )

    async def _keep_fresh(
        self, crr: Obj, spec: ClusterRegistrationRequestSpec, namespace: str
    ) -> None:
        """
        Issue the next token when the current one nears its end, or when an
        operator asks by changing the rotate annotation (then the one before is
        revoked at once).
        """
        status = crr.get("status") or {}
        wanted = _annotations(crr).get(ROTATE_ANNOTATION, "")
        current = _newest(await self._token_secrets(namespace, spec.cluster_id))
        asked = current is not None and wanted != _annotations(current).get(
            ROTATE_ANNOTATION, ""
        )
        due = self._due(status)
        if not (asked or due or current is None):
            self._verified[spec.cluster_id] = _fingerprint(crr)
            return
        account = crr_name(spec.cluster_id)
        mcls = str(status.get("managedClusterName") or "")
        await self._issue(crr, spec, namespace, account, mcls, revoke_previous=asked)
        self._log.info(
            "Issued cluster {cluster} a new token ({why})",
            cluster=spec.cluster_id,
            why="asked" if asked else "the last one was ending",
        )

    def _due(self, status: Obj) -> bool:
        """
        Whether the token in C{status} is near enough its end to issue the next.
        """
        expires = _seconds(status.get("tokenExpirationTimestamp"))
        remaining = self._lifetime * ROTATE_AT_REMAINING
        return expires is None or expires - self._clock.seconds() < remaining

    async def _issue(
        self,
        crr: Obj,
        spec: ClusterRegistrationRequestSpec,
        namespace: str,
        account: str,
        mcls: str,
        revoke_previous: bool,
    ) -> None:
        """
        Request a token bound to a new Secret, seal it to the agent's key, write
        it into the status, then revoke the tokens before the previous one (or
        the previous one too, with C{revoke_previous}).
        """
        cluster_id = spec.cluster_id
        existing = await self._token_secrets(namespace, cluster_id)
        generation = 1 + max((_generation(s) for s in existing), default=0)
        secret = await self._kube.create(
            SECRETS,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": f"{account}-token-{generation}",
                    "namespace": namespace,
                    "labels": {
                        CREATED_BY_LABEL: HUB_NAME,
                        TOKEN_FOR_LABEL: cluster_id,
                    },
                    "annotations": {
                        GENERATION_ANNOTATION: str(generation),
                        ROTATE_ANNOTATION: _annotations(crr).get(ROTATE_ANNOTATION, ""),
                    },
                },
            },
            namespace,
        )
        request = await self._kube.create(
            SERVICE_ACCOUNTS,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": int(self._lifetime),
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "name": secret["metadata"]["name"],
                        "uid": secret["metadata"].get("uid"),
                    },
                },
            },
            namespace,
            name=account,
            subresource="token",
        )
        token = str((request.get("status") or {}).get("token") or "")
        if not token:
            raise KubeError(0, "NoToken", f"no token for {namespace}/{account}")
        context = sealing_context(cluster_id, str(crr["metadata"].get("uid") or ""))
        sealed = seal(spec.public_key, token.encode("ascii"), context)
        await self._kube.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            crr["metadata"]["name"],
            {
                "status": {
                    "result": RESULT_APPROVED,
                    "errorMessage": "",
                    "dedicatedNamespace": namespace,
                    "managedClusterName": mcls,
                    "token": None,
                    "sealedToken": sealed,
                    "tokenExpirationTimestamp": (request.get("status") or {}).get(
                        "expirationTimestamp"
                    ),
                    "caCertificate": base64.b64encode(self._ca_pem).decode("ascii"),
                }
            },
            subresource="status",
        )
        keep = generation - (0 if revoke_previous else 1)
        for old in existing:
            if _generation(old) < keep:
                await self._revoke(namespace, old)

    async def _revoke(self, namespace: str, secret: Obj) -> None:
        try:
            await self._kube.delete(SECRETS, secret["metadata"]["name"], namespace)
        except NotFound:
            pass

    async def revoke_all(self, crr: Obj) -> None:
        """
        The request is gone (an operator deleted it, say for a stolen edge
        box): revoke every token issued for its cluster.
        """
        cluster_id = (crr.get("spec") or {}).get("clusterId")
        if not isinstance(cluster_id, str) or not cluster_id:
            return
        self._verified.pop(cluster_id, None)
        namespace = await self._dedicated_namespace(cluster_id)
        if namespace is None:
            return
        secrets = await self._token_secrets(namespace, cluster_id)
        for secret in secrets:
            await self._revoke(namespace, secret)
        if secrets:
            self._log.info(
                "Revoked the {count} token(s) of cluster {cluster}: its request was "
                "deleted",
                count=len(secrets),
                cluster=cluster_id,
            )

    async def _token_secrets(self, namespace: str, cluster_id: str) -> list[Obj]:
        found = await self._kube.list(
            SECRETS,
            namespace,
            label_selector=_selector(
                {CREATED_BY_LABEL: HUB_NAME, TOKEN_FOR_LABEL: cluster_id}
            ),
        )
        return [s for s in found.get("items", []) if _generation(s) > 0]

    async def _dedicated_namespace(self, cluster_id: str) -> str | None:
        """
        The namespace the hub made for C{cluster_id}, if any.
        """
        found = await self._kube.list(
            NAMESPACES, label_selector=_selector({DEDICATED_FOR_LABEL: cluster_id})
        )
        existing = _oldest(
            [
                n
                for n in found.get("items", [])
                if not n["metadata"].get("deletionTimestamp")
            ]
        )
        return None if existing is None else str(existing["metadata"]["name"])

    async def _deny(self, name: str, message: str) -> None:
        self._log.warn("Denied {crr}: {why}", crr=name, why=message)
        await self._kube.patch(
            CLUSTER_REGISTRATION_REQUESTS,
            name,
            {"status": {"result": RESULT_DENIED, "errorMessage": message[:1024]}},
            subresource="status",
        )

    async def _ensure_namespace(self, cluster_id: str, labels: dict[str, str]) -> str:
        """
        The cluster's dedicated namespace: found by the hub's label, or one the
        seed's hub made (labelled then only with the cluster ID) given the
        label, or made; with Pod Security C{restricted} either way.
        """
        wanted = {**labels, DEDICATED_FOR_LABEL: cluster_id, **POD_SECURITY}
        existing = await self._dedicated_namespace(cluster_id)
        if existing is None:
            selector = _selector(
                {CREATED_BY_LABEL: AGENT_NAME, CLUSTER_ID_LABEL: cluster_id}
            )
            found = await self._kube.list(NAMESPACES, label_selector=selector)
            older = _oldest(
                [
                    n
                    for n in found.get("items", [])
                    if not n["metadata"].get("deletionTimestamp")
                    and str(n["metadata"]["name"]).startswith(NAME_PREFIX)
                ]
            )
            if older is None:
                created = await self._kube.create(
                    NAMESPACES,
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"generateName": NAME_PREFIX, "labels": wanted},
                    },
                )
                return str(created["metadata"]["name"])
            existing = str(older["metadata"]["name"])
        await self._kube.patch(NAMESPACES, existing, {"metadata": {"labels": wanted}})
        return existing

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
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }
        try:
            await self._kube.create(SERVICE_ACCOUNTS, body, namespace)
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
