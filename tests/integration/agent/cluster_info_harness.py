"""
Serve a cluster-info ConfigMap over real TLS on 127.0.0.1 and discover the
parent's CA from it with the agent's ParentTrustResolver; print the outcome as
one JSON line. Run as a subprocess by test_bootstrap_tls.py.

    python cluster_info_harness.py signed|forged|other-server
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from typing import Any

from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.task import react
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from clusternet.agent._bootstrap import (
    BootstrapError,
    ParentTrustResolver,
    unverified_agent,
)
from clusternet.pki import issue_certificate, make_ca

TOKEN = "07401b.f395accd246ae52d"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(content: bytes, secret: str) -> str:
    protected = _b64url(b'{"alg":"HS256","kid":"07401b"}')
    mac = hmac.new(
        secret.encode(), (protected + "." + _b64url(content)).encode(), hashlib.sha256
    ).digest()
    return protected + ".." + _b64url(mac)


class ClusterInfo(Resource):
    isLeaf = True

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__()
        self.body = body
        self.authorization: list[bytes | None] = []

    def render_GET(self, request: Request) -> bytes:
        self.authorization.append(request.getHeader("authorization"))
        request.setHeader("content-type", "application/json")
        if request.path == b"/api/v1/namespaces/kube-public/configmaps/cluster-info":
            return json.dumps(self.body).encode()
        return b"ok"


async def main(reactor: Any, mode: str) -> None:
    ca = make_ca("harness-ca")
    leaf = issue_certificate(ca, "parent", hosts=["127.0.0.1"], server=True)
    options = ssl.PrivateCertificate.loadPEM(
        leaf.certificate_pem + leaf.key_pem
    ).options()
    resource = ClusterInfo({})
    port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(
        Site(resource)
    )
    url = f"https://127.0.0.1:{port.getHost().port}"
    server = "https://127.0.0.1:1" if mode == "other-server" else url
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
        "    certificate-authority-data: "
        + base64.b64encode(ca.certificate_pem).decode()
        + f"\n    server: {server}\n"
        + '  name: ""\ncontexts: []\nusers: []\n'
    )
    secret = "0000000000000000" if mode == "forged" else TOKEN.split(".")[1]
    resource.body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {
            "kubeconfig": kubeconfig,
            "jws-kubeconfig-07401b": sign(kubeconfig.encode(), secret),
        },
    }
    resolver = ParentTrustResolver(reactor, url, TOKEN, agent=unverified_agent(reactor))
    out: dict[str, Any] = {"mode": mode}
    try:
        trust = await resolver.resolve()
    except BootstrapError as e:
        out.update(error=type(e).__name__, message=str(e))
    else:
        out.update(source=trust.source, ca_matches=trust.ca_pem == ca.certificate_pem)
        # The discovered CA really verifies the parent from now on.
        assert trust.ca_pem is not None
        root = ssl.Certificate.loadPEM(trust.ca_pem)
        verified = Agent(reactor, BrowserLikePolicyForHTTPS(trustRoot=root))
        response = await verified.request(b"GET", (url + "/healthz").encode())
        out["verified_get"] = (await readBody(response)).decode()
    out["credentials_sent"] = [a for a in resource.authorization if a is not None]
    await port.stopListening()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor, sys.argv[1])))
