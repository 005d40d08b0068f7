"""
Processes for the proxy's integration tests (run as a script, not collected).

  python proxy_harness.py backend
      a twisted.web backend on 127.0.0.1 plus a raw socket server that answers
      Upgrade requests; prints {"web": port, "raw": port} on stdout.
      (and the same web resources over TLS, with a fresh CA whose file it
      names: {"web", "raw", "tls", "ca"}).
  python proxy_harness.py proxy WEB_PORT RAW_PORT TLS_PORT CA_FILE
      a StreamingSite whose ProxyResource routes /backend/..., /tls/... and
      /raw/... to them; prints {"proxy": port}.

Both run until stdin closes, so a test that dies never leaves them behind.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.stdio import StandardIO
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from clusternet.pki import issue_certificate, make_ca
from clusternet.proxy import (
    ProxyError,
    ProxyResource,
    ReverseProxy,
    Route,
    StreamingRequest,
    StreamingSite,
    remaining_path,
)

reactor: Any = _reactor
STATS: dict[str, int] = {"produced": 0, "aborted": 0, "max_held": 0}
STREAMS: list[Request] = []


_PERIOD = 1_000_003  # prime, so no chunk size lines up with it
_BASE = b"".join(
    hashlib.sha256(b"%d" % (i,)).digest()
    for i in range((_PERIOD + (1 << 20)) // 32 + 1)
)


def pattern(offset: int, size: int) -> bytes:
    """
    Deterministic bytes for positions C{offset} to C{offset + size} of a long
    stream (C{size} at most 1 MiB).
    """
    start = offset % _PERIOD
    return _BASE[start : start + size]


def pattern_digest(total: int) -> str:
    digest = hashlib.sha256()
    step = 1 << 16
    for offset in range(0, total, step):
        digest.update(pattern(offset, min(step, total - offset)))
    return digest.hexdigest()


# ---------------------------------------------------------------- backend


class EchoHeaders(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        headers: dict[str, list[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers[name.decode().lower()] = [v.decode() for v in values]
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"keep-alive", b"timeout=5")
        request.setHeader(b"proxy-connection", b"keep-alive")
        request.setHeader(b"x-kept", b"yes")
        body = request.content.read() if request.content is not None else b""
        return json.dumps(
            {
                "method": request.method.decode(),
                "uri": request.uri.decode(),
                "headers": headers,
                "body_length": len(body),
            }
        ).encode()


class Sink(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        digest = hashlib.sha256()
        length = 0
        assert request.content is not None
        while True:
            chunk = request.content.read(1 << 16)
            if not chunk:
                break
            digest.update(chunk)
            length += len(chunk)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()


@implementer(IPushProducer)
class PatternProducer:
    def __init__(self, request: Request, total: int) -> None:
        self.request = request
        self.total = total
        self.sent = 0
        self.paused = False
        self.stopped = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda f: self.stopProducing())
        self._pump()

    def _pump(self) -> None:
        while not self.paused and not self.stopped and self.sent < self.total:
            size = min(1 << 16, self.total - self.sent)
            data = pattern(self.sent, size)
            self.sent += size
            STATS["produced"] += size
            self.request.write(data)
        if self.sent >= self.total and not self.stopped:
            self.stopped = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self.stopped = True


class Source(Resource):
    isLeaf = True

    def render(self, request: Request) -> int:
        total = int(request.args.get(b"size", [b"0"])[0])
        if request.args.get(b"chunked", [b"0"])[0] != b"1":
            request.setHeader(b"content-length", b"%d" % (total,))
        request.setHeader(b"content-type", b"application/octet-stream")
        STATS["produced"] = 0
        PatternProducer(request, total).start()
        return NOT_DONE_YET


class Stream(Resource):
    """
    A watch-like chunked response: one event now, the next when told.
    """

    isLeaf = True

    def render(self, request: Request) -> int:
        request.setHeader(b"content-type", b"application/json")
        request.write(b'{"event": 1}\n')
        STREAMS.append(request)
        return NOT_DONE_YET


class Control(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        action = request.postpath[0] if request.postpath else b""
        if action == b"next":
            number = int(request.args.get(b"n", [b"0"])[0])
            for stream in STREAMS:
                stream.write(b'{"event": %d}\n' % (number,))
        elif action == b"end":
            for stream in STREAMS:
                stream.finish()
            STREAMS.clear()
        return json.dumps(STATS).encode()


class Hang(Resource):
    isLeaf = True

    def render(self, request: Request) -> int:
        def gone(failure: object) -> None:
            STATS["aborted"] += 1

        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET


class Truncate(Resource):
    isLeaf = True

    def render(self, request: Request) -> int:
        if request.args.get(b"mode", [b"length"])[0] == b"length":
            request.setHeader(b"content-length", b"100")
        request.write(b"x" * 50)

        def abort() -> None:
            request.channel.transport.abortConnection()

        reactor.callLater(0.05, abort)
        return NOT_DONE_YET


class Redirect(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        port = request.getHost().port
        request.setResponseCode(302)
        request.setHeader(b"location", b"http://127.0.0.1:%d/target?x=1" % (port,))
        return b""


class RawUpgrade(Protocol):
    """
    Answers C{/upgrade} with 101 and then echoes; C{/refuse} with a 400.
    """

    def connectionMade(self) -> None:
        self.buffer = b""
        self.upgraded = False

    def dataReceived(self, data: bytes) -> None:
        if self.upgraded:
            self.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1]
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if target.startswith(b"/upgrade") and fields.get(b"upgrade"):
            self.upgraded = True
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Connection: Upgrade\r\n"
                b"Upgrade: " + fields[b"upgrade"] + b"\r\n"
                b"Keep-Alive: timeout=1\r\n"
                b"X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                b"X-Seen-Connection: " + fields.get(b"connection", b"") + b"\r\n"
                b"\r\nhello from upstream\n"
            )
            if rest:
                self.transport.write(rest)
        else:
            body = b'{"kind":"Status","code":400,"message":"upgrade refused"}'
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (len(body),) + body
            )


def backend() -> None:
    root = Resource()
    for name, child in [
        (b"headers", EchoHeaders()),
        (b"sink", Sink()),
        (b"source", Source()),
        (b"stream", Stream()),
        (b"control", Control()),
        (b"hang", Hang()),
        (b"truncate", Truncate()),
        (b"redirect", Redirect()),
    ]:
        root.putChild(name, child)
    ports: dict[str, Any] = {}
    web = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    raw = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    ca = make_ca("proxy-test-ca")
    leaf = issue_certificate(ca, "localhost", hosts=["localhost"], server=True)
    ca_file = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
    ca_file.write(ca.certificate_pem)
    ca_file.close()
    ports["ca"] = ca_file.name
    tls = SSL4ServerEndpoint(
        reactor,
        0,
        PrivateCertificate.loadPEM(leaf.key_pem + leaf.certificate_pem).options(),
        interface="127.0.0.1",
    )

    def listening(port: Any, name: str) -> None:
        ports[name] = port.getHost().port
        if len(ports) == 4:
            announce(ports)

    # StreamingSite only for its larger header limit: every resource here is
    # an ordinary one.
    site = StreamingSite(root, reactor=reactor)
    web.listen(site).addCallback(listening, "web")
    tls.listen(site).addCallback(listening, "tls")
    raw.listen(Factory.forProtocol(RawUpgrade)).addCallback(listening, "raw")


# ------------------------------------------------------------------ proxy


class DialRefused(Exception):
    pass


class Routes(ProxyResource):
    def __init__(
        self, proxy: ReverseProxy, web: int, raw: int, tls: int, ca: bytes
    ) -> None:
        super().__init__(proxy)
        self.web = web
        self.raw = raw
        self.tls = tls
        self.tls_options = optionsForClientTLS(
            "localhost", trustRoot=Certificate.loadPEM(ca)
        )

    def route(self, request: Request) -> Route:
        first = request.prepath[0]
        path = remaining_path(request)
        if isinstance(request, StreamingRequest) and request.bodyProducer is not None:
            body = request.bodyProducer
            request.notifyFinish().addBoth(
                lambda _: STATS.__setitem__(
                    "max_held", max(STATS["max_held"], body.max_held)
                )
            )
        if first == b"error":
            raise ProxyError(503, "agent for cluster x is not connected")
        if first in (b"backend", b"raw", b"dead", b"refused", b"tls"):
            port = {b"backend": self.web, b"raw": self.raw, b"dead": 1}.get(first, 0)
            endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
            if first == b"tls":
                endpoint = wrapClientTLS(
                    self.tls_options, TCP4ClientEndpoint(reactor, "127.0.0.1", self.tls)
                )
            if first == b"refused":
                endpoint = RefusingEndpoint()
            prefix = b"http://127.0.0.1:%d" % (self.web,)
            return Route(
                endpoint=endpoint,
                path=path,
                host=b"upstream.test",
                set_headers={
                    b"X-Remote-User": b"proxied-user",
                    b"X-Remote-Group": [b"g1", b"g2"],
                },
                strip_headers=(b"authorization", b"x-remote-*"),
                rewrite_location=lambda location: location.replace(
                    prefix, b"http://proxy.test/backend"
                ),
            )
        raise ProxyError(404, "no such route")


class RefusingEndpoint:
    def connect(self, factory: object) -> object:
        raise DialRefused("dial refused by policy")


class Plain(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        assert request.content is not None
        return b"plain got %d bytes" % (len(request.content.read()),)


class ProxyStats(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return json.dumps(STATS).encode()


def refused_status(failure: Any) -> ProxyError | None:
    if failure.check(DialRefused):
        return ProxyError(403, "dial refused by policy")
    return None


def proxy(web: int, raw: int, tls: int, ca_path: str) -> None:
    reverse = ReverseProxy(reactor, connect_timeout=5.0, error_status=refused_status)
    root = Resource()
    with open(ca_path, "rb") as ca_file:
        ca = ca_file.read()
    routes = Routes(reverse, web, raw, tls, ca)
    for name in (b"backend", b"raw", b"dead", b"error", b"refused", b"tls"):
        root.putChild(name, routes)
    root.putChild(b"plain", Plain())
    root.putChild(b"proxy-stats", ProxyStats())
    site = StreamingSite(root, reactor=reactor)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    endpoint.listen(site).addCallback(
        lambda port: announce({"proxy": port.getHost().port})
    )


class StopOnEOF(Protocol):
    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:
            reactor.stop()


CONTROL = StopOnEOF()


def announce(ports: dict[str, int]) -> None:
    CONTROL.transport.write(json.dumps(ports).encode() + b"\n")


def main(argv: list[str]) -> None:
    StandardIO(CONTROL, reactor=reactor)
    if argv[0] == "backend":
        backend()
    else:
        proxy(int(argv[1]), int(argv[2]), int(argv[3]), argv[4])
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
