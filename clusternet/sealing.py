"""
A credential sealed to the agent's key: only the holder of the private key can
open it.

The agent makes an X25519 key pair when it first registers, keeps the private
key in its child cluster and puts the public key in its
ClusterRegistrationRequest (C{spec.publicKey}). The hub seals each parent token
it issues for that cluster to that public key and writes only the sealed form
into the request's status, which the bootstrap token (shared by every edge
site) and other clusters can read: without the private key it is useless.

The sealed form is C{v1.} followed by the URL-safe base64 (no padding) of the
ephemeral X25519 public key (32 bytes), a 12-byte nonce and the AES-256-GCM
ciphertext with its tag. The AES key is HKDF-SHA256 of the ECDH secret, with
both public keys as salt input; the associated data is a context the two sides
agree on (the cluster ID and the request's UID), so a sealed value cannot be
replayed into another request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MAX_PUBLIC_KEY_PEM",
    "MAX_SEALED",
    "SealingError",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "open_sealed",
    "private_key_pem",
    "public_key_pem",
    "seal",
    "sealing_context",
]

_PREFIX = "v1."
_INFO = b"clusternet sealed credential v1"
_NONCE = 12
_RAW = 32
# Bounds on what a peer may hand us (a PEM public key is about 113 bytes; a
# sealed token of a few KiB).
MAX_PUBLIC_KEY_PEM = 1024
MAX_SEALED = 16 * 1024


class SealingError(Exception):
    """
    A key or a sealed value is malformed, or the value was not sealed to this
    key and context.
    """


def generate_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def private_key_pem(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise SealingError(f"not a PEM private key: {e}") from None
    if not isinstance(key, X25519PrivateKey):
        raise SealingError("the private key is not an X25519 key")
    return key


def public_key_pem(key: X25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        .decode("ascii")
    )


def load_public_key(pem: str) -> X25519PublicKey:
    """
    @raise SealingError: C{pem} is not an X25519 public key in PEM (or is too
        long to be one).
    """
    if not isinstance(pem, str) or len(pem) > MAX_PUBLIC_KEY_PEM:
        raise SealingError("not a PEM public key of a sane size")
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as e:
        raise SealingError(f"not a PEM public key: {e}") from None
    if not isinstance(key, X25519PublicKey):
        raise SealingError("the public key is not an X25519 key")
    return key


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(pem: str) -> str:
    """
    C{SHA256:<hex>} of the raw public key: what logs and conditions name.
    """
    return "SHA256:" + hashlib.sha256(_raw(load_public_key(pem))).hexdigest()


def sealing_context(cluster_id: str, request_uid: str) -> bytes:
    """
    What a sealed credential is bound to: its cluster and its request.
    """
    return f"cluster={cluster_id}\nrequest={request_uid}".encode()


def _aes_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=_INFO,
    ).derive(shared)


def seal(public_pem: str, plaintext: bytes, context: bytes) -> str:
    """
    Seal C{plaintext} to the public key C{public_pem}, bound to C{context}.
    """
    recipient = load_public_key(public_pem)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_raw = _raw(ephemeral.public_key())
    key = _aes_key(ephemeral.exchange(recipient), ephemeral_raw, _raw(recipient))
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, plaintext, context)
    body = base64.urlsafe_b64encode(ephemeral_raw + nonce + sealed).rstrip(b"=")
    return _PREFIX + body.decode("ascii")


def open_sealed(private_key: X25519PrivateKey, sealed: str, context: bytes) -> bytes:
    """
    Open what L{seal} made for this key and C{context}.

    @raise SealingError: anything else, whatever it is.
    """
    if not isinstance(sealed, str) or not sealed.startswith(_PREFIX):
        raise SealingError("not a sealed credential (v1)")
    if len(sealed) > MAX_SEALED:
        raise SealingError("the sealed credential is too long")
    body = sealed[len(_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SealingError("the sealed credential is not base64") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
        # One value, one spelling: no unused bits or stray characters.
        raise SealingError("the sealed credential is not canonical base64")
    if len(raw) < _RAW + _NONCE + 16:
        raise SealingError("the sealed credential is too short")
    ephemeral_raw, nonce, ciphertext = (
        raw[:_RAW],
        raw[_RAW : _RAW + _NONCE],
        raw[_RAW + _NONCE :],
    )
    try:
        ephemeral = X25519PublicKey.from_public_bytes(ephemeral_raw)
        shared = private_key.exchange(ephemeral)
    except ValueError:
        raise SealingError("the sealed credential has a bad ephemeral key") from None
    key = _aes_key(shared, ephemeral_raw, _raw(private_key.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, context)
    except InvalidTag:
        raise SealingError(
            "the sealed credential was not sealed to this key and cluster"
        ) from None
