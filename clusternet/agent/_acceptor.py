"""
What the agent does with each stream the hub opens (targets as in
docs/tunnel-protocol.md, "Targets"):

C{direct}
    an HTTP server inside the stream, proxying to the child API server the agent
    is configured for, with the identity mode's credentials;
C{tls:<host>:<port>}
    a TLS connection the agent dials to an allowed target, verified with the
    agent's trust (the child's CA for the child API server);
C{<host>:<port>}
    a plain TCP connection to an allowed target.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IReactorTime,
)
from twisted.logger import Logger
from zope.interface import implementer

from clusternet.tunnel import (
    DialingAcceptor,
    IDialPolicy,
    IStreamAcceptor,
    OpenFailReason,
    OpenRefused,
    TunnelMetrics,
    tcp_endpoint,
)

__all__ = ["DIRECT_TARGET", "TLS_PREFIX", "AgentAcceptor"]

DIRECT_TARGET = "direct"
TLS_PREFIX = "tls:"

TLSOptionsFor = Callable[[str], IOpenSSLClientConnectionCreator]
"""
The client TLS options for a host name (its trust roots and SNI).
"""


@implementer(IStreamAcceptor)
class AgentAcceptor:
    """
    The agent's L{IStreamAcceptor}.

    @param direct: makes the protocol that serves a C{direct} stream, or C{None}
        when the agent serves no child API server.
    @param policy: which C{host:port} targets may be dialled (plain or TLS).
    @param tls_options: client TLS options per host for C{tls:} targets.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        direct: Callable[[], IProtocol] | None,
        policy: IDialPolicy,
        tls_options: TLSOptionsFor,
        metrics: TunnelMetrics | None = None,
        dial_timeout: float = 10.0,
    ) -> None:
        self._direct = direct
        self.metrics = metrics if metrics is not None else TunnelMetrics()
        self._plain = DialingAcceptor(
            policy,
            lambda host, port: tcp_endpoint(reactor, host, port),
            reactor,
            dial_timeout=dial_timeout,
            metrics=self.metrics,
        )
        self._tls = DialingAcceptor(
            policy,
            lambda host, port: wrapClientTLS(
                tls_options(host), tcp_endpoint(reactor, host, port)
            ),
            reactor,
            dial_timeout=dial_timeout,
            metrics=self.metrics,
        )

    def accept(self, target: str) -> Deferred[IProtocol]:
        if target == DIRECT_TARGET:
            if self._direct is None:
                return fail(
                    OpenRefused(
                        OpenFailReason.REFUSED, "this agent serves no child API server"
                    )
                )
            return succeed(self._direct())
        if target.startswith(TLS_PREFIX):
            return self._tls.accept(target[len(TLS_PREFIX) :])
        return self._plain.accept(target)
