# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
Start sandbox API servers (C{python -m clusternet.sandbox apiserver}) as real
processes for integration and end-to-end tests.

    with running_sandbox(tmp_path / "parent") as sandbox:
        sandbox.kubectl("get", "ns")
        api = sandbox.client()   # a kubernetes.client.ApiClient
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")


class Sandbox:
    def __init__(
        self, popen: subprocess.Popen[bytes], data_dir: Path, log: Path
    ) -> None:
        self.popen = popen
        self.data_dir = data_dir
        self.log = log
        self.kubeconfig = data_dir / "admin.kubeconfig"
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url: str = config["clusters"][0]["cluster"]["server"]
        self.port = int(self.url.rsplit(":", 1)[1])

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        if KUBECTL is None:
            raise RuntimeError("kubectl is not installed")
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.data_dir))
        result = subprocess.run(
            [KUBECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))

    def token_client(self, token: str) -> Any:
        """
        A C{kubernetes.client.ApiClient} that presents C{token} as a bearer token
        (and verifies the server with the sandbox CA).
        """
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.data_dir / "ca.crt")
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def certificate_client(self, cert_file: Path, key_file: Path) -> Any:
        """
        A C{kubernetes.client.ApiClient} presenting the client certificate (chain)
        in C{cert_file}.
        """
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.data_dir / "ca.crt")
        configuration.cert_file = str(cert_file)
        configuration.key_file = str(key_file)
        return client.ApiClient(configuration)

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        cert: tuple[Path, Path] | None = None,
        timeout: float = 30,
    ) -> tuple[int, Any]:
        """
        One HTTPS request with no credentials (or the client certificate C{cert}):
        the status code and the decoded JSON body (or the text).
        """
        import http.client
        import json
        import ssl

        context = ssl.create_default_context(cafile=str(self.data_dir / "ca.crt"))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=context, timeout=timeout
        )
        try:
            data = None if body is None else json.dumps(body).encode()
            all_headers = {"Accept": "application/json"}
            if data is not None:
                all_headers["Content-Type"] = "application/json"
            all_headers.update(headers or {})
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            connection.close()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text

    def terminate(self, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise


def start_sandbox(
    data_dir: Path, args: Sequence[str] = (), timeout: float = 30
) -> Sandbox:
    """
    Start a sandbox on a free port and wait (at most C{timeout}) until it has
    written its kubeconfig.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = data_dir / "admin.kubeconfig"
    if kubeconfig.exists():
        kubeconfig.unlink()
    log = data_dir / "apiserver.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clusternet.sandbox",
                "apiserver",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists():
        if popen.poll() is not None:
            raise AssertionError(
                f"sandbox exited {popen.returncode}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            popen.kill()
            popen.wait()
            raise AssertionError(
                f"sandbox not ready within {timeout}s:\n{log.read_text()}"
            )
        time.sleep(0.05)
    return Sandbox(popen, data_dir, log)


@contextmanager
def running_sandbox(data_dir: Path, args: Sequence[str] = ()) -> Iterator[Sandbox]:
    sandbox = start_sandbox(data_dir, args)
    try:
        yield sandbox
    finally:
        if sandbox.popen.poll() is None:
            try:
                sandbox.terminate()
            except subprocess.TimeoutExpired:
                pass
