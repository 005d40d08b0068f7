"""
Keep a tunnel up from the dialing side: reconnect with capped exponential
backoff and full jitter, reset after a healthy period.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from attrs import field, frozen

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from clusternet.tunnel._metrics import TunnelMetrics
from clusternet.tunnel._session import TunnelSession

__all__ = ["Backoff", "ReconnectingTunnelClient"]


@frozen
class Backoff:
    """
    Delay before attempt C{n} (0-based count of failures in a row): uniform in
    [0, min(maximum, initial * multiplier ** n)] ("full jitter").  A session
    that stayed up for C{healthy_after} seconds resets the count.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    healthy_after: float = 60.0
    random: Callable[[], float] = field(default=random.random, eq=False)

    def delay(self, failures: int) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(failures, 64))
        return ceiling * self.random()


class ReconnectingTunnelClient(Service):
    """
    Runs C{connect()} (one attempt: a Deferred firing with a L{TunnelSession}
    whose carrier is up) until it succeeds, keeps the session, and starts over
    when it closes.  Like C{twisted.application.internet.ClientService}, with
    a healthy-period reset so a flapping link does not reconnect in a hot loop.
    """

    _log = Logger()

    def __init__(
        self,
        connect: Callable[[], Deferred[TunnelSession]],
        clock: IReactorTime,
        backoff: Backoff | None = None,
        *,
        metrics: TunnelMetrics | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        self._connect = connect
        self._clock = clock
        self.backoff = backoff if backoff is not None else Backoff()
        self.metrics = metrics if metrics is not None else TunnelMetrics()
        self.drain_timeout = drain_timeout
        self.failures = 0
        self.attempts = 0
        self.session: TunnelSession | None = None
        self._attempt: Deferred[TunnelSession] | None = None
        self._timer: IDelayedCall | None = None
        self._waiters: list[Deferred[TunnelSession]] = []

    def whenConnected(self) -> Deferred[TunnelSession]:
        """
        The current session once ready, or the next one.
        """
        if self.session is not None and self.session.ready:
            return succeed(self.session)
        d: Deferred[TunnelSession] = Deferred(
            lambda d: self._waiters.remove(d) if d in self._waiters else None
        )
        self._waiters.append(d)
        return d

    def startService(self) -> None:
        super().startService()
        self._try()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._attempt is not None:
            self._attempt.cancel()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(CancelledError("the tunnel client stopped"))
        session, self.session = self.session, None
        if session is not None and not session.closed:
            return session.drain(self.drain_timeout)
        return succeed(None)

    def _try(self) -> None:
        self._timer = None
        if not self.running:
            return
        self.attempts += 1
        try:
            attempt = self._connect()
        except Exception:
            attempt = Deferred()
            attempt.errback(Failure())
        self._attempt = attempt
        attempt.addCallback(lambda session: session.when_ready())
        attempt.addCallbacks(self._up, self._failed)

    def _up(self, session: TunnelSession) -> None:
        self._attempt = None
        if not self.running:
            session.close("the tunnel client stopped")
            return
        self.session = session
        self._log.info(
            "Tunnel up: {name} ({kind})",
            name=session.name,
            kind=getattr(session.transport, "kind", "?"),
        )
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(session)
        session.when_closed().addCallback(self._down, session)

    def _down(self, reason: str, session: TunnelSession) -> None:
        if self.session is session:
            self.session = None
        if not self.running:
            return
        if session.connected_for >= self.backoff.healthy_after:
            self.failures = 0
        self._retry(f"tunnel closed: {reason}")

    def _failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self.running:
            return
        self.metrics.connect_failures += 1
        self._retry(f"tunnel connect failed: {failure.getErrorMessage()}")

    def _retry(self, why: str) -> None:
        delay = self.backoff.delay(self.failures)
        self.failures += 1
        self._log.info("{why}; retrying in {delay:.2f}s", why=why, delay=delay)
        self._timer = self._clock.callLater(delay, self._try)
