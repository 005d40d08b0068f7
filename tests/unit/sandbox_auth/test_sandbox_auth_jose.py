"""
JWS/JWT signing and verification, and the bootstrap signer's detached JWS.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sandbox.auth import sign_cluster_info, verify_cluster_info_jws
from clusternet.sandbox.auth._jose import (
    JOSEError,
    SignatureError,
    b64url_decode,
    b64url_encode,
    compact_json,
    key_id,
    sign_jwt,
    verify_jwt,
)
from tests.support.wire import recorded

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)

claims_strategy = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=20), st.booleans()),
    max_size=6,
)


def _wire(name: str) -> dict:
    return recorded(name)


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
@given(claims=claims_strategy)
def test_signed_claims_verify_with_the_public_key(key, claims) -> None:
    token = sign_jwt(key, claims)
    assert verify_jwt(token, [key.public_key()]) == claims


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
@given(claims=claims_strategy, data=st.data())
def test_any_changed_character_is_refused(key, claims, data) -> None:
    token = sign_jwt(key, claims)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.sampled_from(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        )
    )
    tampered = token[:index] + replacement + token[index + 1 :]
    if tampered == token:
        return
    with pytest.raises(JOSEError):
        verify_jwt(tampered, [key.public_key()])


def test_a_token_signed_by_another_key_is_a_signature_error() -> None:
    token = sign_jwt(OTHER_RSA, {"sub": "x"})
    with pytest.raises(SignatureError):
        verify_jwt(token, [RSA_KEY.public_key(), EC_KEY.public_key()])


@pytest.mark.parametrize(
    "header", [{"alg": "none"}, {"alg": "HS256"}, {"alg": "RS256", "crit": ["x"]}]
)
def test_unsigned_hmac_and_critical_tokens_are_refused(header) -> None:
    token = (
        b64url_encode(compact_json(header)) + "." + b64url_encode(b'{"sub":"x"}') + "."
    )
    with pytest.raises(JOSEError) as caught:
        verify_jwt(token, [RSA_KEY.public_key()])
    assert not isinstance(caught.value, SignatureError)


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_anything_but_jose_error(text) -> None:
    try:
        verify_jwt(text, [RSA_KEY.public_key(), EC_KEY.public_key()])
    except JOSEError:
        pass


@given(st.binary(max_size=100))
def test_base64url_round_trips(data) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@given(st.text(max_size=30))
def test_base64url_decoding_is_strict(text) -> None:
    try:
        decoded = b64url_decode(text)
    except JOSEError:
        return
    assert b64url_encode(decoded) == text


def test_claims_serialize_byte_for_byte_as_the_real_server() -> None:
    """The recorded TokenRequest token's payload re-encodes to the same bytes."""
    token = _wire("063-sa-token-request.json")["response"]["body"]["status"]["token"]
    header, payload, _ = token.split(".")
    assert b64url_encode(compact_json(json.loads(b64url_decode(payload)))) == payload
    decoded_header = json.loads(b64url_decode(header))
    assert list(decoded_header) == ["alg", "kid"]
    assert len(decoded_header["kid"]) == len(key_id(RSA_KEY.public_key())) == 43


def test_detached_signature_matches_the_real_bootstrap_signer() -> None:
    cm = _wire("087-cluster-info-signed.json")["response"]["body"]["data"]
    assert (
        sign_cluster_info(cm["kubeconfig"], "07401b", "f395accd246ae52d")
        == (cm["jws-kubeconfig-07401b"])
    )
    assert verify_cluster_info_jws(
        cm["kubeconfig"], cm["jws-kubeconfig-07401b"], "07401b.f395accd246ae52d"
    )


@given(
    kubeconfig=st.text(max_size=200),
    secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=16, max_size=16),
    data=st.data(),
)
def test_cluster_info_check_refuses_changed_content_or_token(kubeconfig, secret, data):
    token = f"abcdef.{secret}"
    jws = sign_cluster_info(kubeconfig, "abcdef", secret)
    assert verify_cluster_info_jws(kubeconfig, jws, token)
    other = data.draw(st.text(max_size=200).filter(lambda t: t != kubeconfig))
    assert not verify_cluster_info_jws(other, jws, token)
    wrong = "abcdef." + ("0" * 16 if secret != "0" * 16 else "1" * 16)
    assert not verify_cluster_info_jws(kubeconfig, jws, wrong)
    assert not verify_cluster_info_jws(kubeconfig, jws, "not-a-token")
