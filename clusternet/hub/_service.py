"""
The hub as a Twisted service.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.logger import Logger
from twisted.web.server import Site

from clusternet import pki
from clusternet._runtime import CleanExitOnSIGTERM
from clusternet._web import StatusRoot
from clusternet.health import HealthChecks, add_probes

__all__ = ["make_hub_service", "serving_pair"]

_log = Logger()


def serving_pair(options: Any) -> pki.KeyPair:
    """
    The hub's serving certificate: from files, or self-signed in memory.
    """
    cert_file, key_file = options["tls-cert-file"], options["tls-private-key-file"]
    if cert_file:
        with open(cert_file, "rb") as c, open(key_file, "rb") as k:
            return pki.load_pem_pair(c.read(), k.read())
    _log.warn(
        "No --tls-cert-file given: serving with a self-signed certificate made in "
        "memory. The parent's APIService must then set insecureSkipTLSVerify; give a "
        "certificate signed by a CA the parent trusts in production."
    )
    return pki.issue_certificate(
        None,
        "clusternet-hub",
        hosts=["localhost", "127.0.0.1", "::1", "clusternet-hub"],
        server=True,
    )


def _endpoint(reactor: Any, options: Any) -> IStreamServerEndpoint:
    if options["listen"]:
        return serverFromString(reactor, options["listen"])
    pair = serving_pair(options)
    certificate = PrivateCertificate.loadPEM(pair.certificate_pem + pair.key_pem)
    context: CertificateOptions = certificate.options()
    return SSL4ServerEndpoint(
        reactor, options["secure-port"], context, interface=options["bind-address"]
    )


def make_hub_service(reactor: IReactorCore, options: Any) -> IService:
    """
    Build the hub's services from parsed L{clusternet.hub.HubOptions}.
    """
    top = MultiService()
    CleanExitOnSIGTERM(reactor).setServiceParent(top)
    checks = HealthChecks()
    root = StatusRoot()
    add_probes(root, checks)
    site = Site(root)
    site.displayTracebacks = False
    StreamServerEndpointService(_endpoint(reactor, options), site).setServiceParent(top)
    if options["metrics-listen"]:
        probes = StatusRoot()
        add_probes(probes, checks)
        StreamServerEndpointService(
            serverFromString(reactor, options["metrics-listen"]), Site(probes)
        ).setServiceParent(top)
    return top
