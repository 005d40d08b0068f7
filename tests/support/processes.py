"""
Run the installed C{twist} and C{clusternet} commands as real processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent


def command(name: str) -> str:
    """
    The path of an installed console script beside this interpreter.
    """
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed beside {sys.executable}")
    return str(path)


def clean_env() -> dict[str, str]:
    """
    The environment without PYTHONPATH, so the installed package is what runs.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


class Process:
    """
    A running C{twist} process logging JSON lines to a file.
    """

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    def events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
        return events

    def wait_for_event(self, needle: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if needle in json.dumps(event):
                    return event
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"process exited {self.popen.returncode} before logging "
                    f"{needle!r}:\n{self.log.read_text()}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"no {needle!r} within {timeout}s:\n{self.log.read_text()}"
        )

    def explain(self) -> str:
        """
        What the process left behind, for an assertion message: its exit
        status, the end of its standard error (once it has exited) and of its
        log.
        """
        stderr = b""
        if self.popen.poll() is not None and self.popen.stderr:
            stderr = self.popen.stderr.read()
        return (
            f"exit status {self.popen.returncode}\n"
            f"stderr:\n{stderr.decode(errors='replace')[-4000:]}\n"
            f"log:\n{self.log.read_text()[-8000:]}"
        )

    def terminate(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


@contextmanager
def twist(plugin: str, args: Sequence[str], workdir: Path) -> Iterator[Process]:
    """
    Run C{twist --log-format=json <plugin> <args>}, stopping it afterwards.
    """
    log = workdir / f"{plugin}.log"
    popen = subprocess.Popen(
        [command("twist"), "--log-format=json", f"--log-file={log}", plugin, *args],
        cwd=workdir,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log.touch()
    process = Process(popen, log)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
        if popen.stderr:
            popen.stderr.close()
