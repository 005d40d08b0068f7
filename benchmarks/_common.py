"""
Helpers shared by the benchmarks: one JSON object per line.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import socket
import ssl
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import yaml


def emit(
    name: str, value: float, unit: str, baseline: float | None = None, **extra: Any
) -> None:
    """
    Print one result line: C{name}, C{value}, C{unit} and, where the same
    measurement without the system under test exists, C{baseline}.
    """
    record: dict[str, Any] = {"name": name, "value": round(value, 3), "unit": unit}
    record["baseline"] = None if baseline is None else round(baseline, 3)
    record.update(extra)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def rss_kib() -> int:
    """
    This process's resident set size in KiB (Linux).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- helpers of the fleet benchmarks (proxy.py, registration.py) --------------


def say(line: str) -> None:
    """
    Progress for the person running a benchmark: stderr, so that stdout stays
    one JSON object per line.
    """
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def percentile(samples: list[float], fraction: float) -> float:
    """
    The nearest-rank percentile of C{samples} (C{fraction} in (0, 1]).
    """
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def process_cpu_seconds(pid: int) -> float:
    """
    User + system CPU time of process C{pid} in seconds (Linux); 0 once it is
    gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kib(pid: int) -> int:
    """
    Resident set size of process C{pid} in KiB (Linux); 0 once it is gone.
    """
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def mem_available_kib() -> int:
    """
    The machine's MemAvailable in KiB (Linux).
    """
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchError(Exception):
    """
    A benchmark could not measure what it should; the message says why.
    """


class Client:
    """
    One persistent HTTP/1.1 connection (HTTPS with the kubeconfig's client
    certificate, or plain HTTP) to one server, as one user of the benchmark.

    @ivar reconnects: how often the server closed the connection and the
        client had to open a new one (a keep-alive that does not hold shows
        here).
    """

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise BenchError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._prefix = parsed.path.rstrip("/")
        self._context = context
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._connection

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """
        Send one request on the persistent connection; return the status
        and the whole body.  JSON-encodes a C{body} that is not bytes.
        """
        all_headers = {"Accept": "application/json", **self._headers}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(
                    method, self._prefix + path, body=data, headers=all_headers
                )
                response = connection.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
                self.reconnects += 1
                continue
            if response.will_close:
                self.close()
            return response.status, payload
        raise AssertionError("unreachable")

    def get_json(self, path: str) -> Any:
        """
        GET C{path}; the decoded JSON body, or L{BenchError} unless 200.
        """
        status, payload = self.request("GET", path)
        if status != 200:
            raise BenchError(f"GET {self.url}{path}: {status} {payload[:300]!r}")
        return json.loads(payload)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def kubeconfig_client(
    kubeconfig: Path, prefix: str = "", timeout: float = 30.0
) -> Client:
    """
    A L{Client} for the current context of C{kubeconfig} (inline or file
    CA, client certificate and key, or a bearer token), its server URL
    extended by C{prefix}.
    """
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config.get("current-context")
    context = next(
        c["context"] for c in config["contexts"] if c["name"] == context_name
    )
    cluster = next(
        c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"]
    )
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    base = kubeconfig.parent

    def material(key: str) -> bytes | None:
        entry: dict[str, Any] = cluster if key == "certificate-authority" else user
        if entry.get(key + "-data"):
            return base64.b64decode(entry[key + "-data"])
        if entry.get(key):
            return (base / entry[key]).read_bytes()
        return None

    server = str(cluster["server"]).rstrip("/") + prefix
    headers: dict[str, str] = {}
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    if not server.startswith("https:"):
        return Client(server, None, headers, timeout)
    ssl_context = ssl.create_default_context()
    ca = material("certificate-authority")
    if ca is not None:
        ssl_context.load_verify_locations(cadata=ca.decode())
    certificate, key = material("client-certificate"), material("client-key")
    if certificate is not None and key is not None:
        # load_cert_chain reads files only: a private folder, gone at once.
        with tempfile.TemporaryDirectory(prefix="clusternet-bench-") as folder:
            cert_path, key_path = Path(folder) / "c.crt", Path(folder) / "c.key"
            key_path.touch(mode=0o600)
            key_path.write_bytes(key)
            cert_path.write_bytes(certificate)
            ssl_context.load_cert_chain(str(cert_path), str(key_path))
    return Client(server, ssl_context, headers, timeout)
