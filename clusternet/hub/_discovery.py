"""
What the hub answers about itself: API discovery for
C{proxies.clusternet.io/v1alpha1} (plain and aggregated, as kubectl and the
parent's aggregator ask for it), OpenAPI v2 and v3, and the C{Socket} objects
and their Table form.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from attrs import frozen

from clusternet.apis import (
    PROXIES_API_VERSION,
    PROXIES_GROUP,
    PROXIES_VERSION,
    proxies_api_group,
    proxies_api_group_discovery,
    proxies_api_resource_list,
)

__all__ = [
    "AGGREGATED_DISCOVERY_TYPE",
    "GROUP",
    "GROUP_VERSION",
    "SocketInfo",
    "aggregated_discovery",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "openapi_v2",
    "openapi_v3_document",
    "openapi_v3_index",
    "socket_list",
    "socket_object",
    "socket_table",
]

GROUP = PROXIES_GROUP
VERSION = PROXIES_VERSION
GROUP_VERSION = PROXIES_API_VERSION
AGGREGATED_DISCOVERY_TYPE = (
    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
)


def rfc3339(when: float) -> str:
    return datetime.datetime.fromtimestamp(int(when), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def api_group() -> dict[str, Any]:
    return proxies_api_group()


def api_group_list() -> dict[str, Any]:
    group = proxies_api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list() -> dict[str, Any]:
    return proxies_api_resource_list()


def aggregated_discovery(version: str = "v2") -> dict[str, Any]:
    """
    The C{APIGroupDiscoveryList} for C{/apis}, as the parent's aggregator merges it.
    """
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [proxies_api_group_discovery()],
    }


@frozen
class SocketInfo:
    """
    One attached tunnel, as C{kubectl get sockets} shows it.
    """

    cluster_id: str
    peer: str
    attached_at: float
    streams: int = 0
    user: str = ""


def socket_object(info: SocketInfo) -> dict[str, Any]:
    return {
        "kind": "Socket",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": info.cluster_id,
            "creationTimestamp": rfc3339(info.attached_at),
        },
        "spec": {"clusterID": info.cluster_id},
        "status": {
            "peer": info.peer,
            "attachedSince": rfc3339(info.attached_at),
            "openStreams": info.streams,
            "attachedBy": info.user,
        },
    }


def socket_list(infos: Iterable[SocketInfo]) -> dict[str, Any]:
    return {
        "kind": "SocketList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [socket_object(i) for i in infos],
    }


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def socket_table(infos: Iterable[SocketInfo], now: float) -> dict[str, Any]:
    """
    The C{meta.k8s.io/v1} Table kubectl asks for with C{as=Table}.
    """
    rows = []
    for info in infos:
        rows.append(
            {
                "cells": [
                    info.cluster_id,
                    info.peer,
                    info.streams,
                    _age(now - info.attached_at),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": socket_object(info)["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": "Cluster ID",
                "priority": 0,
            },
            {
                "name": "Peer",
                "type": "string",
                "format": "",
                "description": "Agent address",
                "priority": 0,
            },
            {
                "name": "Streams",
                "type": "integer",
                "format": "",
                "description": "Open streams",
                "priority": 0,
            },
            {
                "name": "Age",
                "type": "string",
                "format": "",
                "description": "Attached for",
                "priority": 0,
            },
        ],
        "rows": rows,
    }


_SOCKET_SCHEMA: dict[str, Any] = {
    "description": "Socket is a tunnel from a child cluster's agent to the hub.",
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string", "description": "APIVersion of this object."},
        "kind": {"type": "string", "description": "Kind of this object."},
        "metadata": {"type": "object", "description": "Standard object metadata."},
        "spec": {
            "type": "object",
            "description": "Which cluster the tunnel serves.",
            "properties": {
                "clusterID": {"type": "string", "description": "Cluster ID."}
            },
        },
        "status": {
            "type": "object",
            "description": "The tunnel as the hub sees it.",
            "properties": {
                "peer": {"type": "string", "description": "Address of the agent."},
                "attachedSince": {"type": "string", "description": "When it attached."},
                "openStreams": {"type": "integer", "description": "Open streams."},
                "attachedBy": {"type": "string", "description": "User that attached."},
            },
        },
    },
    "x-kubernetes-group-version-kind": [
        {"group": GROUP, "version": VERSION, "kind": "Socket"}
    ],
}


def openapi_v2() -> dict[str, Any]:
    name = "io.clusternet.proxies.v1alpha1.Socket"
    ok = {"200": {"description": "OK", "schema": {"$ref": f"#/definitions/{name}"}}}
    base = f"/apis/{GROUP_VERSION}/sockets"
    return {
        "swagger": "2.0",
        "info": {"title": "clusternet-hub", "version": VERSION},
        "paths": {
            base: {
                "get": {
                    "operationId": "listSockets",
                    "produces": ["application/json"],
                    "responses": ok,
                }
            },
            base + "/{name}": {
                "get": {
                    "operationId": "readSocket",
                    "produces": ["application/json"],
                    "responses": ok,
                },
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "type": "string"}
                ],
            },
        },
        "definitions": {name: _SOCKET_SCHEMA},
    }


def openapi_v3_document() -> dict[str, Any]:
    name = "io.clusternet.proxies.v1alpha1.Socket"
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
    base = f"/apis/{GROUP_VERSION}/sockets"
    return {
        "openapi": "3.0.0",
        "info": {"title": "clusternet-hub", "version": VERSION},
        "paths": {
            base: {
                "get": {
                    "operationId": "listSockets",
                    "responses": {"200": {"description": "OK", "content": content}},
                }
            },
            base + "/{name}": {
                "get": {
                    "operationId": "readSocket",
                    "responses": {"200": {"description": "OK", "content": content}},
                },
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
            },
        },
        "components": {"schemas": {name: _SOCKET_SCHEMA}},
    }


def _hash(document: dict[str, Any]) -> str:
    return (
        hashlib.sha512(json.dumps(document, sort_keys=True).encode())
        .hexdigest()
        .upper()
    )


def openapi_v3_index() -> dict[str, Any]:
    key = f"apis/{GROUP_VERSION}"
    digest = _hash(openapi_v3_document())
    return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}}}
