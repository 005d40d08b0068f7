"""
The reverse proxy: forward one twisted.web request to an upstream reached
through an L{IStreamClientEndpoint}, streaming both ways.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, Literal

from attrs import field, frozen

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    PotentialDataLoss,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgentEndpointFactory,
    IBodyProducer,
    IResponse,
)
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from clusternet._web import write_status
from clusternet.proxy._head import ResponseHead, serialize_head
from clusternet.proxy._headers import (
    HeaderValues,
    client_response_headers,
    headers_from_pairs,
    upgrade_token,
    upstream_request_headers,
)
from clusternet.proxy._server import (
    IStreamingResource,
    StreamingRequest,
    switching_protocols,
)
from clusternet.proxy._splice import SniffingFactory, SniffingProtocol, Splice

__all__ = [
    "ProxyError",
    "ProxyResource",
    "ReverseProxy",
    "Route",
    "UpstreamTimeout",
    "default_error_status",
    "remaining_path",
]

LocationRewriter = Callable[[bytes], bytes]

# Response bytes read in one reactor turn are written on as one piece, up to
# this many.
COALESCE_BYTES = 256 * 1024


class ProxyError(Exception):
    """
    Answer the request with a Kubernetes C{Status} of this code and message.

    Raise it from L{ProxyResource.route}, from an endpoint's C{connect}, or
    return it from an error mapping hook.
    """

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UpstreamTimeout(Exception):
    """
    The upstream did not accept the connection, or did not start its
    response, within the configured time.
    """


def default_error_status(failure: Failure) -> ProxyError:
    """
    The Status for a failure to reach the upstream or to get its response.
    """
    error = failure.value
    if isinstance(error, ProxyError):
        return error
    if isinstance(error, UpstreamTimeout):
        return ProxyError(504, f"error trying to reach service: {error}")
    if isinstance(error, ConnectError) and not isinstance(
        error, ConnectingCancelledError
    ):
        return ProxyError(502, f"error trying to reach service: {error}")
    if isinstance(error, ResponseNeverReceived):
        return ProxyError(
            502, "error trying to reach service: connection closed before a response"
        )
    if isinstance(error, ResponseFailed):
        return ProxyError(502, "error trying to reach service: response failed")
    if isinstance(error, ValueError):
        return ProxyError(400, f"request cannot be forwarded: {error}")
    return ProxyError(502, f"error trying to reach service: {error!r}")


ErrorMapper = Callable[[Failure], ProxyError | None]


def remaining_path(request: Request) -> bytes:
    """
    The raw part of C{request}'s URI after the segments resources consumed
    (C{request.prepath}), with a leading C{/} and the query string; the
    original percent-encoding is kept.
    """
    raw_path, sep, query = request.uri.partition(b"?")
    segments = raw_path.split(b"/")
    # segments[0] is the empty string before the leading slash.
    rest = segments[1 + len(request.prepath or []) :]
    result = b"/" + b"/".join(rest)
    if sep:
        result += b"?" + query
    return result


def _to_tuple(names: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(names)


@frozen
class Route:
    """
    Where and how to forward one request; see L{ReverseProxy.forward}.
    """

    endpoint: IStreamClientEndpoint
    path: bytes
    host: bytes
    set_headers: HeaderValues | None = None
    strip_headers: tuple[bytes, ...] = field(default=(), converter=_to_tuple)
    rewrite_location: LocationRewriter | None = None
    pool_key: Hashable | None = None


@implementer(IAgentEndpointFactory)
class _OneEndpoint:
    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return self._endpoint


@implementer(IStreamClientEndpoint)
class _ConnectEndpoint:
    """
    The caller's endpoint with a connect timeout and, for upgrade requests,
    a L{SniffingFactory} around the HTTP client's protocol factory.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        timeout: float | None,
        on_upgrade: Callable[[ResponseHead, bytes, SniffingProtocol], None] | None,
    ) -> None:
        self._endpoint = endpoint
        self._clock = clock
        self._timeout = timeout
        self._on_upgrade = on_upgrade

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        if self._on_upgrade is not None:
            factory = SniffingFactory(factory, self._on_upgrade)
        try:
            connecting = self._endpoint.connect(factory)
        except Exception:
            return defer.fail()
        if self._timeout is None:
            return connecting
        timeout = self._timeout

        def timed_out(result: object, seconds: float) -> object:
            raise UpstreamTimeout(f"no connection within {seconds:g}s")

        connecting.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        return connecting


@implementer(IPushProducer)
class _ResponseRelay(Protocol):
    """
    Copies an upstream response body into the client's request as it
    arrives; the client's backpressure pauses the upstream.
    """

    _log = Logger()

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange
        self.done: Deferred[None] = Deferred()
        self._registered = False
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_call: IDelayedCall | None = None

    def connectionMade(self) -> None:
        request = self._exchange.request
        if not self._exchange.gone:
            request.registerProducer(self, True)
            self._registered = True

    def dataReceived(self, data: bytes) -> None:
        # One read from the upstream arrives as several TLS records: pass
        # them on as one write at the end of this reactor turn, so the hops
        # after this one (the tunnel's frames, TLS, HTTP chunks) handle a few
        # large pieces instead of many small ones.
        if self._exchange.gone:
            return
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= COALESCE_BYTES:
            self._flush()
        elif self._flush_call is None:
            self._flush_call = self._exchange.proxy.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        call, self._flush_call = self._flush_call, None
        if call is not None and call.active():
            call.cancel()
        if not self._held:
            return
        held = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held = []
        self._held_bytes = 0
        if not self._exchange.gone:
            self._exchange.request.write(held)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        exchange = self._exchange
        request = exchange.request
        if reason.check(ResponseDone, PotentialDataLoss):
            self._flush()
        else:
            self._held = []
            self._held_bytes = 0
            self._flush()  # cancels the pending call
        if not exchange.gone:
            if self._registered:
                request.unregisterProducer()
            if reason.check(ResponseDone, PotentialDataLoss):
                request.finish()
            else:
                # Never let a truncated body look complete: no final chunk,
                # no clean close.
                exchange.log_failure("upstream response broke off", reason)
                exchange.abort_client()
        self.done.callback(None)

    def abort(self) -> None:
        """
        Close the upstream connection: nobody is reading this response.
        """
        transport: Any = self.transport
        if transport is not None:
            transport.stopProducing()
            transport.loseConnection()

    # IPushProducer, for the client side.
    def pauseProducing(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeProducing(self) -> None:
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def stopProducing(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


_Outcome = (
    tuple[Literal["response"], IResponse]
    | tuple[Literal["upgrade"], tuple[ResponseHead, bytes, SniffingProtocol]]
)


class _Exchange:
    """
    One request being forwarded.
    """

    _log = Logger()

    def __init__(self, proxy: ReverseProxy, request: Request, route: Route) -> None:
        self.proxy = proxy
        self.request = request
        self.route = route
        self.gone = False
        self._pending: Deferred[Any] | None = None
        self._relay: _ResponseRelay | None = None
        self._upgraded = False
        request.notifyFinish().addErrback(self._client_gone)

    def _client_gone(self, reason: Failure) -> None:
        if self._upgraded:
            return
        self.gone = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        if self._relay is not None:
            self._relay.abort()

    def log_failure(self, what: str, reason: Failure) -> None:
        self._log.info(
            "{what}: {method} {path}: {error}",
            what=what,
            method=self.request.method,
            path=self.route.path.partition(b"?")[0],
            error=reason.getErrorMessage(),
        )

    def abort_client(self) -> None:
        channel = self.request.channel
        transport = getattr(channel, "transport", None)
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            if abort is not None:
                abort()
            else:
                transport.loseConnection()

    def _body(self) -> IBodyProducer | None:
        request = self.request
        if isinstance(request, StreamingRequest) and request.streaming:
            return request.bodyProducer
        content: Any = getattr(request, "content", None)
        if content is None:
            return None
        content.seek(0, 2)
        size = content.tell()
        content.seek(0, 0)
        if size == 0:
            return None
        return FileBodyProducer(content, cooperator=self.proxy.cooperator)

    def _has_body(self) -> bool:
        request = self.request
        if isinstance(request, StreamingRequest) and request.streaming:
            return request.bodyProducer is not None
        content: Any = getattr(request, "content", None)
        if content is None:
            return False
        position = content.tell()
        content.seek(0, 2)
        size = content.tell()
        content.seek(position, 0)
        return size > 0

    async def run(self) -> None:
        try:
            outcome = await self._start()
        except Exception:
            failure = Failure()
            if self.gone:
                return
            self._write_error(failure)
            return
        if self.gone:
            if outcome[0] == "response":
                outcome[1].deliverBody(_Discard())
            else:
                transport = outcome[1][2].transport
                if transport is not None:
                    transport.loseConnection()
            return
        if outcome[0] == "response":
            await self._relay_response(outcome[1])
        else:
            head, rest, sniffer = outcome[1]
            await self._splice(head, rest, sniffer)

    def _write_error(self, failure: Failure) -> None:
        status = self.proxy.status_for(failure)
        self.log_failure(f"upstream error, answering {status.code}", failure)
        request = self.request
        if request.startedWriting:
            self.abort_client()
            return
        # Drop whatever was prepared for the upstream's response.
        request.responseHeaders = Headers()
        body = write_status(request, status.code, status.message, status.reason)
        request.setHeader(b"content-length", b"%d" % (len(body),))
        request.write(body)
        request.finish()

    def _start(self) -> Deferred[_Outcome]:
        request = self.request
        route = self.route
        proxy = self.proxy
        upgrade = None if self._has_body() else upgrade_token(request.requestHeaders)
        address = request.getClientAddress()
        client_ip = getattr(address, "host", None)
        headers = upstream_request_headers(
            request.requestHeaders,
            host=route.host,
            client_ip=client_ip if isinstance(client_ip, str) else None,
            proto=b"https" if request.isSecure() else b"http",
            strip=route.strip_headers,
            set_headers=route.set_headers,
            upgrade=upgrade,
            forwarded=proxy.forwarded_headers,
        )
        outcome: Deferred[_Outcome] = Deferred(lambda d: self._cancel_request())
        self._outcome = outcome

        def on_upgrade(
            head: ResponseHead, rest: bytes, sniffer: SniffingProtocol
        ) -> None:
            if not outcome.called:
                outcome.callback(("upgrade", (head, rest, sniffer)))

        endpoint = _ConnectEndpoint(
            route.endpoint,
            proxy.clock,
            proxy.connect_timeout,
            on_upgrade if upgrade is not None else None,
        )
        if upgrade is not None or route.pool_key is None:
            pool = proxy.one_shot_pool
            uri_host = b"upstream"
        else:
            pool = proxy.persistent_pool
            uri_host = proxy.pool_label(route.pool_key)
        agent = Agent.usingEndpointFactory(proxy.reactor, _OneEndpoint(endpoint), pool)
        body = self._body()
        try:
            requesting = agent.request(
                request.method, b"http://" + uri_host + route.path, headers, body
            )
        except Exception:
            return defer.fail()
        self._requesting = requesting
        if proxy.response_timeout is not None:
            seconds = proxy.response_timeout

            def timed_out() -> None:
                if not outcome.called:
                    outcome.errback(
                        Failure(UpstreamTimeout(f"no response within {seconds:g}s"))
                    )
                    self._cancel_request()

            timer = proxy.clock.callLater(seconds, timed_out)

            def stop_timer(result: object) -> object:
                if timer.active():
                    timer.cancel()
                return result

            outcome.addBoth(stop_timer)

        def got_response(response: IResponse) -> None:
            if not outcome.called:
                outcome.callback(("response", response))
            else:
                # Upgraded meanwhile: nobody wants this response.
                response.deliverBody(_Discard())

        def failed(reason: Failure) -> None:
            if not outcome.called:
                outcome.errback(reason)

        requesting.addCallbacks(got_response, failed)
        self._pending = outcome
        return outcome

    def _cancel_request(self) -> None:
        requesting = getattr(self, "_requesting", None)
        if requesting is not None:
            # Also when "called" but waiting on the connection's Deferred:
            # cancel() forwards to it.
            requesting.cancel()

    async def _relay_response(self, response: IResponse) -> None:
        self._pending = None
        request = self.request
        route = self.route
        request.setResponseCode(response.code, response.phrase)
        headers = client_response_headers(
            response.headers, rewrite_location=route.rewrite_location
        )
        for name, values in headers.getAllRawHeaders():
            request.responseHeaders.setRawHeaders(name, list(values))
        if (
            response.length is not UNKNOWN_LENGTH
            and request.method != b"HEAD"
            and response.code not in (204, 304)
        ):
            request.responseHeaders.setRawHeaders(
                b"content-length", [b"%d" % (response.length,)]
            )
        # Send the head now: a watch may not have an event for minutes.
        request.write(b"")
        relay = _ResponseRelay(self)
        self._relay = relay
        response.deliverBody(relay)
        await relay.done

    async def _splice(
        self, head: ResponseHead, rest: bytes, sniffer: SniffingProtocol
    ) -> None:
        self._pending = None
        self._upgraded = True
        request = self.request
        channel = request.channel
        client = getattr(channel, "transport", None)
        upstream = sniffer.transport
        if channel is None or client is None or upstream is None:
            if upstream is not None:
                upstream.loseConnection()
            return
        headers = client_response_headers(
            headers_from_pairs(head.headers),
            rewrite_location=self.route.rewrite_location,
            upgrade=True,
        )
        pairs = [
            (name, value)
            for name, values in headers.getAllRawHeaders()
            for value in values
        ]
        leftover = switching_protocols(request, head.phrase or b"Switching Protocols")
        splice = Splice(client, upstream)
        sniffer.attach(splice.upstream_data, splice.upstream_lost)
        original_lost = channel.connectionLost

        def client_lost(reason: Failure) -> None:
            splice.client_lost(reason)
            original_lost(reason)

        # Take the connection over, as twisted.web.websocket does.
        setattr(channel, "dataReceived", splice.client_data)  # noqa: B010
        setattr(channel, "connectionLost", client_lost)  # noqa: B010
        unregister = getattr(client, "unregisterProducer", None)
        if unregister is not None:
            unregister()
        client.write(
            serialize_head(
                b"HTTP/1.1", 101, head.phrase or b"Switching Protocols", pairs
            )
        )
        if rest:
            splice.upstream_data(rest)
        if leftover:
            splice.client_data(leftover)
        splice.start()
        resume = getattr(client, "resumeProducing", None)
        if resume is not None:
            resume()
        self._log.debug(
            "Upgraded {method} {path} to {protocol}",
            method=request.method,
            path=self.route.path.partition(b"?")[0],
            protocol=head.values(b"upgrade"),
        )
        await splice.done


class _Discard(Protocol):
    """
    A response body nobody wants: stop the upstream from sending it.
    """

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        pass


class ReverseProxy:
    """
    Forwards twisted.web requests to upstreams.

    @param reactor: the reactor (TCP and time) used by the HTTP client.
    @param connect_timeout: seconds to wait for an upstream connection, or
        L{None}.
    @param response_timeout: seconds from sending a request until the
        upstream's response head, or L{None} (the default: watches and long
        requests need none).
    @param error_status: maps a failure to reach the upstream or to get its
        response to the L{ProxyError} answered; L{None} from it falls back to
        L{default_error_status}.
    @param forwarded_headers: add C{X-Forwarded-For/-Proto/-Host}.
    @param persistent_pool: the connection pool for routes with a
        C{pool_key}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        connect_timeout: float | None = 30.0,
        response_timeout: float | None = None,
        error_status: ErrorMapper | None = None,
        forwarded_headers: bool = True,
        persistent_pool: HTTPConnectionPool | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.forwarded_headers = forwarded_headers
        self._error_status = error_status
        self.one_shot_pool = HTTPConnectionPool(reactor, persistent=False)
        if persistent_pool is None:
            persistent_pool = HTTPConnectionPool(reactor, persistent=True)
        self.persistent_pool = persistent_pool
        self._labels: dict[Hashable, bytes] = {}
        self._counter = itertools.count(1)
        self.cooperator = Cooperator(
            scheduler=lambda work: reactor.callLater(0, work),
        )

    def pool_label(self, key: Hashable) -> bytes:
        """
        A host name, unique per key, that keys the connection pool.
        """
        label = self._labels.get(key)
        if label is None:
            label = b"pool-%d.invalid" % (next(self._counter),)
            self._labels[key] = label
        return label

    def status_for(self, failure: Failure) -> ProxyError:
        """
        The Status answered for C{failure}.
        """
        if self._error_status is not None and not failure.check(ProxyError):
            mapped = self._error_status(failure)
            if mapped is not None:
                return mapped
        return default_error_status(failure)

    def forward(
        self,
        request: Request,
        endpoint: IStreamClientEndpoint,
        path: bytes,
        *,
        host: bytes,
        set_headers: HeaderValues | None = None,
        strip_headers: Iterable[bytes] = (),
        rewrite_location: LocationRewriter | None = None,
        pool_key: Hashable | None = None,
    ) -> Deferred[None]:
        """
        Forward C{request} to the upstream that C{endpoint} connects to, as
        C{path} (the request target: path and query) with C{Host: host}.

        Hop-by-hop headers never cross; C{strip_headers} (exact names, or
        prefixes ending in C{*}) are dropped, then C{set_headers} set.
        C{rewrite_location} maps an upstream C{Location} to the client's.
        With a C{pool_key}, idle connections are kept and reused for routes
        with an equal key: the key must then identify the upstream and every
        credential the endpoint presents.

        The request is always answered: with the upstream's response, with a
        C{Status} when the upstream cannot be reached, or by switching
        protocols.  The result fires when the exchange is over; it does not
        fail.
        """
        route = Route(
            endpoint=endpoint,
            path=path,
            host=host,
            set_headers=set_headers,
            strip_headers=tuple(strip_headers),
            rewrite_location=rewrite_location,
            pool_key=pool_key,
        )
        return self.forward_route(request, route)

    def forward_route(self, request: Request, route: Route) -> Deferred[None]:
        """
        L{forward} with a L{Route}.
        """
        exchange = _Exchange(self, request, route)
        done = Deferred.fromCoroutine(exchange.run())
        done.addErrback(self._unexpected, request)
        return done

    def answer_error(self, request: Request, failure: Failure) -> None:
        """
        Answer C{request} with the Status for C{failure}.
        """
        status = self.status_for(failure)
        self._log.info(
            "Answering {code} for {method} {path}: {error}",
            code=status.code,
            method=request.method,
            path=request.path,
            error=failure.getErrorMessage(),
        )
        body = write_status(request, status.code, status.message, status.reason)
        request.setHeader(b"content-length", b"%d" % (len(body),))
        request.write(body)
        request.finish()

    def _unexpected(self, failure: Failure, request: Request) -> None:
        self._log.failure("Proxying {path} failed", failure, path=request.path)
        transport = getattr(getattr(request, "channel", None), "transport", None)
        if transport is not None:
            transport.loseConnection()

    def close(self) -> Deferred[None]:
        """
        Close idle pooled connections.
        """
        return self.persistent_pool.closeCachedConnections()


@implementer(IStreamingResource)
class ProxyResource(Resource):
    """
    A leaf that forwards every request it gets; subclasses override
    L{route} to choose the upstream per request.

    It streams on a L{StreamingSite} and buffers request bodies on a plain
    L{twisted.web.server.Site}.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, proxy: ReverseProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def route(self, request: Request) -> Route | Awaitable[Route]:
        """
        Where to send C{request}: a L{Route}, or an awaitable (Deferred or
        coroutine) of one.  Raise L{ProxyError} to answer with a Status.
        """
        raise ProxyError(404, "the server could not find the requested resource")

    def renderStreaming(self, request: StreamingRequest) -> None:
        self._handle(request)

    def render(self, request: Request) -> int:
        self._handle(request)
        return NOT_DONE_YET

    def _handle(self, request: Request) -> None:
        Deferred.fromCoroutine(self._proxy(request)).addErrback(
            self.proxy._unexpected, request
        )

    async def _proxy(self, request: Request) -> None:
        gone: list[Failure] = []
        finished = request.notifyFinish()
        finished.addErrback(gone.append)
        try:
            chosen = self.route(request)
            if not isinstance(chosen, Route):
                chosen = await chosen
        except CancelledError:
            return
        except Exception:
            if not gone:
                self.proxy.answer_error(request, Failure())
            return
        if gone:
            return
        await self.proxy.forward_route(request, chosen)
