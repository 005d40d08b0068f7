"""
Every input the fuzzing campaign found that crashed a parser (docs/fuzzing.md),
kept as a test: each now ends in the parser's documented error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from fuzz_support import load_target

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from clusternet.agent._bootstrap import (
    BootstrapError,
    JWSError,
    cluster_info_from_configmap,
    verify_detached_jws,
)
from clusternet.proxy._head import ResponseHeadParser, serialize_head
from clusternet.sandbox._patch import (
    PatchError,
    apply_json_patch,
    apply_strategic_merge_patch,
)
from clusternet.sealing import SealingError, load_public_key
from clusternet.tunnel import TunnelClosed
from clusternet.tunnel._upgrade import _request_head, _Upgrader

TOKEN = "07401b.f395accd246ae52d"
PARENT = "https://127.0.0.1:6443"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(kubeconfig: str) -> dict[str, object]:
    protected = b64url(b'{"alg":"HS256","kid":"07401b"}')
    mac = hmac.new(
        b"f395accd246ae52d",
        (protected + "." + b64url(kubeconfig.encode())).encode(),
        hashlib.sha256,
    ).digest()
    return {
        "data": {
            "kubeconfig": kubeconfig,
            "jws-kubeconfig-07401b": protected + ".." + b64url(mac),
        }
    }


# --- sealing ------------------------------------------------------------------


def test_a_public_key_of_an_unknown_algorithm_is_a_sealing_error() -> None:
    """
    atheris, fuzz_sealing, 59 runs: an X25519 key whose OID was changed to
    1.3.85.110 raised cryptography's UnsupportedAlgorithm.
    """
    pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MCowBQYDK1VuAyEAj0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=\n"
        "-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(SealingError):
        load_public_key(pem)


# --- the tunnel upgrade ---------------------------------------------------------


def test_a_refusal_with_a_deeply_nested_json_body_is_a_tunnel_closed() -> None:
    """
    Hypothesis, test_fuzz_tunnel: a 403 whose body is 3000 "[" raised
    RecursionError out of dataReceived.
    """
    result: Deferred[object] = Deferred()
    outcome: list[object] = []
    result.addBoth(outcome.append)
    upgrader = _Upgrader(_request_head("https://hub/", {}), object, result, Clock())  # type: ignore[arg-type]
    upgrader.makeConnection(StringTransport())
    upgrader.dataReceived(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3000\r\n\r\n" + b"[" * 3000
    )
    assert isinstance(outcome[0], Failure) and outcome[0].check(TunnelClosed)


# --- cluster-info -----------------------------------------------------------------


def test_a_jws_header_nested_too_deeply_is_a_jws_error() -> None:
    jws = b64url(b"[" * 2500) + ".." + b64url(b"x" * 32)
    with pytest.raises(JWSError):
        verify_detached_jws(jws, b"content", TOKEN)


def test_a_kubeconfig_with_a_lone_surrogate_is_a_bootstrap_error() -> None:
    configmap = json.loads(
        '{"data": {"kubeconfig": "\\ud800", "jws-kubeconfig-07401b": "a..b"}}'
    )
    with pytest.raises(BootstrapError):
        cluster_info_from_configmap(configmap, TOKEN, PARENT)


@pytest.mark.parametrize(
    "kubeconfig",
    [
        "a: 2001-02-30\n",  # PyYAML: ValueError, day is out of range for month
        "[" * 3000,  # PyYAML: RecursionError
        "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
        "    certificate-authority-data: \u00e9\n",  # b64decode: ValueError
    ],
)
def test_a_signed_but_broken_kubeconfig_is_a_bootstrap_error(kubeconfig: str) -> None:
    with pytest.raises(BootstrapError):
        cluster_info_from_configmap(signed(kubeconfig), TOKEN, PARENT)


def test_a_cluster_info_body_nested_too_deeply_is_unavailable() -> None:
    """
    The body of the unverified GET, from anyone on the path: json.loads raised
    RecursionError out of fetch_cluster_info.
    """
    # The target fails unless fetch_cluster_info raises ClusterInfoUnavailable
    # (a BootstrapError) or returns a ConfigMap.
    load_target("cluster_info")(b"\x00" + b"[" * 100_000)


# --- patches ----------------------------------------------------------------------


def test_unhashable_retain_keys_are_ignored() -> None:
    assert apply_strategic_merge_patch({"a": 1}, {"$retainKeys": [[1], "a"]}) == {
        "a": 1
    }


@pytest.mark.parametrize("index", ["\u00b2", "\u0661", "1" * 5000])
def test_array_indexes_beyond_ascii_digits_or_int_range_are_patch_errors(
    index: str,
) -> None:
    with pytest.raises(PatchError):
        apply_json_patch({"a": [1]}, [{"op": "add", "path": f"/a/{index}", "value": 1}])


def test_a_json_patch_value_nested_too_deeply_is_a_patch_error() -> None:
    deep = json.loads("[" * 900 + "]" * 900)
    with pytest.raises(PatchError):
        apply_json_patch({}, [{"op": "add", "path": "/a", "value": deep}])


def test_a_signed_kubeconfig_that_breaks_pyyaml_is_a_bootstrap_error() -> None:
    """
    atheris, fuzz_cluster_info, 56026 runs: PyYAML raised AttributeError on
    "!!timestamp" (a tag on a scalar that is no timestamp).
    """
    with pytest.raises(BootstrapError):
        cluster_info_from_configmap(signed("!!timestamp"), TOKEN, PARENT)


# --- the proxy's response heads ------------------------------------------------------


def test_a_status_code_below_100_serializes_to_what_was_parsed() -> None:
    """
    atheris, fuzz_proxy_head, 177 runs: "HTTP/1.1 001 ..." parsed as 1 and was
    written back as "HTTP/1.1 1 ...", which does not parse.
    """
    parsed = ResponseHeadParser().feed(b"HTTP/1.1 001 Unauthorized\r\nA: b\r\n\r\n")
    assert parsed is not None
    head, _ = parsed
    wire = serialize_head(head.version, head.code, head.phrase, list(head.headers))
    assert wire.startswith(b"HTTP/1.1 001 Unauthorized\r\n")
    assert ResponseHeadParser().feed(wire) == (head, b"")
