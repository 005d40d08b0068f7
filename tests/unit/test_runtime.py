"""
Process-level behaviour shared by the C{twist} plugins.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, globalLogPublisher

from clusternet._runtime import CleanExitOnSIGTERM, SequentialMultiService, StartupLine


class _Reactor(MemoryReactorClock):
    """
    A memory reactor that records C{callFromThread} calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.from_thread: list[Any] = []

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self.from_thread.append(f)


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_restored")
def test_sigterm_is_a_clean_stop_from_the_moment_the_service_starts() -> None:
    reactor = _Reactor()
    clean = CleanExitOnSIGTERM(reactor)
    top = SequentialMultiService()
    clean.setServiceParent(top)
    events: list[dict[str, Any]] = []
    StartupLine(Logger(namespace="test"), "started {x}", x=1).setServiceParent(top)
    globalLogPublisher.addObserver(events.append)
    try:
        top.startService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    # Before the reactor runs, a SIGTERM already stops it (once it runs).
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    handler(signal.SIGTERM, None)
    [stop] = reactor.from_thread
    stop()
    assert reactor.hasStopped

    # A second SIGTERM while stopping is harmless.
    def not_running() -> None:
        raise ReactorNotRunning()

    reactor.stop = not_running  # type: ignore[method-assign]
    handler(signal.SIGTERM, None)
    reactor.from_thread[-1]()
    # The reactor replaces the handler while it starts; ours comes back after.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert reactor.triggers["after"]["startup"]
    for trigger, args, kwargs in reactor.triggers["after"]["startup"]:
        trigger(*args, **kwargs)
    assert signal.getsignal(signal.SIGTERM) == handler
    started = [e for e in events if e.get("log_format") == "started {x}"]
    assert [(e["x"], e["log_level"]) for e in started] == [(1, LogLevel.info)]


@pytest.mark.usefixtures("sigterm_restored")
def test_a_stopped_service_leaves_the_handler_alone_after_startup() -> None:
    reactor = _Reactor()
    clean = CleanExitOnSIGTERM(reactor)
    clean.startService()
    clean.stopService()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for trigger, args, kwargs in reactor.triggers["after"]["startup"]:
        trigger(*args, **kwargs)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


class _SignalReactor(_Reactor):
    """
    A memory reactor with the C{sigTerm} handler that real reactors install as
    they start.
    """

    def sigTerm(self, number: int, frame: Any = None) -> None:
        raise AssertionError("the reactor's own SIGTERM handler ran")


@pytest.mark.usefixtures("sigterm_restored")
def test_the_reactor_is_given_our_handler_to_install() -> None:
    reactor = _SignalReactor()
    CleanExitOnSIGTERM(reactor).startService()
    reactor.sigTerm(signal.SIGTERM, None)
    assert len(reactor.from_thread) == 1


# A SIGTERM delivered while the real reactor starts, after it has installed
# its signal handlers and before anything that runs "after startup": the
# moment C{twist}'s own handling would end the process by the signal.
_SIGTERM_WHILE_STARTING = textwrap.dedent(
    """
    import os, signal, sys
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from clusternet._runtime import CleanExitOnSIGTERM

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    service = CleanExitOnSIGTERM(reactor)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.addSystemEventTrigger(
        "during", "startup", os.kill, os.getpid(), signal.SIGTERM
    )
    reactor.callLater(10, reactor.stop)
    reactor.run()
    print("exit signal:", reactor._exitSignal)
    """
)


def test_sigterm_while_the_real_reactor_starts_is_a_clean_stop() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SIGTERM_WHILE_STARTING],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIGTERM received" in result.stdout, result.stdout
    assert "exit signal: None" in result.stdout, result.stdout
