"""
The small part of JOSE (RFC 7515, 7519) the sandbox needs: compact JWS signed with
RS256 or ES256 (service-account tokens) and HS256 (the bootstrap signer's detached
signatures), serialized byte for byte as Go's go-jose does (compact JSON, keys of
the claims sorted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "JOSEError",
    "SignatureError",
    "SigningKey",
    "b64url_decode",
    "b64url_encode",
    "key_id",
    "load_signing_key",
    "sign_jwt",
    "unverified_claims",
    "verify_jwt",
]

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# Tokens longer than this are refused before any decoding (the real server's
# bearer tokens are a few KiB at most).
MAX_TOKEN_LENGTH = 64 * 1024


class JOSEError(ValueError):
    """
    A JWS that does not parse or whose signature does not verify.
    """


class SignatureError(JOSEError):
    """
    A well-formed JWS of a supported algorithm whose signature no key verifies.
    """


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """
    Unpadded base64url, strictly (padding, stray characters refused).
    """
    if "=" in text or len(text) % 4 == 1:
        raise JOSEError("malformed base64url")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise JOSEError("malformed base64url") from None
    try:
        decoded = base64.b64decode(
            raw.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(raw) % 4),
            validate=True,
        )
    except binascii.Error:
        raise JOSEError("malformed base64url") from None
    if b64url_encode(decoded) != text:
        raise JOSEError("malformed base64url")
    return decoded


def compact_json(value: Any) -> bytes:
    """
    JSON as Go's encoding/json writes a map: no spaces, keys sorted, and
    C{<>&} escaped as Go does.
    """
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e")
    return text.replace("&", "\\u0026").encode("utf-8")


def load_signing_key(pem: bytes) -> SigningKey:
    """
    An RSA (>= 2048 bits) or P-256 private key from PEM.

    @raise ValueError: anything else.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError("RSA service-account keys need at least 2048 bits")
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return key
    raise ValueError("service-account keys are RSA or EC P-256")


def _algorithm(key: SigningKey | VerifyingKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    return "ES256"


def key_id(public_key: VerifyingKey) -> str:
    """
    The C{kid} Kubernetes puts in tokens: base64url(SHA-256(DER PKIX public key)).
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url_encode(hashlib.sha256(der).digest())


def sign_jwt(key: SigningKey, claims: dict[str, Any]) -> str:
    """
    A compact JWS over C{claims} with header C{{"alg": ..., "kid": ...}}.
    """
    alg = _algorithm(key)
    header = {"alg": alg, "kid": key_id(key.public_key())}
    signing_input = (
        b64url_encode(compact_json(header)) + "." + b64url_encode(compact_json(claims))
    ).encode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return signing_input.decode("ascii") + "." + b64url_encode(signature)


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if len(token) > MAX_TOKEN_LENGTH:
        raise JOSEError("token too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise JOSEError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise JOSEError("malformed JWS") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JOSEError("malformed JWS")
    signature = b64url_decode(parts[2])
    signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    return header, claims, signing_input, signature


def unverified_claims(token: str) -> dict[str, Any]:
    """
    The claims of a compact JWS, NOT verified: only to pick the validator (the
    real server peeks at C{iss} the same way).
    """
    return _split(token)[1]


def verify_jwt(token: str, keys: list[VerifyingKey]) -> dict[str, Any]:
    """
    The claims of C{token} when one of C{keys} verifies its signature.

    Only RS256 and ES256 are accepted (never C{none} or HMAC).

    @raise JOSEError: malformed, unsupported algorithm or bad signature.
    """
    header, claims, signing_input, signature = _split(token)
    alg = header.get("alg")
    if alg not in ("RS256", "ES256"):
        raise JOSEError(f"unsupported signing algorithm {str(alg)[:20]!r}")
    if "crit" in header:
        raise JOSEError("unsupported critical header")
    for key in keys:
        if _algorithm(key) != alg:
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(
                    signature, signing_input, padding.PKCS1v15(), hashes.SHA256()
                )
            else:
                if len(signature) != 64:
                    continue
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"),
                    int.from_bytes(signature[32:], "big"),
                )
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return claims
    raise SignatureError("square/go-jose: error in cryptographic primitive")


def detached_hs256(content: str, token_id: str, token_secret: str) -> str:
    """
    The detached JWS the bootstrap signer writes: header
    C{{"alg":"HS256","kid":<token-id>}}, HMAC-SHA256 keyed with the token's
    secret part, over base64url(header) "." base64url(content), serialized
    C{<header>..<signature>}.
    """
    header = b64url_encode(compact_json({"alg": "HS256", "kid": token_id}))
    signing_input = header + "." + b64url_encode(content.encode("utf-8"))
    mac = hmac.new(
        token_secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    )
    return header + ".." + b64url_encode(mac.digest())
