"""
The hub's TLS server side: serve a certificate and ask for (but do not require) a
client certificate, whose chain is verified per request against whichever CA the
current authentication configuration trusts.

Verifying after the handshake, rather than in OpenSSL's handshake, lets the
requestheader CA be reloaded from the parent's
C{kube-system/extension-apiserver-authentication} ConfigMap without restarting the
listener, and tells us which CA (front-proxy or client) vouched for the peer.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from zope.interface import implementer

from clusternet.pki import KeyPair

__all__ = [
    "CertificateAuthorities",
    "ReloadableServerTLS",
    "peer_chain",
    "server_tls_options",
]

# How long a chain's verification is remembered (seconds), and for how many
# chains.
VERIFIED_TTL = 10.0
MAX_VERIFIED = 1024


def _accept_any(
    connection: SSL.Connection,
    certificate: crypto.X509,
    errno: int,
    depth: int,
    ok: int,
) -> bool:
    # Chains are verified per request by CertificateAuthorities.verify.
    return True


def server_tls_options(pair: KeyPair) -> CertificateOptions:
    """
    TLS options that serve C{pair} and request an optional client certificate.
    """
    certificates = x509.load_pem_x509_certificates(pair.certificate_pem)
    options = CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(pair.private_key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(certificates[0]),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in certificates[1:]],
        acceptableProtocols=[b"http/1.1"],
    )
    context = options.getContext()
    context.set_verify(SSL.VERIFY_PEER, _accept_any)
    # A connection's peer chain is read once (peer_chain): it must not change
    # under a renegotiation (Go's TLS servers never renegotiate either).
    context.set_options(SSL.OP_NO_RENEGOTIATION)
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """
    Server TLS whose certificate can be replaced while the port listens: each
    new connection gets the current one (L{set_pair}), connections already
    open keep theirs.
    """

    def __init__(self, pair: KeyPair) -> None:
        self.set_pair(pair)

    def set_pair(self, pair: KeyPair) -> None:
        """
        Serve C{pair} to the connections accepted from now on.
        """
        options = server_tls_options(pair)
        options.getContext()  # fail here, not in the next handshake
        self.pair = pair
        self._options = options

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._options.getContext(), None)


# The chain each live TLS connection presented: it cannot change while the
# connection lives, and reading and converting it costs more than a small
# request.
_PEER_CHAINS: weakref.WeakKeyDictionary[Any, tuple[x509.Certificate, ...]] = (
    weakref.WeakKeyDictionary()
)


def peer_chain(transport: Any) -> tuple[x509.Certificate, ...]:
    """
    The certificates a TLS peer presented, leaf first; empty when it sent none or
    the transport is not TLS.  Read once per connection.
    """
    get_peer = getattr(transport, "getPeerCertificate", None)
    if get_peer is None:
        return ()
    handle = getattr(transport, "getHandle", lambda: None)()
    if handle is not None:
        try:
            cached = _PEER_CHAINS.get(handle)
        except TypeError:
            handle = None  # not weakly referenceable: no cache
        else:
            if cached is not None:
                return cached
    chain = _read_peer_chain(get_peer, handle)
    if chain and handle is not None:
        # Only once the handshake gave a certificate: an empty answer may
        # come before the handshake is over.
        _PEER_CHAINS[handle] = chain
    return chain


def _read_peer_chain(
    get_peer: Callable[[], Any], handle: Any
) -> tuple[x509.Certificate, ...]:
    try:
        leaf = get_peer()
    except SSL.Error:
        return ()
    if leaf is None:
        return ()
    chain = [leaf.to_cryptography()]
    if handle is not None:
        # On the server side OpenSSL's peer chain holds the intermediates only.
        for certificate in handle.get_peer_cert_chain() or []:
            as_crypto = certificate.to_cryptography()
            if as_crypto != chain[0]:
                chain.append(as_crypto)
    return tuple(chain)


class CertificateAuthorities:
    """
    A set of trusted CA certificates that verifies client chains.
    """

    def __init__(self, pem: bytes = b"", now: Callable[[], float] = time.time) -> None:
        self.certificates: tuple[x509.Certificate, ...] = (
            tuple(x509.load_pem_x509_certificates(pem)) if pem.strip() else ()
        )
        self._store = crypto.X509Store()
        for certificate in self.certificates:
            self._store.add_cert(crypto.X509.from_cryptography(certificate))
        self._now = now
        self._verified: dict[tuple[x509.Certificate, ...], tuple[float, bool]] = {}

    def __bool__(self) -> bool:
        return bool(self.certificates)

    def verify(self, chain: tuple[x509.Certificate, ...]) -> bool:
        """
        Whether C{chain} (leaf first) leads to one of these CAs, the leaf is
        within its validity period and, if it names extended key usages, allows
        client authentication.
        """
        if not chain or not self.certificates:
            return False
        now = self._now()
        cached = self._verified.get(chain)
        if cached is not None and now < cached[0]:
            return cached[1]
        result = self._verify(chain)
        # Every request of a connection presents the same chain: remember the
        # answer for a little while, never past the leaf's expiry.
        expires = min(now + VERIFIED_TTL, chain[0].not_valid_after_utc.timestamp())
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified[chain] = (expires, result)
        return result

    def _verify(self, chain: tuple[x509.Certificate, ...]) -> bool:
        leaf = chain[0]
        try:
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            pass
        else:
            allowed = {
                x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
                x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
            }
            if not allowed & set(usage):
                return False
        context = crypto.X509StoreContext(
            self._store,
            crypto.X509.from_cryptography(leaf),
            [crypto.X509.from_cryptography(c) for c in chain[1:]],
        )
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError:
            return False
        return True
