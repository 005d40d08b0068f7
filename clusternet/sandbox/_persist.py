"""
Persistence of the sandbox's state under its data directory: a snapshot written
at start and stop, and between them an append-only journal of every change that a
dedicated thread writes, so the reactor never waits on the disk.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from clusternet.sandbox._store_api import JSONObject

__all__ = ["FileJournal", "load_state", "write_snapshot"]

SNAPSHOT = "snapshot.json"
JOURNAL = "journal.jsonl"
_STOP = object()


def load_state(directory: Path) -> tuple[int, list[tuple[str, JSONObject]]]:
    """
    The resourceVersion and objects saved in C{directory} (snapshot + journal);
    a torn last journal line (a crash mid-write) is ignored.
    """
    rv = 0
    objects: dict[tuple[str, str, str], JSONObject] = {}
    snapshot = directory / SNAPSHOT
    if snapshot.exists():
        data = json.loads(snapshot.read_text("utf-8"))
        rv = int(data["rv"])
        for resource, obj in data["objects"]:
            meta = obj["metadata"]
            objects[(resource, meta.get("namespace", ""), meta["name"])] = obj
    journal = directory / JOURNAL
    if journal.exists():
        with journal.open("r", encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break
                if entry["rv"] <= rv and entry["rv"] != 0:
                    continue
                key = (entry["r"], entry["k"][0], entry["k"][1])
                if entry["o"] is None:
                    objects.pop(key, None)
                else:
                    objects[key] = entry["o"]
                rv = max(rv, int(entry["rv"]))
    return rv, [(key[0], obj) for key, obj in objects.items()]


def write_snapshot(
    directory: Path, rv: int, objects: Iterator[tuple[str, JSONObject]]
) -> None:
    """
    Atomically replace the snapshot and empty the journal (call when no journal
    writer is running).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (SNAPSHOT + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(
            {"rv": rv, "objects": [[r, o] for r, o in objects]},
            f,
            separators=(",", ":"),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / SNAPSHOT)
    (directory / JOURNAL).write_text("", "utf-8")


class FileJournal:
    """
    Appends each change as one JSON line from a thread of its own.
    """

    _log = Logger()

    def __init__(self, directory: Path) -> None:
        self._path = directory / JOURNAL
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="sandbox-journal", daemon=True
        )
        self._thread.start()

    def record(
        self, rv: int, resource: str, key: tuple[str, str], obj: JSONObject | None
    ) -> None:
        self._queue.put((rv, resource, key, obj))

    def stop(self, timeout: float = 10.0) -> None:
        """
        Write what is queued and stop the thread (waits at most C{timeout}).
        """
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        with self._path.open("a", encoding="utf-8") as f:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    f.flush()
                    return
                rv, resource, key, obj = item
                try:
                    line = json.dumps(
                        {"rv": rv, "r": resource, "k": list(key), "o": obj},
                        separators=(",", ":"),
                    )
                except (TypeError, ValueError):
                    self._log.failure("journal: cannot serialize change {rv}", rv=rv)
                    continue
                f.write(line + "\n")
                self.written += 1
                if self._queue.empty():
                    f.flush()
