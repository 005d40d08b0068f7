"""
A rate-limited link between the hub and the agent, for the tunnel benchmark:
a network namespace of its own for the agent's side, joined to this one by a
veth pair shaped with a token bucket (tc tbf) in both directions.

An edge site reaches its hub over an uplink far slower than loopback; what a
small request waits for beside a download is then what queues before that
link, not the window of the download.  The target server stays beside the
agent, in its namespace, as an API server is.

Needs root, iproute2's `ip` and `tc`.  Everything it makes is gone when it is
closed: deleting the namespace deletes the veth pair with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["ShapedLink", "link_unavailable"]


def link_unavailable() -> str | None:
    """
    Why a shaped link cannot be made here, or C{None}.
    """
    if os.geteuid() != 0:
        return "needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2's {tool}"
    return None


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


class ShapedLink:
    """
    The agent's namespace and the link to it, shaped to C{rate} (tc's
    syntax: C{100mbit}, C{20mbit}) each way.
    """

    def __init__(self, rate: str) -> None:
        tag = os.getpid() % 100_000
        self.rate = rate
        self.netns = f"cnbench{tag}"
        self._outside = f"cnb{tag}a"
        inside = f"cnb{tag}b"
        # A /30 from the benchmarking range (RFC 2544), chosen by pid.
        base = 4 * (tag % 64)
        self.hub_host = f"198.18.{tag // 64 % 256}.{base + 1}"
        self.agent_host = f"198.18.{tag // 64 % 256}.{base + 2}"
        self.prefix = ["ip", "netns", "exec", self.netns]
        _run("ip", "netns", "add", self.netns)
        try:
            _run(
                "ip", "link", "add", self._outside, "type", "veth",
                "peer", "name", inside, "netns", self.netns,
            )  # fmt: skip
            _run("ip", "addr", "add", f"{self.hub_host}/30", "dev", self._outside)
            _run("ip", "link", "set", self._outside, "up")
            inner = [*self.prefix, "ip"]
            _run(*inner, "addr", "add", f"{self.agent_host}/30", "dev", inside)
            _run(*inner, "link", "set", inside, "up")
            _run(*inner, "link", "set", "lo", "up")
            for device, netns in ((self._outside, []), (inside, self.prefix)):
                _run(
                    *netns, "tc", "qdisc", "add", "dev", device, "root", "tbf",
                    "rate", rate, "burst", "64kb", "latency", "10ms",
                )  # fmt: skip
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        subprocess.run(
            ["ip", "netns", "delete", self.netns], capture_output=True, check=False
        )
