"""
Informer: list then watch, resume from the last resourceVersion, relist on 410,
resync, stop.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from clusternet.kube import (
    CONFIG_MAPS,
    EventHandler,
    IKubeAPI,
    Informer,
    IResourceEventHandler,
    KubeUnavailable,
)
from clusternet.kube.testing import MemoryKubeAPI


def cm(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def handler(self) -> EventHandler:
        return EventHandler(
            add=lambda o: self.events.append(("add", o["metadata"]["name"])),
            update=lambda old, new: self.events.append(
                ("update", new["metadata"]["name"])
            ),
            delete=lambda o: self.events.append(("delete", o["metadata"]["name"])),
        )


def setup(**kw: Any) -> tuple[Clock, MemoryKubeAPI, Informer, Recorder]:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    informer = Informer(clock, api, CONFIG_MAPS, **kw)
    recorder = Recorder()
    informer.add_handler(recorder.handler())
    return clock, api, informer, recorder


def test_memory_api_and_handler_provide_their_interfaces() -> None:
    assert verifyObject(IKubeAPI, MemoryKubeAPI())
    assert verifyObject(IResourceEventHandler, EventHandler())


def test_lists_then_watches_and_sees_events_in_order() -> None:
    _clock, api, informer, rec = setup()
    api.create(CONFIG_MAPS, cm("a"), "default")
    synced = informer.when_synced()
    informer.startService()
    assert synced.called
    assert rec.events == [("add", "a")]
    api.create(CONFIG_MAPS, cm("b"), "default")
    api.patch(CONFIG_MAPS, "a", {"data": {"x": "1"}}, "default")
    api.delete(CONFIG_MAPS, "b", "default")
    assert rec.events[1:] == [("add", "b"), ("update", "a"), ("delete", "b")]
    assert informer.store.get("a", "default")["data"] == {"x": "1"}  # type: ignore[index]
    assert informer.store.get("b", "default") is None
    assert informer.resource_version == api.resource_version


def test_watch_resumes_from_the_last_resource_version_without_relisting() -> None:
    clock, api, informer, rec = setup(watch_timeout=60)
    informer.startService()
    api.create(CONFIG_MAPS, cm("a"), "default")
    seen = informer.resource_version
    clock.advance(60)  # the server ends the watch
    assert informer.lists == 1
    assert informer.watches == 2
    assert api.calls[-1] == ("watch", "configmaps", seen)
    api.create(CONFIG_MAPS, cm("b"), "default")
    assert rec.events == [("add", "a"), ("add", "b")]


def test_events_missed_between_watches_are_replayed() -> None:
    _clock, api, informer, rec = setup(watch_timeout=60)
    informer.startService()
    api.expire_watches()
    # expire_watches ends the watch; the informer re-watched at once from its
    # resourceVersion, so nothing is missed.
    api.create(CONFIG_MAPS, cm("late"), "default")
    assert ("add", "late") in rec.events
    assert informer.lists == 1


def test_410_gone_relists_and_reports_the_difference() -> None:
    _clock, api, informer, rec = setup(watch_timeout=60)
    api.create(CONFIG_MAPS, cm("keep"), "default")
    api.create(CONFIG_MAPS, cm("gone"), "default")
    informer.startService()
    informer.stopService()
    # While the informer is away, things change and history is compacted.
    api.delete(CONFIG_MAPS, "gone", "default")
    api.patch(CONFIG_MAPS, "keep", {"data": {"v": "2"}}, "default")
    api.create(CONFIG_MAPS, cm("new"), "default")
    api.compact()
    rec.events.clear()
    informer.startService()  # resumes its watch from the old resourceVersion
    assert informer.lists == 2
    assert sorted(rec.events) == [
        ("add", "new"),
        ("delete", "gone"),
        ("update", "keep"),
    ]
    assert sorted(n for _, n in informer.store.keys()) == ["keep", "new"]


def test_410_during_a_running_watch_relists() -> None:
    _clock, api, informer, _rec = setup(watch_timeout=60)
    informer.startService()
    api.create(CONFIG_MAPS, cm("a"), "default")
    api.compact()
    # Simulate the server dropping the history under a running watch.
    informer._on_event("ERROR", {"kind": "Status", "code": 410})
    assert informer.lists == 2
    assert informer.store.get("a", "default") is not None


def test_errors_back_off_and_recover() -> None:
    clock, api, informer, _rec = setup()
    api.fail_next("list", KubeUnavailable("connection refused"), times=3)
    informer.startService()
    assert not informer.has_synced
    clock.advance(1)  # 1 s
    clock.advance(2)  # 2 s
    assert not informer.has_synced
    clock.advance(4)  # 4 s: the fourth list succeeds
    assert informer.has_synced


def test_resync_replays_every_object_as_an_update() -> None:
    clock, api, informer, rec = setup(resync_period=30, watch_timeout=3600)
    api.create(CONFIG_MAPS, cm("a"), "default")
    informer.startService()
    clock.advance(30)
    assert rec.events == [("add", "a"), ("update", "a")]


def test_stop_cancels_the_watch_and_fires() -> None:
    _clock, api, informer, rec = setup()
    informer.startService()
    assert api.open_watches == 1
    d = informer.stopService()
    assert d.called
    assert api.open_watches == 0
    api.create(CONFIG_MAPS, cm("after"), "default")
    assert rec.events == []


def test_a_failing_handler_does_not_stop_the_others() -> None:
    _clock, api, informer, rec = setup()

    def boom(obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    informer.add_handler(EventHandler(add=boom))
    informer.startService()
    api.create(CONFIG_MAPS, cm("a"), "default")
    assert rec.events == [("add", "a")]
    assert len(informer.store) == 1
    # Twisted's Logger routes failures to the global log publisher; pytest
    # does not fail on them.


def test_namespace_and_label_selector_filter() -> None:
    clock = Clock()
    api = MemoryKubeAPI(clock=clock)
    informer = Informer(clock, api, CONFIG_MAPS, namespace="a", label_selector="x=1")
    informer.startService()
    api.create(CONFIG_MAPS, {"metadata": {"name": "yes", "labels": {"x": "1"}}}, "a")
    api.create(CONFIG_MAPS, {"metadata": {"name": "no", "labels": {"x": "2"}}}, "a")
    api.create(CONFIG_MAPS, {"metadata": {"name": "other", "labels": {"x": "1"}}}, "b")
    assert informer.store.keys() == [("a", "yes")]
