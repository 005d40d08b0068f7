"""
The hub as a Twisted service: the parent's Kubernetes client, authentication and
authorization, the approver and the HTTPS site.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IReactorCore, IStreamServerEndpoint
from twisted.logger import Logger, LogLevel
from twisted.web.server import Site

from clusternet._runtime import CleanExitOnSIGTERM
from clusternet._web import StatusRoot
from clusternet.apis import RESULT_APPROVED, RESULT_DENIED
from clusternet.health import (
    HealthChecks,
    SnapshotCollector,
    add_probes,
    process_registry,
)
from clusternet.hub._approver import ApprovalQueue, Approver
from clusternet.hub._auth import AuthConfig, Authenticator, CachingAuthorizer
from clusternet.hub._fairness import StreamBudget
from clusternet.hub._health import ClusterHealth, dedicated_namespaces
from clusternet.hub._metrics import (
    ClusterTunnelMetrics,
    MeteredResource,
    proxy_request_metrics,
)
from clusternet.hub._proxying import ClusterProxy
from clusternet.hub._registry import SocketRegistry
from clusternet.hub._resource import HubResource
from clusternet.hub._reviews import KubeAccessReviewer, KubeTokenReviewer
from clusternet.hub._serving import ServingParts, make_serving
from clusternet.hub._tls import CertificateAuthorities
from clusternet.hub._tunnels import TunnelAttach
from clusternet.kube import (
    CLUSTER_REGISTRATION_REQUESTS,
    CONFIG_MAPS,
    MANAGED_CLUSTERS,
    EventHandler,
    Informer,
    KubeClient,
    KubeConfigError,
    connection_info,
    load_api_client,
)
from clusternet.proxy import StreamingSite, budget_from_options
from clusternet.tunnel import SessionConfig

__all__ = ["HubParts", "make_hub_service"]

_log = Logger()

AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


def _read(path: str | None) -> bytes:
    if not path:
        return b""
    with open(path, "rb") as f:
        return f.read()


def _endpoint(
    reactor: Any, options: Any, serving: ServingParts
) -> IStreamServerEndpoint:
    if options["listen"]:
        return serverFromString(reactor, options["listen"])
    assert serving.tls is not None
    return SSL4ServerEndpoint(
        reactor,
        options["secure-port"],
        serving.tls,
        interface=options["bind-address"],
    )


class _AuthConfigFromParent(Service):
    """
    Keep the authenticator's trust in step with the parent's
    C{kube-system/extension-apiserver-authentication} ConfigMap; flags given on
    the command line win over its values.
    """

    _log = Logger()

    def __init__(
        self,
        informer: Informer,
        authenticator: Authenticator,
        overrides: dict[str, Any],
    ) -> None:
        self._authenticator = authenticator
        self._overrides = overrides
        informer.add_handler(
            EventHandler(add=self._load, update=lambda old, new: self._load(new))
        )

    def synced(self, informer: Informer) -> None:
        if len(informer.store):
            return
        self._log.warn(
            "The parent has no {ns}/{name} ConfigMap and "
            "--requestheader-client-ca-file is not set: requests through the "
            "parent's aggregation layer will be refused (401)",
            ns=AUTH_CONFIGMAP[0],
            name=AUTH_CONFIGMAP[1],
        )

    def _load(self, configmap: dict[str, Any]) -> None:
        try:
            config = AuthConfig.from_configmap(
                configmap.get("data") or {}, **self._overrides
            )
        except ValueError as e:
            self._log.error(
                "Cannot use {name}: {error}", name=AUTH_CONFIGMAP[1], error=str(e)
            )
            return
        self._authenticator.config = config
        self._log.info(
            "Loaded request-header trust from {ns}/{name}: {count} CA certificate(s), "
            "allowed names {names}",
            ns=AUTH_CONFIGMAP[0],
            name=AUTH_CONFIGMAP[1],
            count=len(config.requestheader_ca.certificates),
            names=list(config.allowed_names) or "any",
        )


def _waiting(crrs: list[dict[str, Any]]) -> int:
    """
    How many registration requests wait for a decision.
    """
    done = (RESULT_APPROVED, RESULT_DENIED)
    return sum(1 for c in crrs if (c.get("status") or {}).get("result") not in done)


class HubParts:
    """
    The hub's pieces, built from parsed options; L{make_hub_service} puts them
    under one service, tests may use them directly.
    """

    def __init__(self, reactor: Any, options: Any) -> None:
        try:
            api_client = load_api_client(
                options["kubeconfig"], threads=options["kube-threads"]
            )
        except KubeConfigError as e:
            raise SystemExit(f"Error: parent cluster: {e}") from None
        self.kube = KubeClient(
            reactor, api_client, threads=options["kube-threads"], name="parent"
        )
        # The serving certificate (files, or a CA kept in a Secret) and the
        # APIService's caBundle.
        self.serving = make_serving(reactor, self.kube, options)
        overrides: dict[str, Any] = {
            "username_headers": (options["requestheader-username-headers"],),
            "group_headers": (options["requestheader-group-headers"],),
            "extra_prefixes": (options["requestheader-extra-headers-prefix"],),
        }
        if options["requestheader-allowed-names"]:
            overrides["allowed_names"] = tuple(options["requestheader-allowed-names"])
        if options["client-ca-file"]:
            overrides["client_ca"] = CertificateAuthorities(
                _read(options["client-ca-file"])
            )
        self.informers: list[Informer] = []
        if options["requestheader-client-ca-file"]:
            overrides["requestheader_ca"] = CertificateAuthorities(
                _read(options["requestheader-client-ca-file"])
            )
            config = AuthConfig(**overrides)
            self.config_watch: Service | None = None
        else:
            config = AuthConfig(**overrides)
            configmaps = Informer(
                reactor,
                self.kube,
                CONFIG_MAPS,
                namespace=AUTH_CONFIGMAP[0],
                field_selector=f"metadata.name={AUTH_CONFIGMAP[1]}",
            )
            self.informers.append(configmaps)
        self.authenticator = Authenticator(
            config, KubeTokenReviewer(self.kube), reactor
        )
        if not options["requestheader-client-ca-file"]:
            self.config_watch = _AuthConfigFromParent(
                self.informers[-1], self.authenticator, overrides
            )
        self.authorizer = CachingAuthorizer(KubeAccessReviewer(self.kube), reactor)
        self.registry = SocketRegistry(reactor)

        crrs = Informer(
            reactor, self.kube, CLUSTER_REGISTRATION_REQUESTS, resync_period=60.0
        )
        approver = Approver(
            self.kube,
            reactor,
            policy=options["cluster-approval"],
            token_lifetime=options["cluster-token-lifetime"],
            max_pending=options["max-pending-registrations"],
            pending=lambda: _waiting(crrs.store.list()),
            ca_pem=connection_info(api_client).ca_pem,
        )
        self.approvals = ApprovalQueue(reactor, approver.approve)

        def deleted(crr: dict[str, Any]) -> None:
            revoking = ensureDeferred(approver.revoke_all(crr))
            revoking.addErrback(
                lambda f: _log.failure("Revoking the tokens of a deleted request", f)
            )

        crrs.add_handler(
            EventHandler(
                add=self.approvals.enqueue,
                update=lambda old, new: self.approvals.enqueue(new),
                delete=deleted,
            )
        )
        clusters = Informer(reactor, self.kube, MANAGED_CLUSTERS)
        namespaces = dedicated_namespaces(reactor, self.kube)
        self.health = ClusterHealth(
            reactor,
            self.kube,
            grace_period=options["cluster-lease-grace-period"],
            known=self.registry.known,
            clusters=clusters,
            namespaces=namespaces,
            requests=crrs,
        )
        self.informers += [crrs, clusters, namespaces]

        self.checks = HealthChecks()
        self.checks.add("informer-sync", self._synced)
        if self.serving.serving is not None:
            self.checks.add("serving-certificate", self.serving.serving.check)
        self.attach = TunnelAttach(
            reactor,
            self.registry,
            config=SessionConfig(carrier_queue=options["tunnel-queue"]),
        )
        per_cluster = bool(
            options["metrics-per-cluster"] or options["stream-metrics-per-cluster"]
        )
        self.stream_budget = StreamBudget(
            options["max-streams-per-user"],
            options["stream-reserve"],
            per_cluster_metrics=per_cluster,
        )
        self.tunnel_metrics = ClusterTunnelMetrics(
            self.registry, self.attach.metrics, per_cluster
        )
        self.request_metrics = proxy_request_metrics(reactor, per_cluster)
        self.metrics = process_registry(
            self.stream_budget.collector(),
            self.tunnel_metrics,
            self.request_metrics,
            SnapshotCollector(
                "clusternet_hub",
                lambda: {
                    "clusters_attached": len(self.registry),
                    "clusters_known": len(self.registry.known),
                },
                frozenset({"clusters_attached", "clusters_known"}),
                "Hub",
            ),
        )
        self.resource = MeteredResource(
            HubResource(
                reactor,
                self.authenticator,
                self.authorizer,
                self.registry,
                self.checks,
                attach=self.attach,
                proxy=ClusterProxy(reactor, self.registry, self.stream_budget),
                metrics=self.metrics,
            ),
            self.request_metrics,
            self.registry,
        )

    def _synced(self) -> str | None:
        waiting = [i.resource.plural for i in self.informers if not i.has_synced]
        return f"waiting for {', '.join(waiting)}" if waiting else None


def make_hub_service(reactor: IReactorCore, options: Any) -> IService:
    """
    Build the hub's services from parsed L{clusternet.hub.HubOptions}.
    """
    parts = HubParts(reactor, options)
    top = MultiService()
    CleanExitOnSIGTERM(reactor).setServiceParent(top)
    parts.kube.setServiceParent(top)
    for informer in parts.informers:
        informer.setServiceParent(top)
    for part in parts.serving.services():
        part.setServiceParent(top)
    if parts.config_watch is not None:
        parts.config_watch.setServiceParent(top)
    parts.health.setServiceParent(top)
    # Access lines at debug (twist --log-level=debug): one info line per
    # proxied request costs the hub several percent of its CPU.
    site = StreamingSite(
        parts.resource,
        reactor=reactor,
        access_log=LogLevel.debug,
        budget=budget_from_options(options),
    )
    site.displayTracebacks = False
    StreamServerEndpointService(
        _endpoint(reactor, options, parts.serving), site
    ).setServiceParent(top)
    if options["metrics-listen"]:
        probes = StatusRoot()
        add_probes(probes, parts.checks, parts.metrics)
        StreamServerEndpointService(
            serverFromString(reactor, options["metrics-listen"]), Site(probes)
        ).setServiceParent(top)
    return top
