"""
Discovery of proxies.clusternet.io/v1alpha1 in the real API server's shapes.
"""

from __future__ import annotations

import json

from clusternet.apis import (
    proxies_api_group,
    proxies_api_group_discovery,
    proxies_api_resource_list,
)
from tests.support.wire import recorded


def test_sockets_are_cluster_scoped_get_list_with_short_name_and_category() -> None:
    listing = proxies_api_resource_list()
    assert listing["groupVersion"] == "proxies.clusternet.io/v1alpha1"
    sockets, proxy = listing["resources"]
    assert sockets["name"] == "sockets"
    assert sockets["namespaced"] is False
    assert sockets["verbs"] == ["get", "list"]
    assert sockets["shortNames"] == ["ss"]
    assert sockets["categories"] == ["clusternet"]
    assert proxy["name"] == "sockets/proxy"
    assert json.loads(json.dumps(listing)) == listing


def test_aggregated_entry_has_the_keys_a_real_server_writes() -> None:
    entry = proxies_api_group_discovery()
    resource = entry["versions"][0]["resources"][0]
    answer = recorded("009-discovery-aggregated-apis.json")["response"]["body"]
    real = answer["items"][0]
    real_resource = real["versions"][0]["resources"][0]
    assert set(entry) == set(real)
    assert set(resource) - {"shortNames", "categories", "subresources"} <= set(
        real_resource
    )
    assert resource["scope"] == "Cluster"
    assert resource["subresources"][0]["subresource"] == "proxy"


def test_api_group_prefers_v1alpha1() -> None:
    group = proxies_api_group()
    assert group["preferredVersion"]["version"] == "v1alpha1"
