"""
The hub's proxy to child clusters: each request goes down a stream of the
cluster's tunnel (targets as in docs/tunnel-protocol.md, "Targets").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure
from twisted.web.server import Request

from clusternet.hub._auth import User
from clusternet.hub._fairness import StreamBudget, StreamRefused
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._routes import GROUP_PREFIX, Route
from clusternet.hub._tunnels import DIRECT_TARGET, stream_target
from clusternet.proxy import ProxyError, ReverseProxy
from clusternet.tunnel import (
    DEFAULT_MAX_STREAMS,
    StreamOpenFailed,
    TunnelClosed,
    TunnelStreamReset,
)

__all__ = ["ClusterProxy", "tunnel_error_status"]

# Parent credentials and identity claims never cross unless the mode maps them.
STRIP = (b"authorization", b"x-remote-*", b"impersonate-*", b"cookie")


def tunnel_error_status(failure: Failure) -> ProxyError | None:
    """
    The Status for a failure of the tunnel; C{None} for other failures.
    """
    error = failure.value
    if isinstance(error, StreamOpenFailed):
        return ProxyError(
            error.http_status, f"the agent could not open the target: {error}"
        )
    if isinstance(error, TunnelClosed):
        return ProxyError(
            503,
            "the cluster's tunnel closed while connecting; the agent will reconnect, "
            "retry shortly",
        )
    if isinstance(error, TunnelStreamReset):
        return ProxyError(502, f"the tunnel stream was reset: {error.message}")
    return None


def identity_headers(user: User) -> dict[bytes, list[bytes]]:
    """
    The parent user, as the agent reads it for the C{direct} target.
    """
    headers: dict[bytes, list[bytes]] = {b"X-Remote-User": [user.name.encode("utf-8")]}
    if user.groups:
        headers[b"X-Remote-Group"] = [g.encode("utf-8") for g in user.groups]
    for key, values in user.extra.items():
        name = b"X-Remote-Extra-" + quote(key, safe="").encode("ascii")
        headers[name] = [v.encode("utf-8") for v in values]
    return headers


def stream_limit(session: Any) -> int:
    """
    How many streams the hub may have open on C{session}: what its agent
    advertised in its HELLO.
    """
    hello = getattr(session, "peer_hello", None)
    limit = getattr(hello, "max_streams", None)
    return limit if isinstance(limit, int) else DEFAULT_MAX_STREAMS


def answer_refused(request: Request, refused: StreamRefused) -> None:
    """
    Answer C{request} with 429, its C{Status} and C{Retry-After}.
    """
    if request.finished or getattr(request, "_disconnected", False):
        return
    body = refused.status()
    request.setResponseCode(429)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-cache, private")
    request.setHeader(b"retry-after", b"%d" % (refused.retry_after,))
    request.setHeader(b"content-length", b"%d" % (len(body),))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


class ClusterProxy:
    """
    Forward an authorized request to a child cluster through its tunnel.

    @param budget: the streams each user may hold on each cluster's tunnel
        (docs/proxy.md, "Fair share of a cluster's streams"); C{None} for no
        per-user limit.
    """

    def __init__(
        self,
        reactor: Any,
        registry: SocketRegistry,
        budget: StreamBudget | None = None,
    ) -> None:
        self._registry = registry
        self.budget = budget
        self.proxy = ReverseProxy(reactor, error_status=tunnel_error_status)

    def __call__(self, request: Request, user: User, route: Route) -> Deferred[None]:
        session: Any = self._registry.session_for(route.cluster_id)
        if self.budget is None:
            return self._forward(request, user, route, session)
        try:
            slot = self.budget.acquire(
                route.cluster_id,
                self.budget.key_for(user),
                stream_limit(session),
                session=session,
                busy=self._busy(session),
                who=user.name,
            )
        except StreamRefused as refused:
            answer_refused(request, refused)
            return succeed(None)
        # The stream is the request's until the exchange is over (response
        # relayed, upgrade spliced and closed, upstream reset or tunnel lost:
        # forward() then fires, and never fails) or the client is gone,
        # whichever comes first; the slot counts once.
        request.notifyFinish().addBoth(lambda _: slot.release())
        try:
            done = self._forward(request, user, route, session)
        except BaseException:
            slot.release()
            raise
        return done.addBoth(slot.release)

    def _busy(self, session: Any) -> int:
        """
        Streams open on C{session} that a new request may not use: all but
        those that may sit idle in the connection pool of the C{direct}
        target, which the next request to it reuses.
        """
        idle = self.proxy.persistent_pool.maxPersistentPerHost
        return max(0, getattr(session, "stream_count", 0) - idle)

    def _forward(
        self, request: Request, user: User, route: Route, session: Any
    ) -> Deferred[None]:
        target = stream_target(route)
        query = request.uri.partition(b"?")[2]
        path = route.path.encode("utf-8") + (b"?" + query if query else b"")
        base = f"{GROUP_PREFIX}/sockets/{route.cluster_id}/proxy/{route.scheme}"
        if route.scheme != "direct":
            base += f"/{route.host}"
        set_headers: dict[bytes, list[bytes]] = {}
        if target == DIRECT_TARGET:
            set_headers = identity_headers(user)
            host = b"direct"
        else:
            host = route.host.encode("idna")
            tokens = user.extra.get("clusternet-token", ())
            if tokens:
                set_headers[b"Authorization"] = [f"Bearer {tokens[0]}".encode()]

        def rewrite(location: bytes) -> bytes:
            if location.startswith(b"/") and not location.startswith(b"//"):
                return base.encode("utf-8") + location
            return location

        return self.proxy.forward(
            request,
            session.endpoint_for(target),
            path,
            host=host,
            set_headers=set_headers,
            strip_headers=STRIP,
            rewrite_location=rewrite,
            pool_key=(id(session), target) if target == DIRECT_TARGET else None,
        )
