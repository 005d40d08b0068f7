"""
Bounded fuzzing of what a peer hands the sealing code: sealed credentials and
public keys (the long run is fuzz/fuzz_sealing.py).
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x448, x25519
from fuzz_support import fuzz_settings, load_target
from hypothesis import given
from hypothesis import strategies as st

from clusternet.sealing import (
    SealingError,
    load_public_key,
    open_sealed,
    public_key_pem,
    seal,
)

TARGET = load_target("sealing")
KEY = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32)))
CONTEXT = b"cluster=c1\nrequest=r1"
SEALED = seal(public_key_pem(KEY), b"token", CONTEXT)
OTHER_KEYS = [
    k.public_key()
    .public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    .decode()
    for k in (
        ed25519.Ed25519PrivateKey.generate(),
        x448.X448PrivateKey.generate(),
        ec.generate_private_key(ec.SECP256R1()),
    )
]


@st.composite
def mangled(draw: st.DrawFn, text: str) -> str:
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["set", "cut", "put"]))
        if action == "set" and position < len(chars):
            chars[position] = draw(st.characters())
        elif action == "cut":
            del chars[position : position + draw(st.integers(1, 10))]
        else:
            chars[position:position] = draw(st.text(max_size=4))
    return "".join(chars)


@fuzz_settings
@given(st.one_of(mangled(SEALED), st.text(max_size=80).map(lambda t: "v1." + t)))
def test_a_mangled_sealed_value_is_refused(sealed: str) -> None:
    try:
        opened = open_sealed(KEY, sealed, CONTEXT)
    except SealingError:
        return
    assert opened == b"token"


@fuzz_settings
@given(st.binary(min_size=0, max_size=120))
def test_any_raw_sealed_bytes_are_refused(raw: bytes) -> None:
    sealed = "v1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    try:
        open_sealed(KEY, sealed, CONTEXT)
    except SealingError:
        return
    raise AssertionError("opened random bytes")


@fuzz_settings
@given(
    st.one_of(
        mangled(public_key_pem(KEY)),
        *[mangled(k) for k in OTHER_KEYS],
        st.sampled_from(OTHER_KEYS),
    )
)
def test_a_mangled_or_foreign_public_key_is_refused_or_an_x25519_key(pem: str) -> None:
    try:
        load_public_key(pem)
    except SealingError:
        return


@fuzz_settings
@given(st.binary(max_size=200))
def test_the_fuzz_target_accepts_random_input(data: bytes) -> None:
    TARGET(data)
