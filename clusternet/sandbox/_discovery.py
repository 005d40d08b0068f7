# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
Discovery documents (legacy and aggregated v2), and OpenAPI v2/v3 documents, built
from the registry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._store_api import JSONObject

__all__ = [
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "api_versions",
    "openapi_v3_document",
    "openapi_v3_index",
]

SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "finalize": ["update"],
    "scale": ["get", "patch", "update"],
}


def _subresources(rtype: ResourceType) -> list[tuple[str, str, str, str, list[str]]]:
    """
    (subresource, group, version, kind, verbs) for every subresource served.
    """
    found = []
    for sub in rtype.subresources:
        found.append((sub, "", "", rtype.kind, SUBRESOURCE_VERBS.get(sub, ["get"])))
    for sub, group, version, kind, verbs in rtype.subresource_kinds:
        found.append((sub, group, version, kind, list(verbs)))
    return sorted(found)


def api_versions(server_address: str) -> JSONObject:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_entry(group: str, versions: list[str]) -> JSONObject:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> JSONObject:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, vs) for g, vs in registry.groups() if g],
    }


def api_group(registry: Registry, group: str) -> JSONObject | None:
    for name, versions in registry.groups():
        if name == group and group:
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                **_group_entry(group, versions),
            }
    return None


def api_resource_list(
    registry: Registry, group: str, version: str
) -> JSONObject | None:
    resources = registry.in_group_version(group, version)
    if not resources:
        return None
    items: list[JSONObject] = []
    for rtype in resources:
        entry: JSONObject = {
            "name": rtype.plural,
            "singularName": rtype.singular,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        if rtype.stored:
            entry["storageVersionHash"] = _storage_hash(rtype)
        items.append(entry)
        for sub, sub_group, sub_version, kind, verbs in _subresources(rtype):
            sub_entry: JSONObject = {
                "name": f"{rtype.plural}/{sub}",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": kind,
                "verbs": verbs,
            }
            if sub_group:
                sub_entry["group"] = sub_group
                sub_entry["version"] = sub_version
            items.append(sub_entry)
    body: JSONObject = {
        "kind": "APIResourceList",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": items,
    }
    if group:
        body = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            **{k: v for k, v in body.items() if k != "kind"},
        }
    return body


def _storage_hash(rtype: ResourceType) -> str:
    import base64

    digest = hashlib.sha256(
        f"{rtype.group}/{rtype.version}/{rtype.kind}".encode()
    ).digest()
    return base64.b64encode(digest[:8]).decode()


def aggregated_discovery(registry: Registry, core: bool) -> JSONObject:
    """
    The C{apidiscovery.k8s.io/v2} C{APIGroupDiscoveryList} for C{/api} (C{core})
    or C{/apis}.
    """
    items: list[JSONObject] = []
    for group, versions in registry.groups():
        if bool(group) == core:
            continue
        version_entries = []
        for version in versions:
            resources = []
            for rtype in registry.in_group_version(group, version):
                entry: JSONObject = {
                    "resource": rtype.plural,
                    "responseKind": {"group": "", "version": "", "kind": rtype.kind},
                    "scope": "Namespaced" if rtype.namespaced else "Cluster",
                    "singularResource": rtype.singular,
                    "verbs": list(rtype.verbs),
                }
                if rtype.short_names:
                    entry["shortNames"] = list(rtype.short_names)
                if rtype.categories:
                    entry["categories"] = list(rtype.categories)
                subs = _subresources(rtype)
                if subs:
                    entry["subresources"] = [
                        {
                            "subresource": sub,
                            "responseKind": {"group": g, "version": v, "kind": kind},
                            "verbs": verbs,
                        }
                        for sub, g, v, kind, verbs in subs
                    ]
                resources.append(entry)
            version_entries.append(
                {"version": version, "resources": resources, "freshness": "Current"}
            )
        metadata: JSONObject = {"creationTimestamp": None}
        if group:
            metadata = {"name": group, "creationTimestamp": None}
        items.append({"metadata": metadata, "versions": version_entries})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


# --- OpenAPI ------------------------------------------------------------------

OBJECT_META = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
    "type": "object",
    "properties": {
        "annotations": {
            "description": "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata.",
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
        },
        "creationTimestamp": {
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
            "type": "string",
            "format": "date-time",
        },
        "deletionTimestamp": {
            "description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.",
            "type": "string",
            "format": "date-time",
        },
        "finalizers": {
            "description": "Must be empty before the object is deleted from the registry.",
            "type": "array",
            "items": {"type": "string", "default": ""},
        },
        "generateName": {
            "description": "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.",
            "type": "string",
        },
        "generation": {
            "description": "A sequence number representing a specific generation of the desired state.",
            "type": "integer",
            "format": "int64",
        },
        "labels": {
            "description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects.",
            "type": "object",
            "additionalProperties": {"type": "string", "default": ""},
        },
        "name": {
            "description": "Name must be unique within a namespace.",
            "type": "string",
        },
        "namespace": {
            "description": "Namespace defines the space within which each name must be unique.",
            "type": "string",
        },
        "resourceVersion": {
            "description": "An opaque value that represents the internal version of this object.",
            "type": "string",
        },
        "uid": {
            "description": "UID is the unique in time and space value for this object.",
            "type": "string",
        },
    },
}
LIST_META = {
    "description": "ListMeta describes metadata that synthetic resources must have.",
    "type": "object",
    "properties": {
        "continue": {"type": "string"},
        "remainingItemCount": {"type": "integer", "format": "int64"},
        "resourceVersion": {"type": "string"},
    },
}
_META_REF = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META_REF = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
API_VERSION_DESCRIPTION = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
KIND_DESCRIPTION = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"


def _reverse_domain(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def _definition_name(rtype: ResourceType) -> str:
    if rtype.crd:
        return f"{_reverse_domain(rtype.group)}.{rtype.version}.{rtype.kind}"
    short = rtype.group.split(".")[0] if rtype.group else "core"
    if rtype.group.endswith(".k8s.io") and rtype.group.count(".") == 2:
        short = rtype.group.split(".")[0]
    return f"io.k8s.api.{short}.{rtype.version}.{rtype.kind}"


def _operation_tag(rtype: ResourceType) -> str:
    if not rtype.group:
        return f"core_{rtype.version}"
    parts = rtype.group.split(".")
    camel = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    return f"{camel}_{rtype.version}"


_QUERY = [
    {
        "name": "dryRun",
        "in": "query",
        "description": "When present, indicates that modifications should not be persisted.",
        "schema": {"type": "string", "uniqueItems": True},
    },
    {
        "name": "fieldManager",
        "in": "query",
        "description": "fieldManager is a name associated with the actor or entity that is making these changes.",
        "schema": {"type": "string", "uniqueItems": True},
    },
    {
        "name": "fieldValidation",
        "in": "query",
        "description": "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        "schema": {"type": "string", "uniqueItems": True},
    },
]


def openapi_v3_document(
    registry: Registry, group: str, version: str
) -> JSONObject | None:
    """
    The OpenAPI v3 document of a group/version: for custom resources with their
    schema (enough for C{kubectl explain}); for built-in kinds an open schema.
    Every kind has a PATCH operation declaring C{fieldValidation}, which is how
    kubectl decides to leave validation to the server; built-in kinds do not
    advertise strategic merge here so kubectl computes it from its own types.
    """
    resources = [r for r in registry.in_group_version(group, version) if r.stored]
    if not resources:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": OBJECT_META,
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta": LIST_META,
    }
    for rtype in resources:
        gvk = [{"group": rtype.group, "kind": rtype.kind, "version": rtype.version}]
        ref = {"$ref": f"#/components/schemas/{_definition_name(rtype)}"}
        json_content = {"application/json": {"schema": ref}}
        if rtype.crd:
            schema = json.loads(json.dumps(rtype.schema or {"type": "object"}))
        else:
            schema = {
                "description": f"{rtype.kind} (served by the clusternet sandbox).",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            }
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {
            "description": API_VERSION_DESCRIPTION,
            "type": "string",
        }
        properties["kind"] = {"description": KIND_DESCRIPTION, "type": "string"}
        properties["metadata"] = {
            "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            "allOf": [{"$ref": _META_REF}],
        }
        schema["x-kubernetes-group-version-kind"] = gvk
        schemas[_definition_name(rtype)] = schema
        schemas[_definition_name(rtype) + "List"] = {
            "description": f"{rtype.kind}List is a list of {rtype.kind}",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {
                    "description": API_VERSION_DESCRIPTION,
                    "type": "string",
                },
                "items": {"type": "array", "items": ref},
                "kind": {"description": KIND_DESCRIPTION, "type": "string"},
                "metadata": {"allOf": [{"$ref": _LIST_META_REF}]},
            },
            "x-kubernetes-group-version-kind": [
                {**gvk[0], "kind": rtype.kind + "List"}
            ],
        }
        base = (
            f"/apis/{rtype.group}/{rtype.version}"
            if rtype.group
            else f"/api/{rtype.version}"
        )
        collection = (
            f"{base}/namespaces/{{namespace}}/{rtype.plural}"
            if rtype.namespaced
            else f"{base}/{rtype.plural}"
        )
        tag = [_operation_tag(rtype)]
        patch_types = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
        patch_body = {
            "content": {t: {"schema": {"type": "object"}} for t in patch_types},
            "required": True,
        }
        action = {"x-kubernetes-group-version-kind": gvk[0]}
        paths[collection] = {
            "get": {
                "tags": tag,
                "description": f"list or watch objects of kind {rtype.kind}",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "$ref": f"#/components/schemas/{_definition_name(rtype)}List"
                                }
                            }
                        },
                    }
                },
                "x-kubernetes-action": "list",
                **action,
            },
            "post": {
                "tags": tag,
                "description": f"create a {rtype.kind}",
                "parameters": _QUERY,
                "requestBody": {
                    "content": {"application/json": {"schema": ref}},
                    "required": True,
                },
                "responses": {
                    "201": {"description": "Created", "content": json_content}
                },
                "x-kubernetes-action": "post",
                **action,
            },
        }
        item = {
            "get": {
                "tags": tag,
                "description": f"read the specified {rtype.kind}",
                "responses": {"200": {"description": "OK", "content": json_content}},
                "x-kubernetes-action": "get",
                **action,
            },
            "put": {
                "tags": tag,
                "description": f"replace the specified {rtype.kind}",
                "parameters": _QUERY,
                "requestBody": {
                    "content": {"application/json": {"schema": ref}},
                    "required": True,
                },
                "responses": {"200": {"description": "OK", "content": json_content}},
                "x-kubernetes-action": "put",
                **action,
            },
            "patch": {
                "tags": tag,
                "description": f"partially update the specified {rtype.kind}",
                "parameters": [
                    *_QUERY,
                    {
                        "name": "force",
                        "in": "query",
                        "schema": {"type": "boolean", "uniqueItems": True},
                    },
                ],
                "requestBody": patch_body,
                "responses": {"200": {"description": "OK", "content": json_content}},
                "x-kubernetes-action": "patch",
                **action,
            },
            "delete": {
                "tags": tag,
                "description": f"delete a {rtype.kind}",
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "delete",
                **action,
            },
        }
        paths[f"{collection}/{{name}}"] = item
        if rtype.status_subresource:
            paths[f"{collection}/{{name}}/status"] = item
        if rtype.namespaced:
            paths[f"{base}/{rtype.plural}"] = {
                "get": {
                    "tags": tag,
                    "description": f"list objects of kind {rtype.kind}",
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "list",
                    **action,
                },
            }
    title = "Kubernetes CRD Swagger" if all(r.crd for r in resources) else "Kubernetes"
    return {
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(document: JSONObject) -> str:
    return (
        hashlib.sha512(json.dumps(document, sort_keys=True).encode())
        .hexdigest()
        .upper()
    )


def openapi_v3_index(registry: Registry) -> tuple[JSONObject, dict[str, JSONObject]]:
    """
    The C{/openapi/v3} index and the documents it names, by path.
    """
    documents: dict[str, JSONObject] = {}
    for group, versions in registry.groups():
        for version in versions:
            document = openapi_v3_document(registry, group, version)
            if document is not None:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                documents[key] = document
    index = {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={document_hash(doc)}"}
            for path, doc in sorted(documents.items())
        }
    }
    return index, documents
