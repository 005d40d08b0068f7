# ruff: noqa: E501  (long expected messages, kept verbatim)
"""
The aggregation layer of a running sandbox: an APIService with an ExternalName
Service routes a group/version to a real backend process over TLS with the
front-proxy client certificate and X-Remote-* headers; discovery, kubectl and
an Upgrade pass through; impersonation reaches the backend as the user.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from clusternet.pki import issue_certificate, make_ca
from tests.support.sandbox import KUBECTL, Sandbox, running_sandbox
from tests.support.wire import recorded

pytestmark = pytest.mark.slow

BACKEND = Path(__file__).with_name("aggregated_backend.py")
GROUP, VERSION = "demo.example.com", "v1"


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("aggsandbox")) as running:
        yield running


@pytest.fixture(scope="module")
def backend(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, bytes]]:
    directory = tmp_path_factory.mktemp("backend")
    ca = make_ca("backend-ca")
    serving = issue_certificate(
        ca, "backend", hosts=["backend.default.svc"], server=True
    )
    (directory / "tls.crt").write_bytes(serving.certificate_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    port_file = directory / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            str(BACKEND),
            str(directory / "tls.crt"),
            str(directory / "tls.key"),
            str(sandbox.data_dir / "front-proxy-ca.crt"),
            str(port_file),
        ],
        stdin=subprocess.DEVNULL,
    )
    try:
        eventually(port_file.exists, 10)
        yield int(port_file.read_text()), ca.certificate_pem
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def registered(sandbox: Sandbox, backend: tuple[int, bytes]) -> None:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    port, ca_pem = backend
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "backend", "namespace": "default"},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"port": port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{VERSION}.{GROUP}"},
            "spec": {
                "group": GROUP,
                "version": VERSION,
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
                "caBundle": base64.b64encode(ca_pem).decode(),
                "service": {"name": "backend", "namespace": "default", "port": port},
            },
        },
    ]
    sandbox.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all(manifests, sort_keys=False)
    )

    def available() -> bool:
        out = sandbox.kubectl(
            "get", "apiservice", f"{VERSION}.{GROUP}", "-o", "json"
        ).stdout
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(
            c["type"] == "Available" and c["status"] == "True" for c in conditions
        )

    eventually(available)


def test_apiservice_becomes_available_with_the_real_reason(
    sandbox: Sandbox, registered: None
) -> None:
    out = sandbox.kubectl("get", "apiservice", f"{VERSION}.{GROUP}", "-o", "json")
    condition = json.loads(out.stdout)["status"]["conditions"][0]
    assert condition["reason"] == "Passed"
    assert condition["message"] == "all checks passed"


def test_backend_gets_front_proxy_cert_and_remote_user_headers(
    sandbox: Sandbox, registered: None
) -> None:
    out = sandbox.kubectl("get", "--raw", f"/apis/{GROUP}/{VERSION}/echo?x=1").stdout
    echoed = json.loads(out)
    assert echoed["peer"] == "front-proxy-client"
    assert echoed["path"] == f"/apis/{GROUP}/{VERSION}/echo?x=1"
    headers = echoed["headers"]
    assert headers["x-remote-user"] == ["kubernetes-admin"]
    assert headers["x-remote-group"] == ["system:masters", "system:authenticated"]
    assert headers["x-remote-extra-authentication.kubernetes.io%2fcredential-id"][
        0
    ].startswith("X509SHA256=")
    assert "authorization" not in headers


def test_impersonation_reaches_the_backend_as_the_impersonated_user(
    sandbox: Sandbox, registered: None
) -> None:
    out = sandbox.kubectl(
        "--as",
        "alice",
        "--as-group",
        "devs",
        "get",
        "--raw",
        f"/apis/{GROUP}/{VERSION}/echo",
    ).stdout
    headers = json.loads(out)["headers"]
    assert headers["x-remote-user"] == ["alice"]
    assert headers["x-remote-group"] == ["devs", "system:authenticated"]
    assert not any(name.startswith("impersonate-") for name in headers)


def test_forged_remote_headers_from_the_client_never_reach_the_backend(
    sandbox: Sandbox, registered: None
) -> None:
    admin = (sandbox.data_dir / "admin.crt", sandbox.data_dir / "admin.key")
    code, echoed = sandbox.raw(
        "GET",
        f"/apis/{GROUP}/{VERSION}/echo",
        headers={"X-Remote-User": "mallory", "X-Remote-Group": "system:masters"},
        cert=admin,
    )
    assert code == 200
    assert echoed["headers"]["x-remote-user"] == ["kubernetes-admin"]


def test_unauthenticated_requests_are_401_before_the_backend(
    sandbox: Sandbox, registered: None
) -> None:
    code, body = sandbox.raw("GET", f"/apis/{GROUP}/{VERSION}/echo")
    assert code == 401
    assert body["reason"] == "Unauthorized"


def test_discovery_merges_the_aggregated_group(
    sandbox: Sandbox, registered: None
) -> None:
    listing = sandbox.kubectl("api-resources", "--api-group", GROUP, "--no-headers")
    fields = listing.stdout.split()
    assert fields[:5] == ["widgets", "wd", f"{GROUP}/{VERSION}", "false", "Widget"]
    groups = json.loads(sandbox.kubectl("get", "--raw", "/apis").stdout)["groups"]
    assert {
        "name": GROUP,
        "versions": [{"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}],
        "preferredVersion": {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION},
    } in groups


def test_methods_reach_the_backend_as_sent(sandbox: Sandbox, registered: None) -> None:
    admin = (sandbox.data_dir / "admin.crt", sandbox.data_dir / "admin.key")
    for method in ("delete", "frob", "PURGE", "Get"):
        code, answer = sandbox.raw(
            method, f"/apis/{GROUP}/{VERSION}/things/x", cert=admin
        )
        assert (code, answer) == (
            200,
            {"method": method, "path": f"/apis/{GROUP}/{VERSION}/things/x"},
        )


def test_anonymous_users_are_authorized_before_the_backend(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """
    As the real server (kube-wire 093): anonymous discovery of an aggregated
    group/version is 403 (C{system:discovery} is for C{system:authenticated});
    public info and kubeadm's C{kube-public/cluster-info} stay readable.
    """
    real = recorded("093-anonymous-aggregated-discovery.json")
    with running_sandbox(
        tmp_path_factory.mktemp("anonsandbox"),
        [
            "--anonymous-auth",
            "--aggregate",
            "proxies.clusternet.io/v1alpha1=https://127.0.0.1:1",
        ],
    ) as anonymous:
        code, body = anonymous.raw("GET", real["request"]["path"])
        assert (code, body) == (real["response"]["status"], real["response"]["body"])
        code, body = anonymous.raw(
            "GET", "/apis/proxies.clusternet.io/v1alpha1/sockets"
        )
        assert (code, body["reason"]) == (403, "Forbidden")
        for path in ("/api", "/apis", "/apis/apps/v1", "/apis/proxies.clusternet.io"):
            code, body = anonymous.raw("GET", path)
            assert (code, body["message"]) == (
                403,
                f'forbidden: User "system:anonymous" cannot get path "{path}"',
            ), path
        for path in ("/version", "/healthz", "/livez", "/readyz"):
            assert anonymous.raw("GET", path)[0] == 200, path
        code, body = anonymous.raw(
            "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info"
        )
        assert code == 200 and "kubeconfig" in body["data"]


def test_post_body_streams_to_the_backend(sandbox: Sandbox, registered: None) -> None:
    admin = (sandbox.data_dir / "admin.crt", sandbox.data_dir / "admin.key")
    code, answer = sandbox.raw(
        "POST", f"/apis/{GROUP}/{VERSION}/echo", body={"x": "y" * 100000}, cert=admin
    )
    assert code == 200
    assert answer == {"received": len(json.dumps({"x": "y" * 100000}))}


def test_upgrade_passes_through_as_raw_bytes(
    sandbox: Sandbox, registered: None
) -> None:
    context = ssl.create_default_context(cafile=str(sandbox.data_dir / "ca.crt"))
    context.load_cert_chain(
        str(sandbox.data_dir / "admin.crt"), str(sandbox.data_dir / "admin.key")
    )
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                f"GET /apis/{GROUP}/{VERSION}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(4096)
                assert chunk, head
                head += chunk
            assert head.startswith(b"HTTP/1.1 101 "), head
            rest = head.split(b"\r\n\r\n", 1)[1]
            tls.sendall(b"hello through the sandbox")
            received = rest
            while len(received) < len(b"hello through the sandbox"):
                chunk = tls.recv(4096)
                assert chunk
                received += chunk
            assert received == b"HELLO THROUGH THE SANDBOX"


def test_apiservice_with_a_missing_service_is_unavailable(sandbox: Sandbox) -> None:
    sandbox.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1.missing.example.com"},
                "spec": {
                    "group": "missing.example.com",
                    "version": "v1",
                    "groupPriorityMinimum": 1000,
                    "versionPriority": 15,
                    "insecureSkipTLSVerify": True,
                    "service": {"name": "nothing", "namespace": "default", "port": 443},
                },
            }
        ),
    )

    def unavailable() -> Any:
        out = sandbox.kubectl(
            "get", "apiservice", "v1.missing.example.com", "-o", "json"
        )
        conditions = json.loads(out.stdout).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["status"] == "False"), None)

    condition = eventually(unavailable)
    assert condition["reason"] == "ServiceNotFound"
    result = sandbox.kubectl(
        "get", "--raw", "/apis/missing.example.com/v1/x", check=False
    )
    assert result.returncode != 0
    assert "ServiceUnavailable" in result.stderr or "not found" in result.stderr


def test_backend_tls_endpoint_is_built_once_and_reused() -> None:
    from twisted.internet.testing import MemoryReactorClock

    from clusternet.sandbox._aggregator import Aggregator, Backend

    client = issue_certificate(make_ca("front-proxy-ca"), "front-proxy-client")
    aggregator = Aggregator(
        MemoryReactorClock(), cast(Any, None), client, lambda request: cast(Any, None)
    )
    ca = make_ca("backend-ca").certificate_pem
    first = Backend("g", "v1", "127.0.0.1", 8443, "backend.default.svc", ca)
    other = Backend("g", "v1", "127.0.0.1", 8443, "backend.default.svc", insecure=True)
    assert aggregator.endpoint(first) is aggregator.endpoint(first)
    assert aggregator.endpoint(other) is not aggregator.endpoint(first)
    equal = Backend("g", "v1", "127.0.0.1", 8443, "backend.default.svc", ca)
    assert aggregator.endpoint(equal) is aggregator.endpoint(first)
