"""
The hub's HTTP front: every request is authenticated, then routed to discovery,
OpenAPI, the socket list, a tunnel attach or the proxy to a child cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from clusternet._web import write_status
from clusternet.health import HealthChecks, MetricsResource, ProbeResource
from clusternet.hub import _discovery as discovery
from clusternet.hub._auth import (
    Authenticator,
    CachingAuthorizer,
    Forbidden,
    RequestAttributes,
    Unauthorized,
    User,
)
from clusternet.hub._registry import ClusterNotConnected, SocketRegistry, UnknownCluster
from clusternet.hub._routes import Route, RouteError, parse_route
from clusternet.hub._tls import peer_chain
from clusternet.proxy import IStreamingResource, StreamingRequest
from clusternet.tunnel import is_tunnel_upgrade

__all__ = ["AttachHandler", "HubResource", "ProxyHandler", "verb_for"]

_NOT_FOUND = "the server could not find the requested resource"
_JSON = b"application/json"


class AttachHandler(Protocol):
    def __call__(self, request: Request, user: User, cluster_id: str) -> Any:
        """
        Take over C{request} as a tunnel attach for C{cluster_id}.
        """


class ProxyHandler(Protocol):
    def __call__(self, request: Request, user: User, route: Route) -> Deferred[None]:
        """
        Proxy C{request} to the child; fires when the response is complete.
        """


# The methods a request to a child may have; anything else is answered 405
# once authorized (a child cannot mean it, and a child that lower-cases methods
# must never see, say, "delete").
PROXIED_METHODS = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"}
)


def verb_for(method: bytes) -> str:
    """
    The authorization verb of a proxied request, as the Kubernetes API server's
    request info maps the method of a request that names an object (methods
    are case-sensitive: a lower-case C{delete} is no C{DELETE}); any other
    method is authorized as itself, lower-cased, so that only a rule with
    verb C{*} (or that very verb) allows it.
    """
    known = {
        b"GET": "get",
        b"HEAD": "get",
        b"OPTIONS": "get",
        b"POST": "create",
        b"PUT": "update",
        b"PATCH": "patch",
        b"DELETE": "delete",
    }.get(method)
    if known is not None:
        return known
    return method.decode("latin-1").lower()


def _headers(request: Request) -> tuple[Callable[[str], Sequence[str]], list[str]]:
    raw = request.requestHeaders

    def lookup(name: str) -> Sequence[str]:
        return [
            v.decode("latin-1") for v in raw.getRawHeaders(name.encode("latin-1"), [])
        ]

    names = [name.decode("latin-1") for name, _ in raw.getAllRawHeaders()]
    return lookup, names


def _wants_table(request: Request) -> bool:
    accept = (request.getHeader(b"accept") or b"").decode("latin-1")
    return "as=Table" in accept


def _wants_aggregated(request: Request) -> str | None:
    accept = (request.getHeader(b"accept") or b"").decode("latin-1")
    for part in accept.split(","):
        if "as=APIGroupDiscoveryList" in part and "g=apidiscovery.k8s.io" in part:
            for param in part.split(";"):
                key, _, value = param.strip().partition("=")
                if key == "v" and value in ("v2", "v2beta1"):
                    return value
    return None


def _is_websocket_upgrade(request: Request) -> bool:
    connection = (request.getHeader(b"connection") or b"").lower()
    upgrade = (request.getHeader(b"upgrade") or b"").lower()
    return b"upgrade" in connection and upgrade == b"websocket"


@implementer(IStreamingResource)
class HubResource(Resource):
    """
    The root of the hub's HTTPS site.  On a L{clusternet.proxy.StreamingSite}
    it handles each request as soon as its head has arrived, so proxied bodies
    stream both ways; on a plain C{Site} it works too, with buffered bodies.
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        authenticator: Authenticator,
        authorizer: CachingAuthorizer,
        registry: SocketRegistry,
        checks: HealthChecks,
        attach: AttachHandler | None = None,
        proxy: ProxyHandler | None = None,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._registry = registry
        self._attach = attach
        self._proxy = proxy
        self._probes = {
            name: ProbeResource(name.strip("/"), checks)
            for name in ("/healthz", "/readyz", "/livez")
        }
        self._metrics = MetricsResource(metrics) if metrics else MetricsResource()

    def renderStreaming(self, request: StreamingRequest) -> None:
        result = self.render(request)
        if result is not NOT_DONE_YET and not request.finished:
            assert isinstance(result, bytes)
            request.write(result)
            request.finish()

    def render(self, request: Request) -> bytes | int:
        path = request.path.decode("utf-8", "replace")
        probe = self._probes.get(path)
        if probe is not None and request.method in (b"GET", b"HEAD"):
            return probe.render(request)
        done = ensureDeferred(self._serve(request, path))
        done.addErrback(self._fail, request)
        return NOT_DONE_YET

    async def _serve(self, request: Request, path: str) -> None:
        lookup, names = _headers(request)
        user = await self._authenticator.authenticate(
            peer_chain(request.transport), lookup, names
        )
        if path == "/metrics":
            self._finish(request, 200, self._metrics.render(request), None)
            return
        route = parse_route(path)
        if route is None:
            self._serve_documents(request, path)
            return
        if route.kind == "group":
            self._json(request, discovery.api_resource_list())
        elif route.kind == "list":
            await self._authorizer.require(
                user, RequestAttributes("list", "sockets", "")
            )
            infos = self._registry.infos()
            if _wants_table(request):
                self._json(
                    request, discovery.socket_table(infos, self._clock.seconds())
                )
            else:
                self._json(request, discovery.socket_list(infos))
        elif route.kind == "socket":
            await self._serve_socket(request, user, route.cluster_id)
        else:
            await self._authorizer.require(
                user,
                RequestAttributes(
                    verb_for(request.method),
                    "sockets",
                    route.cluster_id,
                    subresource="proxy",
                ),
            )
            if request.method not in PROXIED_METHODS:
                method = request.method.decode("latin-1", "replace")
                self._finish(
                    request, 405, None, f"{method[:32]} is not a method a child takes"
                )
                return
            self._registry.session_for(
                route.cluster_id
            )  # 404 / 503 before any byte moves
            if self._proxy is None:
                raise ClusterNotConnected("this hub does not proxy requests yet")
            await self._proxy(request, user, route)

    async def _serve_socket(
        self, request: Request, user: User, cluster_id: str
    ) -> None:
        if _is_websocket_upgrade(request) or is_tunnel_upgrade(request):
            await self._authorizer.require(
                user, RequestAttributes("create", "sockets", cluster_id)
            )
            if self._attach is None:
                raise ClusterNotConnected("this hub does not accept tunnels yet")
            self._attach(request, user, cluster_id)
            return
        if request.method not in (b"GET", b"HEAD"):
            method = request.method.decode("latin-1", "replace")
            self._finish(request, 405, None, f"{method} is not supported on sockets")
            return
        await self._authorizer.require(
            user, RequestAttributes("get", "sockets", cluster_id)
        )
        info = self._registry.info(cluster_id)
        if info is None:
            raise UnknownCluster(f'sockets "{cluster_id}" not found')
        if _wants_table(request):
            self._json(request, discovery.socket_table([info], self._clock.seconds()))
        else:
            self._json(request, discovery.socket_object(info))

    def _serve_documents(self, request: Request, path: str) -> None:
        if path in ("/apis", "/apis/"):
            version = _wants_aggregated(request)
            if version is not None:
                content_type = discovery.AGGREGATED_DISCOVERY_TYPE.format(
                    version=version
                )
                request.setHeader(b"vary", b"Accept")
                self._json(
                    request, discovery.aggregated_discovery(version), content_type
                )
            else:
                self._json(request, discovery.api_group_list())
        elif path in (f"/apis/{discovery.GROUP}", f"/apis/{discovery.GROUP}/"):
            self._json(request, discovery.api_group())
        elif path == "/openapi/v2":
            self._json(request, discovery.openapi_v2())
        elif path == "/openapi/v3":
            self._json(request, discovery.openapi_v3_index())
        elif path == f"/openapi/v3/apis/{discovery.GROUP_VERSION}":
            self._json(request, discovery.openapi_v3_document())
        else:
            self._finish(request, 404, None, _NOT_FOUND)

    def _json(
        self, request: Request, body: dict[str, Any], content_type: str | None = None
    ) -> None:
        request.setHeader(
            b"content-type", (content_type or "application/json").encode()
        )
        self._finish(request, 200, json.dumps(body).encode(), None)

    def _finish(
        self, request: Request, code: int, body: bytes | None, message: str | None
    ) -> None:
        if request.finished or request._disconnected:
            return
        if message is not None:
            body = write_status(request, code, message)
        else:
            request.setResponseCode(code)
        request.setHeader(b"cache-control", b"no-cache, private")
        if body is not None and request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _fail(self, failure: Failure, request: Request) -> None:
        error = failure.value
        if isinstance(error, Unauthorized):
            self._log.debug("Unauthenticated request: {why}", why=str(error))
            self._finish(request, 401, None, "Unauthorized")
        elif isinstance(error, Forbidden):
            self._finish(request, 403, None, str(error))
        elif isinstance(error, (UnknownCluster, RouteError)):
            self._finish(request, 404, None, str(error) or _NOT_FOUND)
        elif isinstance(error, ClusterNotConnected):
            self._finish(request, 503, None, str(error))
        else:
            self._log.failure("Request {path} failed", failure, path=request.path)
            if not request.startedWriting:
                self._finish(request, 500, None, "internal error; see the hub's log")
            elif not request.finished:
                request.loseConnection()
