"""
Bounded fuzzing of the agent's check of C{kube-public/cluster-info}: the body
of the unverified GET, the detached JWS and the signed kubeconfig (the long
run is fuzz/fuzz_cluster_info.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from fuzz_support import fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from clusternet.agent._bootstrap import (
    BootstrapError,
    JWSError,
    cluster_info_from_configmap,
    same_server,
    verify_detached_jws,
)

TOKEN = "07401b.f395accd246ae52d"
PARENT = "https://127.0.0.1:6443"
KEY = "jws-kubeconfig-07401b"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(content: bytes, header: bytes = b'{"alg":"HS256","kid":"07401b"}') -> str:
    protected = b64url(header)
    mac = hmac.new(
        b"f395accd246ae52d",
        (protected + "." + b64url(content)).encode(),
        hashlib.sha256,
    ).digest()
    return protected + ".." + b64url(mac)


# Text as a JSON string may hold it: any code point, lone surrogates included.
any_text = st.text(st.characters(), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["data", "kubeconfig", KEY, "clusters", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)


def settles(configmap: Any) -> None:
    try:
        info = cluster_info_from_configmap(configmap, TOKEN, PARENT)
    except BootstrapError:
        return
    assert same_server(info.server, PARENT)


@fuzz_settings
@given(json_values, json_values, json_values)
def test_any_configmap_is_refused_with_a_bootstrap_error(
    configmap: Any, kubeconfig: Any, jws: Any
) -> None:
    settles(configmap)
    settles({"data": {"kubeconfig": kubeconfig, KEY: jws}})


yaml_pieces = st.sampled_from(
    [
        "clusters:\n",
        "- cluster:\n",
        "    server: https://127.0.0.1:6443\n",
        "    certificate-authority-data: ",
        "LS0tLS1CRUdJTg==",
        "é",
        "\ud800",
        "2001-02-30",
        "!!binary ",
        "&a ",
        "*a",
        "[",
        "{",
        "? ",
        ": ",
        "\n",
        "- ",
        "0x1f",
        "<<: ",
        "!!python/object:os.system ",
    ]
)


@fuzz_settings
@given(st.lists(st.one_of(yaml_pieces, any_text), max_size=12).map("".join))
def test_any_signed_kubeconfig_is_a_cluster_info_or_a_bootstrap_error(
    kubeconfig: str,
) -> None:
    try:
        signature = sign(kubeconfig.encode("utf-8", "surrogatepass"))
    except UnicodeEncodeError:
        signature = "x..y"
    settles({"data": {"kubeconfig": kubeconfig, KEY: signature}})


headers = st.one_of(
    st.binary(max_size=50),
    st.integers(1, 2500).map(lambda n: b"[" * n),
    json_values.map(lambda v: json.dumps(v).encode()),
)


@fuzz_settings
@given(headers, st.binary(max_size=40), st.booleans())
def test_any_forged_signature_is_a_jws_error(
    header: bytes, content: bytes, mac_ok: bool
) -> None:
    jws = sign(content, header) if mac_ok else b64url(header) + ".." + b64url(content)
    try:
        verify_detached_jws(jws, content, TOKEN)
    except JWSError:
        return
    assert json.loads(header).get("alg") == "HS256"


@fuzz_settings
@given(st.binary(max_size=200))
def test_the_fuzz_target_accepts_any_body(body: bytes) -> None:
    TARGET(b"\x00" + body)
    TARGET(b"\x01" + body)
    TARGET(b"\x02" + body)


TARGET = load_target("cluster_info")
