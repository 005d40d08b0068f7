"""
The agent as a Twisted service.

Replicas elect a leader with the Lease C{<namespace>/self-cluster} in the child;
only the leader registers with the parent, reports status, renews the heartbeat
and holds the tunnel.  Losing the leadership stops all of that at once, and a
standby takes over within the lease duration.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.endpoints import HostnameEndpoint, serverFromString, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.server import Site

from clusternet._runtime import (
    CleanExitOnSIGTERM,
    SequentialMultiService,
    StartupLine,
    stop_within,
)
from clusternet._web import StatusRoot
from clusternet.agent._acceptor import AgentAcceptor
from clusternet.agent._bootstrap import ParentTrustResolver, unverified_agent
from clusternet.agent._credentials import CredentialRefresh
from clusternet.agent._identity import IdentityPolicy
from clusternet.agent._registration import (
    ParentClients,
    ParentCredentials,
    Registration,
    RegistrationDenied,
    read_registration_secret,
)
from clusternet.agent._status import make_reporting_service
from clusternet.apis import SELF_CLUSTER_LEASE_NAME
from clusternet.health import (
    HealthChecks,
    SnapshotCollector,
    add_probes,
    process_registry,
)
from clusternet.kube import (
    AlreadyExists,
    ConnectionInfo,
    Forbidden,
    KubeClient,
    KubeConfigError,
    KubeError,
    LeaderElector,
    connection_info,
    load_api_client,
)
from clusternet.kube._resources import NAMESPACES
from clusternet.tunnel import (
    AllowList,
    ReconnectingTunnelClient,
    Role,
    SessionConfig,
    TunnelConnector,
    TunnelMetrics,
    TunnelSession,
)

__all__ = ["AgentWork", "make_agent_service"]

SOCKETS_PATH = "/apis/proxies.clusternet.io/v1alpha1/sockets/"

DirectFactory = Callable[[ConnectionInfo, IdentityPolicy], Callable[[], IProtocol]]


class _DirectService(Service):
    """
    Close the direct server's connections to the child on shutdown.
    """

    def __init__(self, direct: Any) -> None:
        self._direct = direct

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        close = getattr(self._direct, "close", None)
        result: Deferred[None] | None = close() if close is not None else None
        return result


def _host_port(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if secure else 80), secure


def _child_dial_patterns(child: ConnectionInfo, extra: tuple[str, ...]) -> AllowList:
    host, port, _ = _host_port(child.server)
    literal = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return AllowList((literal, *extra))


def _tls_for(ca_pem: bytes | None, insecure: bool) -> Callable[[str], Any]:
    def options(host: str) -> Any:
        if insecure:
            return CertificateOptions(verify=False)
        if ca_pem:
            return optionsForClientTLS(host, trustRoot=Certificate.loadPEM(ca_pem))
        return optionsForClientTLS(host)

    return options


class AgentWork(Service):
    """
    What the leader does: register, then report and hold the tunnel until
    stopped.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        options: Any,
        child: KubeClient,
        child_info: ConnectionInfo,
        parents: ParentClients,
        direct: DirectFactory | None,
        metrics: TunnelMetrics,
    ) -> None:
        self._reactor = reactor
        self._options = options
        self._child = child
        self._child_info = child_info
        self._parents = parents
        self._direct = direct
        self.metrics = metrics
        self.credentials: ParentCredentials | None = None
        self.tunnel: ReconnectingTunnelClient | None = None
        self._running_parts = MultiService()
        self._task: Deferred[None] | None = None
        self._connector = TunnelConnector(reactor, options["tunnel-transport"])
        self.identity = IdentityPolicy(
            mode=options["identity-mode"],
            group_map=options["impersonate-group-map"],
            allow_masters=bool(options["allow-masters-impersonation"]),
            extras=options["impersonate-extras"],
        )

    def startService(self) -> None:
        super().startService()
        self._task = ensureDeferred(self._run())
        self._task.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        if failure.check(RegistrationDenied):
            self._log.error("{error}", error=str(failure.value))
            return None
        if not self.running:
            return None
        self._log.failure("The agent's work stopped", failure)
        return None

    async def _run(self) -> None:
        options = self._options
        namespace = options["cluster-reg-namespace"]
        parent_url, token = (
            options["cluster-reg-parent-url"],
            options["cluster-reg-token"],
        )
        if not parent_url or not token:
            stored_url, stored_token = await read_registration_secret(
                self._child, namespace, options["cluster-reg-secret"]
            )
            parent_url = parent_url or stored_url
            token = token or stored_token
        if not parent_url:
            raise RegistrationDenied(
                "configuration",
                "no parent URL: give --cluster-reg-parent-url or the parentURL key of "
                f"secret {namespace}/{options['cluster-reg-secret']}",
            )
        self._parents.parent_url = parent_url.rstrip("/")
        resolver = ParentTrustResolver(
            self._reactor,
            parent_url,
            token,
            ca_file=options["cluster-reg-parent-ca-file"],
            insecure_skip_tls_verify=bool(
                options["cluster-reg-insecure-skip-tls-verify"]
            ),
            agent=unverified_agent(self._reactor),
        )
        registration = Registration(
            self._reactor,
            self._child,
            self._parents,
            parent_url,
            resolver.resolve,
            token,
            cluster_id=options["cluster-id"],
            cluster_name=options["cluster-reg-name"],
            cluster_name_prefix=options["cluster-reg-name-prefix"],
            cluster_type=options["cluster-type"],
            namespace=namespace,
            parent_secret=options["parent-secret"],
        )
        credentials = await registration.register()
        if not self.running:
            return
        self.credentials = credentials
        self._log.info(
            "Registered as {name} ({cluster}) in {namespace} of {parent}",
            name=credentials.cluster_name,
            cluster=credentials.cluster_id,
            namespace=credentials.namespace,
            parent=credentials.parent_url,
        )
        parent = self._parents.for_credentials(credentials)
        reporting = make_reporting_service(
            self._reactor,
            self._child,
            parent,
            credentials.namespace,
            credentials.managed_cluster_name,
            credentials.cluster_id,
            holder_identity=_identity(),
            collect_frequency=options["cluster-status-collect-frequency"],
            update_frequency=options["cluster-status-update-frequency"],
            child_url=self._child_info.server,
            parent_url=credentials.parent_url,
        )
        reporting.setServiceParent(self._running_parts)
        CredentialRefresh(
            self._reactor,
            credentials,
            lambda token: self._parents(
                token, credentials.ca_pem, credentials.insecure_skip_tls_verify
            ),
            token,
            registration.store_token,
            interval=options["credential-check-frequency"],
        ).setServiceParent(self._running_parts)
        self.tunnel = ReconnectingTunnelClient(
            lambda: self._connect_tunnel(credentials),
            self._reactor,
            metrics=self.metrics,
        )
        self.tunnel.setServiceParent(self._running_parts)
        self._running_parts.startService()

    def _connect_tunnel(
        self, credentials: ParentCredentials
    ) -> Deferred[TunnelSession]:
        host, port, secure = _host_port(credentials.parent_url)
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self._reactor, host, port)
        if secure:
            tls = _tls_for(credentials.ca_pem, credentials.insecure_skip_tls_verify)
            endpoint = wrapClientTLS(tls(host), endpoint)
        where = f"{urlsplit(credentials.parent_url).netloc}{SOCKETS_PATH}"
        where += credentials.cluster_id
        direct = None
        if self._direct is not None:
            direct = self._direct(self._child_info, self.identity)
        acceptor = AgentAcceptor(
            self._reactor,
            direct,
            _child_dial_patterns(self._child_info, self._options["dial-allow"]),
            _tls_for(
                self._child_info.ca_pem, self._child_info.insecure_skip_tls_verify
            ),
            metrics=self.metrics,
        )

        def session() -> TunnelSession:
            return TunnelSession(
                Role.DIALER,
                self._reactor,
                acceptor=acceptor,
                metrics=self.metrics,
                name=credentials.cluster_id,
                config=SessionConfig(carrier_queue=self._options["tunnel-queue"]),
            )

        return self._connector.connect(
            endpoint,
            secure,
            where,
            session,
            {"Authorization": f"Bearer {credentials.token}"},
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._task is not None and not self._task.called:
            self._task.cancel()
        waiting: list[Deferred[Any]] = []
        if self._running_parts.running:
            waiting.append(ensureDeferred(_stop(self._running_parts)))
        self._running_parts = MultiService()
        self.tunnel = None
        return stop_within(self._reactor, self._options["shutdown-timeout"], waiting)


async def _stop(service: MultiService) -> None:
    await service.stopService()


def _identity() -> str:
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class _NamespaceThenElection(Service):
    """
    Make sure the agent's namespace exists (the Lease and secrets live there),
    then start the leader election.  Creating it is best effort: in a cluster the
    deploy manifests make it and the agent may lack the right to.
    """

    _log = Logger()

    def __init__(
        self, clock: Any, child: KubeClient, namespace: str, then: Service
    ) -> None:
        self._clock = clock
        self._child = child
        self._namespace = namespace
        self._then = then
        self._task: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        self._task = ensureDeferred(self._run())
        self._task.addErrback(lambda f: None if f.check(CancelledError) else f)

    async def _run(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self._namespace},
        }
        delay = 0.5
        while self.running:
            try:
                await self._child.create(NAMESPACES, body)
            except (AlreadyExists, Forbidden):
                break
            except KubeError as e:
                self._log.warn(
                    "Cannot ensure namespace {ns} in the child ({error}); "
                    "retrying in {delay}s",
                    ns=self._namespace,
                    error=str(e),
                    delay=delay,
                )
                await deferLater(self._clock, delay, lambda: None)
                delay = min(delay * 2, 30.0)
                continue
            else:
                self._log.info(
                    "Created namespace {ns} in the child", ns=self._namespace
                )
                break
        if self.running:
            self._then.startService()

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self._task is not None and not self._task.called:
            self._task.cancel()
        if self._then.running:
            result: Deferred[Any] | None = self._then.stopService()
            return result
        return None


class _Leadership(Service):
    """
    Start a fresh L{AgentWork} on winning the election; stop it on losing.
    """

    _log = Logger()

    def __init__(self, make_work: Callable[[], AgentWork]) -> None:
        self._make_work = make_work
        self.work: AgentWork | None = None

    def started_leading(self) -> None:
        self._log.info("Became the leader: registering and connecting")
        self.work = self._make_work()
        self.work.startService()

    def stopped_leading(self) -> Deferred[Any] | None:
        work, self.work = self.work, None
        if work is None:
            return None
        self._log.info("Lost the leadership: stopping reports and the tunnel")
        result: Deferred[Any] | None = work.stopService()
        return result

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        return self.stopped_leading()


class _StartLeading(Service):
    """
    Without leader election, this replica leads as soon as it starts.
    """

    def __init__(self, leadership: _Leadership) -> None:
        self._leadership = leadership

    def startService(self) -> None:
        super().startService()
        self._leadership.started_leading()


def make_agent_service(
    reactor: Any, options: Any, direct: DirectFactory | None = None
) -> IService:
    """
    Build the agent's services from parsed L{clusternet.agent.AgentOptions}.
    """
    if direct is None:
        from clusternet.agent._direct import direct_server

        direct = direct_server(reactor)
    try:
        api_client = load_api_client(
            options["kubeconfig"], threads=options["kube-threads"]
        )
        child_info = connection_info(api_client)
    except KubeConfigError as e:
        raise SystemExit(f"Error: child cluster: {e}") from None
    # Stopped in reverse order, one at a time: the elector releases its Lease
    # and the work drains before the Kubernetes clients' pools stop.
    top = SequentialMultiService()
    CleanExitOnSIGTERM(reactor).setServiceParent(top)
    child = KubeClient(
        reactor, api_client, threads=options["kube-threads"], name="child"
    )
    child.setServiceParent(top)
    parents = ParentClients(reactor, options["cluster-reg-parent-url"] or "")
    parents.setServiceParent(top)
    metrics = TunnelMetrics()
    if options["cluster-reg-insecure-skip-tls-verify"]:
        Logger().warn(
            "--cluster-reg-insecure-skip-tls-verify is set: the parent certificate is "
            "NOT verified while bootstrapping"
        )

    def work() -> AgentWork:
        return AgentWork(reactor, options, child, child_info, parents, direct, metrics)

    StartupLine(
        Logger(),
        "clusternet-agent starting: child {child}, parent {parent}, identity mode "
        "{mode}, status every {update}s, leader election {elect}, tunnel "
        "{transport}, tunnel queue {queue}",
        child=child_info.server,
        parent=options["cluster-reg-parent-url"] or "(from the registration secret)",
        mode=options["identity-mode"],
        update=options["cluster-status-update-frequency"],
        elect=options["leader-elect"],
        transport=options["tunnel-transport"],
        queue={None: "auto", 0: "tuned for throughput"}.get(
            options["tunnel-queue"], f"{(options['tunnel-queue'] or 0) // 1024} KiB"
        ),
    ).setServiceParent(top)
    _DirectService(direct).setServiceParent(top)
    leadership = _Leadership(work)
    leadership.setServiceParent(top)
    checks = HealthChecks()
    if options["leader-elect"]:
        elector = LeaderElector(
            reactor,
            child,
            options["cluster-reg-namespace"],
            SELF_CLUSTER_LEASE_NAME,
            _identity(),
            leadership.started_leading,
            leadership.stopped_leading,
            lease_duration=options["lease-duration"],
            renew_deadline=options["renew-deadline"],
            retry_period=options["retry-period"],
        )
        first: Service = elector
    else:
        first = _StartLeading(leadership)
    _NamespaceThenElection(
        reactor, child, options["cluster-reg-namespace"], first
    ).setServiceParent(top)
    if options["metrics-listen"]:
        root = StatusRoot()
        requests = getattr(direct, "request_metrics", None)
        add_probes(
            root,
            checks,
            process_registry(
                SnapshotCollector(
                    "clusternet_tunnel",
                    metrics.snapshot,
                    frozenset({"sessions_open", "streams_open"}),
                    "Tunnel",
                ),
                *([requests] if requests is not None else []),
            ),
        )
        StreamServerEndpointService(
            serverFromString(reactor, options["metrics-listen"]), Site(root)
        ).setServiceParent(top)
    return top
