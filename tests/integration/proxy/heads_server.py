"""
A StreamingSite alone in its process, for measuring what unfinished request
heads make it hold (run as a script, not collected).

  python heads_server.py [HEAD_TIMEOUT [TRIM]]

serves on 127.0.0.1 a streaming resource that answers every request 401 (as
the hub answers a request without credentials), prints {"port": ..., "pid":
...}, then answers each line on stdin with a JSON line:

  stats   {"rss_kib", "connections" (open), "buffered" (bytes of unfinished
          heads held by the HTTP channels)}
  trim    the same after glibc's malloc_trim(0)

TRIM is "trim" (the default) or "no-trim": the site's trim_memory.

It runs until stdin closes, so a test that dies never leaves it behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import sys
import weakref
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.stdio import StandardIO
from twisted.logger import globalLogBeginner
from twisted.protocols.basic import LineReceiver
from twisted.web.resource import Resource
from zope.interface import implementer

from clusternet._web import write_status
from clusternet.proxy import (
    ConnectionBudget,
    IStreamingResource,
    StreamingRequest,
    StreamingSite,
)

reactor: Any = _reactor
CHANNELS: weakref.WeakSet[Any] = weakref.WeakSet()


@implementer(IStreamingResource)
class Unauthorized(Resource):
    isLeaf = True

    def renderStreaming(self, request: StreamingRequest) -> None:
        request.write(write_status(request, 401, "Unauthorized"))
        request.finish()


class CountingSite(StreamingSite):
    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        CHANNELS.add(protocol._channel)
        return protocol


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).malloc_trim(0)


class Control(LineReceiver):
    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        gc.collect()
        if line.strip() == b"trim":
            malloc_trim()
        channels = list(CHANNELS)
        stats = {
            "rss_kib": rss_kib(),
            "connections": sum(
                1 for c in channels if getattr(c.transport, "connected", False)
            ),
            "buffered": sum(c.buffered for c in channels),
        }
        self.sendLine(json.dumps(stats).encode())

    def connectionLost(self, reason: object = None) -> None:
        if reactor.running:
            reactor.stop()


def main(argv: list[str]) -> None:
    head_timeout = float(argv[0]) if argv else 10.0
    trim = argv[1] != "no-trim" if len(argv) > 1 else True
    # As under twist: events go to observers, none is kept in a buffer.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    control = Control()
    StandardIO(control, reactor=reactor)
    site = CountingSite(
        Unauthorized(),
        reactor=reactor,
        budget=ConnectionBudget(head_timeout=head_timeout, trim_memory=trim),
    )
    site.noisy = False

    def listening(port: Any) -> None:
        address = port.getHost()
        control.sendLine(json.dumps({"port": address.port}).encode())

    endpoint = TCP4ServerEndpoint(reactor, 0, backlog=512, interface="127.0.0.1")
    endpoint.listen(site).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
