# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
What is special about each kind when it is created or updated: defaults the real
server fills in, and validation.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from clusternet.sandbox._meta import ApiError, bad_request, check_micro_time, invalid
from clusternet.sandbox._resources import ResourceType
from clusternet.sandbox._schema import default_and_prune, validate
from clusternet.sandbox._store_api import JSONObject

__all__ = ["prepare", "validate_object"]

CRD_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


def prepare(
    rtype: ResourceType, obj: JSONObject, old: JSONObject | None, service_ips: set[str]
) -> None:
    """
    Fill in the defaults for C{obj} (created when C{old} is C{None}), in place.
    """
    key = rtype.key
    meta = obj["metadata"]
    if key == "/namespaces":
        labels = meta.setdefault("labels", {}) or {}
        meta["labels"] = labels
        labels["kubernetes.io/metadata.name"] = meta["name"]
        if old is None:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        else:
            obj["spec"] = old.get("spec", {"finalizers": ["kubernetes"]})
    elif key == "/secrets":
        obj.setdefault("type", "Opaque")
    elif key == "/services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports", []) or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        if old is not None and "clusterIP" in (old.get("spec") or {}):
            spec.setdefault("clusterIP", old["spec"]["clusterIP"])
            spec.setdefault(
                "clusterIPs", old["spec"].get("clusterIPs", [spec["clusterIP"]])
            )
        if spec["type"] != "ExternalName" and "clusterIP" not in spec:
            address = _allocate_ip(service_ips)
            spec["clusterIP"] = address
            spec["clusterIPs"] = [address]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {"loadBalancer": {}})
    elif key == "/pods":
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        if old is None:
            obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif key == "/serviceaccounts" or key == "/configmaps":
        pass
    elif key == "apiextensions.k8s.io/customresourcedefinitions":
        spec = obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if isinstance(names, dict) and isinstance(names.get("kind"), str):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})
        if old is None:
            storage = [
                v.get("name")
                for v in spec.get("versions", []) or []
                if isinstance(v, dict) and v.get("storage")
            ]
            obj["status"] = {
                "conditions": None,
                "acceptedNames": {"plural": "", "kind": ""},
                "storedVersions": storage,
            }
    elif key == "apiregistration.k8s.io/apiservices":
        if old is None:
            obj.setdefault("status", {})


def _allocate_ip(used: set[str]) -> str:
    network = ipaddress.ip_network("10.96.0.0/12")
    for offset in range(10, 4096 * 256):
        candidate = str(network[offset])
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise ApiError(500, "InternalError", "no cluster IPs left")


def decode_check(rtype: ResourceType, obj: JSONObject) -> None:
    """
    Errors the real server reports while decoding (400): Lease MicroTime.
    """
    if rtype.key == "coordination.k8s.io/leases":
        spec = obj.get("spec")
        if isinstance(spec, dict):
            for field in ("acquireTime", "renewTime"):
                if spec.get(field) is not None:
                    problem = check_micro_time(spec[field])
                    if problem is not None:
                        raise bad_request(
                            f'Lease in version "{rtype.version}" cannot be handled as '
                            f"a Lease: {problem}"
                        )


def validate_object(
    rtype: ResourceType, obj: JSONObject, schema: JSONObject | None
) -> JSONObject:
    """
    Validate (422) and, for custom resources, default and prune C{obj}.
    """
    name = obj["metadata"].get("name", "")
    if rtype.crd and schema is not None:
        obj = default_and_prune(obj, schema)
        causes = validate(obj, schema)
        causes = [c for c in causes if not c[1].startswith("metadata")]
        if causes:
            raise invalid(rtype.kind, name, rtype.group, causes)
    if rtype.key == "apiextensions.k8s.io/customresourcedefinitions":
        _validate_crd(obj)
    if rtype.key == "/configmaps":
        data = obj.get("data")
        if data is not None and not (
            isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
        ):
            raise bad_request(
                'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                "json: cannot unmarshal data into Go struct field ConfigMap.data of "
                "type string"
            )
    if rtype.key == "/secrets":
        import base64
        import binascii

        for value in (obj.get("data") or {}).values():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise bad_request(
                    'Secret in version "v1" cannot be handled as a Secret: illegal '
                    "base64 data at input byte 0"
                ) from None
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    return obj


def _validate_crd(obj: JSONObject) -> None:
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str, str]] = []
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        causes.append(("FieldValueRequired", "spec.group", "Required value"))
    if not isinstance(names, dict) or not names.get("plural"):
        causes.append(("FieldValueRequired", "spec.names.plural", "Required value"))
    if not isinstance(names, dict) or not names.get("kind"):
        causes.append(("FieldValueRequired", "spec.names.kind", "Required value"))
    if group and isinstance(names, dict) and names.get("plural"):
        expected = f"{names['plural']}.{group}"
        if name != expected:
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                )
            )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope", "")}": supported values: '
                '"Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(("FieldValueRequired", "spec.versions", "Required value"))
    else:
        storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
        if len(storage) != 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.versions",
                    f"Invalid value: {_versions_repr(versions)}: must have exactly one "
                    "version marked as storage version",
                )
            )
        for i, version in enumerate(versions):
            if not isinstance(version, dict):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                causes.append(
                    (
                        "FieldValueRequired",
                        f"spec.versions[{i}].schema.openAPIV3Schema",
                        "Required value: schemas are required",
                    )
                )
            elif isinstance(schema, dict) and schema.get("type") != "object":
                causes.append(
                    (
                        "FieldValueInvalid"
                        if "type" in schema
                        else "FieldValueRequired",
                        f"spec.versions[{i}].schema.openAPIV3Schema.type",
                        f'Unsupported value: "{schema.get("type", "")}": '
                        'supported values: "object"'
                        if "type" in schema
                        else "Required value: must not be empty at the root",
                    )
                )
    if causes:
        raise invalid("CustomResourceDefinition", name, "apiextensions.k8s.io", causes)


def _versions_repr(versions: list[Any]) -> str:
    return "[]v1.CustomResourceDefinitionVersion{...}"


def spec_changed(rtype: ResourceType, old: JSONObject, new: JSONObject) -> bool:
    """
    Whether C{metadata.generation} moves: anything outside metadata (and outside
    status when status is a subresource) changed.
    """
    skip = {"metadata", "apiVersion", "kind"}
    if rtype.status_subresource:
        skip.add("status")
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)
