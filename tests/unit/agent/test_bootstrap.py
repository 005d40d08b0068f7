"""
Trust at bootstrap: the detached JWS over cluster-info, the CA and server taken
from it, and the choice between CA file, discovery and insecure mode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from treq.testing import RequestTraversalAgent
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from clusternet.agent._bootstrap import (
    CLUSTER_INFO_PATH,
    BootstrapError,
    ClusterInfoUnavailable,
    JWSError,
    ParentTrust,
    ParentTrustResolver,
    UnverifiedTLSPolicy,
    b64url_decode,
    b64url_encode,
    cluster_info_from_configmap,
    parse_bootstrap_token,
    same_server,
    verify_detached_jws,
)
from clusternet.pki import make_ca
from tests.support.wire import recorded

TOKEN = "07401b.f395accd246ae52d"
OTHER_TOKEN = "abcdef.0123456789abcdef"
CA = make_ca("test-parent-ca")

tokens = st.builds(
    lambda i, s: f"{i}.{s}",
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=6),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=16, max_size=16),
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(content: bytes, token: str, header: dict[str, Any] | None = None) -> str:
    """
    An independent signer, as Kubernetes' bootstrap signer writes it: HS256 keyed
    with the token's secret over b64url(header) "." b64url(content), detached.
    """
    token_id, secret = token.split(".")
    if header is None:
        header = {"alg": "HS256", "kid": token_id}
    protected = _b64url(json.dumps(header, separators=(",", ":")).encode())
    mac = hmac.new(
        secret.encode(), (protected + "." + _b64url(content)).encode(), hashlib.sha256
    ).digest()
    return protected + ".." + _b64url(mac)


def kubeconfig(server: str, ca_pem: bytes = CA.certificate_pem) -> str:
    ca = base64.b64encode(ca_pem).decode()
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {ca}\n    server: {server}\n"
        '  name: ""\ncontexts: []\nusers: []\n'
    )


def configmap(server: str, token: str = TOKEN, **extra: str) -> dict[str, Any]:
    config = kubeconfig(server)
    data = {
        "kubeconfig": config,
        f"jws-kubeconfig-{token.split('.')[0]}": sign(config.encode(), token),
    }
    data.update(extra)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": data,
    }


# --- JWS --------------------------------------------------------------------------


def test_a_real_kube_apiserver_signature_verifies_with_its_bootstrap_token() -> None:
    body = recorded("087-cluster-info-signed.json")["response"]["body"]
    info = cluster_info_from_configmap(body, TOKEN, "https://127.0.0.1:6443")
    assert info.server == "https://127.0.0.1:6443"
    assert info.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_a_real_signature_is_refused_for_another_token() -> None:
    body = recorded("087-cluster-info-signed.json")["response"]["body"]
    data = body["data"]
    with pytest.raises(JWSError):
        verify_detached_jws(
            data["jws-kubeconfig-07401b"],
            data["kubeconfig"].encode(),
            "07401b.0000000000000000",
        )


def test_the_key_is_the_token_secret_not_the_whole_token() -> None:
    """
    Kubernetes keys the HMAC with the secret part only; a signature keyed with the
    whole "<id>.<secret>" is not what a real parent writes and must not verify.
    """
    content = b"kubeconfig"
    protected = _b64url(b'{"alg":"HS256","kid":"07401b"}')
    mac = hmac.new(
        TOKEN.encode(), (protected + "." + _b64url(content)).encode(), hashlib.sha256
    ).digest()
    with pytest.raises(JWSError):
        verify_detached_jws(protected + ".." + _b64url(mac), content, TOKEN)


@given(content=st.binary(max_size=2000), token=tokens)
def test_signatures_round_trip(content: bytes, token: str) -> None:
    verify_detached_jws(sign(content, token), content, token)


@given(content=st.binary(min_size=1, max_size=300), token=tokens, data=st.data())
def test_any_changed_content_byte_is_detected(
    content: bytes, token: str, data: st.DataObject
) -> None:
    jws = sign(content, token)
    index = data.draw(st.integers(0, len(content) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(content)
    tampered[index] ^= flip
    with pytest.raises(JWSError):
        verify_detached_jws(jws, bytes(tampered), token)


def test_every_changed_character_of_the_signature_is_detected() -> None:
    content = kubeconfig("https://parent.example:6443").encode()
    jws = sign(content, TOKEN)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for index in range(len(jws)):
        for replacement in {alphabet[(alphabet.index(jws[index]) + 1) % 65], "A"}:
            if replacement == jws[index]:
                continue
            tampered = jws[:index] + replacement + jws[index + 1 :]
            with pytest.raises(JWSError):
                verify_detached_jws(tampered, content, TOKEN)


@given(content=st.binary(max_size=200), token=tokens, other=tokens)
def test_a_wrong_token_is_refused(content: bytes, token: str, other: str) -> None:
    if other.split(".")[1] == token.split(".")[1] and other[:6] == token[:6]:
        return
    with pytest.raises(JWSError):
        verify_detached_jws(sign(content, token), content, other)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "kid": "07401b"},
        {"alg": "HS512", "kid": "07401b"},
        {"alg": "HS256", "kid": "ffffff"},
        {"kid": "07401b"},
    ],
)
def test_other_algorithms_and_key_ids_are_refused(header: dict[str, Any]) -> None:
    with pytest.raises(JWSError):
        verify_detached_jws(sign(b"x", TOKEN, header), b"x", TOKEN)


@pytest.mark.parametrize(
    "jws",
    ["", "a.b", "a.b.c", "..", "x" * 5000, sign(b"x", TOKEN).replace("..", ".eA.")],
)
def test_malformed_signatures_are_refused(jws: str) -> None:
    with pytest.raises(JWSError):
        verify_detached_jws(jws, b"x", TOKEN)


@given(st.binary(max_size=100))
def test_b64url_round_trips_and_is_canonical(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data


@given(st.text(max_size=40))
def test_b64url_decode_accepts_only_what_it_would_write(text: str) -> None:
    try:
        decoded = b64url_decode(text)
    except JWSError:
        return
    assert b64url_encode(decoded) == text


@pytest.mark.parametrize(
    "token", ["", "07401b", "07401B.f395accd246ae52d", "07401b.f395accd246ae52", "x.y"]
)
def test_malformed_bootstrap_tokens_are_refused_without_echoing(token: str) -> None:
    with pytest.raises(BootstrapError) as raised:
        parse_bootstrap_token(token)
    assert not token or token not in str(raised.value)


# --- cluster-info ---------------------------------------------------------------


def test_cluster_info_gives_the_ca_and_server() -> None:
    info = cluster_info_from_configmap(
        configmap("https://parent.example:6443"), TOKEN, "https://parent.example:6443/"
    )
    assert info.ca_pem == CA.certificate_pem
    assert "ca_pem" not in repr(info)


def test_cluster_info_for_another_server_is_refused() -> None:
    with pytest.raises(BootstrapError, match="not the parent URL"):
        cluster_info_from_configmap(
            configmap("https://evil.example:6443"), TOKEN, "https://parent.example:6443"
        )


def test_cluster_info_without_a_signature_for_our_token_is_refused() -> None:
    with pytest.raises(JWSError, match="no signature for token ID 07401b"):
        cluster_info_from_configmap(
            configmap("https://p:6443", token=OTHER_TOKEN), TOKEN, "https://p:6443"
        )


def test_a_changed_kubeconfig_is_refused() -> None:
    cm = configmap("https://p:6443")
    cm["data"]["kubeconfig"] = cm["data"]["kubeconfig"].replace("p:6443", "q:6443")
    with pytest.raises(JWSError):
        cluster_info_from_configmap(cm, TOKEN, "https://q:6443")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://p:443", "https://P/", True),
        ("https://[::1]:6443", "https://[0:0::1]:6443/x", True),
        ("https://p:6443", "http://p:6443", False),
        ("https://p:6443", "https://p:6444", False),
        ("https://p", "not a url", False),
        ("https://p:99999", "https://p:99999", False),
    ],
)
def test_same_server(a: str, b: str, same: bool) -> None:
    assert same_server(a, b) is same


def test_the_unverified_policy_is_an_https_policy() -> None:
    policy = UnverifiedTLSPolicy()
    assert verifyObject(IPolicyForHTTPS, policy)


# --- choosing the trust -----------------------------------------------------------


class ClusterInfoResource(Resource):
    isLeaf = True

    def __init__(self, body: object, code: int = 200) -> None:
        super().__init__()
        self.body = body
        self.code = code
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> bytes:
        self.requests.append(request)
        request.setResponseCode(self.code)
        if request.path != CLUSTER_INFO_PATH.encode():
            request.setResponseCode(404)
            return b"{}"
        return json.dumps(self.body).encode()


class ResolverTests(SynchronousTestCase):
    def resolve(self, resource: Resource | None = None, **kw: Any) -> ParentTrust:
        agent = RequestTraversalAgent(resource) if resource is not None else None
        resolver = ParentTrustResolver(
            Clock(),
            kw.pop("url", "https://parent.example:6443"),
            kw.pop("token", TOKEN),
            agent=agent,
            **kw,
        )
        assert TOKEN not in repr(resolver)
        return self.successResultOf(resolver.resolve())

    def resolve_fails(self, resource: Resource, **kw: Any) -> BaseException:
        resolver = ParentTrustResolver(
            Clock(),
            kw.pop("url", "https://parent.example:6443"),
            kw.pop("token", TOKEN),
            agent=RequestTraversalAgent(resource),
            **kw,
        )
        return self.failureResultOf(resolver.resolve(), BootstrapError).value

    def test_discovery_trusts_a_verified_cluster_info(self) -> None:
        resource = ClusterInfoResource(configmap("https://parent.example:6443"))
        trust = self.resolve(resource)
        assert trust == ParentTrust(CA.certificate_pem, False, "cluster-info")
        (request,) = resource.requests
        assert request.getHeader("authorization") is None

    def test_discovery_refuses_a_forged_cluster_info(self) -> None:
        cm = configmap("https://parent.example:6443", token=OTHER_TOKEN)
        cm["data"]["jws-kubeconfig-07401b"] = cm["data"].pop("jws-kubeconfig-abcdef")
        error = self.resolve_fails(ClusterInfoResource(cm))
        assert isinstance(error, JWSError)

    def test_an_http_error_is_unavailable(self) -> None:
        error = self.resolve_fails(ClusterInfoResource({}, code=403))
        assert isinstance(error, ClusterInfoUnavailable)
        assert "403" in str(error)

    def test_a_body_that_is_not_a_configmap_is_unavailable(self) -> None:
        error = self.resolve_fails(ClusterInfoResource(["x"]))
        assert isinstance(error, ClusterInfoUnavailable)

    def test_a_ca_file_wins(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(CA.certificate_pem)
        trust = self.resolve(ca_file=str(path))
        assert trust == ParentTrust(CA.certificate_pem, False, "ca-file")

    def test_a_ca_file_without_a_certificate_is_refused(self) -> None:
        path = Path(self.mktemp())
        path.write_bytes(b"not a certificate")
        resolver = ParentTrustResolver(Clock(), "https://p", TOKEN, ca_file=str(path))
        self.failureResultOf(resolver.resolve(), BootstrapError)

    def test_insecure_mode_warns_on_every_start(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            for _ in range(2):
                trust = self.resolve(insecure_skip_tls_verify=True)
                assert trust == ParentTrust(None, True, "insecure")
        finally:
            globalLogPublisher.removeObserver(events.append)
        warnings = [e for e in events if "NOT" in e.get("log_format", "")]
        assert len(warnings) == 2

    def test_no_token_and_no_ca_is_an_error(self) -> None:
        resolver = ParentTrustResolver(Clock(), "https://p", None)
        self.failureResultOf(resolver.resolve(), BootstrapError)
