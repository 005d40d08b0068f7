"""
The sandbox API server as a Twisted service: certificates and keys under its data
directory, the admin kubeconfig, persisted state, HTTPS with client certificates.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL, crypto

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IReactorSSL,
    IReactorTime,
)
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from clusternet.health import HealthChecks
from clusternet.pki import KeyPair, issue_certificate, load_pem_pair, make_ca
from clusternet.proxy import ConnectionBudget, StreamingSite
from clusternet.sandbox._aggregator import AggregationRoot, Aggregator
from clusternet.sandbox._auth_api import IAuthenticator, IAuthorizer, UserInfo
from clusternet.sandbox._controllers import CRDController, NamespaceController
from clusternet.sandbox._defaultauth import CertificateAuthenticator, MastersAuthorizer
from clusternet.sandbox._http import SandboxAPI, VersionInfo
from clusternet.sandbox._persist import FileJournal, load_state, write_snapshot
from clusternet.sandbox._resources import Registry, ResourceType
from clusternet.sandbox._store import Store
from clusternet.sandbox._store_api import JSONObject, StoreError
from clusternet.sandbox._wiring import AuthWiring

__all__ = [
    "SandboxMaterial",
    "SandboxServer",
    "load_or_create_material",
    "make_sandbox",
]

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@frozen
class SandboxMaterial:
    """
    The certificates and keys of one sandbox, as files under its data directory.
    """

    directory: Path
    ca: KeyPair
    front_proxy_ca: KeyPair
    front_proxy_client: KeyPair
    serving: KeyPair
    admin: KeyPair
    service_account_key_pem: bytes

    @property
    def service_account_public_pem(self) -> bytes:
        key = serialization.load_pem_private_key(self.service_account_key_pem, None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def kubeconfig_path(self) -> Path:
        return self.directory / "admin.kubeconfig"


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _pair(directory: Path, stem: str, make: Callable[[], KeyPair]) -> KeyPair:
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    if cert.exists() and key.exists():
        return load_pem_pair(cert.read_bytes(), key.read_bytes())
    pair = make()
    _write(key, pair.key_pem, secret=True)
    _write(cert, pair.certificate_pem)
    return pair


def _subject_alt_names(pair: KeyPair) -> list[str]:
    """
    The DNS names and IP addresses (as text) in a certificate's subjectAltName.
    """
    try:
        extension = pair.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(extension.value.get_values_for_type(x509.DNSName))
    names.extend(
        str(address) for address in extension.value.get_values_for_type(x509.IPAddress)
    )
    return names


def _names_covered(pair: KeyPair, hosts: Iterable[str]) -> bool:
    have = set()
    for name in _subject_alt_names(pair):
        try:
            have.add(str(ipaddress.ip_address(name)))
        except ValueError:
            have.add(name.lower())
    for host in hosts:
        try:
            wanted = str(ipaddress.ip_address(host))
        except ValueError:
            wanted = host.lower()
        if wanted not in have:
            return False
    return True


def load_or_create_material(
    directory: Path, hosts: Iterable[str] = ()
) -> SandboxMaterial:
    """
    Read the sandbox's PKI from C{directory}, making what is missing: cluster CA,
    front-proxy CA and client, serving certificate for 127.0.0.1/localhost, admin
    client (CN=kubernetes-admin, O=system:masters), service-account signing key.

    @param hosts: more DNS names and IP addresses for the serving certificate;
        an existing certificate that lacks one of them is issued again (same
        CA, so clients that trust the sandbox keep trusting it).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = _pair(directory, "ca", lambda: make_ca("kubernetes"))
    front_proxy_ca = _pair(
        directory, "front-proxy-ca", lambda: make_ca("front-proxy-ca")
    )
    front_proxy_client = _pair(
        directory,
        "front-proxy-client",
        lambda: issue_certificate(front_proxy_ca, "front-proxy-client", client=True),
    )
    names = (
        "127.0.0.1",
        "::1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "10.96.0.1",
        *hosts,
    )
    serving = _pair(
        directory,
        "apiserver",
        lambda: issue_certificate(ca, "kube-apiserver", hosts=names, server=True),
    )
    if not _names_covered(serving, names):
        # Asked to serve under a name the certificate lacks (a new --tls-san or
        # --host): issue it again from the same CA, keeping the names it had.
        wider = tuple(dict.fromkeys((*_subject_alt_names(serving), *names)))
        serving = issue_certificate(ca, "kube-apiserver", hosts=wider, server=True)
        _write(directory / "apiserver.key", serving.key_pem, secret=True)
        _write(directory / "apiserver.crt", serving.certificate_pem)
    admin = _pair(
        directory,
        "admin",
        lambda: issue_certificate(
            ca, "kubernetes-admin", organizations=["system:masters"], client=True
        ),
    )
    sa_path = directory / "sa.key"
    if sa_path.exists():
        sa_key = sa_path.read_bytes()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write(sa_path, sa_key, secret=True)
    material = SandboxMaterial(
        directory, ca, front_proxy_ca, front_proxy_client, serving, admin, sa_key
    )
    pub = directory / "sa.pub"
    if not pub.exists():
        _write(pub, material.service_account_public_pem)
    return material


@implementer(IOpenSSLServerConnectionCreator)
class _TLSContextFactory:
    """
    Serving certificate; client certificates are optional but, when given, must
    chain to one of the client CAs.
    """

    def __init__(self, serving: KeyPair, client_cas: list[KeyPair]) -> None:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(serving.certificate)
        context.use_privatekey(serving.private_key)  # type: ignore[arg-type]
        context.check_privatekey()
        store = context.get_cert_store()
        assert store is not None
        for ca in client_cas:
            store.add_cert(crypto.X509.from_cryptography(ca.certificate))
            context.add_client_ca(ca.certificate)
        context.set_verify(
            SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok)
        )
        context.set_session_id(b"clusternet-sandbox")
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


class SandboxServer(Service):
    """
    A sandbox API server on C{host:port} (0 picks one) with state in C{data_dir}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        name: str = "sandbox",
        git_version: str = "v1.32.0",
        platform: str | None = None,
        history: int = 10000,
        bookmark_interval: float = 60.0,
        authenticator: IAuthenticator | None = None,
        authorizer: IAuthorizer | None = None,
        persist: bool = True,
        anonymous: bool = False,
        static_tokens: Mapping[str, UserInfo] | None = None,
        aggregate: Mapping[tuple[str, str], str] | None = None,
        aggregator_interval: float = 10.0,
    ) -> None:
        self._reactor = reactor
        self.data_dir = Path(data_dir)
        self._requested_port = port
        self.host = host
        self.cluster_name = name
        # The serving certificate names the address it listens on (not the
        # wildcard addresses, which no client dials).
        extra = () if host in ("0.0.0.0", "::", "") else (host,)  # noqa: S104
        self.material = load_or_create_material(self.data_dir, extra)
        self.registry = Registry.with_builtins()
        self._state_dir = self.data_dir / "state"
        self._persist = persist
        self.journal: FileJournal | None = (
            FileJournal(self._state_dir) if persist else None
        )
        clock: IReactorTime = reactor
        self.store = Store(self.registry, clock, history=history, journal=self.journal)
        if persist:
            rv, objects = load_state(self._state_dir)
            self.store.load(rv, iter(objects))
        self.health = HealthChecks()
        self.health.add("log", lambda: None)
        self.health.add("etcd", lambda: None)
        self.health.add(
            "poststarthook/start-apiextensions-controllers",
            lambda: None if self.running else "not started",
        )
        self.api = SandboxAPI(
            self.store,
            self.registry,
            clock,
            authenticator or CertificateAuthenticator(self.material.ca.certificate),
            authorizer or MastersAuthorizer(),
            version=VersionInfo(git_version, platform),
            health=self.health,
            server_address=lambda: f"{self.host}:{self.port}",
            bookmark_interval=bookmark_interval,
        )
        self._crds = CRDController(self.store, self.registry)
        self._namespaces = NamespaceController(
            self.store, self.material.ca.certificate_pem.decode()
        )
        self._listening: IListeningPort | None = None
        self.port = port
        self.auth: AuthWiring | None = None
        if authenticator is None and authorizer is None:
            self.auth = AuthWiring(
                self, reactor, anonymous=anonymous, static_tokens=static_tokens
            )
            self.auth.install()
        self.aggregator = Aggregator(
            reactor,
            self.store,
            self.material.front_proxy_client,
            self.api.identify,
            overrides=aggregate,
            refresh_interval=aggregator_interval,
            authorize=lambda attributes: self.api.authorizer.authorize(attributes),
        )
        self.api.aggregator = self.aggregator

    # --- wiring for authentication, authorization and controllers ------------------

    def set_authenticator(self, authenticator: IAuthenticator) -> None:
        self.api.authenticator = authenticator

    def set_authorizer(self, authorizer: IAuthorizer) -> None:
        self.api.authorizer = authorizer

    def add_create_handler(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        handler: Callable[..., JSONObject],
        *,
        namespaced: bool = False,
        singular: str | None = None,
    ) -> None:
        """
        Serve a create-only resource (TokenReview, SubjectAccessReview, ...):
        C{handler(user, namespace, name, body)} returns the 201 body or raises
        L{StoreError}.
        """
        self.registry.add(
            ResourceType(
                group,
                version,
                plural,
                singular or kind.lower(),
                kind,
                namespaced,
                verbs=("create",),
                handler=handler,
            )
        )

    def add_subresource_handler(
        self,
        group: str,
        plural: str,
        subresource: str,
        handler: Callable[..., JSONObject],
        *,
        response_group: str,
        response_version: str,
        response_kind: str,
    ) -> None:
        """
        Serve C{POST .../<plural>/<name>/<subresource>} (TokenRequest:
        C{("", "serviceaccounts", "token")}).
        """
        for rtype in list(self.registry):
            if rtype.group == group and rtype.plural == plural:
                extra = (
                    subresource,
                    response_group,
                    response_version,
                    response_kind,
                    ("create",),
                )
                import attrs

                self.registry.add(
                    attrs.evolve(
                        rtype, subresource_kinds=(*rtype.subresource_kinds, extra)
                    )
                )
        self.api.sub_handlers[(group, plural, subresource)] = handler

    def seed(self, resource: str, obj: JSONObject) -> None:
        """
        Create C{obj} unless an object of that name exists.
        """
        meta = obj.get("metadata") or {}
        if self.store.peek(resource, meta.get("namespace"), meta["name"]) is None:
            try:
                self.store.create(resource, meta.get("namespace"), obj)
            except StoreError as e:
                self._log.warn(
                    "seeding {resource} {name}: {error}",
                    resource=resource,
                    name=meta["name"],
                    error=e.message,
                )

    # --- service ------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def startService(self) -> None:
        if self._persist:
            write_snapshot(
                self._state_dir, self.store.resource_version, self.store.dump()
            )
            assert self.journal is not None
            self.journal.start()
        self._crds.start()
        self._namespaces.start()
        for namespace in DEFAULT_NAMESPACES:
            self.seed(
                "/namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace},
                },
            )
        self.seed(
            "/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "clusterIP": "10.96.0.1",
                    "clusterIPs": ["10.96.0.1"],
                    "ports": [
                        {
                            "name": "https",
                            "port": 443,
                            "protocol": "TCP",
                            "targetPort": 6443,
                        }
                    ],
                },
            },
        )
        # As the real API server publishes it for aggregated API servers.
        self.seed(
            "/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "extension-apiserver-authentication",
                    "namespace": "kube-system",
                },
                "data": {
                    "client-ca-file": self.material.ca.certificate_pem.decode(),
                    "requestheader-client-ca-file": (
                        self.material.front_proxy_ca.certificate_pem.decode()
                    ),
                    "requestheader-allowed-names": '["front-proxy-client"]',
                    "requestheader-username-headers": '["X-Remote-User"]',
                    "requestheader-group-headers": '["X-Remote-Group"]',
                    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
                },
            },
        )
        # A line per request at debug, as kube-apiserver logs requests only at -v.
        # The same connection budget as the hub's defaults (heads, deadlines).
        site = StreamingSite(
            AggregationRoot(self.api, self.aggregator),
            reactor=self._reactor,
            access_log=LogLevel.debug,
            budget=ConnectionBudget(),
        )
        site.displayTracebacks = False
        site.noisy = False
        factory = _TLSContextFactory(
            self.material.serving, [self.material.ca, self.material.front_proxy_ca]
        )
        reactor: IReactorSSL = self._reactor
        creator: Any = (
            factory  # an IOpenSSLServerConnectionCreator, which listenSSL takes
        )
        self._listening = reactor.listenSSL(
            self._requested_port, site, creator, interface=self.host
        )
        self.port = self._listening.getHost().port  # type: ignore[attr-defined]
        if self.auth is not None:
            self.auth.start()
        self.aggregator.start()
        self.write_kubeconfig()
        super().startService()
        self._log.info(
            "sandbox {name} serving on {url}", name=self.cluster_name, url=self.url
        )

    def kubeconfig(
        self, user: str = "admin", pair: KeyPair | None = None
    ) -> JSONObject:
        pair = pair or self.material.admin
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        name = self.cluster_name
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": b64(
                            self.material.ca.certificate_pem
                        ),
                    },
                }
            ],
            "users": [
                {
                    "name": f"{name}-{user}",
                    "user": {
                        "client-certificate-data": b64(pair.certificate_pem),
                        "client-key-data": b64(pair.key_pem),
                    },
                }
            ],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": f"{name}-{user}"}}
            ],
            "current-context": name,
            "preferences": {},
        }

    def write_kubeconfig(self) -> Path:
        path = self.material.kubeconfig_path
        _write(
            path,
            yaml.safe_dump(self.kubeconfig(), sort_keys=False).encode(),
            secret=True,
        )
        return path

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.auth is not None:
            self.auth.stop()
        self.api.stop_watches()
        stopping: Deferred[Any] = self.aggregator.stop()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            stopping.addBoth(lambda _: maybeDeferred(listening.stopListening))

        def persist(_: object) -> None:
            if self._persist and self.journal is not None:
                self.journal.stop()
                write_snapshot(
                    self._state_dir, self.store.resource_version, self.store.dump()
                )

        stopping.addBoth(persist)
        return stopping


def make_sandbox(reactor: Any, data_dir: Path | str, **kwargs: Any) -> SandboxServer:
    """
    A L{SandboxServer} (not yet started) with state in C{data_dir}.
    """
    return SandboxServer(reactor, Path(data_dir), **kwargs)


def certificate_of(pair: KeyPair) -> x509.Certificate:
    return pair.certificate
