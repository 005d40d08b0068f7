# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
Table output (C{Accept: application/json;as=Table;v=v1;g=meta.k8s.io}): the
columns kubectl shows by default for the built-in kinds and the
additionalPrinterColumns of custom resources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from clusternet.sandbox._meta import human_duration, parse_time
from clusternet.sandbox._resources import ResourceType
from clusternet.sandbox._store_api import JSONObject

__all__ = ["column_definitions", "make_table", "row_for"]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation "
    "idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object "
    "was created. It is not guaranteed to be set in happens-before order across "
    "separate operations. Clients may not set this value. It is represented in "
    "RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/"
    "sig-architecture/api-conventions.md#metadata"
)
DATA_DESCRIPTION = (
    "Data contains the configuration data. Each key must consist of alphanumeric "
    "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
    "BinaryData field. The keys stored in Data must not overlap with the keys in the "
    "BinaryData field, this is enforced during validation process."
)

Cell = Callable[[JSONObject, float], Any]


def _col(
    name: str, description: str, type_: str = "string", fmt: str = "", priority: int = 0
) -> JSONObject:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


NAME = _col("Name", NAME_DESCRIPTION, fmt="name")
AGE = _col("Age", AGE_DESCRIPTION)


def _meta(obj: JSONObject) -> JSONObject:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _name(obj: JSONObject, now: float) -> Any:
    return _meta(obj).get("name", "")


def _age(obj: JSONObject, now: float) -> Any:
    created = _meta(obj).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        return human_duration(now - parse_time(created))
    except ValueError:
        return "<invalid>"


def _created_at(obj: JSONObject, now: float) -> Any:
    return _meta(obj).get("creationTimestamp", "")


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _ports(obj: JSONObject, now: float) -> Any:
    ports = _get(obj, "spec", "ports") or []
    parts = []
    for port in ports:
        if not isinstance(port, dict):
            continue
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) if parts else "<none>"


def _external_ip(obj: JSONObject, now: float) -> Any:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return spec.get("externalName", "<none>")
    ips = list(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        for ingress in _get(obj, "status", "loadBalancer", "ingress") or []:
            ips.append(ingress.get("ip") or ingress.get("hostname"))
        if not ips:
            return "<pending>"
    return ",".join(str(i) for i in ips) if ips else "<none>"


def _selector(obj: JSONObject, now: float) -> Any:
    selector = _get(obj, "spec", "selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _endpoints(obj: JSONObject, now: float) -> Any:
    found = []
    for subset in obj.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                ip = address.get("ip", "")
                found.append(f"{ip}:{port['port']}" if "port" in port else ip)
    if not found:
        return "<none>"
    shown = ",".join(found[:3])
    return shown + (f" + {len(found) - 3} more..." if len(found) > 3 else "")


def _ready(obj: JSONObject, now: float) -> Any:
    containers = _get(obj, "spec", "containers") or []
    statuses = _get(obj, "status", "containerStatuses") or []
    ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: JSONObject, now: float) -> Any:
    if _meta(obj).get("deletionTimestamp"):
        return "Terminating"
    return _get(obj, "status", "reason") or _get(obj, "status", "phase") or "Unknown"


def _restarts(obj: JSONObject, now: float) -> Any:
    statuses = _get(obj, "status", "containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses if isinstance(s, dict))


def _role_ref(obj: JSONObject, now: float) -> Any:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subjects(kind: str) -> Cell:
    def cell(obj: JSONObject, now: float) -> Any:
        names = []
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == kind:
                if kind == "ServiceAccount":
                    names.append(
                        f"{subject.get('namespace', '')}/{subject.get('name', '')}"
                    )
                else:
                    names.append(subject.get("name", ""))
        return ", ".join(names)

    return cell


def _apiservice_service(obj: JSONObject, now: float) -> Any:
    service = _get(obj, "spec", "service")
    if not service:
        return "Local"
    return f"{service.get('namespace', '')}/{service.get('name', '')}"


def _apiservice_available(obj: JSONObject, now: float) -> Any:
    for condition in _get(obj, "status", "conditions") or []:
        if condition.get("type") == "Available":
            if condition.get("status") == "True":
                return "True"
            return f"False ({condition.get('reason', '')})"
    return "Unknown"


def _event_object(obj: JSONObject, now: float) -> Any:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _last_seen(obj: JSONObject, now: float) -> Any:
    stamp = (
        obj.get("lastTimestamp")
        or obj.get("eventTime")
        or _meta(obj).get("creationTimestamp")
    )
    if not stamp:
        return "<unknown>"
    try:
        return human_duration(now - parse_time(stamp))
    except ValueError:
        return "<unknown>"


BUILTIN_COLUMNS: dict[str, list[tuple[JSONObject, Cell]]] = {
    "/namespaces": [
        (NAME, _name),
        (
            _col("Status", "The status of the namespace"),
            lambda o, n: _get(o, "status", "phase") or "",
        ),
        (AGE, _age),
    ],
    "/configmaps": [
        (NAME, _name),
        (
            _col("Data", DATA_DESCRIPTION),
            lambda o, n: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        ),
        (AGE, _age),
    ],
    "/secrets": [
        (NAME, _name),
        (
            _col(
                "Type",
                "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
            ),
            lambda o, n: o.get("type", ""),
        ),
        (
            _col(
                "Data",
                "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
                "integer",
            ),
            lambda o, n: len(o.get("data") or {}),
        ),
        (AGE, _age),
    ],
    "/serviceaccounts": [
        (NAME, _name),
        (
            _col(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                "integer",
            ),
            lambda o, n: len(o.get("secrets") or []),
        ),
        (AGE, _age),
    ],
    "/services": [
        (NAME, _name),
        (
            _col("Type", "type determines how the Service is exposed."),
            lambda o, n: _get(o, "spec", "type") or "ClusterIP",
        ),
        (
            _col(
                "Cluster-IP",
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            lambda o, n: _get(o, "spec", "clusterIP") or "None",
        ),
        (
            _col(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            _external_ip,
        ),
        (
            _col("Port(s)", "The list of ports that are exposed by this service."),
            _ports,
        ),
        (AGE, _age),
        (
            _col(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
                priority=1,
            ),
            _selector,
        ),
    ],
    "/endpoints": [
        (NAME, _name),
        (_col("Endpoints", "Endpoints is the list of endpoints."), _endpoints),
        (AGE, _age),
    ],
    "/pods": [
        (NAME, _name),
        (
            _col(
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            _ready,
        ),
        (
            _col("Status", "The aggregate status of the containers in this pod."),
            _pod_status,
        ),
        (
            _col(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                "string",
            ),
            _restarts,
        ),
        (AGE, _age),
        (
            _col(
                "IP",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                priority=1,
            ),
            lambda o, n: _get(o, "status", "podIP") or "<none>",
        ),
        (
            _col(
                "Node",
                "NodeName is a request to schedule this pod onto a specific node.",
                priority=1,
            ),
            lambda o, n: _get(o, "spec", "nodeName") or "<none>",
        ),
    ],
    "/events": [
        (_col("Last Seen", "Time when this Event was last observed."), _last_seen),
        (
            _col(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            lambda o, n: o.get("type", ""),
        ),
        (
            _col(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            lambda o, n: o.get("reason", ""),
        ),
        (_col("Object", "The object that this event is about."), _event_object),
        (
            _col(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            lambda o, n: o.get("message", ""),
        ),
        (_col("Name", NAME_DESCRIPTION, fmt="name", priority=1), _name),
    ],
    "coordination.k8s.io/leases": [
        (NAME, _name),
        (
            _col(
                "Holder",
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            lambda o, n: _get(o, "spec", "holderIdentity") or "",
        ),
        (AGE, _age),
    ],
    "rbac.authorization.k8s.io/roles": [
        (NAME, _name),
        (_col("Created At", AGE_DESCRIPTION, "string", "date"), _created_at),
    ],
    "rbac.authorization.k8s.io/clusterroles": [
        (NAME, _name),
        (_col("Created At", AGE_DESCRIPTION, "string", "date"), _created_at),
    ],
    "rbac.authorization.k8s.io/rolebindings": [
        (NAME, _name),
        (
            _col(
                "Role",
                "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
            ),
            _role_ref,
        ),
        (AGE, _age),
        (_col("Users", "Users in the roleBinding", priority=1), _subjects("User")),
        (_col("Groups", "Groups in the roleBinding", priority=1), _subjects("Group")),
        (
            _col("ServiceAccounts", "ServiceAccounts in the roleBinding", priority=1),
            _subjects("ServiceAccount"),
        ),
    ],
    "rbac.authorization.k8s.io/clusterrolebindings": [
        (NAME, _name),
        (
            _col(
                "Role",
                "RoleRef can only reference a ClusterRole in the global namespace.",
            ),
            _role_ref,
        ),
        (AGE, _age),
        (
            _col("Users", "Users in the clusterRoleBinding", priority=1),
            _subjects("User"),
        ),
        (
            _col("Groups", "Groups in the clusterRoleBinding", priority=1),
            _subjects("Group"),
        ),
        (
            _col(
                "ServiceAccounts",
                "ServiceAccounts in the clusterRoleBinding",
                priority=1,
            ),
            _subjects("ServiceAccount"),
        ),
    ],
    "apiextensions.k8s.io/customresourcedefinitions": [
        (NAME, _name),
        (_col("Created At", AGE_DESCRIPTION, "date"), _created_at),
    ],
    "apiregistration.k8s.io/apiservices": [
        (NAME, _name),
        (
            _col(
                "Service", "The reference to the service that hosts this API endpoint."
            ),
            _apiservice_service,
        ),
        (
            _col("Available", "Whether this service is available."),
            _apiservice_available,
        ),
        (AGE, _age),
    ],
}


# --- JSONPath for printer columns ---------------------------------------------

_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$/]+)
      | \[(?P<index>-?\d+|\*)\]
      | \[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*==\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\)\]
      | \[['"](?P<quoted>[^'"]+)['"]\]
    """,
    re.VERBOSE,
)


def json_path(obj: Any, path: str) -> list[Any]:
    """
    The values the simple JSONPath expressions of printer columns select.
    """
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            return []
        pos = match.end()
        nxt: list[Any] = []
        for value in values:
            if match.group("field") is not None or match.group("quoted") is not None:
                key = match.group("field") or match.group("quoted")
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif match.group("index") is not None:
                if isinstance(value, list):
                    if match.group("index") == "*":
                        nxt.extend(value)
                    else:
                        i = int(match.group("index"))
                        if -len(value) <= i < len(value):
                            nxt.append(value[i])
            else:
                raw = match.group("fval")
                want = raw[1:-1] if raw[0] in "\"'" else raw
                if isinstance(value, list):
                    for item in value:
                        found = item
                        for part in match.group("fpath").split("."):
                            found = found.get(part) if isinstance(found, dict) else None
                        if found is not None and str(found) == want:
                            nxt.append(item)
        values = nxt
    return values


def _crd_cell(column: JSONObject) -> Cell:
    path = str(column.get("jsonPath", ""))
    kind = column.get("type", "string")

    def cell(obj: JSONObject, now: float) -> Any:
        values = json_path(obj, path)
        if not values:
            return None
        value = values[0] if len(values) == 1 else values
        if kind == "date" and isinstance(value, str):
            try:
                return human_duration(now - parse_time(value))
            except ValueError:
                return value
        if kind in ("integer", "number", "boolean") and not isinstance(
            value, (dict, list)
        ):
            return value
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"))
        return value if kind != "string" else str(value)

    return cell


def columns_for(rtype: ResourceType) -> list[tuple[JSONObject, Cell]]:
    if rtype.crd:
        if not rtype.printer_columns:
            return [(NAME, _name), (_col("Age", AGE_DESCRIPTION, "date"), _age)]
        result: list[tuple[JSONObject, Cell]] = [(NAME, _name)]
        for column in rtype.printer_columns:
            definition = _col(
                str(column.get("name", "")),
                str(
                    column.get("description")
                    or f"Custom resource definition column (in JSONPath format): {column.get('jsonPath', '')}"
                ),
                str(column.get("type", "string")),
                str(column.get("format", "")),
                int(column.get("priority", 0) or 0),
            )
            result.append((definition, _crd_cell(column)))
        return result
    return BUILTIN_COLUMNS.get(rtype.key, [(NAME, _name), (AGE, _age)])


def column_definitions(rtype: ResourceType) -> list[JSONObject]:
    return [definition for definition, _ in columns_for(rtype)]


def row_for(
    rtype: ResourceType, obj: JSONObject, now: float, include: str = "Metadata"
) -> JSONObject:
    cells = []
    for _, cell in columns_for(rtype):
        try:
            cells.append(cell(obj, now))
        except (TypeError, ValueError, AttributeError, KeyError):
            cells.append(None)
    row: JSONObject = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {}),
        }
    return row


def _replicas(obj: JSONObject, *path: str) -> int:
    value = _get(obj, *path)
    return int(value) if isinstance(value, int) else 0


def _ready_replicas(obj: JSONObject, now: float) -> Any:
    desired = _get(obj, "spec", "replicas")
    desired = desired if isinstance(desired, int) else 1
    return f"{_replicas(obj, 'status', 'readyReplicas')}/{desired}"


# Workloads (served as plain objects: nothing updates their status).
BUILTIN_COLUMNS["apps/deployments"] = [
    (NAME, _name),
    (_col("Ready", "Number of the pod with ready state"), _ready_replicas),
    (
        _col(
            "Up-to-date",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            "integer",
        ),
        lambda o, n: _replicas(o, "status", "updatedReplicas"),
    ),
    (
        _col(
            "Available",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            "integer",
        ),
        lambda o, n: _replicas(o, "status", "availableReplicas"),
    ),
    (AGE, _age),
]
BUILTIN_COLUMNS["apps/statefulsets"] = [
    (NAME, _name),
    (_col("Ready", "Number of the pod with ready state"), _ready_replicas),
    (AGE, _age),
]


def make_table(
    rtype: ResourceType,
    objects: Sequence[JSONObject],
    now: float,
    list_meta: JSONObject,
    include: str = "Metadata",
    headers: bool = True,
) -> JSONObject:
    table: JSONObject = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rtype) if headers else None,
        "rows": [row_for(rtype, obj, now, include) for obj in objects],
    }
    return table
