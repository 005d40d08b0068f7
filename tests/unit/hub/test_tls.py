"""
The hub's TLS helpers: a connection's peer chain is read once, and a chain's
verification is remembered briefly, never past the leaf's expiry.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from OpenSSL import crypto

from clusternet import pki
from clusternet.hub import _tls
from clusternet.hub._tls import VERIFIED_TTL, CertificateAuthorities, peer_chain

CA = pki.make_ca("front-proxy-ca")
OTHER_CA = pki.make_ca("someone-else")
LEAF = pki.issue_certificate(CA, "front-proxy-client", client=True)
FORGED = pki.issue_certificate(OTHER_CA, "front-proxy-client", client=True)


class Handle:
    """
    Stands for the pyOpenSSL connection of one TLS connection.
    """

    def get_peer_cert_chain(self) -> list[crypto.X509]:
        return []


class TLSTransport:
    def __init__(self, pair: pki.KeyPair | None) -> None:
        self.pair = pair
        self.handle = Handle()
        self.reads = 0

    def getHandle(self) -> Handle:
        return self.handle

    def getPeerCertificate(self) -> crypto.X509 | None:
        self.reads += 1
        if self.pair is None:
            return None
        return crypto.X509.from_cryptography(self.pair.certificate)


def test_peer_chain_is_read_once_per_connection() -> None:
    transport = TLSTransport(LEAF)
    first = peer_chain(transport)
    assert first == (LEAF.certificate,)
    assert peer_chain(transport) is first
    assert transport.reads == 1
    other = TLSTransport(FORGED)
    assert peer_chain(other) == (FORGED.certificate,)
    assert other.reads == 1


def test_peer_chain_without_a_certificate_is_asked_again() -> None:
    transport = TLSTransport(None)
    assert peer_chain(transport) == ()
    transport.pair = LEAF
    assert peer_chain(transport) == (LEAF.certificate,)


def test_peer_chain_cache_does_not_keep_connections_alive() -> None:
    transport = TLSTransport(LEAF)
    peer_chain(transport)
    before = len(_tls._PEER_CHAINS)
    del transport
    assert len(_tls._PEER_CHAINS) == before - 1


def test_peer_chain_of_a_plain_transport_is_empty() -> None:
    assert peer_chain(object()) == ()


class Counting(CertificateAuthorities):
    def __init__(self, pem: bytes, now: Any) -> None:
        super().__init__(pem, now=now)
        self.checks = 0

    def _verify(self, chain: tuple[x509.Certificate, ...]) -> bool:
        self.checks += 1
        return super()._verify(chain)


def test_verification_is_remembered_for_a_while() -> None:
    clock = [1_000_000.0 + LEAF.certificate.not_valid_before_utc.timestamp()]
    authorities = Counting(CA.certificate_pem, lambda: clock[0])
    assert authorities.verify((LEAF.certificate,))
    assert not authorities.verify((FORGED.certificate,))
    assert authorities.verify((LEAF.certificate,))
    assert not authorities.verify((FORGED.certificate,))
    assert authorities.checks == 2
    clock[0] += VERIFIED_TTL
    assert authorities.verify((LEAF.certificate,))
    assert authorities.checks == 3


def test_verification_is_not_remembered_past_the_leaf_expiry() -> None:
    expiry = LEAF.certificate.not_valid_after_utc.timestamp()
    clock = [expiry - VERIFIED_TTL / 2]
    authorities = Counting(CA.certificate_pem, lambda: clock[0])
    authorities.verify((LEAF.certificate,))
    clock[0] = expiry
    authorities.verify((LEAF.certificate,))
    assert authorities.checks == 2
