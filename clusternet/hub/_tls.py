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

from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto

from twisted.internet.ssl import CertificateOptions

from clusternet.pki import KeyPair

__all__ = ["CertificateAuthorities", "peer_chain", "server_tls_options"]


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
    return options


def peer_chain(transport: Any) -> tuple[x509.Certificate, ...]:
    """
    The certificates a TLS peer presented, leaf first; empty when it sent none or
    the transport is not TLS.
    """
    get_peer = getattr(transport, "getPeerCertificate", None)
    if get_peer is None:
        return ()
    try:
        leaf = get_peer()
    except SSL.Error:
        return ()
    if leaf is None:
        return ()
    chain = [leaf.to_cryptography()]
    handle = getattr(transport, "getHandle", lambda: None)()
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

    def __init__(self, pem: bytes = b"") -> None:
        self.certificates: tuple[x509.Certificate, ...] = (
            tuple(x509.load_pem_x509_certificates(pem)) if pem.strip() else ()
        )
        self._store = crypto.X509Store()
        for certificate in self.certificates:
            self._store.add_cert(crypto.X509.from_cryptography(certificate))

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
