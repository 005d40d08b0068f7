"""
The parent verifies the hub: the hub keeps its serving CA in a Secret of its
namespace and puts it in its APIService's caBundle; the parent's aggregation
layer then refuses a server on the hub's address whose certificate that CA did
not sign, and sends it nothing of its users.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet import pki
from clusternet.apis import HUB_NAMESPACE
from clusternet.fleet import GROUP_PATH, Fleet

APISERVICE = "v1alpha1.proxies.clusternet.io"
SECRET = "clusternet-hub-serving"
HUB_SERVICE_NAME = f"clusternet-hub.{HUB_NAMESPACE}.svc"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the end-to-end tests drive it")
    data: Path = tmp_path_factory.mktemp("fleet")
    fleet = Fleet(data, children=1, say=lambda line: None)
    try:
        fleet.start()
        fleet.wait_ready(timeout=120)
        yield fleet
    except Exception:
        for log in sorted(data.glob("*.log")):
            print(f"==== {log.name}\n{log.read_text()[-4000:]}")
        raise
    finally:
        fleet.stop()


def get_json(fleet: Fleet, *args: str) -> dict[str, Any]:
    return json.loads(fleet.parent_kubectl("get", *args, "-o", "json"))


def hub_ca(fleet: Fleet) -> bytes:
    secret = get_json(fleet, "secret", "-n", HUB_NAMESPACE, SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    return base64.b64decode(secret["data"]["ca.crt"])


def cluster_id(fleet: Fleet) -> str:
    sockets = json.loads(fleet.parent_kubectl("get", "--raw", f"{GROUP_PATH}/sockets"))
    [item] = sockets["items"]
    return str(item["metadata"]["name"])


def through_parent(fleet: Fleet, cluster: str) -> str:
    return fleet.parent_kubectl(
        "get",
        "--raw",
        f"{GROUP_PATH}/sockets/{cluster}/proxy/direct/api/v1/namespaces",
    )


def wait_for(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f}s")
        time.sleep(0.5)


def test_the_apiservice_trusts_the_hubs_own_ca_and_requests_pass(
    fleet: Fleet,
) -> None:
    ca = hub_ca(fleet)
    spec = get_json(fleet, "apiservice", APISERVICE)["spec"]
    assert base64.b64decode(spec["caBundle"]) == ca
    assert not spec.get("insecureSkipTLSVerify")
    assert (fleet.data_dir / "hub-ca.crt").read_bytes() == ca
    group = json.loads(fleet.parent_kubectl("get", "--raw", GROUP_PATH))
    assert group["groupVersion"] == "proxies.clusternet.io/v1alpha1"
    assert '"kube-system"' in through_parent(fleet, cluster_id(fleet))
    # The hub's certificate holds the name the aggregator verifies.
    context = ssl.create_default_context(cadata=ca.decode())
    with (
        socket.create_connection(("127.0.0.1", fleet.hub_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HUB_SERVICE_NAME) as tls,
    ):
        assert tls.version() is not None


def test_a_tampered_ca_bundle_is_set_back_by_the_hub(fleet: Fleet) -> None:
    ca = hub_ca(fleet)
    other = pki.make_ca("someone-else")
    fleet.parent_kubectl(
        "patch",
        "apiservice",
        APISERVICE,
        "--type=merge",
        "-p",
        json.dumps(
            {"spec": {"caBundle": base64.b64encode(other.certificate_pem).decode()}}
        ),
    )
    wait_for(
        "the hub to put its CA back in the APIService",
        lambda: (
            base64.b64decode(
                get_json(fleet, "apiservice", APISERVICE)["spec"]["caBundle"]
            )
            == ca
        ),
    )
    fleet.eventually_kubectl(fleet.parent.kubeconfig, "get", "--raw", GROUP_PATH)  # type: ignore[union-attr]


class Impostor:
    """
    A TLS server on the hub's address with a certificate for the hub's
    Service name, from a CA the parent was never told about; it records
    what it receives.
    """

    def __init__(self, port: int, directory: Path) -> None:
        ca = pki.make_ca("impostor-ca")
        pair = pki.issue_certificate(
            ca,
            "clusternet-hub",
            hosts=[HUB_SERVICE_NAME, "localhost", "127.0.0.1"],
            server=True,
        )
        cert, key = directory / "impostor.crt", directory / "impostor.key"
        cert.write_bytes(pair.certificate_pem + ca.certificate_pem)
        key.write_bytes(pair.key_pem)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._server = socket.create_server(("127.0.0.1", port))
        self._server.settimeout(0.2)
        self.connections = 0
        self.refused_handshakes = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.settimeout(2)
            try:
                with self._context.wrap_socket(connection, server_side=True) as tls:
                    while chunk := tls.recv(65536):
                        self.received += chunk
                        if b"\r\n\r\n" in self.received:
                            tls.sendall(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                b"Connection: close\r\n\r\n{}"
                            )
                            break
            except (ssl.SSLError, OSError):
                self.refused_handshakes += 1
            finally:
                connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def test_the_parent_refuses_a_hub_its_ca_bundle_does_not_sign(
    fleet: Fleet, tmp_path: Path
) -> None:
    cluster = cluster_id(fleet)
    assert fleet.hub is not None
    fleet.stop_process(fleet.hub)
    impostor = Impostor(fleet.hub_port, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while impostor.connections < 3 and time.monotonic() < deadline:
            for path in (
                GROUP_PATH,
                f"{GROUP_PATH}/sockets/{cluster}/proxy/direct/api/v1/namespaces",
            ):
                out = fleet.parent_kubectl("get", "--raw", path, check=False)
                assert "groupVersion" not in out and "kube-system" not in out, out
                # The real aggregator answers 503; the sandbox says 502 for a
                # backend it could not reach with a verified handshake.
                assert out.startswith("Error from server"), out
                assert any(
                    word in out
                    for word in ("ServiceUnavailable", "503", "BadGateway", "502")
                ), out
            time.sleep(0.5)
    finally:
        impostor.stop()
    # The parent did dial the impostor, and hung up in the handshake.
    assert impostor.connections >= 3
    assert impostor.refused_handshakes == impostor.connections
    assert b"X-Remote-User" not in impostor.received
    assert impostor.received == b""
    # The real hub comes back with the same CA, and the parent trusts it again.
    fleet.restart_hub()
    assert base64.b64decode(
        get_json(fleet, "apiservice", APISERVICE)["spec"]["caBundle"]
    ) == hub_ca(fleet)
    fleet.wait_ready(timeout=60)
    assert '"kube-system"' in through_parent(fleet, cluster)
