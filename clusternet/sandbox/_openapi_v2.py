# ruff: noqa: E501  (long human-readable descriptions, kept verbatim)
"""
C{/openapi/v2}: one Swagger 2.0 document, served as JSON and as the protobuf
encoding of a gnostic C{openapi_v2.Document}
(github.com/google/gnostic-models, C{openapiv2/OpenAPIv2.proto}).

kubectl fetches the protobuf form to validate on the client what the server
cannot validate for it, such as the items of a C{kind: List} file
(C{kubectl apply -f list.yaml}), and refuses the file when the server answers
406.  It looks a kind's schema up by the C{x-kubernetes-group-version-kind}
of the definitions and reports fields a schema with C{properties} does not
name; an object schema without them accepts anything.  So the document has
real schemas for ConfigMaps and Namespaces, the CRDs' own schemas (converted
as the real server converts them for v2) and open ones for other built-ins.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from clusternet.sandbox._discovery import (
    API_VERSION_DESCRIPTION,
    KIND_DESCRIPTION,
    LIST_META,
    OBJECT_META,
    _definition_name,
)
from clusternet.sandbox._protobuf import (
    encode_bool,
    encode_bytes,
    encode_double,
    encode_varint,
)
from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._store_api import JSONObject

__all__ = [
    "PROTOBUF_ACCEPT",
    "PROTOBUF_CONTENT_TYPE",
    "encode_document",
    "openapi_v2_document",
]

# What kubectl asks for, and what the real server names in its answer.
PROTOBUF_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_OBJECT_META = _META + "ObjectMeta"
_LIST_META = _META + "ListMeta"
_METADATA_DESCRIPTION = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
_GVK = "x-kubernetes-group-version-kind"

# ObjectMeta in v2: every field an object may carry (ownerReferences and
# managedFields open), so that no metadata in a valid file is "unknown".
_OBJECT_META_V2: JSONObject = copy.deepcopy(OBJECT_META)
_OBJECT_META_V2["properties"].update(
    {
        "deletionGracePeriodSeconds": {
            "description": "Number of seconds allowed for this object to gracefully terminate before it will be removed from the system.",
            "type": "integer",
            "format": "int64",
        },
        "managedFields": {
            "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow.",
            "type": "array",
            "items": {"type": "object"},
        },
        "ownerReferences": {
            "description": "List of objects depended by this object.",
            "type": "array",
            "items": {"type": "object"},
        },
        "selfLink": {
            "description": "Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.",
            "type": "string",
        },
    }
)


def _ref(name: str, description: str = "") -> JSONObject:
    ref: JSONObject = {"$ref": f"#/definitions/{name}"}
    if description:
        ref["description"] = description
    return ref


def _string_map(description: str, **item: str) -> JSONObject:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": {"type": "string", **item},
    }


# The properties of the built-in kinds a List file usually holds, beyond
# apiVersion, kind and metadata (as the real v1.32 document has them).
_BUILTIN_PROPERTIES: dict[tuple[str, str], JSONObject] = {
    ("", "ConfigMap"): {
        "binaryData": _string_map(
            "BinaryData contains the binary data.", format="byte"
        ),
        "data": _string_map("Data contains the configuration data."),
        "immutable": {
            "description": "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated (only object metadata can be modified).",
            "type": "boolean",
        },
    },
    ("", "Namespace"): {
        "spec": {
            "description": "Spec defines the behavior of the Namespace.",
            "type": "object",
            "properties": {
                "finalizers": {
                    "description": "Finalizers is an opaque list of values that must be empty to permanently remove object from storage.",
                    "type": "array",
                    "items": {"type": "string"},
                }
            },
        },
        "status": {
            "description": "Status describes the current status of a Namespace.",
            "type": "object",
            "properties": {
                "conditions": {
                    "description": "Represents the latest available observations of a namespace's current state.",
                    "type": "array",
                    "items": {"type": "object"},
                },
                "phase": {
                    "description": "Phase is the current lifecycle phase of the namespace.",
                    "type": "string",
                },
            },
        },
    },
}


def _binary_version(git_version: str) -> str:
    """
    C{v1.32.4} -> C{1.32}: the real server's C{info.version}.
    """
    parts = git_version.lstrip("v").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else git_version.lstrip("v")


def openapi_v2_document(registry: Registry, git_version: str) -> JSONObject:
    """
    The Swagger 2.0 document: a definition per kind the sandbox stores.
    """
    definitions: dict[str, JSONObject] = {
        _OBJECT_META: _OBJECT_META_V2,
        _LIST_META: copy.deepcopy(LIST_META),
    }
    for group, versions in registry.groups():
        for version in versions:
            for rtype in registry.in_group_version(group, version):
                if rtype.stored:
                    _add_kind(definitions, rtype)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": _binary_version(git_version)},
        "paths": {},
        "definitions": dict(sorted(definitions.items())),
    }


def _add_kind(definitions: dict[str, JSONObject], rtype: ResourceType) -> None:
    name = _definition_name(rtype)
    gvk = {"group": rtype.group, "kind": rtype.kind, "version": rtype.version}
    if rtype.crd:
        schema = _v2_schema(rtype.schema or {"type": "object"})
        schema.pop("x-kubernetes-preserve-unknown-fields", None)
    else:
        extra = _BUILTIN_PROPERTIES.get((rtype.group, rtype.kind))
        schema = {"description": f"{rtype.kind} (served by the clusternet sandbox)."}
        schema["type"] = "object"
        if extra is not None:
            schema["properties"] = copy.deepcopy(extra)
    if "properties" in schema:
        properties = schema["properties"]
        properties["apiVersion"] = {
            "description": API_VERSION_DESCRIPTION,
            "type": "string",
        }
        properties["kind"] = {"description": KIND_DESCRIPTION, "type": "string"}
        properties["metadata"] = _ref(_OBJECT_META, _METADATA_DESCRIPTION)
        schema["properties"] = dict(sorted(properties.items()))
    schema[_GVK] = [gvk]
    definitions[name] = schema
    definitions[name + "List"] = {
        "description": f"{rtype.kind}List is a list of {rtype.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {"type": "array", "items": _ref(name)},
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": _ref(_LIST_META),
        },
        _GVK: [{**gvk, "kind": rtype.kind + "List"}],
    }


# What a v2 (JSON Schema draft 4 subset) schema keeps of a structural v3 one.
_V2_KEYS = frozenset(
    {
        "$ref",
        "format",
        "title",
        "description",
        "default",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "enum",
        "additionalProperties",
        "type",
        "items",
        "properties",
        "example",
    }
)


def _v2_schema(schema: Any) -> JSONObject:
    """
    A CRD's structural schema as the real server publishes it in v2: without
    what v2 cannot say (C{nullable}, C{oneOf}, C{anyOf}, C{not}), without a
    type for int-or-string, and with the properties of objects that keep
    unknown fields dropped (kubectl would report those fields as unknown).
    """
    if not isinstance(schema, dict):
        return {}
    out: JSONObject = {}
    for key, value in schema.items():
        if key.startswith("x-"):
            out[key] = copy.deepcopy(value)
        elif key in _V2_KEYS:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get(
        "x-kubernetes-embedded-resource"
    ):
        out.pop("properties", None)
        out.pop("required", None)
        out.pop("additionalProperties", None)
    if isinstance(out.get("properties"), dict):
        properties = {k: _v2_schema(v) for k, v in out["properties"].items()}
        if properties:
            out["properties"] = properties
        else:
            del out["properties"]
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _v2_schema(out["additionalProperties"])
    if out.get("type") == "array" or "items" in out:
        items = out.get("items")
        out["items"] = _v2_schema(
            items[0] if isinstance(items, list) and items else items
        )
    return copy.deepcopy(out)


# --- the gnostic protobuf encoding --------------------------------------------
#
# Field numbers of github.com/google/gnostic-models openapiv2/OpenAPIv2.proto.


def _any(value: Any) -> bytes:
    # Any { google.protobuf.Any value = 1; string yaml = 2; }: gnostic keeps
    # JSON values as their YAML.
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
    if text.endswith("\n...\n"):
        text = text[: -len("...\n")]
    return encode_bytes(2, text)


def _named_any(name: str, value: Any) -> bytes:
    # NamedAny { string name = 1; Any value = 2; }
    return encode_bytes(1, name) + encode_bytes(2, _any(value))


def _extensions(number: int, obj: JSONObject) -> bytes:
    return b"".join(
        encode_bytes(number, _named_any(k, v))
        for k, v in obj.items()
        if k.startswith("x-")
    )


def _int(number: int) -> Callable[[Any], bytes]:
    return lambda value: encode_varint(number, int(value))


def _double(number: int) -> Callable[[Any], bytes]:
    return lambda value: encode_double(number, float(value))


def _bool(number: int) -> Callable[[Any], bytes]:
    return lambda value: encode_bool(number, bool(value))


def _string(number: int) -> Callable[[Any], bytes]:
    return lambda value: encode_bytes(number, str(value))


def _additional_properties(value: Any) -> bytes:
    # AdditionalPropertiesItem { oneof { Schema schema = 1; bool boolean = 2; } }
    if isinstance(value, bool):
        return encode_bytes(21, encode_bool(2, value))
    return encode_bytes(21, encode_bytes(1, encode_schema(value)))


def _type(value: Any) -> bytes:
    # TypeItem { repeated string value = 1; }
    values = value if isinstance(value, list) else [value]
    return encode_bytes(22, b"".join(encode_bytes(1, str(v)) for v in values))


def _items(value: Any) -> bytes:
    # ItemsItem { repeated Schema schema = 1; }
    schemas = value if isinstance(value, list) else [value]
    return encode_bytes(
        23, b"".join(encode_bytes(1, encode_schema(s)) for s in schemas)
    )


def _properties(value: Any) -> bytes:
    # Properties { repeated NamedSchema additional_properties = 1; }
    # NamedSchema { string name = 1; Schema value = 2; }
    return encode_bytes(
        25,
        b"".join(
            encode_bytes(1, encode_bytes(1, name) + encode_bytes(2, encode_schema(s)))
            for name, s in value.items()
        ),
    )


# Schema, in field-number order.
_SCHEMA_FIELDS: dict[str, Callable[[Any], bytes]] = {
    "$ref": _string(1),
    "format": _string(2),
    "title": _string(3),
    "description": _string(4),
    "default": lambda value: encode_bytes(5, _any(value)),
    "multipleOf": _double(6),
    "maximum": _double(7),
    "exclusiveMaximum": _bool(8),
    "minimum": _double(9),
    "exclusiveMinimum": _bool(10),
    "maxLength": _int(11),
    "minLength": _int(12),
    "pattern": _string(13),
    "maxItems": _int(14),
    "minItems": _int(15),
    "uniqueItems": _bool(16),
    "maxProperties": _int(17),
    "minProperties": _int(18),
    "required": lambda value: b"".join(encode_bytes(19, str(v)) for v in value),
    "enum": lambda value: b"".join(encode_bytes(20, _any(v)) for v in value),
    "additionalProperties": _additional_properties,
    "type": _type,
    "items": _items,
    "allOf": lambda value: b"".join(encode_bytes(24, encode_schema(s)) for s in value),
    "properties": _properties,
    "discriminator": _string(26),
    "readOnly": _bool(27),
    "example": lambda value: encode_bytes(30, _any(value)),
}


def encode_schema(schema: JSONObject) -> bytes:
    """
    A gnostic C{openapi_v2.Schema}; keys it has no field for are left out.
    """
    out = b"".join(
        encode(schema[key]) for key, encode in _SCHEMA_FIELDS.items() if key in schema
    )
    return out + _extensions(31, schema)


def encode_document(document: JSONObject) -> bytes:
    """
    A gnostic C{openapi_v2.Document} with the swagger version, info,
    (empty) paths, definitions and vendor extensions of C{document}.

    @raise ValueError: for paths (operations are not encoded).
    """
    out = encode_bytes(1, str(document.get("swagger", "2.0")))
    info = document.get("info") or {}
    out += encode_bytes(
        2,
        # Info { title = 1; version = 2; description = 3; ...; vendor_extension = 7; }
        b"".join(
            encode_bytes(number, str(info[key]))
            for number, key in ((1, "title"), (2, "version"), (3, "description"))
            if key in info
        )
        + _extensions(7, info),
    )
    for number, key in ((3, "host"), (4, "basePath")):
        if key in document:
            out += encode_bytes(number, str(document[key]))
    for number, key in ((5, "schemes"), (6, "consumes"), (7, "produces")):
        out += b"".join(encode_bytes(number, str(v)) for v in document.get(key) or [])
    if document.get("paths"):
        raise ValueError("paths are not encoded")
    if "paths" in document:
        out += encode_bytes(8, b"")
    definitions = document.get("definitions") or {}
    # Definitions { repeated NamedSchema additional_properties = 1; }
    out += encode_bytes(
        9,
        b"".join(
            encode_bytes(1, encode_bytes(1, name) + encode_bytes(2, encode_schema(s)))
            for name, s in definitions.items()
        ),
    )
    return out + _extensions(16, document)
