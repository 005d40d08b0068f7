"""
Certificates and keys, made in memory with C{cryptography}.

The hub makes a self-signed serving pair when it is given none; the sandbox makes
its cluster CA, front-proxy CA, serving and client certificates; tests make all of
these.  Nothing here touches the reactor or the disk.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence

from attrs import field, frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KeyPair", "issue_certificate", "load_pem_pair", "make_ca"]

_ONE_DAY = datetime.timedelta(days=1)


@frozen
class KeyPair:
    """
    A certificate and its private key, both in PEM.
    """

    certificate_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem)

    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        return key  # type: ignore[return-value]

    def __repr__(self) -> str:
        subject = self.certificate.subject.rfc4514_string()
        return f"<KeyPair {subject} key=<redacted>>"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations
    ]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def make_ca(common_name: str, days: int = 3650) -> KeyPair:
    """
    A self-signed certificate authority.
    """
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_certificate(
    issuer: KeyPair | None,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    hosts: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> KeyPair:
    """
    Issue a leaf certificate signed by C{issuer} (self-signed when it is C{None}).

    @param hosts: DNS names and IP addresses put in the subjectAltName.
    @param organizations: O= values; Kubernetes reads them as the user's groups.
    """
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(common_name, organizations)
    if issuer is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_name = issuer.certificate.subject
        signing_key = issuer.private_key  # type: ignore[assignment]
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.certificate.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    certificate = builder.sign(signing_key, hashes.SHA256())
    return KeyPair(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_pem_pair(certificate_pem: bytes, key_pem: bytes) -> KeyPair:
    """
    Check that a certificate and key read from files belong together.

    @raise ValueError: when either does not parse or they do not match.
    """
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as e:
        raise ValueError(f"certificate is not PEM: {e}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"private key is not an unencrypted PEM key: {e}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(
        encoding, public
    ) != key.public_key().public_bytes(encoding, public):
        raise ValueError("private key does not match the certificate")
    return KeyPair(certificate_pem, key_pem)
