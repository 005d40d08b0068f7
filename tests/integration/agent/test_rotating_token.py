"""
The agent's child token rotates under a running direct proxy: the agent runs from
a kubeconfig with a C{tokenFile} holding a bound service-account token; the file
is replaced with a new token and the old one revoked (its Secret deleted), and
requests with a parent identity keep working without a restart.

A real sandbox child, the agent's direct server on a real loopback socket, and
the real reactor (with its thread pool reloading the token).
"""

from __future__ import annotations

import json
import os
import sys
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from clusternet.agent._direct import direct_server
from clusternet.agent._identity import IdentityPolicy
from clusternet.kube import connection_info, load_api_client

# `python -m pytest` (scripts/test.sh) has the checkout on sys.path; plain `pytest`
# does not, and this file lives in a folder without __init__.py.
if str(Path(__file__).resolve().parents[3]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.sandbox import KUBECTL, Sandbox, start_sandbox

pytestmark = pytest.mark.slow

reactor: Any = _reactor
NAMESPACE = "rotation"
REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
# Seconds the proxy may take to use a rotated token (checked every 2 s).
RECOVERY_DEADLINE = 10.0
# Long enough for a periodic check (every 2 s) to have run after a rotation.
PERIODIC_WAIT = 3.5
REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


class _Serve(Factory):
    """
    Serves each connection with a protocol of the direct server (as the tunnel
    acceptor does for each stream).
    """

    def __init__(self, make: Any) -> None:
        self._make = make

    def buildProtocol(self, addr: Any) -> Any:
        return self._make()


class RotatingTokenTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        if KUBECTL is None:
            raise self.skipTest("kubectl is not installed")
        self.sandbox: Sandbox = start_sandbox(Path(self.mktemp()).absolute())
        self.addCleanup(self.sandbox.terminate)
        kubectl = self.sandbox.kubectl
        kubectl("create", "namespace", NAMESPACE)
        kubectl("create", "serviceaccount", "agent", "-n", NAMESPACE)
        # cluster-admin includes impersonating the parent's users.
        kubectl(
            "create",
            "clusterrolebinding",
            "rotation-agent",
            "--clusterrole=cluster-admin",
            f"--serviceaccount={NAMESPACE}:agent",
        )
        for secret in ("first", "second", "third"):
            kubectl("create", "secret", "generic", secret, "-n", NAMESPACE)
        self.home = self.sandbox.data_dir / "agent"
        self.home.mkdir()
        self.token_path = self.home / "token"
        self.first_token = self.token_bound_to("first")
        self.put_token(self.first_token)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "child",
                    "cluster": {
                        "server": self.sandbox.url,
                        "certificate-authority": str(self.sandbox.data_dir / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "agent", "user": {"tokenFile": "token"}}],
            "contexts": [
                {"name": "child", "context": {"cluster": "child", "user": "agent"}}
            ],
            "current-context": "child",
        }
        self.kubeconfig = self.home / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def token_bound_to(self, secret: str) -> str:
        return self.sandbox.kubectl(
            "create",
            "token",
            "agent",
            "-n",
            NAMESPACE,
            "--bound-object-kind=Secret",
            f"--bound-object-name={secret}",
        ).stdout.strip()

    def put_token(self, token: str) -> None:
        """
        Swap the token file for one holding C{token} (a rename, as the kubelet
        and secret syncers do); no trailing newline, as in a projected token.
        """
        new = self.home / "token.new"
        new.write_text(token)
        os.replace(new, self.token_path)

    async def rotate(self, secret: str, old_secret: str, old_token: str) -> str:
        """
        Put a token bound to C{secret} in the file, then revoke C{old_token} by
        deleting C{old_secret}; the new token.
        """
        token = await deferToThread(self.token_bound_to, secret)
        self.put_token(token)
        await deferToThread(
            self.sandbox.kubectl, "delete", "secret", old_secret, "-n", NAMESPACE
        )
        revoked, _ = await deferToThread(
            self.sandbox.raw,
            "POST",
            REVIEWS,
            body=REVIEW,
            headers={"Authorization": f"Bearer {old_token}"},
        )
        assert revoked == 401
        return token

    async def review(self, port: int) -> tuple[int, Any]:
        """
        A SelfSubjectReview through the direct proxy, as the parent user alice.
        """
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await Agent(reactor, pool=pool).request(
            b"POST",
            f"http://127.0.0.1:{port}{REVIEWS}".encode(),
            Headers(
                {
                    b"Content-Type": [b"application/json"],
                    b"X-Remote-User": [b"alice"],
                    b"X-Remote-Group": [b"devs"],
                }
            ),
            FileBodyProducer(BytesIO(json.dumps(REVIEW).encode())),
        )
        body = await readBody(response)
        try:
            return response.code, json.loads(body)
        except ValueError:
            return response.code, body

    async def test_requests_keep_working_after_the_token_file_rotates(self) -> None:
        api_client = load_api_client(str(self.kubeconfig), threads=2)
        self.addCleanup(api_client.close)
        server = direct_server(reactor)
        self.addCleanup(server.close)
        factory = server(connection_info(api_client), IdentityPolicy())
        listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            _Serve(factory)
        )
        self.addCleanup(listening.stopListening)
        port = listening.getHost().port

        code, body = await self.review(port)
        assert code == 201, body
        assert body["status"]["userInfo"]["username"] == "alice"

        # Rotate: a token bound to another Secret, then revoke the first one.
        second_token = await self.rotate("second", "first", self.first_token)

        # Without any restart the proxy takes the new token: within the check
        # interval (2 s), or at once after the child refused the old one.
        rotated = time.monotonic()
        codes: list[int] = []
        while time.monotonic() - rotated < RECOVERY_DEADLINE:
            code, body = await self.review(port)
            codes.append(code)
            if code == 201:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert codes[-1] == 201, codes
        assert set(codes[:-1]) <= {401}, codes
        for _ in range(3):
            code, body = await self.review(port)
            assert code == 201, body
            assert body["status"]["userInfo"]["username"] == "alice"

        # Rotate again and wait past the check interval: the periodic check has
        # taken the new token before any request is refused.
        await self.rotate("third", "second", second_token)
        await deferLater(reactor, PERIODIC_WAIT, lambda: None)
        code, body = await self.review(port)
        assert code == 201, body

        # The agent's own API client (its KubeClient's) follows the file too.
        def whoami() -> str:
            from kubernetes.client import AuthenticationV1Api

            api: Any = AuthenticationV1Api(api_client)
            return str(api.create_self_subject_review(REVIEW).status.user_info.username)

        user = await deferToThread(whoami)
        assert user == f"system:serviceaccount:{NAMESPACE}:agent"
