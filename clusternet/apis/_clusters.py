"""
The C{clusters.clusternet.io/v1beta1} objects: ClusterRegistrationRequest and
ManagedCluster, with their JSON form as the API serves it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from attrs import evolve, field, frozen
from attrs.validators import in_, instance_of, optional

from clusternet.apis._constants import (
    AGENT_NAME,
    APPROVAL_RESULTS,
    CLUSTER_ID_LABEL,
    CLUSTER_NAME_LABEL,
    CLUSTER_TYPE_EDGE_SELF_PROVISIONED,
    CLUSTER_TYPES,
    CLUSTERS_API_VERSION,
    CREATED_BY_LABEL,
    CRR_KIND,
    MANAGED_CLUSTER_KIND,
    REGISTERED_BY_LABEL,
)
from clusternet.apis._meta import (
    InvalidObject,
    ObjectMeta,
    get_bool,
    get_int,
    get_map,
    get_str,
    get_time,
)
from clusternet.apis._names import (
    cluster_id_errors,
    cluster_id_from_crr_name,
    cluster_name_errors,
    crr_name,
    validate_cluster_id,
    validate_cluster_name,
)
from clusternet.apis._time import format_time

__all__ = [
    "CONDITION_REASON_PATTERN",
    "CONDITION_STATUSES",
    "ClusterRegistrationRequest",
    "ClusterRegistrationRequestSpec",
    "ClusterRegistrationRequestStatus",
    "Condition",
    "ManagedCluster",
    "ManagedClusterSpec",
    "ManagedClusterStatus",
    "get_condition",
    "set_condition",
]

CONDITION_STATUSES = ("True", "False", "Unknown")
# metav1.Condition's reason: CamelCase, as the real schema requires.
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
_REASON = re.compile(CONDITION_REASON_PATTERN)


def _check_kind(data: Mapping[str, Any], kind: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidObject(f"expected a {kind} object, got {type(data).__name__}")
    got_kind = data.get("kind")
    if got_kind not in (None, kind):
        raise InvalidObject(f"kind: expected {kind}, got {got_kind!r}")
    got_version = data.get("apiVersion")
    if got_version not in (None, CLUSTERS_API_VERSION):
        raise InvalidObject(
            f"apiVersion: expected {CLUSTERS_API_VERSION}, got {got_version!r}"
        )


def _get_bytes(data: Mapping[str, Any], key: str, path: str) -> bytes:
    # []byte fields travel as base64 strings (format: byte).
    text = get_str(data, key, path)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidObject(f"{path}{key}: expected base64 data") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _is_reason(value: str) -> bool:
    return _REASON.match(value) is not None


# --- Conditions -------------------------------------------------------------------


def _reason(instance: object, attribute: object, value: str) -> None:
    if not _is_reason(value):
        raise ValueError(
            f"condition reason {value!r} must be CamelCase letters and digits, "
            "such as ClusterReady"
        )


@frozen
class Condition:
    """
    A standard C{metav1.Condition}.
    """

    type: str = field(validator=instance_of(str))
    status: str = field(validator=in_(CONDITION_STATUSES))
    reason: str = field(validator=_reason)
    last_transition_time: datetime = field(validator=instance_of(datetime))
    message: str = field(default="", validator=instance_of(str))
    observed_generation: int | None = field(
        default=None, validator=optional(instance_of(int))
    )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": format_time(self.last_transition_time),
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> Condition:
        if not isinstance(data, Mapping):
            raise InvalidObject(f"{path}: expected an object")
        when = get_time(data, "lastTransitionTime", path)
        if when is None:
            raise InvalidObject(f"{path}lastTransitionTime: required")
        try:
            return cls(
                type=get_str(data, "type", path),
                status=get_str(data, "status", path),
                reason=get_str(data, "reason", path),
                message=get_str(data, "message", path),
                last_transition_time=when,
                observed_generation=get_int(data, "observedGeneration", path),
            )
        except ValueError as e:
            raise InvalidObject(f"{path}: {e}") from None


def get_condition(conditions: Iterable[Condition], type: str) -> Condition | None:
    """
    The condition of C{type} in C{conditions}, or C{None}.
    """
    for condition in conditions:
        if condition.type == type:
            return condition
    return None


def set_condition(
    conditions: Iterable[Condition],
    type: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[Condition, ...]:
    """
    C{conditions} with the condition of C{type} set. Its C{lastTransitionTime} moves
    to C{now} only when its status changes (or it is new); reason and message are
    always updated. Other conditions keep their order.
    """
    out: list[Condition] = []
    found = False
    for existing in conditions:
        if existing.type != type:
            out.append(existing)
            continue
        found = True
        when = existing.last_transition_time if existing.status == status else now
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=when,
                observed_generation=observed_generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=observed_generation,
            )
        )
    return tuple(out)


# --- ClusterRegistrationRequest ---------------------------------------------------


@frozen
class ClusterRegistrationRequestSpec:
    cluster_id: str = field(validator=instance_of(str))
    cluster_type: str = field(
        default=CLUSTER_TYPE_EDGE_SELF_PROVISIONED, validator=instance_of(str)
    )
    cluster_name: str = field(default="", validator=instance_of(str))
    # The agent's X25519 public key (PEM): the parent's tokens for this cluster
    # are sealed to it, so only that agent can use them.
    public_key: str = field(default="", validator=instance_of(str))

    def errors(self) -> list[str]:
        """
        What is wrong with this spec, as the seed validates it; empty when valid.
        """
        errors = cluster_id_errors(self.cluster_id)
        if self.public_key:
            from clusternet.sealing import SealingError, load_public_key

            try:
                load_public_key(self.public_key)
            except SealingError as e:
                errors.append(f"spec.publicKey: {e}")
        if self.cluster_name:
            errors += cluster_name_errors(self.cluster_name)
        if self.cluster_type and self.cluster_type not in CLUSTER_TYPES:
            errors.append(
                f"cluster type {self.cluster_type[:80]!r} is not one of "
                + ", ".join(CLUSTER_TYPES)
            )
        return errors

    def to_dict(self) -> dict[str, Any]:
        out = {"clusterId": self.cluster_id}
        if self.cluster_type:
            out["clusterType"] = self.cluster_type
        if self.cluster_name:
            out["clusterName"] = self.cluster_name
        if self.public_key:
            out["publicKey"] = self.public_key
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], path: str = "spec."
    ) -> ClusterRegistrationRequestSpec:
        return cls(
            cluster_id=get_str(data, "clusterId", path),
            cluster_type=get_str(data, "clusterType", path),
            cluster_name=get_str(data, "clusterName", path),
            public_key=get_str(data, "publicKey", path),
        )


@frozen
class ClusterRegistrationRequestStatus:
    result: str | None = field(default=None, validator=optional(in_(APPROVAL_RESULTS)))
    error_message: str = ""
    dedicated_namespace: str = ""
    managed_cluster_name: str = ""
    # Secrets: never in repr (and so never in a log line by accident).
    token: bytes = field(default=b"", repr=False)
    ca_certificate: bytes = field(default=b"", repr=False)
    # The cluster's parent token sealed to spec.publicKey (clusternet.sealing),
    # and when that token expires (RFC 3339).
    sealed_token: str = field(default="", repr=False)
    token_expiration: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.result is not None:
            out["result"] = self.result
        for key, value in (
            ("errorMessage", self.error_message),
            ("dedicatedNamespace", self.dedicated_namespace),
            ("managedClusterName", self.managed_cluster_name),
        ):
            if value:
                out[key] = value
        if self.token:
            out["token"] = _b64(self.token)
        if self.ca_certificate:
            out["caCertificate"] = _b64(self.ca_certificate)
        if self.sealed_token:
            out["sealedToken"] = self.sealed_token
        if self.token_expiration:
            out["tokenExpirationTimestamp"] = self.token_expiration
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], path: str = "status."
    ) -> ClusterRegistrationRequestStatus:
        result = get_str(data, "result", path) or None
        if result is not None and result not in APPROVAL_RESULTS:
            raise InvalidObject(
                f"{path}result: {result[:40]!r} is not one of "
                + ", ".join(APPROVAL_RESULTS)
            )
        return cls(
            result=result,
            error_message=get_str(data, "errorMessage", path),
            dedicated_namespace=get_str(data, "dedicatedNamespace", path),
            managed_cluster_name=get_str(data, "managedClusterName", path),
            token=_get_bytes(data, "token", path),
            ca_certificate=_get_bytes(data, "caCertificate", path),
            sealed_token=get_str(data, "sealedToken", path),
            token_expiration=get_str(data, "tokenExpirationTimestamp", path),
        )


@frozen
class ClusterRegistrationRequest:
    """
    A child cluster's request to join (cluster-scoped, short name C{clsrr}).
    """

    KIND = CRR_KIND

    metadata: ObjectMeta
    spec: ClusterRegistrationRequestSpec
    status: ClusterRegistrationRequestStatus = field(
        factory=ClusterRegistrationRequestStatus
    )

    @classmethod
    def new(
        cls,
        cluster_id: str,
        cluster_name: str,
        cluster_type: str = CLUSTER_TYPE_EDGE_SELF_PROVISIONED,
        public_key: str = "",
    ) -> ClusterRegistrationRequest:
        """
        The request an agent creates, with the seed's name and labels.

        @raise clusternet.apis.InvalidName: the ID or name is malformed.
        """
        validate_cluster_id(cluster_id)
        validate_cluster_name(cluster_name)
        if cluster_type not in CLUSTER_TYPES:
            raise ValueError(f"cluster type {cluster_type!r} is not supported")
        return cls(
            metadata=ObjectMeta(
                name=crr_name(cluster_id),
                labels={
                    REGISTERED_BY_LABEL: AGENT_NAME,
                    CLUSTER_ID_LABEL: cluster_id,
                    CLUSTER_NAME_LABEL: cluster_name,
                },
            ),
            spec=ClusterRegistrationRequestSpec(
                cluster_id=cluster_id,
                cluster_type=cluster_type,
                cluster_name=cluster_name,
                public_key=public_key,
            ),
        )

    def errors(self) -> list[str]:
        """
        Why the hub must deny this request (the name must be
        C{clusternet-<spec.clusterId>}, the ID a UUID, the name a DNS label);
        empty when it may be approved.
        """
        errors = self.spec.errors()
        if cluster_id_from_crr_name(self.metadata.name) != self.spec.cluster_id:
            errors.insert(
                0,
                f"name {self.metadata.name[:100]!r} does not match "
                f"spec.clusterId {self.spec.cluster_id[:80]!r}: expected "
                "clusternet-<spec.clusterId>",
            )
        return errors

    def with_status(self, **changes: Any) -> ClusterRegistrationRequest:
        return evolve(self, status=evolve(self.status, **changes))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apiVersion": CLUSTERS_API_VERSION,
            "kind": CRR_KIND,
            "metadata": self.metadata.to_dict(),
            "spec": self.spec.to_dict(),
        }
        status = self.status.to_dict()
        if status:
            out["status"] = status
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterRegistrationRequest:
        """
        @raise InvalidObject: C{data} does not have the shape of a
            ClusterRegistrationRequest (wrong types; the values themselves are
            checked by L{errors}).
        """
        _check_kind(data, CRR_KIND)
        return cls(
            metadata=ObjectMeta.from_dict(get_map(data, "metadata", "")),
            spec=ClusterRegistrationRequestSpec.from_dict(get_map(data, "spec", "")),
            status=ClusterRegistrationRequestStatus.from_dict(
                get_map(data, "status", "")
            ),
        )


# --- ManagedCluster ---------------------------------------------------------------


@frozen
class ManagedClusterSpec:
    cluster_id: str = field(validator=instance_of(str))
    cluster_type: str = field(
        default=CLUSTER_TYPE_EDGE_SELF_PROVISIONED, validator=instance_of(str)
    )

    def to_dict(self) -> dict[str, Any]:
        out = {"clusterId": self.cluster_id}
        if self.cluster_type:
            out["clusterType"] = self.cluster_type
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], path: str = "spec."
    ) -> ManagedClusterSpec:
        return cls(
            cluster_id=get_str(data, "clusterId", path),
            cluster_type=get_str(data, "clusterType", path),
        )


def _conditions(value: Iterable[Condition]) -> tuple[Condition, ...]:
    return tuple(value)


@frozen
class ManagedClusterStatus:
    k8s_version: str = ""
    platform: str = ""
    apiserver_url: str = ""
    parent_apiserver_url: str = ""
    healthz: bool = False
    readyz: bool = False
    livez: bool = False
    last_observed_time: datetime | None = None
    conditions: tuple[Condition, ...] = field(default=(), converter=_conditions)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("k8sVersion", self.k8s_version),
            ("platform", self.platform),
            ("apiserverURL", self.apiserver_url),
            ("parentAPIServerURL", self.parent_apiserver_url),
        ):
            if value:
                out[key] = value
        # Always written, so the READYZ column says false rather than nothing.
        out["healthz"] = self.healthz
        out["readyz"] = self.readyz
        out["livez"] = self.livez
        if self.last_observed_time is not None:
            out["lastObservedTime"] = format_time(self.last_observed_time)
        if self.conditions:
            out["conditions"] = [c.to_dict() for c in self.conditions]
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], path: str = "status."
    ) -> ManagedClusterStatus:
        raw = data.get("conditions") or []
        if not isinstance(raw, list):
            raise InvalidObject(f"{path}conditions: expected a list")
        return cls(
            k8s_version=get_str(data, "k8sVersion", path),
            platform=get_str(data, "platform", path),
            apiserver_url=get_str(data, "apiserverURL", path),
            parent_apiserver_url=get_str(data, "parentAPIServerURL", path),
            healthz=get_bool(data, "healthz", path),
            readyz=get_bool(data, "readyz", path),
            livez=get_bool(data, "livez", path),
            last_observed_time=get_time(data, "lastObservedTime", path),
            conditions=tuple(
                Condition.from_dict(c, f"{path}conditions[{i}].")
                for i, c in enumerate(raw)
            ),
        )


@frozen
class ManagedCluster:
    """
    A registered child cluster (namespaced, in its dedicated namespace; short name
    C{mcls}).
    """

    KIND = MANAGED_CLUSTER_KIND

    metadata: ObjectMeta
    spec: ManagedClusterSpec
    status: ManagedClusterStatus | None = None

    @classmethod
    def new(
        cls,
        namespace: str,
        cluster_id: str,
        cluster_name: str,
        cluster_type: str = CLUSTER_TYPE_EDGE_SELF_PROVISIONED,
    ) -> ManagedCluster:
        """
        The ManagedCluster the hub creates on approval, named after the cluster,
        with the seed's labels.
        """
        validate_cluster_id(cluster_id)
        validate_cluster_name(cluster_name)
        return cls(
            metadata=ObjectMeta(
                name=cluster_name,
                namespace=namespace,
                labels={
                    CREATED_BY_LABEL: AGENT_NAME,
                    CLUSTER_ID_LABEL: cluster_id,
                    CLUSTER_NAME_LABEL: cluster_name,
                },
            ),
            spec=ManagedClusterSpec(cluster_id=cluster_id, cluster_type=cluster_type),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "apiVersion": CLUSTERS_API_VERSION,
            "kind": MANAGED_CLUSTER_KIND,
            "metadata": self.metadata.to_dict(),
            "spec": self.spec.to_dict(),
        }
        if self.status is not None:
            out["status"] = self.status.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManagedCluster:
        """
        @raise InvalidObject: C{data} does not have the shape of a ManagedCluster.
        """
        _check_kind(data, MANAGED_CLUSTER_KIND)
        status = data.get("status")
        return cls(
            metadata=ObjectMeta.from_dict(get_map(data, "metadata", "")),
            spec=ManagedClusterSpec.from_dict(get_map(data, "spec", "")),
            status=(
                ManagedClusterStatus.from_dict(get_map(data, "status", ""))
                if status is not None
                else None
            ),
        )
