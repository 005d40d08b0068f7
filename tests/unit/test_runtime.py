"""
Process-level behaviour shared by the C{twist} plugins.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

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
    assert reactor.from_thread == [reactor.stop]
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
