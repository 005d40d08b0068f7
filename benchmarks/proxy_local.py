"""
Reverse proxy benchmark on loopback: small GET latency (p50/p99) and bulk
download throughput through clusternet.proxy, against the same requests sent
directly to the backend.

    python benchmarks/proxy_local.py [--requests 500] [--bulk-mib 256]

The backend and the proxy are the integration tests' harness processes
(tests/integration/proxy/proxy_harness.py), each in its own process.  Prints
one JSON object per line (name, value, unit, baseline).
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "proxy"))

from _common import emit  # noqa: E402
from test_proxy_loopback import Harness  # noqa: E402

BUDGET_SECONDS = 60.0


def latencies(port: int, path: str, count: int, deadline: float) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        samples.append(time.perf_counter() - started)
        assert response.status == 200, response.status
    connection.close()
    return sorted(samples)


def percentile(samples: list[float], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))]


def bulk(port: int, path: str, total: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    received = 0
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    elapsed = time.perf_counter() - started
    connection.close()
    assert received == total, (received, total)
    return total / (1 << 20) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--bulk-mib", type=int, default=256)
    options = parser.parse_args()
    deadline = time.monotonic() + BUDGET_SECONDS
    harness = Harness()
    try:
        direct = latencies(harness.web, "/headers", options.requests, deadline)
        proxied = latencies(
            harness.port, "/backend/headers", options.requests, deadline
        )
        for name, fraction in (("p50", 0.5), ("p99", 0.99)):
            emit(
                f"proxy_get_latency_{name}",
                percentile(proxied, fraction) * 1000,
                "ms",
                percentile(direct, fraction) * 1000,
                samples=len(proxied),
            )
        total = options.bulk_mib << 20
        for chunked in ("0", "1"):
            query = f"source?size={total}&chunked={chunked}"
            direct_rate = bulk(harness.web, "/" + query, total)
            proxied_rate = bulk(harness.port, "/backend/" + query, total)
            kind = "chunked" if chunked == "1" else "content_length"
            emit(f"proxy_bulk_get_{kind}", proxied_rate, "MiB/s", direct_rate)
        emit(
            "proxy_peak_rss",
            harness.rss_kib("VmHWM") / 1024,
            "MiB",
            None,
        )
    finally:
        harness.close()


if __name__ == "__main__":
    main()
