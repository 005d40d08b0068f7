"""
The stream-opening side: an C{IStreamClientEndpoint} per target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from zope.interface import implementer

if TYPE_CHECKING:
    from clusternet.tunnel._session import TunnelSession, TunnelStream

__all__ = ["TunnelEndpoint"]


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """
    Connections made through this endpoint are tunnel streams to C{target}, so
    C{twisted.web.client.Agent}, treq or any client protocol run over the tunnel.

    C{connect} fails with L{clusternet.tunnel.StreamOpenFailed} when the far
    side refuses (its C{http_status} says how a proxy should answer) and with
    L{clusternet.tunnel.TunnelClosed} when the session is gone.
    """

    def __init__(self, session: TunnelSession, target: str) -> None:
        self.session = session
        self.target = target

    def __repr__(self) -> str:
        return f"<TunnelEndpoint {self.target} via {self.session!r}>"

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        opening = self.session.open_stream(self.target)

        def opened(stream: TunnelStream) -> IProtocol:
            protocol = protocolFactory.buildProtocol(stream.getPeer())
            if protocol is None:
                stream.abortConnection()
                raise ConnectError(string="the protocol factory built no protocol")
            stream._attach(protocol)
            return protocol

        return opening.addCallback(opened)
