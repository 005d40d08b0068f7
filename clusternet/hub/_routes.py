"""
The hub's URL space under C{/apis/proxies.clusternet.io/v1alpha1}, parsed into
routes.

::

    /sockets                                          list connected clusters
    /sockets/<id>                                     get; WebSocket upgrade = attach
    /sockets/<id>/proxy/<http|https>/<host[:port]>/<path>
    /sockets/<id>/proxy/direct/<path>                 the agent's own child apiserver
    /sockets/<id>/<http|https>/<host[:port]>/<path>   the seed's form, kept as an alias
"""

from __future__ import annotations

import re

from attrs import frozen

__all__ = ["GROUP_PREFIX", "Route", "parse_route"]

GROUP_PREFIX = "/apis/proxies.clusternet.io/v1alpha1"

# Cluster IDs are UUIDs; accept any lowercase DNS-1123 subdomain so that
# --cluster-id overrides stay usable, and nothing that could escape a path.
_CLUSTER_ID = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOST = re.compile(
    r"^(?:[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?$"
)


@frozen
class Route:
    """
    What a path under the group asks for.

    @ivar kind: C{"group"} (the discovery document), C{"list"}, C{"socket"}
        (get or attach), or C{"proxy"}.
    @ivar scheme: for proxies, C{"http"}, C{"https"} or C{"direct"}.
    @ivar host: for http/https proxies, C{host[:port]} as given.
    @ivar path: for proxies, the upstream path, always starting with C{/}.
    """

    kind: str
    cluster_id: str = ""
    scheme: str = ""
    host: str = ""
    path: str = "/"


class RouteError(ValueError):
    """
    A path under the group that names no valid route; the message says why.
    """


def valid_cluster_id(cluster_id: str) -> bool:
    return bool(_CLUSTER_ID.match(cluster_id))


def _valid_host(host: str) -> bool:
    match = _HOST.match(host)
    if match is None:
        return False
    port = match.group("port")
    return port is None or 0 < int(port) <= 65535


def parse_route(path: str) -> Route | None:
    """
    Parse a request path (no query string).  C{None} when the path is outside the
    group.

    @raise RouteError: for a path inside the group that is malformed.
    """
    if path == GROUP_PREFIX or path == GROUP_PREFIX + "/":
        return Route("group")
    if not path.startswith(GROUP_PREFIX + "/"):
        return None
    rest = path[len(GROUP_PREFIX) + 1 :]
    resource, _, rest = rest.partition("/")
    if resource != "sockets":
        raise RouteError(
            f"the server could not find the requested resource {resource!r}"
        )
    if not rest:
        return Route("list")
    cluster_id, slash, rest = rest.partition("/")
    if not valid_cluster_id(cluster_id):
        raise RouteError(f"invalid cluster ID {cluster_id!r}")
    if not slash or not rest:
        return Route("socket", cluster_id)
    head, _, rest = rest.partition("/")
    if head == "proxy":
        scheme, _, rest = rest.partition("/")
        if scheme == "direct":
            return Route("proxy", cluster_id, "direct", "", "/" + rest)
    else:
        scheme = head  # the seed's /sockets/<id>/<scheme>/<host>/<path>
    if scheme not in ("http", "https"):
        raise RouteError(
            f"unsupported proxy scheme {scheme!r}: use proxy/http/<host>, "
            "proxy/https/<host> or proxy/direct"
        )
    host, _, upstream = rest.partition("/")
    if not _valid_host(host):
        raise RouteError(f"invalid proxy target host {host!r}")
    return Route("proxy", cluster_id, scheme, host, "/" + upstream)
