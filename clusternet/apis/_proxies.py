"""
Discovery of C{proxies.clusternet.io/v1alpha1}, the group the hub serves.
"""

from __future__ import annotations

from typing import Any

from clusternet.apis._constants import (
    PROXIES_API_VERSION,
    PROXIES_GROUP,
    PROXIES_VERSION,
    SOCKETS_RESOURCE,
)

__all__ = [
    "SOCKETS_CATEGORIES",
    "SOCKETS_KIND",
    "SOCKETS_PROXY_VERBS",
    "SOCKETS_SHORT_NAMES",
    "SOCKETS_VERBS",
    "proxies_api_group",
    "proxies_api_group_discovery",
    "proxies_api_resource_list",
]

SOCKETS_KIND = "Socket"
SOCKETS_SHORT_NAMES = ("ss",)
SOCKETS_CATEGORIES = ("clusternet",)
SOCKETS_VERBS = ("get", "list")
# What a real kube-apiserver lists for a connect subresource (pods/proxy).
SOCKETS_PROXY_VERBS = ("create", "delete", "get", "patch", "update")


def proxies_api_resource_list() -> dict[str, Any]:
    """
    The C{APIResourceList} served at C{/apis/proxies.clusternet.io/v1alpha1}.
    """
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": PROXIES_API_VERSION,
        "resources": [
            {
                "name": SOCKETS_RESOURCE,
                "singularName": "socket",
                "namespaced": False,
                "kind": SOCKETS_KIND,
                "verbs": list(SOCKETS_VERBS),
                "shortNames": list(SOCKETS_SHORT_NAMES),
                "categories": list(SOCKETS_CATEGORIES),
            },
            {
                "name": f"{SOCKETS_RESOURCE}/proxy",
                "singularName": "",
                "namespaced": False,
                "kind": SOCKETS_KIND,
                "verbs": list(SOCKETS_PROXY_VERBS),
            },
        ],
    }


def proxies_api_group() -> dict[str, Any]:
    """
    The C{APIGroup} served at C{/apis/proxies.clusternet.io}.
    """
    version = {"groupVersion": PROXIES_API_VERSION, "version": PROXIES_VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": PROXIES_GROUP,
        "versions": [version],
        "preferredVersion": version,
    }


def proxies_api_group_discovery() -> dict[str, Any]:
    """
    The group's entry (C{apidiscovery.k8s.io/v2} C{APIGroupDiscovery}) in the
    aggregated discovery document C{GET /apis} answers.
    """
    kind = {"group": "", "version": "", "kind": SOCKETS_KIND}
    return {
        "metadata": {"name": PROXIES_GROUP, "creationTimestamp": None},
        "versions": [
            {
                "version": PROXIES_VERSION,
                "resources": [
                    {
                        "resource": SOCKETS_RESOURCE,
                        "responseKind": kind,
                        "scope": "Cluster",
                        "singularResource": "socket",
                        "verbs": list(SOCKETS_VERBS),
                        "shortNames": list(SOCKETS_SHORT_NAMES),
                        "categories": list(SOCKETS_CATEGORIES),
                        "subresources": [
                            {
                                "subresource": "proxy",
                                "responseKind": kind,
                                "verbs": list(SOCKETS_PROXY_VERBS),
                            }
                        ],
                    }
                ],
                "freshness": "Current",
            }
        ],
    }
