"""
The hub's own serving certificate, and the parent's trust in it.

Without C{--tls-cert-file}, the hub keeps a CA and a serving certificate that the
CA signs in a Secret of its namespace (C{clusternet-system/clusternet-hub-serving},
type C{kubernetes.io/tls} with C{ca.crt} and C{ca.key} besides C{tls.crt} and
C{tls.key}). Every replica loads it, or creates it when it is missing (a replica
that loses the race reads and uses the winner's), and renews the serving
certificate with the same CA before it expires; the TLS listener picks up each
new certificate without a restart (L{ReloadableServerTLS}).

L{CABundleInjector} keeps the C{caBundle} of the hub's APIService equal to that
CA (or to C{--apiservice-ca-file}) and C{insecureSkipTLSVerify} absent, so the
parent's aggregation layer verifies the hub instead of sending its users'
identities to whoever answers on the Service's address.

Every Kubernetes call goes through an L{IKubeAPI} (the hub's L{KubeClient} and
its thread pool); no key, and no Secret's data, is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attrs import define, frozen
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredLock, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from clusternet import pki
from clusternet.apis import (
    CREATED_BY_LABEL,
    HUB_NAME,
    HUB_NAMESPACE,
    PROXIES_GROUP,
    PROXIES_VERSION,
)
from clusternet.hub._tls import ReloadableServerTLS
from clusternet.kube import (
    APISERVICES,
    SECRETS,
    AlreadyExists,
    Conflict,
    EventHandler,
    IKubeAPI,
    Informer,
    KubeError,
    NotFound,
)

__all__ = [
    "APISERVICE_NAME",
    "SERVING_SECRET",
    "CABundleInjector",
    "ServingCertificate",
    "ServingMaterial",
    "ServingParts",
    "hub_namespace",
    "make_serving",
    "plan_serving_secret",
    "read_file_bundle",
    "serving_hosts",
]

SERVING_SECRET = "clusternet-hub-serving"  # noqa: S105 - a Secret's name
APISERVICE_NAME = f"{PROXIES_VERSION}.{PROXIES_GROUP}"
SECRET_TYPE = "kubernetes.io/tls"  # noqa: S105 - a Secret type
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
_PEM = Encoding.PEM
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

DAY = 86400.0
CA_DAYS = 3650
SERVING_DAYS = 365
RENEW_BEFORE = 30 * DAY
CHECK_INTERVAL = 300.0
# Attempts of one load-or-create when other replicas keep winning the races.
ATTEMPTS = 5


def hub_namespace(
    flag: str | None, kubeconfig: str | None, namespace_file: str = NAMESPACE_FILE
) -> str:
    """
    The namespace of the hub's own objects: C{--namespace}, else the pod's
    namespace when the hub runs in-cluster (no C{--kubeconfig}), else
    C{clusternet-system}.
    """
    if flag:
        return flag
    if not kubeconfig:
        try:
            with open(namespace_file) as f:
                found = f.read().strip()
        except OSError:
            found = ""
        if found:
            return found
    return HUB_NAMESPACE


def serving_hosts(namespace: str, extra: Iterable[str] = ()) -> list[str]:
    """
    The names the serving certificate holds: the hub Service's
    (C{<service>.<namespace>.svc} is what the aggregator verifies) and
    C{extra} (C{--tls-san}).
    """
    hosts = [
        f"{HUB_NAME}.{namespace}.svc",
        f"{HUB_NAME}.{namespace}.svc.cluster.local",
        HUB_NAME,
        *extra,
    ]
    return list(dict.fromkeys(h for h in hosts if h))


@frozen
class ServingMaterial:
    """
    What the hub serves with and what the parent must trust.

    @ivar ca_bundle: PEM, the CA certificate(s) for the APIService's
        C{caBundle}: the signing CA first, then a previous CA while it is
        still valid.
    @ivar pair: the serving certificate and its key.
    """

    ca_bundle: bytes
    pair: pki.KeyPair

    @property
    def expires(self) -> datetime.datetime:
        return self.pair.certificate.not_valid_after_utc


def _decode(data: Mapping[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _time_left(certificate: x509.Certificate, now: float) -> float:
    return certificate.not_valid_after_utc.timestamp() - now


def _usable_ca(
    data: Mapping[str, Any], now: float, renew_before: float
) -> tuple[pki.KeyPair | None, list[x509.Certificate]]:
    """
    The stored CA when it can sign for a while yet; else, when it is a sound
    CA that merely expires soon, the certificates of C{ca.crt} still valid at
    C{now} (kept in the new bundle). A broken CA is dropped altogether.
    """
    bundle = _decode(data, CA_CERT_KEY)
    key = _decode(data, CA_KEY_KEY)
    if bundle is None or key is None:
        return None, []
    try:
        certificates = x509.load_pem_x509_certificates(bundle)
        first = certificates[0]
        pair = pki.load_pem_pair(first.public_bytes(_PEM), key)
        constraints = first.extensions.get_extension_for_class(x509.BasicConstraints)
    except (ValueError, IndexError, x509.ExtensionNotFound):
        return None, []
    if not constraints.value.ca:
        return None, []
    valid = [c for c in certificates if _time_left(c, now) > 0]
    if _time_left(first, now) <= renew_before:
        return None, valid
    return pair, valid


def _names(certificate: x509.Certificate) -> set[str]:
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return set()
    names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return names


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _usable_leaf(
    data: Mapping[str, Any],
    ca: pki.KeyPair,
    hosts: Sequence[str],
    now: float,
    renew_before: float,
) -> pki.KeyPair | None:
    certificate, key = _decode(data, TLS_CERT_KEY), _decode(data, TLS_KEY_KEY)
    if certificate is None or key is None:
        return None
    try:
        pair = pki.load_pem_pair(certificate, key)
        leaf = pair.certificate
        leaf.verify_directly_issued_by(ca.certificate)
    except (ValueError, TypeError, InvalidSignature):
        return None
    if leaf.not_valid_before_utc.timestamp() > now:
        return None
    if _time_left(leaf, now) <= renew_before:
        return None
    if not {_normal(h) for h in hosts} <= _names(leaf):
        return None
    return pair


def plan_serving_secret(
    data: Mapping[str, Any],
    hosts: Sequence[str],
    now: float,
    *,
    renew_before: float = RENEW_BEFORE,
    serving_days: int = SERVING_DAYS,
    ca_days: int = CA_DAYS,
) -> tuple[ServingMaterial, dict[str, str] | None]:
    """
    Decide what to serve from a serving Secret's C{data} (base64 values, empty
    for a Secret that does not exist yet).

    @return: the material to use, and the Secret's new C{data} when it must be
        written: when anything is missing or broken, when the serving
        certificate expires within C{renew_before} seconds or lacks one of
        C{hosts} (renewed with the same CA), or when the CA itself expires
        within C{renew_before} (a new CA; the old one stays in C{ca.crt} while
        it is valid, so a parent that still trusts only the old CA keeps
        working until the new bundle reaches it).
    """
    ca, valid = _usable_ca(data, now, renew_before)
    if ca is not None:
        leaf = _usable_leaf(data, ca, hosts, now, renew_before)
        bundle = _decode(data, CA_CERT_KEY) or ca.certificate_pem
        if leaf is not None:
            return ServingMaterial(bundle, leaf), None
        # Keep the bundle as stored, but for CAs that expired since.
        bundle = b"".join(c.public_bytes(_PEM) for c in valid)
    else:
        ca = pki.make_ca(f"{HUB_NAME}-ca@{int(now)}", days=ca_days)
        bundle = ca.certificate_pem + b"".join(
            c.public_bytes(_PEM) for c in valid if c != ca.certificate
        )
    leaf = pki.issue_certificate(
        ca, HUB_NAME, hosts=list(hosts), server=True, days=serving_days
    )
    new_data = {
        CA_CERT_KEY: _encode(bundle),
        CA_KEY_KEY: _encode(ca.key_pem),
        TLS_CERT_KEY: _encode(leaf.certificate_pem),
        TLS_KEY_KEY: _encode(leaf.key_pem),
    }
    return ServingMaterial(bundle, leaf), new_data


class ServingCertificate(Service):
    """
    Load or create the serving Secret, then check it every C{check_interval}
    seconds: renew what needs renewing, and pick up what another replica
    renewed. L{subscribe} tells the listener and the injector about each new
    material.

    @param clock: the reactor's time (a L{twisted.internet.task.Clock} in
        tests); certificates' validity is judged by it.
    @param api: the parent (the hub's L{KubeClient}).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        namespace: str,
        hosts: Sequence[str],
        *,
        secret_name: str = SERVING_SECRET,
        check_interval: float = CHECK_INTERVAL,
        renew_before: float = RENEW_BEFORE,
        serving_days: int = SERVING_DAYS,
        ca_days: int = CA_DAYS,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self._clock = clock
        self._api = api
        self.namespace = namespace
        self.secret_name = secret_name
        self.hosts = tuple(hosts)
        self._check_interval = check_interval
        self._renew_before = renew_before
        self._serving_days = serving_days
        self._ca_days = ca_days
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.material: ServingMaterial | None = None
        self._listeners: list[Callable[[ServingMaterial], None]] = []
        self._waiters: list[Deferred[ServingMaterial]] = []
        self._lock = DeferredLock()
        self._loop: Deferred[None] | None = None
        self._sleeping: Deferred[None] | None = None

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.secret_name}"

    def subscribe(self, listener: Callable[[ServingMaterial], None]) -> None:
        """
        Call C{listener} with each new material (at once if there is one).
        """
        self._listeners.append(listener)
        if self.material is not None:
            listener(self.material)

    def when_ready(self) -> Deferred[ServingMaterial]:
        """
        A Deferred that fires with the first material loaded.
        """
        if self.material is not None:
            return succeed(self.material)
        d: Deferred[ServingMaterial] = Deferred()
        self._waiters.append(d)
        return d

    # --- Service ------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(
            lambda f: self._log.failure("Serving certificate loop died", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._sleeping is not None:
            self._sleeping.cancel()
        loop, self._loop = self._loop, None
        return loop if loop is not None else succeed(None)

    async def _run(self) -> None:
        delay = self._retry_initial
        while self.running:
            try:
                await self.refresh()
            except KubeError as e:
                self._log.warn(
                    "Cannot load or create the serving Secret {where}: {error}; "
                    "retrying in {delay}s",
                    where=self.where,
                    error=str(e),
                    delay=delay,
                )
                wait = delay
                delay = min(delay * 2, self._retry_max)
            else:
                delay = self._retry_initial
                wait = self._check_interval
            self._sleeping = deferLater(self._clock, wait, lambda: None)
            try:
                await self._sleeping
            except CancelledError:
                return
            finally:
                self._sleeping = None

    # --- one pass -------------------------------------------------------------------

    def refresh(self) -> Deferred[ServingMaterial]:
        """
        Read the Secret (creating or renewing it when needed) and use what it
        holds; one pass at a time.
        """
        return self._lock.run(lambda: Deferred.fromCoroutine(self._refresh()))

    async def _refresh(self) -> ServingMaterial:
        for _ in range(ATTEMPTS):
            try:
                secret = await self._api.get(SECRETS, self.secret_name, self.namespace)
            except NotFound:
                material, data = self._plan({})
                assert data is not None
                try:
                    await self._api.create(
                        SECRETS, self._new_secret(data), self.namespace
                    )
                except AlreadyExists:
                    # Another replica made it first: use theirs.
                    continue
                self._use(material, "created")
                return material
            material, data = self._plan(secret.get("data") or {})
            if data is None:
                self._use(material, "loaded")
                return material
            body = dict(secret, data=data)
            body.pop("stringData", None)
            try:
                await self._api.update(SECRETS, body, self.namespace)
            except Conflict:
                # Another replica wrote it meanwhile: judge theirs.
                continue
            self._use(material, "renewed")
            return material
        raise Conflict(
            409,
            "Conflict",
            f"the serving Secret {self.where} kept changing under "
            f"{ATTEMPTS} attempts to update it",
        )

    def _plan(
        self, data: Mapping[str, Any]
    ) -> tuple[ServingMaterial, dict[str, str] | None]:
        return plan_serving_secret(
            data,
            self.hosts,
            self._clock.seconds(),
            renew_before=self._renew_before,
            serving_days=self._serving_days,
            ca_days=self._ca_days,
        )

    def _new_secret(self, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": {CREATED_BY_LABEL: HUB_NAME},
            },
            "type": SECRET_TYPE,
            "data": data,
        }

    def _use(self, material: ServingMaterial, how: str) -> None:
        previous = self.material
        if previous == material:
            return
        self.material = material
        leaf = material.pair.certificate
        self._log.info(
            "Serving certificate {how} from Secret {where}: serial {serial}, "
            "names {names}, valid until {expires}; {count} CA certificate(s) "
            "for the APIService's caBundle",
            how=how if previous is None or how != "loaded" else "reloaded",
            where=self.where,
            serial=f"{leaf.serial_number:x}",
            names=sorted(_names(leaf)),
            expires=material.expires.isoformat(),
            count=len(x509.load_pem_x509_certificates(material.ca_bundle)),
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(material)
        for listener in list(self._listeners):
            try:
                listener(material)
            except Exception:
                self._log.failure("Serving certificate listener failed")

    def check(self) -> str | None:
        """
        A readiness check: why the hub does not serve its own certificate yet.
        """
        if self.material is None:
            return f"waiting for the serving Secret {self.where}"
        return None


class CABundleInjector(Service):
    """
    Keep C{spec.caBundle} of the APIService C{name} equal to the hub's CA
    bundle, and C{spec.insecureSkipTLSVerify} absent: at start, when the bundle
    changes, and whenever the APIService changes (the informer, which lists
    and watches that one object by field selector).

    @param bundle: the current bundle (PEM), C{None} before it is known.
    @param reload: read the bundle again from where it is kept, before
        overwriting a C{caBundle} that differs (another replica may have
        rotated the CA).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        api: IKubeAPI,
        apiservices: Informer,
        name: str,
        bundle: Callable[[], bytes | None],
        reload: Callable[[], Deferred[bytes]] | None = None,
        retry: float = 10.0,
    ) -> None:
        self._clock = clock
        self._api = api
        self._informer = apiservices
        self.apiservice = name
        self._bundle = bundle
        self._reload = reload
        self._retry = retry
        self._busy = False
        self._again = False
        self._retry_call: Any = None
        self._missing_logged = False
        self.patches = 0
        apiservices.add_handler(
            EventHandler(add=lambda obj: self.poke(), update=lambda o, n: self.poke())
        )

    def startService(self) -> None:
        super().startService()
        self.poke()

    def stopService(self) -> None:
        super().stopService()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None

    def poke(self) -> None:
        """
        Check the APIService soon (now, unless a check is under way).
        """
        if not self.running:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = Deferred.fromCoroutine(self._reconcile())
        d.addErrback(lambda f: self._log.failure("caBundle injection failed", f))
        d.addBoth(self._done)

    def _done(self, result: object) -> None:
        self._busy = False
        if self._again:
            self._again = False
            self.poke()

    @staticmethod
    def matches(apiservice: Mapping[str, Any], bundle: bytes) -> bool:
        """
        Whether C{apiservice} trusts exactly C{bundle} and verifies its backend.
        """
        spec = apiservice.get("spec") or {}
        if spec.get("insecureSkipTLSVerify"):
            return False
        current = spec.get("caBundle")
        if not isinstance(current, str):
            return False
        try:
            return base64.b64decode(current) == bundle
        except (binascii.Error, ValueError):
            return False

    async def _reconcile(self) -> None:
        apiservice = self._informer.store.get(self.apiservice)
        bundle = self._bundle()
        if apiservice is None:
            if self._informer.has_synced and not self._missing_logged:
                self._missing_logged = True
                self._log.info(
                    "No APIService {name} yet: its caBundle is set once it exists",
                    name=self.apiservice,
                )
            return
        if bundle is None or self.matches(apiservice, bundle):
            return
        if self._reload is not None:
            bundle = await self._reload()
            apiservice = self._informer.store.get(self.apiservice)
            if apiservice is None or self.matches(apiservice, bundle):
                return
        patch = {"spec": {"caBundle": _encode(bundle), "insecureSkipTLSVerify": None}}
        try:
            await self._api.patch(APISERVICES, self.apiservice, patch)
        except KubeError as e:
            self._log.warn(
                "Cannot set the caBundle of APIService {name}: {error}; "
                "retrying in {delay}s",
                name=self.apiservice,
                error=str(e),
                delay=self._retry,
            )
            self._retry_call = self._clock.callLater(self._retry, self.poke)
            return
        self.patches += 1
        self._log.info(
            "Set the caBundle of APIService {name} to the hub's CA "
            "({count} certificate(s)); the parent now verifies the hub",
            name=self.apiservice,
            count=len(x509.load_pem_x509_certificates(bundle)),
        )


def read_file_bundle(path: str) -> bytes:
    """
    A CA bundle file (C{--apiservice-ca-file}), checked to hold certificates.

    @raise ValueError: when it holds none.
    """
    with open(path, "rb") as f:
        pem = f.read()
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError(f"{path} holds no PEM certificate") from None
    return pem


@define
class ServingParts:
    """
    What serves the hub's certificate and keeps the parent's trust in it, as
    the options ask.

    @ivar tls: the listener's TLS (C{None} with C{--listen}, which carries its
        own).
    @ivar serving: the Secret-kept certificate (C{None} when files are given).
    @ivar injector: the APIService's caBundle keeper (C{None} when off).
    """

    tls: ReloadableServerTLS | None
    serving: ServingCertificate | None = None
    apiservices: Informer | None = None
    injector: CABundleInjector | None = None

    def services(self) -> list[Service]:
        return [s for s in (self.serving, self.apiservices, self.injector) if s]


def make_serving(
    reactor: Any, api: IKubeAPI, options: Mapping[str, Any]
) -> ServingParts:
    """
    The hub's serving certificate and caBundle injection from its options:
    C{--tls-cert-file} (and C{--apiservice-ca-file}), C{--listen}, or the
    Secret-kept CA.
    """
    cert_file, key_file = options["tls-cert-file"], options["tls-private-key-file"]
    ca_file = options["apiservice-ca-file"]
    if cert_file or options["listen"]:
        tls = None
        if cert_file:
            with open(cert_file, "rb") as c, open(key_file, "rb") as k:
                tls = ReloadableServerTLS(pki.load_pem_pair(c.read(), k.read()))
        parts = ServingParts(tls)
        if ca_file and options["apiservice-ca-injection"]:
            pem = read_file_bundle(ca_file)
            parts.apiservices, parts.injector = _injection(
                reactor, api, options, lambda: pem
            )
        return parts
    namespace = hub_namespace(options["namespace"], options["kubeconfig"])
    serving = ServingCertificate(
        reactor,
        api,
        namespace,
        serving_hosts(namespace, options["tls-san"]),
        secret_name=options["serving-secret"],
    )
    # Until the Secret is read the port serves a throwaway certificate that
    # nobody trusts: probes answer, the parent's aggregator refuses it.
    tls = ReloadableServerTLS(
        pki.issue_certificate(None, f"{HUB_NAME}-provisional", server=True, days=1)
    )
    serving.subscribe(lambda material: tls.set_pair(material.pair))
    parts = ServingParts(tls, serving)
    if options["apiservice-ca-injection"]:

        def bundle() -> bytes | None:
            return serving.material.ca_bundle if serving.material else None

        def reload() -> Deferred[bytes]:
            return serving.refresh().addCallback(lambda m: m.ca_bundle)

        parts.apiservices, parts.injector = _injection(
            reactor, api, options, bundle, reload
        )
        injector = parts.injector
        serving.subscribe(lambda material: injector.poke())
    return parts


def _injection(
    reactor: Any,
    api: IKubeAPI,
    options: Mapping[str, Any],
    bundle: Callable[[], bytes | None],
    reload: Callable[[], Deferred[bytes]] | None = None,
) -> tuple[Informer, CABundleInjector]:
    name = options["apiservice-name"]
    apiservices = Informer(
        reactor,
        api,
        APISERVICES,
        field_selector=f"metadata.name={name}",
        resync_period=CHECK_INTERVAL,
    )
    return apiservices, CABundleInjector(
        reactor, api, apiservices, name, bundle, reload
    )
