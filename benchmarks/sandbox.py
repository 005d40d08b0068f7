"""
Sandbox API server benchmark: creates/s, gets/s, watch event latency
(p50/p99) and memory per 1,000 objects, for 10,000 ConfigMaps.

    python benchmarks/sandbox.py [--objects 10000] [--gets 5000] [--keep]

Starts one sandbox (C{python -m clusternet.sandbox apiserver}, a real
process on 127.0.0.1, state persisted under its data dir as usual) and talks
to it with the admin client certificate over persistent HTTPS connections:

- a watcher (its own connection, in a thread) watches the ConfigMaps of the
  benchmark namespace from the namespace's creation on;
- one client creates C{--objects} ConfigMaps one after another
  (C{creates/s}); for each, the time from sending the create to the watcher
  reading its ADDED event is the watch event latency;
- the same client then GETs C{--gets} of them at random (C{gets/s}) and lists
  them all once;
- the sandbox's RSS before and after the creates gives the memory per 1,000
  objects (the store, the watch history, the indexes).

Prints one JSON object per line on stdout (name, value, unit, baseline =
null: there is no kube-apiserver on this machine to compare with); progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchError,
    Client,
    emit,
    kubeconfig_client,
    percentile,
    process_rss_kib,
    say,
)

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-sandbox"


def start_sandbox(data_dir: Path, history: int, timeout: float = 60.0) -> Any:
    """
    Start the sandbox on a free port; return the process once it wrote its
    kubeconfig.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / "admin.kubeconfig"
    log = (data_dir / "apiserver.log").open("ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clusternet.sandbox",
            "apiserver",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--watch-history",
            str(history),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists():
        if process.poll() is not None:
            raise BenchError(f"the sandbox exited with {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise BenchError(f"the sandbox did not start within {timeout}s")
        time.sleep(0.05)
    return process


def stop(process: Any) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Watcher(threading.Thread):
    """
    One watch of the benchmark namespace's ConfigMaps from C{resource_version}:
    the C{perf_counter} time each ADDED event was read, by object name.
    """

    def __init__(
        self, client: Client, resource_version: str, expected: int, timeout: float
    ) -> None:
        super().__init__(name="watcher", daemon=True)
        self.arrived: dict[str, float] = {}
        self.error: str | None = None
        self._expected = expected
        self._ready = threading.Event()
        # The same TLS settings and client certificate as the creating
        # client, on a connection of its own.
        context = client._context
        assert isinstance(context, ssl.SSLContext)
        self._connection = http.client.HTTPSConnection(
            client._host, client._port, timeout=timeout, context=context
        )
        self._path = (
            f"{client._prefix}/api/v1/namespaces/{NAMESPACE}/configmaps"
            f"?watch=1&resourceVersion={resource_version}"
            f"&timeoutSeconds={int(timeout)}"
        )

    def started(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise BenchError("the watch did not start")
        if self.error:
            raise BenchError(self.error)

    def run(self) -> None:
        try:
            self._connection.request(
                "GET", self._path, headers={"Accept": "application/json"}
            )
            response = self._connection.getresponse()
            if response.status != 200:
                self.error = f"watch: {response.status} {response.read()[:300]!r}"
                return
            self._ready.set()
            while len(self.arrived) < self._expected:
                line = response.readline()
                if not line:
                    self.error = "the watch ended early"
                    return
                now = time.perf_counter()
                event = json.loads(line)
                if event.get("type") == "ADDED":
                    name = event["object"]["metadata"]["name"]
                    if name.startswith("cm-"):  # not kube-root-ca.crt
                        self.arrived[name] = now
                elif event.get("type") == "ERROR":
                    self.error = f"watch error event: {event['object']}"
                    return
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.error = f"watch failed: {e!r}"
        finally:
            self._ready.set()
            self._connection.close()


def config_map(index: int, payload: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{index:05d}",
            "labels": {"app": "bench", "shard": str(index % 16)},
        },
        "data": {"payload": payload},
    }


def run(args: argparse.Namespace, data_dir: Path) -> None:
    deadline = time.monotonic() + args.budget
    say(f"starting the sandbox in {data_dir}")
    process = start_sandbox(data_dir, history=args.objects * 2 + 100)
    try:
        client = kubeconfig_client(data_dir / "admin.kubeconfig", timeout=60)
        client.get_json("/api/v1/namespaces")  # warm the connection
        status, body = client.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        if status != 201:
            raise BenchError(f"create namespace: {status} {body[:300]!r}")
        resource_version = json.loads(body)["metadata"]["resourceVersion"]
        # Let the namespace's own controllers settle (kube-root-ca.crt), then
        # measure the process before any benchmark object exists.
        time.sleep(1.0)
        rss_before = process_rss_kib(process.pid)

        watcher = Watcher(client, resource_version, args.objects, args.budget)
        watcher.start()
        watcher.started(30)
        payload = "x" * args.payload
        sent: dict[str, float] = {}
        say(f"creating {args.objects} ConfigMaps")
        path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
        started = time.perf_counter()
        for index in range(args.objects):
            obj = config_map(index, payload)
            sent[obj["metadata"]["name"]] = time.perf_counter()
            status, body = client.request("POST", path, obj)
            if status != 201:
                raise BenchError(f"create {index}: {status} {body[:300]!r}")
            if time.monotonic() > deadline:
                raise BenchError("out of time budget during the creates")
        create_seconds = time.perf_counter() - started
        watcher.join(max(1.0, deadline - time.monotonic()))
        if watcher.error or len(watcher.arrived) < args.objects:
            raise BenchError(
                watcher.error
                or f"the watch saw {len(watcher.arrived)} of {args.objects} creates"
            )
        time.sleep(0.5)  # the journal thread catches up
        rss_after = process_rss_kib(process.pid)
        latencies_ms = [(watcher.arrived[name] - sent[name]) * 1000.0 for name in sent]
        object_bytes = len(json.dumps(config_map(0, payload)))
        emit(
            "sandbox_creates_per_second",
            args.objects / create_seconds,
            "req/s",
            objects=args.objects,
            clients=1,
            watchers=1,
            object_bytes=object_bytes,
        )
        for fraction, label in ((0.5, "p50"), (0.99, "p99")):
            emit(
                f"sandbox_watch_event_latency_{label}",
                percentile(latencies_ms, fraction),
                "ms",
                events=len(latencies_ms),
                measured="create sent -> ADDED event read by the watcher",
            )
        emit(
            "sandbox_memory_per_1000_objects",
            (rss_after - rss_before) / 1024.0 / (args.objects / 1000.0),
            "MiB",
            objects=args.objects,
            object_bytes=object_bytes,
            rss_before_mib=round(rss_before / 1024.0, 1),
            rss_after_mib=round(rss_after / 1024.0, 1),
            watch_history=args.objects * 2 + 100,
        )

        say(f"getting {args.gets} ConfigMaps at random")
        rng = random.Random(0)
        names = sorted(sent)
        started = time.perf_counter()
        for _ in range(args.gets):
            name = rng.choice(names)
            status, body = client.request("GET", f"{path}/{name}")
            if status != 200:
                raise BenchError(f"get {name}: {status} {body[:300]!r}")
            if time.monotonic() > deadline:
                raise BenchError("out of time budget during the gets")
        get_seconds = time.perf_counter() - started
        emit(
            "sandbox_gets_per_second", args.gets / get_seconds, "req/s", gets=args.gets
        )

        started = time.perf_counter()
        status, body = client.request("GET", path)
        list_seconds = time.perf_counter() - started
        if status != 200:
            raise BenchError(f"list: {status} {body[:300]!r}")
        items = len(json.loads(body)["items"])
        if items < args.objects:
            raise BenchError(f"the list has {items} items, not {args.objects}")
        emit(
            "sandbox_list_all",
            list_seconds * 1000.0,
            "ms",
            items=items,
            body_mib=round(len(body) / 2**20, 2),
        )
        client.close()
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=5_000)
    parser.add_argument(
        "--payload", type=int, default=100, help="bytes of data per ConfigMap"
    )
    parser.add_argument(
        "--budget", type=float, default=300.0, help="time limit in seconds"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.objects < 1 or args.gets < 1:
        parser.error("--objects and --gets must be positive")
    data_dir = args.data_dir or Path(
        tempfile.mkdtemp(prefix="clusternet-sandbox-bench-")
    )
    failed = True
    try:
        run(args, data_dir)
        failed = False
    except BenchError as e:
        say(f"error: {e} (logs in {data_dir})")
        return 1
    finally:
        if not (args.keep or failed or args.data_dir):
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
