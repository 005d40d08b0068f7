# ruff: noqa: S603 - the fleet runs its own processes, with argument lists
"""
A whole fleet on one machine, shared by the demo, the end-to-end tests and the
benchmarks: a parent API server with the hub registered in its aggregation
layer, and children each with an agent, all real processes.

The fleet sets the clusters up as a user of the README would: as each cluster's
admin it applies the manifests that C{deploy/} and C{manifests/} ship (the
files themselves: the copy in the source tree, or the one installed under
C{<prefix>/share/clusternet}), and it runs the hub and every agent as the
ServiceAccounts those manifests create, with bound, expiring tokens from the
TokenRequest API in a kubeconfig C{tokenFile} (renewed before they expire, the
way the kubelet renews a projected token). Only the human user (the parent's
and each child's admin kubeconfig) is an admin. What the hub and the agent do
is therefore allowed exactly by the shipped RBAC, on the sandbox as on a real
cluster.

Two things differ from an in-cluster install, because the processes run here
rather than as Pods: the Deployments are not applied, and the hub's Service is
an C{ExternalName} for the address it listens on (the APIService points at its
port, and trusts its CA through C{caBundle}).

Nothing here runs a reactor: it starts processes, waits for the parent to show
what a user would check (approved requests, Ready clusters) and runs kubectl.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml
from attrs import define

from clusternet.apis import (
    EDGE_SYSTEM_NAMESPACE,
    HUB_NAMESPACE,
)

__all__ = [
    "BOOTSTRAP_TOKEN",
    "GROUP_PATH",
    "Cluster",
    "Fleet",
    "FleetError",
    "shipped_objects",
    "shipped_root",
]

BOOTSTRAP_TOKEN = "07401b.f395accd246ae52d"  # noqa: S105 - the documented sample token
GROUP_PATH = "/apis/proxies.clusternet.io/v1alpha1"
PARENT_ADMIN = "kubernetes-admin"  # the CN of the sandbox's admin certificate
HUB_ACCOUNT = "clusternet-hub"
AGENT_ACCOUNT = "clusternet-agent"
# Lifetime of the service-account tokens the fleet requests; renewed at half.
TOKEN_SECONDS = 2 * 3600


class FleetError(Exception):
    """
    A step of the fleet failed; the message says which and where to look.
    """


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_root() -> Path:
    """
    The folder holding the shipped C{deploy/} and C{manifests/}: the source
    tree's when this is a checkout, else the copy C{pip install} put under
    C{<prefix>/share/clusternet}.

    @raise FleetError: neither is there.
    """
    for root in (
        Path(__file__).resolve().parents[1],
        Path(sys.prefix) / "share" / "clusternet",
    ):
        if (root / "deploy" / "hub").is_dir() and (root / "manifests").is_dir():
            return root
    raise FleetError(
        "cannot find the deploy/ and manifests/ folders: run from a checkout of "
        "clusternet or install it with pip"
    )


def shipped_objects(
    relative: str, substitute: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """
    The objects of a shipped manifest file, or of every C{.yaml} file of a
    shipped folder in name order, as C{kubectl apply -f} reads them.

    @param substitute: C{$NAME} values for a template, as C{envsubst} does.
    """
    path = shipped_root() / relative
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    objects: list[dict[str, Any]] = []
    for file in files:
        text = file.read_text()
        if substitute is not None:
            text = string.Template(text).substitute(substitute)
        objects += [o for o in yaml.safe_load_all(text) if o]
    return objects


def _in_cluster_only(obj: dict[str, Any]) -> bool:
    """
    Objects that run the programs as Pods, which the fleet runs as processes.
    """
    return obj["kind"] == "Deployment"


def _current_cluster(kubeconfig: Path) -> dict[str, Any]:
    """
    The C{cluster} entry of C{kubeconfig}'s current context, file paths made
    absolute.
    """
    config = yaml.safe_load(kubeconfig.read_text())
    cluster_name = config["clusters"][0]["name"]
    current = config.get("current-context")
    for context in config.get("contexts") or []:
        if context.get("name") == current:
            cluster_name = context["context"]["cluster"]
    for entry in config["clusters"]:
        if entry["name"] == cluster_name:
            cluster = dict(entry["cluster"])
            ca = cluster.get("certificate-authority")
            if ca and not Path(ca).is_absolute():
                cluster["certificate-authority"] = str(kubeconfig.parent / ca)
            return cluster
    raise FleetError(f"{kubeconfig}: no cluster {cluster_name!r}")


@define
class ServiceAccountToken:
    """
    A ServiceAccount's token kept fresh in a file, and a kubeconfig using it
    through C{tokenFile}.

    Each token is bound to a Secret of its own (C{<account>-token-<n>}), as a
    projected token is bound to its Pod: deleting the Secret revokes it.

    @ivar generation: how many tokens were issued.
    """

    namespace: str
    account: str
    token_file: Path
    kubeconfig: Path
    issued: float = 0.0
    generation: int = 0

    def binding(self, generation: int | None = None) -> str:
        """
        The name of the Secret the token of C{generation} (the current one by
        default) is bound to.
        """
        number = self.generation if generation is None else generation
        return f"{self.account}-token-{number}"


class _Process:
    def __init__(
        self, name: str, argv: list[str], log: Path, env: dict[str, str]
    ) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log_file.close()
        return self.popen.returncode


class Cluster:
    """
    A sandbox API server process and its kubeconfig.

    @ivar prefix: the command prefix its processes and kubectl calls on its
        own kubeconfig run under (such as C{ip netns exec NAME}), or C{()}.
    """

    def __init__(
        self,
        name: str,
        data_dir: Path,
        process: _Process | None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.process = process
        self.kubeconfig = data_dir / "admin.kubeconfig"
        self.prefix = tuple(prefix)

    @property
    def url(self) -> str:
        return str(_current_cluster(self.kubeconfig)["server"])


class Fleet:
    """
    Start and stop a parent, its hub and children with agents; the hub and the
    agents run as the ServiceAccounts and RBAC that C{deploy/} ships.

    @param data_dir: where every process keeps its state and log.
    @param parent_kubeconfig: an admin kubeconfig of an existing parent to use
        instead of starting a sandbox (the hub still runs here).
    @param child_kubeconfigs: admin kubeconfigs of existing children, used for
        the first children instead of sandboxes.
    @param say: where progress lines go.
    @param parent_host: the address the parent sandbox listens on (its serving
        certificate names it); agents reach the parent there.
    @param child_prefix: the command prefix for the processes of the child of a
        given name (its sandbox, its agent) and for kubectl calls on its own
        kubeconfig, for example C{ip netns exec NS} to run a child in a network
        namespace; by default none.
    @param agent_args: more flags for every agent (a later flag wins).
    @param agent_args_for: more flags for the agent of one child, asked once
        that child is set up and before its agent starts.
    @param hub_args: more flags for the hub (a later flag wins).
    """

    def __init__(
        self,
        data_dir: Path,
        children: int = 2,
        say: Callable[[str], None] = print,
        status_frequency: str = "10s",
        lease_grace: str = "40s",
        parent_kubeconfig: Path | None = None,
        child_kubeconfigs: list[Path] | None = None,
        hub_host: str = "localhost",
        parent_host: str = "127.0.0.1",
        child_prefix: Callable[[str], Sequence[str]] | None = None,
        agent_args: Sequence[str] = (),
        agent_args_for: Callable[[Fleet, Cluster], Sequence[str]] | None = None,
        hub_args: Sequence[str] = (),
    ) -> None:
        if children < 1:
            raise FleetError("--children must be at least 1")
        self.data_dir = data_dir.resolve()
        self.children = children
        self.say = say
        self.status_frequency = status_frequency
        self.lease_grace = lease_grace
        self._parent_kubeconfig = parent_kubeconfig
        self._child_kubeconfigs = child_kubeconfigs or []
        self.hub_host = hub_host
        self.parent_host = parent_host
        self._child_prefix = child_prefix or (lambda name: ())
        self._agent_args = tuple(agent_args)
        self._agent_args_for = agent_args_for
        self._hub_args = tuple(hub_args)
        self._hub_argv: list[str] = []
        self._agent_argv: dict[str, list[str]] = {}
        self.processes: list[_Process] = []
        self.parent: Cluster | None = None
        self.child_clusters: list[Cluster] = []
        self.agents: list[_Process] = []
        self.hub: _Process | None = None
        self.hub_port = 0
        self.hub_token: ServiceAccountToken | None = None
        self.agent_tokens: dict[str, ServiceAccountToken] = {}
        self.kubectl = shutil.which("kubectl")
        self._env = dict(os.environ)
        self._env.pop("KUBECONFIG", None)
        # The processes run this very installation of clusternet.
        self._python = sys.executable
        bin_dir = Path(sys.executable).parent
        twist = bin_dir / "twist"
        self._twist = (
            [str(twist)] if twist.exists() else [self._python, "-m", "twisted"]
        )

    # -- processes ------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> _Process:
        process = _Process(name, argv, self.data_dir / f"{name}.log", self._env)
        self.processes.append(process)
        return process

    def _start_sandbox(
        self, name: str, extra: Iterable[str] = (), prefix: Sequence[str] = ()
    ) -> Cluster:
        data = self.data_dir / name
        data.mkdir(parents=True, exist_ok=True)
        (data / "admin.kubeconfig").unlink(missing_ok=True)
        process = self._start(
            name,
            [
                *prefix,
                self._python,
                "-m",
                "clusternet.sandbox",
                "apiserver",
                "--port",
                "0",
                "--data-dir",
                str(data),
                "--name",
                name,
                *extra,
            ],
        )
        cluster = Cluster(name, data, process, prefix)

        def answers() -> bool:
            if not cluster.kubeconfig.exists():
                return False
            if not cluster.prefix:
                return _answers(cluster)
            # Where only its own prefix reaches it, ask from there.
            return self.cluster_kubectl(cluster, "get", "--raw", "/readyz") == "ok"

        self._wait(f"{name} API server", answers, 30, process)
        return cluster

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        timeout: float,
        process: _Process | None = None,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and not process.alive():
                raise FleetError(
                    f"{what} exited ({process.popen.returncode}); see {process.log}"
                )
            try:
                if ready():
                    return
            except Exception:  # noqa: S110 - not ready yet, whatever the reason
                pass
            time.sleep(0.2)
        where = f"; see {process.log}" if process is not None else ""
        raise FleetError(f"{what} not ready within {timeout:.0f}s{where}")

    # -- kubectl ----------------------------------------------------------------

    def run_kubectl(
        self,
        kubeconfig: Path,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        prefix: Sequence[str] = (),
    ) -> str:
        if self.kubectl is None:
            raise FleetError(
                "kubectl is not installed: the demo shows the fleet through kubectl"
            )
        result = subprocess.run(
            [*prefix, self.kubectl, "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(self._env, HOME=str(self.data_dir)),
        )
        if check and result.returncode != 0:
            raise FleetError(
                f"kubectl {' '.join(args)} failed: {result.stderr.strip()}"
            )
        return result.stdout + (result.stderr if result.returncode else "")

    def cluster_kubectl(
        self, cluster: Cluster, *args: str, stdin: str | None = None, check: bool = True
    ) -> str:
        """
        Run kubectl on C{cluster}'s own kubeconfig, from where it is reachable.
        """
        return self.run_kubectl(
            cluster.kubeconfig, *args, stdin=stdin, check=check, prefix=cluster.prefix
        )

    def eventually_kubectl(
        self, kubeconfig: Path, *args: str, timeout: float = 30.0
    ) -> str:
        """
        Run kubectl until it succeeds: the parent's aggregated discovery takes a
        few seconds to include a new backend's group, on a real cluster too.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.run_kubectl(kubeconfig, *args)
            except FleetError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def parent_kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> str:
        assert self.parent is not None
        return self.run_kubectl(self.parent.kubeconfig, *args, stdin=stdin, check=check)

    # -- the steps ----------------------------------------------------------------

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._parent_kubeconfig is not None:
            self.parent = Cluster("parent", self.data_dir, None)
            self.parent.kubeconfig = self._parent_kubeconfig
        else:
            self.say(
                "Starting the parent API server (sandbox) in "
                f"{self.data_dir / 'parent'}"
            )
            parent_flags = ["--anonymous-auth"]
            if self.parent_host != "127.0.0.1":
                parent_flags += ["--host", self.parent_host]
            self.parent = self._start_sandbox("parent", parent_flags)
        self.say(f"  parent serving at {self.parent.url}")
        self._set_up_parent()
        self.say("Starting twist clusternet-hub")
        self._start_hub()
        for index in range(1, self.children + 1):
            self._add_child(f"child-{index}", index)

    def _add_child(self, name: str, index: int) -> Cluster:
        prefix = tuple(self._child_prefix(name))
        if index <= len(self._child_kubeconfigs):
            self.say(f"Starting twist clusternet-agent for {name}")
            child = Cluster(name, self.data_dir, None, prefix)
            child.kubeconfig = self._child_kubeconfigs[index - 1]
        else:
            self.say(f"Starting {name} (sandbox) and twist clusternet-agent")
            child = self._start_sandbox(name, prefix=prefix)
        self._set_up_child(child)
        self.child_clusters.append(child)
        self._start_agent(child)
        return child

    def add_child(self, name: str) -> Cluster:
        """
        Start one more child (sandbox and agent) in a running fleet.
        """
        self.children += 1
        return self._add_child(name, self.children)

    def start_agent_replica(self, child: Cluster, suffix: str) -> _Process:
        """
        Start another agent replica for C{child}: the replicas elect a leader.
        """
        replica = self._start(
            f"agent-{child.name}-{suffix}", self._agent_argv[child.name]
        )
        self.agents.append(replica)
        return replica

    def apply(
        self, cluster: Cluster, objects: Iterable[dict[str, Any]], *args: str
    ) -> str:
        """
        C{kubectl apply} C{objects} to C{cluster} as its admin.
        """
        return self.cluster_kubectl(
            cluster, "apply", *args, "-f", "-", stdin=yaml.safe_dump_all(objects)
        )

    def _set_up_parent(self) -> None:
        """
        As the parent's admin: C{kubectl apply -f deploy/hub} (but the
        Deployment; the Service names this machine), the sample bootstrap
        token, and a token for the hub's ServiceAccount.
        """
        assert self.parent is not None
        # The hub makes its serving CA itself (in a Secret) and puts it in the
        # APIService's caBundle: the parent verifies it as in a cluster.
        self.hub_port = _free_port()
        objects = [
            self._local_hub(o)
            for o in shipped_objects("deploy/hub")
            if not _in_cluster_only(o)
        ]
        self.apply(self.parent, objects)
        self._wait(
            "the CRDs to be established",
            lambda: (
                "clusterregistrationrequests"
                in self.parent_kubectl(
                    "api-resources", "--api-group=clusters.clusternet.io"
                )
            ),
            30,
        )
        self.apply(
            self.parent,
            shipped_objects("manifests/samples/cluster_bootstrap_token.yaml"),
        )
        self.hub_token = self._service_account_token(
            self.parent, HUB_NAMESPACE, HUB_ACCOUNT, "hub"
        )

    def _local_hub(self, obj: dict[str, Any]) -> dict[str, Any]:
        """
        The shipped hub Service and APIService, for a hub on this machine: the
        Service is an ExternalName for C{hub_host} (a real API server refuses
        Endpoints with loopback addresses), and the APIService points at its
        port; the hub sets its C{caBundle} itself.
        """
        if obj["kind"] == "Service" and obj["metadata"]["name"] == HUB_ACCOUNT:
            return {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": obj["metadata"],
                "spec": {
                    "type": "ExternalName",
                    "externalName": self.hub_host,
                    "ports": [{"port": self.hub_port, "protocol": "TCP"}],
                },
            }
        if obj["kind"] == "APIService":
            spec = dict(obj["spec"])
            spec.pop("insecureSkipTLSVerify", None)
            spec["service"] = dict(spec["service"], port=self.hub_port)
            return dict(obj, spec=spec)
        return obj

    def _set_up_child(self, child: Cluster) -> None:
        """
        As the child's admin: C{kubectl apply -f deploy/agent} (but the
        Deployment), the registration Secret from its template, a token for the
        agent's ServiceAccount, and what the parent's admin may do in the
        child.
        """
        assert self.parent is not None
        self.apply(
            child,
            [o for o in shipped_objects("deploy/agent") if not _in_cluster_only(o)],
        )
        self.apply(
            child,
            shipped_objects(
                "deploy/templates/clusternet_agent_secret.yaml",
                {"PARENTURL": self.parent.url, "REGTOKEN": BOOTSTRAP_TOKEN},
            ),
        )
        self.agent_tokens[child.name] = self._service_account_token(
            child, EDGE_SYSTEM_NAMESPACE, AGENT_ACCOUNT, f"agent-{child.name}"
        )
        self._grant_parent_admin(child)

    # -- service-account tokens -------------------------------------------------

    def _service_account_token(
        self, cluster: Cluster, namespace: str, account: str, name: str
    ) -> ServiceAccountToken:
        """
        A kubeconfig for C{cluster} that authenticates as the ServiceAccount
        C{namespace/account} with a token from the TokenRequest API, read from
        a file the fleet renews.
        """
        token = ServiceAccountToken(
            namespace,
            account,
            self.data_dir / f"{name}.token",
            self.data_dir / f"{name}.kubeconfig",
        )
        user = f"system:serviceaccount:{namespace}:{account}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": cluster.name, "cluster": _current_cluster(cluster.kubeconfig)}
            ],
            "users": [{"name": user, "user": {"tokenFile": str(token.token_file)}}],
            "contexts": [
                {"name": name, "context": {"cluster": cluster.name, "user": user}}
            ],
            "current-context": name,
        }
        self._renew(cluster, token)
        _write_private(token.kubeconfig, yaml.safe_dump(config).encode())
        return token

    def _renew(
        self, cluster: Cluster, token: ServiceAccountToken, revoke: bool = False
    ) -> None:
        old = token.binding()
        generation = token.generation + 1
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": token.binding(generation),
                "namespace": token.namespace,
            },
            "type": "Opaque",
        }
        self.apply(cluster, [secret])
        value = self.cluster_kubectl(
            cluster,
            "create",
            "token",
            token.account,
            "-n",
            token.namespace,
            f"--duration={TOKEN_SECONDS}s",
            "--bound-object-kind=Secret",
            f"--bound-object-name={token.binding(generation)}",
        ).strip()
        if not value:
            raise FleetError(f"no token for {token.namespace}/{token.account}")
        # Replaced in one rename, as the kubelet swaps a projected token.
        _write_private(token.token_file, value.encode())
        token.issued = time.monotonic()
        token.generation = generation
        if revoke and generation > 1:
            self.cluster_kubectl(
                cluster, "delete", "secret", old, "-n", token.namespace
            )

    def renew_tokens(self, force: bool = False, revoke: bool = False) -> None:
        """
        Request new tokens for the hub and the agents when half the lifetime of
        the old ones has passed (or now, with C{force}); the programs read the
        new ones from their token files.

        @param revoke: revoke each replaced token at once (delete the Secret it
            is bound to), rather than let it expire.
        """
        now = time.monotonic()
        pairs: list[tuple[Cluster | None, ServiceAccountToken | None]] = [
            (self.parent, self.hub_token)
        ]
        pairs += [(c, self.agent_tokens.get(c.name)) for c in self.child_clusters]
        for cluster, token in pairs:
            if cluster is None or token is None:
                continue
            if force or now - token.issued > TOKEN_SECONDS / 2:
                self._renew(cluster, token, revoke)

    def agent_kubeconfig(self, child: Cluster) -> Path:
        """
        The kubeconfig the agent of C{child} runs with (its ServiceAccount).
        """
        return self.agent_tokens[child.name].kubeconfig

    def _grant_parent_admin(self, child: Cluster) -> None:
        """
        The child decides what the parent's users may do there: the agent
        impersonates them (never as system:masters), so the demo's child admin
        binds the parent's admin user to cluster-admin.
        """
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "clusternet-demo:parent-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": PARENT_ADMIN,
                }
            ],
        }
        self.cluster_kubectl(child, "apply", "-f", "-", stdin=json.dumps(binding))
        self.say(
            f"  {child.name}: bound the parent's user {PARENT_ADMIN!r} to "
            "cluster-admin (requests from the parent are impersonated in the child)"
        )

    def _start_hub(self) -> None:
        assert self.parent is not None and self.hub_token is not None
        self._hub_argv = [
            *self._twist,
            "--log-format=text",
            "clusternet-hub",
            f"--kubeconfig={self.hub_token.kubeconfig}",
            f"--secure-port={self.hub_port}",
            "--bind-address="
            + (
                "127.0.0.1"
                if self.hub_host in ("localhost", "127.0.0.1")
                else "0.0.0.0"  # noqa: S104 - a hub a remote parent must reach
            ),
            # The hub's own serving certificate also names the addresses
            # this machine reaches it at.
            "--tls-san=" + ",".join(sorted({"localhost", "127.0.0.1", self.hub_host})),
            f"--cluster-lease-grace-period={self.lease_grace}",
            # Request-header trust comes from the parent's
            # kube-system/extension-apiserver-authentication ConfigMap, as from
            # a real parent.
            *self._hub_args,
        ]
        self.restart_hub()
        # The CA the hub made (and the parent now trusts), for whoever talks
        # to the hub directly.
        secret = f"--namespace={HUB_NAMESPACE}", "secret/clusternet-hub-serving"
        ca = self.parent_kubectl("get", *secret, "-o", "jsonpath={.data.ca\\.crt}")
        (self.data_dir / "hub-ca.crt").write_bytes(base64.b64decode(ca))

    def restart_hub(self) -> None:
        """
        Start the hub (again, after L{stop_process}) and wait until the parent
        reaches it.
        """
        self.hub = self._start("hub", self._hub_argv)
        self._wait(
            "the hub behind the parent's aggregation layer",
            lambda: (
                '"proxies.clusternet.io/v1alpha1"'
                in self.parent_kubectl("get", "--raw", GROUP_PATH)
            ),
            60,
            self.hub,
        )
        self._wait(
            "the hub's group in the parent's discovery",
            lambda: (
                '"proxies.clusternet.io"'
                in self.parent_kubectl("get", "--raw", "/apis")
            ),
            60,
            self.hub,
        )
        # kubectl caches discovery for minutes: forget what it saw before the
        # hub's group joined the parent.
        shutil.rmtree(self.data_dir / ".kube" / "cache", ignore_errors=True)

    def _start_agent(self, child: Cluster) -> None:
        assert self.parent is not None
        self._agent_argv[child.name] = [
            *child.prefix,
            *self._twist,
            "--log-format=text",
            "clusternet-agent",
            f"--kubeconfig={self.agent_kubeconfig(child)}",
            # The parent URL and the bootstrap token come from the registration
            # Secret, as deploy/agent passes them.
            f"--cluster-reg-name={child.name}",
            f"--cluster-status-update-frequency={self.status_frequency}",
            f"--cluster-status-collect-frequency={self.status_frequency}",
            *self._agent_args,
            *(self._agent_args_for(self, child) if self._agent_args_for else ()),
        ]
        self.restart_agent(child)

    def restart_agent(self, child: Cluster) -> _Process:
        """
        Start the agent of C{child} (again, after L{stop_process}).
        """
        agent = self._start(f"agent-{child.name}", self._agent_argv[child.name])
        self.agents = [a for a in self.agents if a.name != agent.name] + [agent]
        return agent

    def stop_process(self, process: _Process, sig: int = signal.SIGTERM) -> int | None:
        """
        Stop one process of the fleet (SIGKILL to simulate a crash).
        """
        if sig != signal.SIGTERM and process.alive():
            process.popen.send_signal(sig)
        code = process.stop()
        self.processes.remove(process)
        self.agents = [a for a in self.agents if a is not process]
        return code

    def wait_ready(self, timeout: float = 90.0, progress: TextIO | None = None) -> None:
        """
        Wait until every child is approved, Ready and attached.
        """
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            states = self.cluster_states()
            line = "  " + "  ".join(
                f"{name}: {state}" for name, state in sorted(states.items())
            )
            if line != last:
                self.say(line)
                last = line
            if len(states) == self.children and all(
                s == "Ready, tunnel up" for s in states.values()
            ):
                return
            for process in [self.hub, *self.agents]:
                if process is not None and not process.alive():
                    raise FleetError(
                        f"{process.name} exited ({process.popen.returncode}); "
                        f"see {process.log}"
                    )
            if time.monotonic() > deadline:
                raise FleetError(
                    f"the children were not all Ready within {timeout:.0f}s "
                    f"({line.strip()}); "
                    f"logs are in {self.data_dir}"
                )
            time.sleep(0.5)

    def cluster_states(self) -> dict[str, str]:
        crrs = json.loads(
            self.parent_kubectl("get", "clsrr", "-o", "json", check=False) or "{}"
        )
        states: dict[str, str] = {}
        for crr in crrs.get("items", []):
            name = crr["spec"].get("clusterName") or crr["metadata"]["name"]
            states[name] = (crr.get("status") or {}).get("result") or "Pending"
        clusters = json.loads(
            self.parent_kubectl("get", "mcls", "-A", "-o", "json", check=False) or "{}"
        )
        sockets = json.loads(
            self.parent_kubectl("get", "--raw", f"{GROUP_PATH}/sockets", check=False)
            or "{}"
        )
        attached = {item["metadata"]["name"] for item in sockets.get("items", [])}
        for mcls in clusters.get("items", []):
            name = mcls["metadata"]["name"]
            ready = "Unknown"
            for condition in (mcls.get("status") or {}).get("conditions") or []:
                if condition.get("type") == "Ready":
                    ready = condition.get("status", "Unknown")
            tunnel = (
                "tunnel up"
                if mcls["spec"].get("clusterId") in attached
                else "no tunnel"
            )
            if states.get(name) == "Approved":
                states[name] = (
                    f"{'Ready' if ready == 'True' else 'Ready=' + ready}, {tunnel}"
                )
        return states

    def child_kubeconfig(self, child: Cluster) -> Path:
        assert self.parent is not None
        out = self.data_dir / f"{child.name}-via-parent.kubeconfig"
        result = subprocess.run(
            [
                self._python,
                "-m",
                "clusternet",
                "kubeconfig",
                child.name,
                "--kubeconfig",
                str(self.parent.kubeconfig),
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env,
        )
        if result.returncode != 0:
            raise FleetError(
                f"clusternet kubeconfig {child.name} failed: {result.stderr.strip()}"
            )
        return out

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def _write_private(path: Path, data: bytes) -> None:
    """
    Write C{data} to C{path} (mode 0600) in one rename.
    """
    partial = path.with_name(path.name + ".new")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    partial.replace(path)


def _admin_get(cluster: Cluster, path: str, accept: str = "application/json") -> bytes:
    """
    GET C{path} from a sandbox as its admin (client certificate).
    """
    import ssl
    import urllib.request

    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(
        config["clusters"][0]["cluster"]["certificate-authority-data"]
    )
    context = ssl.create_default_context(cadata=ca.decode())
    if (cluster.data_dir / "admin.crt").exists():
        context.load_cert_chain(
            cluster.data_dir / "admin.crt", cluster.data_dir / "admin.key"
        )
    request = urllib.request.Request(  # noqa: S310 - an https URL we wrote
        f"{cluster.url}{path}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(  # noqa: S310 - an https URL we wrote
        request, context=context, timeout=5
    ) as response:
        return bytes(response.read())


def _answers(cluster: Cluster) -> bool:
    return _admin_get(cluster, "/readyz") == b"ok"
