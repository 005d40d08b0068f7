"""
A network namespace for a child cluster that the parent cannot route to: a
veth pair whose /30 exists only between the host namespace and the new one.

Only for tests run as root with iproute2; L{NetnsUnavailable} says why not.
Everything made here is named C{cne2e-<pid>} / C{cnh<pid>} and removed on exit
(and, if a crashed run left one behind, at the next start).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from attrs import frozen

__all__ = ["NetnsUnavailable", "NetworkNamespace", "child_namespace"]

# The private range the /30 is taken from; never routed anywhere else.
POOL = ipaddress.IPv4Network("10.203.0.0/16")
NAME_PREFIX = "cne2e-"
TIMEOUT = 10.0  # for each ip command


class NetnsUnavailable(Exception):
    """
    Network namespaces cannot be made here; the message says why.
    """


@frozen
class NetworkNamespace:
    """
    A namespace C{name} linked to the host by a veth pair: C{host_address} on
    C{host_link} in the host, C{child_address} inside; loopback is up inside.
    """

    ip: str
    name: str
    host_link: str
    host_address: str
    child_address: str

    @property
    def exec_prefix(self) -> tuple[str, ...]:
        """
        The command prefix that runs a program inside the namespace.
        """
        return (self.ip, "netns", "exec", self.name)


def _ip(ip: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [ip, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if check and result.returncode != 0:
        raise OSError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(ip: str) -> None:
    """
    Delete the namespaces that runs of this helper left behind when their
    process died without cleaning up (only ours, by name and dead pid).
    """
    listing = _ip(ip, "netns", "list", check=False).stdout
    for line in listing.splitlines():
        match = re.fullmatch(rf"{NAME_PREFIX}(\d+)(\s.*)?", line.strip())
        if match and not _pid_alive(int(match.group(1))):
            _ip(ip, "netns", "del", f"{NAME_PREFIX}{match.group(1)}", check=False)


def _free_subnet(ip: str) -> ipaddress.IPv4Network:
    """
    The first /30 of L{POOL} that no address or route of the host overlaps.
    """
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for line in _ip(ip, "-4", "-o", "addr", "show").stdout.splitlines():
        for word in line.split():
            if "/" in word:
                try:
                    used.append(ipaddress.ip_network(word, strict=False))
                except ValueError:
                    pass
    for line in _ip(ip, "-4", "route", "show", "table", "all").stdout.splitlines():
        words = line.split()
        if words and words[0] not in ("default", "broadcast", "local"):
            try:
                used.append(ipaddress.ip_network(words[0], strict=False))
            except ValueError:
                pass
    for candidate in POOL.subnets(new_prefix=30):
        if not any(candidate.overlaps(net) for net in used if net.prefixlen > 0):
            return candidate
    raise NetnsUnavailable(f"no free /30 left in {POOL}")


@contextmanager
def child_namespace() -> Iterator[NetworkNamespace]:
    """
    Make a network namespace linked to the host by its own /30, and remove it
    (and the veth pair) on exit. Stop the processes inside it first: a
    namespace lives on while a process runs in it.

    @raise NetnsUnavailable: no C{ip} command, not root, or C{ip netns add}
        refused (no CAP_SYS_ADMIN, no /run/netns, ...).
    """
    ip = shutil.which("ip")
    if ip is None:
        raise NetnsUnavailable("the ip command (iproute2) is not installed")
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (ip netns add)")
    _remove_stale(ip)
    pid = os.getpid()
    name = f"{NAME_PREFIX}{pid}"
    host_link, child_link = f"cnh{pid}", f"cnc{pid}"
    added = _ip(ip, "netns", "add", name, check=False)
    if added.returncode != 0:
        raise NetnsUnavailable(f"ip netns add failed: {added.stderr.strip()}")
    try:
        try:
            subnet = _free_subnet(ip)
            host_address, child_address = (str(a) for a in subnet.hosts())
            _ip(ip, "-n", name, "link", "set", "lo", "up")
            _ip(
                ip,
                *("link", "add", host_link, "type", "veth"),
                *("peer", "name", child_link, "netns", name),
            )
        except OSError as e:
            raise NetnsUnavailable(str(e)) from None
        _ip(ip, "addr", "add", f"{host_address}/30", "dev", host_link)
        _ip(ip, "link", "set", host_link, "up")
        _ip(ip, "-n", name, "addr", "add", f"{child_address}/30", "dev", child_link)
        _ip(ip, "-n", name, "link", "set", child_link, "up")
        yield NetworkNamespace(ip, name, host_link, host_address, child_address)
    finally:
        # Deleting one end of a veth pair deletes both.
        _ip(ip, "link", "del", host_link, check=False)
        _ip(ip, "netns", "del", name, check=False)
