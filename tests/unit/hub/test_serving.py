"""
The hub's own serving certificate: loaded from, or created in, a Secret of its
namespace (replicas racing converge on one), renewed with the same CA before it
expires; and the caBundle of its APIService kept equal to that CA.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from clusternet import pki
from clusternet.hub import HubOptions
from clusternet.hub._serving import (
    APISERVICE_NAME,
    DAY,
    SERVING_SECRET,
    CABundleInjector,
    ServingCertificate,
    hub_namespace,
    make_serving,
    plan_serving_secret,
    serving_hosts,
)
from clusternet.hub._tls import ReloadableServerTLS
from clusternet.kube import (
    APISERVICES,
    SECRETS,
    Conflict,
    Forbidden,
    Informer,
    KubeUnavailable,
    testing,
)

NS = "clusternet-system"
HOSTS = serving_hosts(NS, ["localhost", "127.0.0.1"])
APISERVICE: dict[str, Any] = {
    "apiVersion": "apiregistration.k8s.io/v1",
    "kind": "APIService",
    "metadata": {"name": APISERVICE_NAME},
    "spec": {
        "group": "proxies.clusternet.io",
        "version": "v1alpha1",
        "insecureSkipTLSVerify": True,
        "service": {"name": "clusternet-hub", "namespace": NS, "port": 443},
    },
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_data(
    ca: pki.KeyPair, leaf: pki.KeyPair, bundle: bytes | None = None
) -> dict[str, str]:
    return {
        "ca.crt": b64(bundle or ca.certificate_pem),
        "ca.key": b64(ca.key_pem),
        "tls.crt": b64(leaf.certificate_pem),
        "tls.key": b64(leaf.key_pem),
    }


def store_secret(api: testing.MemoryKubeAPI, data: Mapping[str, str]) -> None:
    api.create(
        SECRETS,
        {
            "metadata": {"name": SERVING_SECRET, "namespace": NS},
            "type": "kubernetes.io/tls",
            "data": dict(data),
        },
        NS,
    )


def stored(api: testing.MemoryKubeAPI) -> dict[str, Any]:
    [secret] = api.objects(SECRETS)
    return secret


def decoded(secret: Mapping[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


class RacingAPI(testing.MemoryKubeAPI):
    """
    Another replica creates the Secret just before this one does.
    """

    winner: dict[str, str] | None = None

    def create(self, resource: Any, body: Mapping[str, Any], *a: Any, **kw: Any) -> Any:
        if resource == SECRETS and self.winner is None:
            self.winner = plan_serving_secret({}, HOSTS, time.time())[1]
            assert self.winner is not None
            store_secret(self, self.winner)
        return super().create(resource, body, *a, **kw)


class ServingCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        # Certificates are made with the real time: the clock starts there.
        self.clock.advance(time.time())
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        self.events: list[dict[str, Any]] = []
        self.seen: list[pki.KeyPair] = []

    def serving(self, api: testing.MemoryKubeAPI | None = None) -> ServingCertificate:
        serving = ServingCertificate(self.clock, api or self.api, NS, HOSTS)
        serving._log = Logger(observer=cast(ILogObserver, self.events.append))
        serving.subscribe(lambda material: self.seen.append(material.pair))
        serving.startService()
        self.addCleanup(serving.stopService)
        return serving

    def test_first_start_creates_a_ca_and_a_serving_certificate_it_signs(
        self,
    ) -> None:
        serving = self.serving()
        material = self.successResultOf(serving.when_ready())
        secret = stored(self.api)
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(
            set(secret["data"]), {"ca.crt", "ca.key", "tls.crt", "tls.key"}
        )
        self.assertEqual(decoded(secret, "ca.crt"), material.ca_bundle)
        self.assertEqual(decoded(secret, "tls.crt"), material.pair.certificate_pem)
        ca = x509.load_pem_x509_certificate(material.ca_bundle)
        leaf = material.pair.certificate
        leaf.verify_directly_issued_by(ca)
        names = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        self.assertIn(
            "clusternet-hub.clusternet-system.svc",
            names.get_values_for_type(x509.DNSName),
        )
        self.assertIn("localhost", names.get_values_for_type(x509.DNSName))
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, usage)
        # Ten years for the CA, one for the serving certificate.
        self.assertGreater(
            ca.not_valid_after_utc.timestamp() - self.clock.seconds(), 3600 * DAY
        )
        left = leaf.not_valid_after_utc.timestamp() - self.clock.seconds()
        self.assertTrue(360 * DAY < left < 366 * DAY)
        self.assertEqual(self.seen, [material.pair])
        self.assertIsNone(serving.check())

    def test_a_second_replica_uses_the_secret_as_it_is(self) -> None:
        first = self.successResultOf(self.serving().when_ready())
        writes = [c for c in self.api.calls if c[0] in ("create", "update")]
        second = self.successResultOf(self.serving().when_ready())
        self.assertEqual(first, second)
        self.assertEqual(
            [c for c in self.api.calls if c[0] in ("create", "update")], writes
        )

    def test_a_replica_that_loses_the_creation_race_uses_the_winners_secret(
        self,
    ) -> None:
        api = RacingAPI(clock=self.clock)
        material = self.successResultOf(self.serving(api).when_ready())
        assert api.winner is not None
        self.assertEqual(material.ca_bundle, base64.b64decode(api.winner["ca.crt"]))
        self.assertEqual(
            material.pair.certificate_pem, base64.b64decode(api.winner["tls.crt"])
        )
        self.assertEqual(stored(api)["data"], api.winner)

    def test_the_serving_certificate_is_renewed_with_the_same_ca_before_expiry(
        self,
    ) -> None:
        ca = pki.make_ca("hub-ca")
        leaf = pki.issue_certificate(ca, "clusternet-hub", hosts=HOSTS, days=35)
        store_secret(self.api, secret_data(ca, leaf))
        serving = self.serving()
        material = self.successResultOf(serving.when_ready())
        # 35 days left: used as it is.
        self.assertEqual(material.pair, pki.KeyPair(leaf.certificate_pem, leaf.key_pem))
        self.assertFalse([c for c in self.api.calls if c[0] == "update"])
        # Six days later, under 30 days are left: the next check renews it.
        self.clock.advance(6 * DAY)
        self.clock.advance(300)
        renewed = serving.material
        assert renewed is not None
        self.assertNotEqual(renewed.pair, material.pair)
        self.assertEqual(renewed.ca_bundle, ca.certificate_pem)
        renewed.pair.certificate.verify_directly_issued_by(ca.certificate)
        secret = stored(self.api)
        self.assertEqual(decoded(secret, "ca.key"), ca.key_pem)
        self.assertEqual(decoded(secret, "tls.crt"), renewed.pair.certificate_pem)
        self.assertEqual(self.seen, [material.pair, renewed.pair])
        # And not again at the next check.
        self.clock.advance(300)
        self.assertEqual(serving.material, renewed)

    def test_a_certificate_close_to_expiry_or_missing_a_name_is_reissued_at_start(
        self,
    ) -> None:
        ca = pki.make_ca("hub-ca")
        for leaf in (
            pki.issue_certificate(ca, "clusternet-hub", hosts=HOSTS, days=10),
            pki.issue_certificate(ca, "clusternet-hub", hosts=HOSTS[:2], days=365),
        ):
            api = testing.MemoryKubeAPI(clock=self.clock)
            store_secret(api, secret_data(ca, leaf))
            material = self.successResultOf(self.serving(api).when_ready())
            self.assertNotEqual(material.pair.certificate_pem, leaf.certificate_pem)
            self.assertEqual(material.ca_bundle, ca.certificate_pem)
            material.pair.certificate.verify_directly_issued_by(ca.certificate)

    def test_a_broken_secret_gets_a_new_ca(self) -> None:
        other = pki.make_ca("not-the-signer")
        ca = pki.make_ca("hub-ca")
        leaf = pki.issue_certificate(ca, "clusternet-hub", hosts=HOSTS)
        data = secret_data(ca, leaf)
        data["ca.key"] = b64(other.key_pem)  # does not match ca.crt
        store_secret(self.api, data)
        material = self.successResultOf(self.serving().when_ready())
        self.assertNotIn(
            ca.certificate, x509.load_pem_x509_certificates(material.ca_bundle)
        )
        self.assertEqual(decoded(stored(self.api), "ca.crt"), material.ca_bundle)

    def test_a_ca_close_to_expiry_is_replaced_and_kept_in_the_bundle(self) -> None:
        old = pki.make_ca("hub-ca", days=20)
        leaf = pki.issue_certificate(old, "clusternet-hub", hosts=HOSTS, days=15)
        store_secret(self.api, secret_data(old, leaf))
        material = self.successResultOf(self.serving().when_ready())
        bundle = x509.load_pem_x509_certificates(material.ca_bundle)
        self.assertEqual(len(bundle), 2)
        self.assertEqual(bundle[1], old.certificate)
        material.pair.certificate.verify_directly_issued_by(bundle[0])

    def test_a_conflicting_update_reads_the_secret_again(self) -> None:
        ca = pki.make_ca("hub-ca")
        leaf = pki.issue_certificate(ca, "clusternet-hub", hosts=HOSTS, days=10)
        store_secret(self.api, secret_data(ca, leaf))
        self.api.fail_next("update", Conflict(409, "Conflict", "modified"))
        material = self.successResultOf(self.serving().when_ready())
        self.assertEqual(
            decoded(stored(self.api), "tls.crt"), material.pair.certificate_pem
        )
        self.assertEqual(len([c for c in self.api.calls if c[0] == "get"]), 2)

    def test_errors_are_retried_with_backoff_and_nothing_secret_is_logged(
        self,
    ) -> None:
        self.api.fail_next("get", KubeUnavailable("no route"))
        self.api.fail_next("get", Forbidden(403, "Forbidden", "secrets is forbidden"))
        serving = self.serving()
        ready = serving.when_ready()
        self.assertNoResult(ready)
        self.assertEqual(
            serving.check(), f"waiting for the serving Secret {NS}/{SERVING_SECRET}"
        )
        self.clock.advance(1)
        self.assertNoResult(ready)
        self.clock.advance(2)
        material = self.successResultOf(ready)
        text = "\n".join(formatEvent(e) + repr(e) for e in self.events)
        self.assertIn("retrying in 1.0s", text)
        self.assertIn("retrying in 2.0s", text)
        self.assertIn("Serving certificate created", text)
        secret = stored(self.api)
        for key in ("ca.key", "tls.key"):
            self.assertNotIn(secret["data"][key][:40], text)
        self.assertNotIn(b"PRIVATE", text.encode())
        self.assertNotIn(material.pair.key_pem.decode()[40:80], text)


class InjectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.api = testing.MemoryKubeAPI(clock=self.clock)
        self.ca = pki.make_ca("hub-ca")
        self.bundle: bytes | None = self.ca.certificate_pem
        self.reloads = 0

    def start(self) -> CABundleInjector:
        informer = Informer(
            self.clock,
            self.api,
            APISERVICES,
            field_selector=f"metadata.name={APISERVICE_NAME}",
        )

        def reload() -> Deferred[bytes]:
            self.reloads += 1
            assert self.bundle is not None
            d: Deferred[bytes] = Deferred()
            d.callback(self.bundle)
            return d

        injector = CABundleInjector(
            self.clock,
            self.api,
            informer,
            APISERVICE_NAME,
            lambda: self.bundle,
            reload,
        )
        informer.startService()
        injector.startService()
        self.addCleanup(informer.stopService)
        self.addCleanup(injector.stopService)
        return injector

    def apiservice(self) -> dict[str, Any]:
        [found] = self.api.objects(APISERVICES)
        return found

    def test_the_hub_ca_replaces_insecure_skip_tls_verify(self) -> None:
        self.api.create(APISERVICES, APISERVICE)
        injector = self.start()
        spec = self.apiservice()["spec"]
        self.assertEqual(base64.b64decode(spec["caBundle"]), self.ca.certificate_pem)
        self.assertNotIn("insecureSkipTLSVerify", spec)
        self.assertEqual(spec["service"], APISERVICE["spec"]["service"])
        self.assertEqual(injector.patches, 1)

    def test_an_apiservice_that_already_trusts_the_ca_is_not_patched(self) -> None:
        spec = dict(APISERVICE["spec"], caBundle=b64(self.ca.certificate_pem))
        del spec["insecureSkipTLSVerify"]
        self.api.create(APISERVICES, dict(APISERVICE, spec=spec))
        injector = self.start()
        self.assertEqual(injector.patches, 0)
        self.assertFalse([c for c in self.api.calls if c[0] == "patch"])

    def test_a_changed_ca_bundle_is_set_back(self) -> None:
        self.api.create(APISERVICES, APISERVICE)
        injector = self.start()
        impostor = pki.make_ca("impostor")
        self.api.patch(
            APISERVICES,
            APISERVICE_NAME,
            {"spec": {"caBundle": b64(impostor.certificate_pem)}},
        )
        spec = self.apiservice()["spec"]
        self.assertEqual(base64.b64decode(spec["caBundle"]), self.ca.certificate_pem)
        self.assertEqual(injector.patches, 2)
        # The bundle was read again before it was written back.
        self.assertEqual(self.reloads, 2)

    def test_an_apiservice_made_later_gets_the_ca(self) -> None:
        self.start()
        self.assertEqual(self.api.objects(APISERVICES), [])
        self.api.create(APISERVICES, APISERVICE)
        spec = self.apiservice()["spec"]
        self.assertEqual(base64.b64decode(spec["caBundle"]), self.ca.certificate_pem)

    def test_nothing_happens_before_the_bundle_is_known(self) -> None:
        self.bundle = None
        self.api.create(APISERVICES, APISERVICE)
        injector = self.start()
        self.assertEqual(injector.patches, 0)
        self.bundle = self.ca.certificate_pem
        injector.poke()
        self.assertEqual(injector.patches, 1)

    def test_a_refused_patch_is_retried(self) -> None:
        self.api.create(APISERVICES, APISERVICE)
        self.api.fail_next("patch", Forbidden(403, "Forbidden", "no patch"))
        injector = self.start()
        self.assertEqual(injector.patches, 0)
        self.clock.advance(10)
        self.assertEqual(injector.patches, 1)


def test_reloadable_tls_serves_the_newest_pair() -> None:
    first = pki.issue_certificate(None, "one", server=True)
    second = pki.issue_certificate(None, "two", server=True)
    tls = ReloadableServerTLS(first)
    assert verifyObject(IOpenSSLServerConnectionCreator, tls)
    connection = tls.serverConnectionForTLS(None)
    assert connection.get_certificate().to_cryptography() == first.certificate  # type: ignore[union-attr]
    tls.set_pair(second)
    connection = tls.serverConnectionForTLS(None)
    assert connection.get_certificate().to_cryptography() == second.certificate  # type: ignore[union-attr]


def parse(*argv: str) -> HubOptions:
    options = HubOptions()
    options.parseOptions(list(argv))
    return options


def test_options_defaults_and_tls_sans() -> None:
    options = parse()
    assert options["apiservice-ca-injection"] is True
    assert options["apiservice-name"] == APISERVICE_NAME
    assert options["serving-secret"] == SERVING_SECRET
    assert options["tls-san"] == []
    options = parse("--tls-san=localhost, 127.0.0.1", "--tls-san", "hub.example.com")
    assert options["tls-san"] == ["localhost", "127.0.0.1", "hub.example.com"]
    assert parse("--apiservice-ca-injection=false")["apiservice-ca-injection"] is False


def test_options_refuse_what_does_not_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_text("x")
    with pytest.raises(UsageError, match="--tls-san"):
        parse(
            f"--tls-cert-file={cert}", f"--tls-private-key-file={cert}", "--tls-san=a"
        )
    with pytest.raises(UsageError, match="--apiservice-ca-file"):
        parse(f"--apiservice-ca-file={cert}")
    with pytest.raises(UsageError, match="--apiservice-ca-injection"):
        parse("--apiservice-ca-injection=maybe")


def test_the_namespace_comes_from_the_flag_the_pod_or_the_default(
    tmp_path: Path,
) -> None:
    pod = tmp_path / "namespace"
    pod.write_text("hub-ns\n")
    assert hub_namespace("mine", None, str(pod)) == "mine"
    assert hub_namespace(None, None, str(pod)) == "hub-ns"
    assert hub_namespace(None, "/some/kubeconfig", str(pod)) == NS
    assert hub_namespace(None, None, str(tmp_path / "absent")) == NS
    assert serving_hosts("hub-ns", ["x", "clusternet-hub"]) == [
        "clusternet-hub.hub-ns.svc",
        "clusternet-hub.hub-ns.svc.cluster.local",
        "clusternet-hub",
        "x",
    ]


def test_make_serving_follows_the_options(tmp_path: Path) -> None:
    clock = Clock()
    api = testing.MemoryKubeAPI(clock=clock)
    parts = make_serving(clock, api, parse("--namespace=hub-ns", "--tls-san=h"))
    assert parts.serving is not None and parts.injector is not None
    assert parts.serving.namespace == "hub-ns"
    assert "h" in parts.serving.hosts
    assert parts.tls is not None  # a provisional certificate until the Secret
    off = make_serving(clock, api, parse("--apiservice-ca-injection=false"))
    assert off.serving is not None and off.injector is None
    ca = pki.make_ca("mine")
    leaf = pki.issue_certificate(ca, "hub", server=True)
    for name, data in (
        ("tls.crt", leaf.certificate_pem),
        ("tls.key", leaf.key_pem),
        ("ca.crt", ca.certificate_pem),
    ):
        (tmp_path / name).write_bytes(data)
    files = [f"--tls-cert-file={tmp_path / 'tls.crt'}"]
    files.append(f"--tls-private-key-file={tmp_path / 'tls.key'}")
    alone = make_serving(clock, api, parse(*files))
    assert alone.serving is None and alone.injector is None
    assert alone.tls is not None and alone.tls.pair == leaf
    injected = make_serving(
        clock, api, parse(*files, f"--apiservice-ca-file={tmp_path / 'ca.crt'}")
    )
    assert injected.serving is None and injected.injector is not None
    api.create(APISERVICES, APISERVICE)
    for service in injected.services():
        service.startService()
    spec = api.objects(APISERVICES)[0]["spec"]
    assert base64.b64decode(spec["caBundle"]) == ca.certificate_pem
    for service in injected.services():
        service.stopService()
