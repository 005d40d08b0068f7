"""
The hub's registry of live tunnels.
"""

import pytest

from twisted.internet.task import Clock

from clusternet.hub._registry import ClusterNotConnected, SocketRegistry, UnknownCluster


class FakeSession:
    def __init__(self) -> None:
        self.stream_count = 0
        self.gone: list[str] = []

    def go_away(self, message: str) -> None:
        self.gone.append(message)


def test_attach_then_lookup_and_list() -> None:
    clock = Clock()
    clock.advance(100)
    registry = SocketRegistry(clock)
    session = FakeSession()
    session.stream_count = 3
    registry.attach("a", session, "127.0.0.1:5000", "system:serviceaccount:x:y")
    assert registry.session_for("a") is session
    [info] = registry.infos()
    assert (info.cluster_id, info.peer, info.streams, info.attached_at) == (
        "a",
        "127.0.0.1:5000",
        3,
        100,
    )


def test_second_attach_replaces_and_drains_the_first() -> None:
    registry = SocketRegistry(Clock())
    old, new = FakeSession(), FakeSession()
    registry.attach("a", old, "p1", "u")
    registry.attach("a", new, "p2", "u")
    assert registry.session_for("a") is new
    assert old.gone and not new.gone
    registry.detach("a", old)  # the old one closing later must not remove the new one
    assert registry.session_for("a") is new
    registry.detach("a", new)
    with pytest.raises(ClusterNotConnected, match="not connected"):
        registry.session_for("a")


def test_unknown_cluster_is_distinguished_from_disconnected() -> None:
    registry = SocketRegistry(Clock(), known={"b"})
    with pytest.raises(UnknownCluster):
        registry.session_for("zzz")
    with pytest.raises(ClusterNotConnected):
        registry.session_for("b")


def test_listeners_hear_attach_and_detach() -> None:
    registry = SocketRegistry(Clock())
    heard: list[tuple[str, bool]] = []
    registry.on_change(lambda cluster, attached: heard.append((cluster, attached)))
    session = FakeSession()
    registry.attach("a", session, "p", "u")
    registry.detach("a", session)
    assert heard == [("a", True), ("a", False)]


def test_a_tunnel_replaced_from_another_peer_is_a_warning_naming_both() -> None:
    from twisted.logger import LogLevel, globalLogPublisher

    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        registry = SocketRegistry(Clock())
        registry.attach("a", FakeSession(), "10.0.0.1", "u")
        registry.attach("a", FakeSession(), "10.0.0.1", "u")
        registry.attach("a", FakeSession(), "192.0.2.9", "u")
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
    assert len(warnings) == 1
    assert (warnings[0]["old_peer"], warnings[0]["peer"]) == ("10.0.0.1", "192.0.2.9")
