"""
Process-level behaviour shared by the C{twist} plugins.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

__all__ = [
    "CleanExitOnSIGTERM",
    "SequentialMultiService",
    "StartupLine",
    "stop_within",
]

_log = Logger()


class CleanExitOnSIGTERM(Service):
    """
    Make SIGTERM a graceful stop that exits with status 0.

    C{twist} re-sends SIGTERM to itself after the reactor stops, so the process
    dies by the signal; Kubernetes and systemd both send SIGTERM as the ordinary
    way to stop a service, so we treat it as a normal shutdown: services stop
    (draining what they hold) and the process exits 0.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorCore) -> None:
        self._reactor = reactor

    def startService(self) -> None:
        super().startService()
        # C{twist} starts the services before the reactor runs: a SIGTERM from
        # then on (a supervisor stopping a process that is still starting) is
        # a clean stop too, carried out as soon as the reactor runs.
        self._install()
        # The reactor installs its own SIGTERM handler while it starts, and a
        # SIGTERM that handler sees makes C{twist} end the process by the
        # signal.  Hand it ours instead, so that no moment of the start-up is
        # left to it; and, for a reactor that does not take one, put ours back
        # once it has started.
        if callable(getattr(self._reactor, "sigTerm", None)):
            self._reactor.sigTerm = self._on_sigterm  # type: ignore[attr-defined]
        self._reactor.addSystemEventTrigger("after", "startup", self._install)

    def _install(self) -> None:
        if not self.running:
            return
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, number: int, frame: FrameType | None = None) -> None:
        self._log.info("SIGTERM received: draining and stopping")
        self._reactor.callFromThread(self._stop)  # type: ignore[attr-defined]

    def _stop(self) -> None:
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            # Already stopping: a second SIGTERM changes nothing.
            pass


class StartupLine(Service):
    """
    Log one line when started.  Added after L{CleanExitOnSIGTERM}, the line
    tells whoever watches the log that a SIGTERM from now on stops the process
    cleanly.
    """

    def __init__(self, log: Logger, format: str, **fields: object) -> None:
        self._log = log
        self._format = format
        self._fields = fields

    def startService(self) -> None:
        super().startService()
        self._log.info(self._format, **self._fields)


def stop_within(
    clock: IReactorTime, seconds: float, waiting: list[Deferred[Any]]
) -> Deferred[Any]:
    """
    A Deferred that fires when every one of C{waiting} has, or after C{seconds},
    whichever comes first, so that a stuck peer never holds up shutdown.
    """
    done: Deferred[Any] = DeferredList(waiting, consumeErrors=True)
    timer = clock.callLater(seconds, done.cancel)

    def finished(result: object) -> None:
        if timer.active():
            timer.cancel()

    done.addBoth(finished)
    return done


class SequentialMultiService(MultiService):
    """
    A L{MultiService} that stops its children one at a time, last added first,
    waiting for each: a child that needs another on its way out (a leader
    releasing its Lease through the Kubernetes client's thread pool) finds it
    still running.  C{MultiService} stops them all at once.
    """

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        services = list(self)
        services.reverse()

        async def stop_each() -> None:
            for service in services:
                try:
                    await maybeDeferred(service.stopService)
                except Exception:
                    _log.failure("Stopping {service} failed", service=service)

        return ensureDeferred(stop_each())
