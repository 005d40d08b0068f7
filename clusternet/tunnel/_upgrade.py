"""
The HTTP upgrade carrier: an HTTP/1.1 C{Upgrade: clusternet-tunnel.v1}
request, answered with C{101 Switching Protocols}, after which the connection
carries tunnel frames as they are (the raw stream carrier,
L{StreamCarrierProtocol}), with no WebSocket framing.

It goes wherever the WebSocket carrier goes: a Kubernetes API server's
aggregation layer hands any HTTP/1.1 upgrade to its backend and splices the
bytes after the 101 (the same path as C{SPDY/3.1} for C{kubectl exec}), and
so do common HTTP reverse proxies.  What it saves is WebSocket's framing and
the client's masking of every message (RFC 6455), which cost more than the
session itself per small message (docs/tunnel-protocol.md, "Carriers").

    # the dialing side
    d = connect_upgrade(reactor, endpoint, url, session_factory,
                        {"Authorization": "Bearer ..."})

    # the accepting side, in a twisted.web resource
    if is_tunnel_upgrade(request):
        take_over(request, session)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from clusternet.proxy import (
    HeadError,
    ResponseHeadParser,
    serialize_head,
    switching_protocols,
    upgrade_token,
)
from clusternet.tunnel._errors import TunnelClosed
from clusternet.tunnel._interfaces import ITunnelProtocol
from clusternet.tunnel._session import TunnelSession
from clusternet.tunnel._tcp import StreamCarrierProtocol
from clusternet.tunnel._tuning import unbuffered_write

__all__ = [
    "UPGRADE_PROTOCOL",
    "UpgradeNotSupported",
    "connect_upgrade",
    "is_tunnel_upgrade",
    "take_over",
]

#: The C{Upgrade} token, the same name as the WebSocket subprotocol.
UPGRADE_PROTOCOL = "clusternet-tunnel.v1"
_TOKEN = UPGRADE_PROTOCOL.encode("ascii")

#: Seconds the dialing side waits for the answer to its upgrade request.
UPGRADE_TIMEOUT = 30.0

#: Bytes of a refusal's body read for its message.
_REFUSAL_BODY = 4096

#: Seconds a refusal's body may take to arrive after its head.
_REFUSAL_WAIT = 2.0

#: Statuses that say nothing of whether WebSocket would get through: the
#: credentials were refused (401), or the server is busy or down (429, 5xx).
_NOT_ABOUT_THE_PROTOCOL = frozenset({401, 429})


def _may_be_the_protocol(code: int) -> bool:
    """
    Whether a refusal with C{code} may be of the protocol, which WebSocket
    could get past: any 2xx or 3xx (a server that served the request as a
    plain GET), and 4xx but 401 and 429 (an older hub: 404, 405, 426; or
    something in between that lets only WebSocket upgrades through: Envoy
    answers 403 to an upgrade it is not configured for).
    """
    if code < 400:
        return True
    return (code < 500 and code not in _NOT_ABOUT_THE_PROTOCOL) or code == 501


class UpgradeNotSupported(TunnelClosed):
    """
    The upgrade was refused in a way that may be about the protocol itself
    (see L{_may_be_the_protocol}): an older hub, or something in the way that
    passes only WebSocket upgrades; WebSocket may still get through.  C{code}
    is the status.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(string=message)
        self.code = code


def is_tunnel_upgrade(request: IRequest) -> bool:
    """
    Whether C{request} asks to switch to this carrier: a C{GET} with
    C{Connection: upgrade} and C{Upgrade: clusternet-tunnel.v1}, any case.
    """
    if request.method != b"GET":
        return False
    token = upgrade_token(request.requestHeaders)
    return token is not None and token.lower() == _TOKEN


def take_over(request: Any, session: ITunnelProtocol) -> None:
    """
    Answer C{request} (a twisted.web request for which L{is_tunnel_upgrade}
    is true, already authorized) with C{101 Switching Protocols} and carry
    C{session} on its connection from now on.

    The connection leaves twisted.web as it does for autobahn's
    C{WebSocketResource}: its HTTP channel no longer sees it.
    """
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if transport is None:
        # HTTP/2 (a stream of a shared connection) cannot be taken over.
        raise ValueError("the tunnel upgrade needs an HTTP/1.1 connection")
    leftover = switching_protocols(request)
    set_timeout = getattr(channel, "setTimeout", None)
    if set_timeout is not None:
        set_timeout(None)
    channel.transport = None
    carrier = StreamCarrierProtocol(session, kind="upgrade")
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = carrier
    elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
        # A connection from listenSSL: the TLS layer is its protocol.
        transport.protocol.wrappedProtocol = carrier
    else:
        transport.protocol = carrier
    if getattr(transport, "producer", None) is not None:
        # The HTTP channel registered itself; it no longer owns the connection.
        transport.unregisterProducer()
    # The carrier writes past Twisted's TLS buffer (unbuffered_write): so
    # must the 101, or the carrier's first frames could overtake it.
    unbuffered_write(transport)(
        serialize_head(
            b"HTTP/1.1",
            101,
            b"Switching Protocols",
            [
                (b"Connection", b"Upgrade"),
                (b"Upgrade", _TOKEN),
            ],
        )
    )
    carrier.makeConnection(transport)
    # twisted.web pauses reading while it serves a request; nothing more of
    # HTTP will come on this connection.
    network = getattr(transport, "_networkProducer", None)
    resume = getattr(
        network if network is not None else transport, "resumeProducing", None
    )
    if resume is not None:
        resume()
    if leftover:
        carrier.dataReceived(leftover)


def _request_head(url: str, headers: Mapping[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    fields = [
        ("Host", parts.netloc),
        ("Connection", "Upgrade"),
        ("Upgrade", UPGRADE_PROTOCOL),
        *headers.items(),
    ]
    lines = [f"GET {path} HTTP/1.1"]
    for name, value in fields:
        if any(c in f"{name}{value}" for c in "\r\n\0") or not name:
            # Never echo the value: it may be a token.
            raise ValueError(f"invalid header field {name!r} for the tunnel upgrade")
        lines.append(f"{name}: {value}")
    if any(c in path for c in " \r\n\0"):
        raise ValueError(f"invalid path for the tunnel upgrade: {path!r}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _refusal_message(code: int, phrase: bytes, body: bytes) -> str:
    """
    A one-line reason for a refused upgrade: the Kubernetes C{Status}
    message when the body is one, else the start of the body's text.
    """
    detail = ""
    try:
        status = json.loads(body)
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            detail = status["message"]
    except (ValueError, RecursionError):
        detail = body.decode("utf-8", "replace")
    detail = " ".join(detail.split())[:300]
    text = f"tunnel upgrade refused ({code} {phrase.decode('latin-1', 'replace')})"
    return f"{text}: {detail}" if detail else text


class _Upgrader(Protocol):
    """
    Sends the upgrade request, reads the answer; after a 101 hands the
    connection to a L{StreamCarrierProtocol} and passes everything on to it.
    """

    def __init__(
        self,
        head: bytes,
        session_factory: Callable[[], TunnelSession],
        result: Deferred[TunnelSession],
        clock: IReactorTime,
        timeout: float = UPGRADE_TIMEOUT,
    ) -> None:
        self._timeout = timeout
        self._head = head
        self._session_factory = session_factory
        self._result = result
        self._clock = clock
        self._parser: ResponseHeadParser | None = ResponseHeadParser()
        self._carrier: StreamCarrierProtocol | None = None
        self._refusal: tuple[int, bytes, int] | None = None
        self._body = b""
        self._timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.transport.write(self._head)  # type: ignore[union-attr]
        self._timer = self._clock.callLater(self._timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        if self._refusal is not None:
            self._refused()
            return
        self._fail(
            TunnelClosed(
                string=f"no answer to the tunnel upgrade within {self._timeout:g} s"
            )
        )

    def _fail(self, error: Exception) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Whatever still arrives is ignored.
        self._parser = None
        self._refusal = None
        if not self._result.called:
            self._result.errback(Failure(error))
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self._carrier is not None:
            self._carrier.dataReceived(data)
            return
        if self._refusal is not None:
            self._refusal_body(data)
            return
        if self._parser is None:
            return
        try:
            parsed = self._parser.feed(data)
        except HeadError as e:
            self._fail(TunnelClosed(string=f"bad answer to the tunnel upgrade: {e}"))
            return
        if parsed is None:
            return
        head, rest = parsed
        self._parser = None
        if head.code != 101:
            length = _content_length(head.values(b"content-length"))
            self._refusal = (head.code, head.phrase, length)
            self._refusal_body(rest)
            return
        switched_to = b", ".join(v.strip() for v in head.values(b"upgrade"))
        if switched_to.lower() != _TOKEN:
            self._fail(
                TunnelClosed(
                    string="the server switched to another protocol than the tunnel's"
                )
            )
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        session = self._session_factory()
        carrier = self._carrier = StreamCarrierProtocol(session, kind="upgrade")
        carrier.makeConnection(self.transport)
        if not self._result.called:
            self._result.callback(session)
        if rest:
            carrier.dataReceived(rest)

    def _refusal_body(self, data: bytes) -> None:
        assert self._refusal is not None
        self._body += data
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.callLater(_REFUSAL_WAIT, self._timed_out)
        if len(self._body) >= min(self._refusal[2], _REFUSAL_BODY):
            self._refused()

    def _refused(self) -> None:
        assert self._refusal is not None
        code, phrase, _ = self._refusal
        message = _refusal_message(code, phrase, self._body[:_REFUSAL_BODY])
        error: TunnelClosed
        if _may_be_the_protocol(code):
            error = UpgradeNotSupported(code, message)
        else:
            error = TunnelClosed(string=message)
        self._fail(error)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        if self._carrier is not None:
            self._carrier.connectionLost(reason)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._refusal is not None and not self._result.called:
            self._refused()
            return
        if not self._result.called:
            self._result.errback(
                Failure(
                    TunnelClosed(
                        string="the connection closed before the tunnel upgrade was "
                        f"answered: {reason.getErrorMessage()}"
                    )
                )
            )


def _content_length(values: list[bytes]) -> int:
    """
    The body length a refusal announces, or the most we read of it.
    """
    try:
        return max(0, int(values[0])) if values else _REFUSAL_BODY
    except ValueError:
        return _REFUSAL_BODY


def connect_upgrade(
    reactor: IReactorTime,
    endpoint: IStreamClientEndpoint,
    url: str,
    session_factory: Callable[[], TunnelSession],
    headers: Mapping[str, str] | None = None,
    timeout: float = UPGRADE_TIMEOUT,
) -> Deferred[TunnelSession]:
    """
    Connect C{endpoint} (TCP, or TLS for C{https}, as for
    L{connect_websocket}), ask to upgrade C{GET url} to the tunnel with
    C{headers}, and fire with the session made by C{session_factory} once the
    server switched.  Fails with the connection error, L{UpgradeNotSupported}
    when the server seems not to know this carrier, or L{TunnelClosed} when
    it refused (the reason carries the server's message) or did not answer
    within C{timeout} seconds.

    @raise ValueError: a header value or the URL's path has a line break.
    """
    head = _request_head(url, headers or {})
    result: Deferred[TunnelSession] = Deferred()

    def failed(failure: Failure) -> None:
        if not result.called:
            result.errback(failure)

    factory = Factory.forProtocol(
        lambda: _Upgrader(head, session_factory, result, reactor, timeout)
    )
    endpoint.connect(factory).addErrback(failed)
    return result
