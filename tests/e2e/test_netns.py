"""
A child cluster behind a network namespace: its API server listens on loopback
inside a namespace the parent cannot route to, its agent dials out to the
parent over a private /30, and kubectl through the parent still reaches it.

Needs root and iproute2 (skipped with the reason otherwise); runs the installed
package (C{pip install .} after changing clusternet/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from clusternet.fleet import Fleet
from clusternet.fleet import FleetError as DemoError
from clusternet.sandbox import load_or_create_material
from tests.support.netns import NetnsUnavailable, NetworkNamespace, child_namespace

BUDGET = 90.0  # seconds for the whole scenario, set-up included


def _serving_names(directory: Path) -> set[str]:
    material = load_or_create_material(directory)
    extension = material.serving.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    return set(extension.value.get_values_for_type(x509.DNSName)) | {
        str(a) for a in extension.value.get_values_for_type(x509.IPAddress)
    }


def test_serving_certificate_is_issued_again_for_a_new_name(tmp_path: Path) -> None:
    """
    The parent must serve under the veth address: a sandbox data directory made
    before keeps its CA, and its serving certificate gains the name.
    """
    first = load_or_create_material(tmp_path)
    assert "10.203.0.1" not in _serving_names(tmp_path)
    again = load_or_create_material(tmp_path, ("10.203.0.1", "parent.example"))
    assert again.ca.certificate_pem == first.ca.certificate_pem
    assert again.serving.certificate_pem != first.serving.certificate_pem
    names = _serving_names(tmp_path)
    assert {"10.203.0.1", "parent.example", "127.0.0.1", "localhost"} <= names
    # Asking for names it has already changes nothing.
    same = load_or_create_material(tmp_path, ("10.203.0.1",))
    assert same.serving.certificate_pem == again.serving.certificate_pem


def test_sandbox_cli_names_host_and_tls_sans_in_the_certificate() -> None:
    from clusternet.sandbox._cli import serving_names

    assert serving_names("127.0.0.1", []) == ("127.0.0.1",)
    assert serving_names("0.0.0.0", ["a.example", "10.0.0.1", "a.example"]) == (
        "a.example",
        "10.0.0.1",
    )
    assert serving_names("::", ["::1"]) == ("::1",)
    for bad in ("", "a b", "-x.example", "a..b"):
        with pytest.raises(ValueError, match="DNS names or IP addresses"):
            serving_names("127.0.0.1", [bad])


@pytest.fixture
def namespace() -> Iterator[NetworkNamespace]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    with ExitStack() as stack:
        try:
            made = stack.enter_context(child_namespace())
        except NetnsUnavailable as e:
            pytest.skip(f"no network namespace for the child: {e}")
        yield made


def _connect_refused(prefix: tuple[str, ...], host: str, port: int) -> bool:
    """
    Whether a TCP connection to C{host:port}, made under C{prefix} (in a
    namespace) or from here, is refused or times out.
    """
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=3).close()\n"
        "except OSError:\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    result = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, timeout=15
    )
    return result.returncode == 0


@pytest.mark.slow
def test_child_behind_a_network_namespace_is_reached_through_the_parent(
    namespace: NetworkNamespace, tmp_path: Path
) -> None:
    started = time.monotonic()
    lines: list[str] = []
    data = tmp_path / "fleet"
    fleet = Fleet(
        data,
        children=1,
        say=lines.append,
        status_frequency="5s",
        lease_grace="10s",
        parent_host=namespace.host_address,
        child_prefix=lambda name: namespace.exec_prefix,
    )
    try:
        fleet.start()
        assert fleet.parent is not None
        assert urlsplit(fleet.parent.url).hostname == namespace.host_address
        child = fleet.child_clusters[0]
        child_url = urlsplit(child.url)
        assert child_url.hostname == "127.0.0.1" and child_url.port is not None
        assert child.prefix == namespace.exec_prefix

        fleet.wait_ready(timeout=60)
        clusters = json.loads(fleet.parent_kubectl("get", "mcls", "-A", "-o", "json"))
        (cluster,) = clusters["items"]
        assert cluster["metadata"]["name"] == "child-1"
        ready = [c for c in cluster["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert cluster["status"]["readyz"] is True

        # Through the parent, kubectl reaches the child.
        via_parent = fleet.child_kubeconfig(child)
        assert "edge-system" in fleet.eventually_kubectl(via_parent, "get", "ns")

        # Inside its namespace the child answers on its own loopback...
        assert "edge-system" in fleet.cluster_kubectl(child, "get", "ns")
        # ...but from here its address is not the child: no route to it.
        with pytest.raises(DemoError):
            fleet.run_kubectl(child.kubeconfig, "get", "ns", "--request-timeout=5s")
        # Nor does it listen on its side of the veth pair.
        assert _connect_refused((), namespace.child_address, child_url.port)
        # And the child's namespace cannot reach the host's loopback (the hub),
        # so the tunnel can only have come through the parent's address.
        assert fleet.hub_port
        assert _connect_refused(namespace.exec_prefix, "127.0.0.1", fleet.hub_port)

        assert time.monotonic() - started < BUDGET
    except BaseException:
        print("\n".join(lines))
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        fleet.stop()
