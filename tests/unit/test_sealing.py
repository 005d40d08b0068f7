"""
A credential sealed to the agent's key opens only with that key and context,
and anything else is a clean SealingError.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusternet.sealing import (
    SealingError,
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    open_sealed,
    private_key_pem,
    public_key_pem,
    seal,
    sealing_context,
)

KEY = generate_key()
OTHER = generate_key()
PUBLIC = public_key_pem(KEY)
CONTEXT = sealing_context("0b9f5e4a-7f1c-4c39-9d7e-3f2b4b8a1c2d", "uid-1")


@settings(max_examples=50)
@given(st.binary(max_size=4096))
def test_a_sealed_value_opens_with_its_key_and_context(plaintext: bytes) -> None:
    sealed = seal(PUBLIC, plaintext, CONTEXT)
    assert open_sealed(KEY, sealed, CONTEXT) == plaintext
    assert len(plaintext) < 16 or plaintext not in sealed.encode()


def test_another_key_or_context_cannot_open_it() -> None:
    sealed = seal(PUBLIC, b"token", CONTEXT)
    with pytest.raises(SealingError, match="not sealed to this key"):
        open_sealed(OTHER, sealed, CONTEXT)
    with pytest.raises(SealingError, match="not sealed to this key"):
        open_sealed(KEY, sealed, sealing_context("other", "uid-1"))
    assert seal(PUBLIC, b"token", CONTEXT) != sealed  # fresh ephemeral key each time


@settings(max_examples=200)
@given(st.integers(min_value=3, max_value=200), st.integers(min_value=0, max_value=255))
def test_a_flipped_character_is_refused(position: int, value: int) -> None:
    sealed = seal(PUBLIC, b"token", CONTEXT)
    position = min(position, len(sealed) - 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = alphabet[value % len(alphabet)]
    if sealed[position] == replacement:
        return
    tampered = sealed[:position] + replacement + sealed[position + 1 :]
    with pytest.raises(SealingError):
        assert open_sealed(KEY, tampered, CONTEXT) == b"token"


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_any_text_is_refused_cleanly(text: str) -> None:
    with pytest.raises(SealingError):
        open_sealed(KEY, text, CONTEXT)
    with pytest.raises(SealingError):
        open_sealed(KEY, "v1." + text, CONTEXT)
    with pytest.raises(SealingError):
        load_public_key(text)


def test_keys_round_trip_and_are_checked() -> None:
    again = load_private_key(private_key_pem(KEY))
    assert public_key_pem(again) == PUBLIC
    assert fingerprint(PUBLIC).startswith("SHA256:") and len(fingerprint(PUBLIC)) == 71
    assert fingerprint(PUBLIC) != fingerprint(public_key_pem(OTHER))
    with pytest.raises(SealingError):
        load_private_key(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
    with pytest.raises(SealingError):
        load_public_key("x" * 5000)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    with pytest.raises(SealingError, match="not an X25519"):
        load_public_key(ec_pem)
