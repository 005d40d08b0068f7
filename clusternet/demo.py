# ruff: noqa: S603 - the demo runs its own processes, with argument lists
"""
A whole fleet on one machine, for the demo and the end-to-end tests: a parent
sandbox API server with the hub registered in its aggregation layer, and child
sandboxes each with an agent, all real processes.

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
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from clusternet import pki
from clusternet.apis import BOOTSTRAP_GROUP, crds

__all__ = [
    "BOOTSTRAP_TOKEN",
    "DemoError",
    "Fleet",
    "bootstrap_token_objects",
    "run_demo",
]

BOOTSTRAP_TOKEN = "07401b.f395accd246ae52d"  # noqa: S105 - the documented sample token
GROUP_PATH = "/apis/proxies.clusternet.io/v1alpha1"
PARENT_ADMIN = "kubernetes-admin"  # the CN of the sandbox's admin certificate


class DemoError(Exception):
    """
    A step of the demo failed; the message says which and where to look.
    """


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bootstrap_token_objects(token: str = BOOTSTRAP_TOKEN) -> list[dict[str, Any]]:
    """
    The bootstrap token Secret and its RBAC, as manifests/samples/
    cluster_bootstrap_token.yaml has them (a test keeps the two equal).
    """
    token_id, secret = token.split(".")
    role = "clusternet:system:bootstrapping"
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"bootstrap-token-{token_id}",
                "namespace": "kube-system",
            },
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": (
                    "The bootstrap token used by clusternet cluster registration."
                ),
                "token-id": token_id,
                "token-secret": secret,
                "expiration": "2030-05-10T03:22:11Z",
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": BOOTSTRAP_GROUP,
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": ["clusters.clusternet.io"],
                    "resources": ["clusterregistrationrequests"],
                    "verbs": ["get", "create"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": BOOTSTRAP_GROUP,
                }
            ],
        },
    ]


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
        config = yaml.safe_load(self.kubeconfig.read_text())
        return str(config["clusters"][0]["cluster"]["server"])


class Fleet:
    """
    Start and stop a parent, its hub and children with agents.

    @param data_dir: where every process keeps its state and log.
    @param say: where progress lines go.
    @param parent_host: the address the parent sandbox listens on (its serving
        certificate names it); agents reach the parent there.
    @param child_prefix: the command prefix for the processes of the child of a
        given name (its sandbox, its agent) and for kubectl calls on its own
        kubeconfig, for example C{ip netns exec NS} to run a child in a network
        namespace; by default none.
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
    ) -> None:
        if children < 1:
            raise DemoError("--children must be at least 1")
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
        self._hub_argv: list[str] = []
        self._agent_argv: dict[str, list[str]] = {}
        self.processes: list[_Process] = []
        self.parent: Cluster | None = None
        self.child_clusters: list[Cluster] = []
        self.agents: list[_Process] = []
        self.hub: _Process | None = None
        self.hub_port = 0
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
                raise DemoError(
                    f"{what} exited ({process.popen.returncode}); see {process.log}"
                )
            try:
                if ready():
                    return
            except Exception:  # noqa: S110 - not ready yet, whatever the reason
                pass
            time.sleep(0.2)
        where = f"; see {process.log}" if process is not None else ""
        raise DemoError(f"{what} not ready within {timeout:.0f}s{where}")

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
            raise DemoError(
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
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
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
            except DemoError:
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
            self._grant_parent_admin(child)
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

    def _set_up_parent(self) -> None:
        assert self.parent is not None
        hub_ca = pki.make_ca("clusternet-demo-hub-ca")
        hub_cert = pki.issue_certificate(
            hub_ca,
            "clusternet-hub",
            # The aggregator verifies the name <service>.<namespace>.svc.
            hosts=sorted(
                {
                    "localhost",
                    "127.0.0.1",
                    self.hub_host,
                    "clusternet-hub.clusternet-system.svc",
                }
            ),
            server=True,
        )
        (self.data_dir / "hub.crt").write_bytes(hub_cert.certificate_pem)
        (self.data_dir / "hub-ca.crt").write_bytes(hub_ca.certificate_pem)
        key = self.data_dir / "hub.key"
        key.write_bytes(hub_cert.key_pem)
        key.chmod(0o600)
        self.hub_port = _free_port()
        self.parent_kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds()))
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
        self.parent_kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump_all(bootstrap_token_objects())
        )
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "clusternet-system"},
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "clusternet-hub",
                    "namespace": "clusternet-system",
                },
                "spec": {
                    "type": "ExternalName",
                    "externalName": self.hub_host,
                    "ports": [{"port": self.hub_port, "protocol": "TCP"}],
                },
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1alpha1.proxies.clusternet.io"},
                "spec": {
                    "group": "proxies.clusternet.io",
                    "version": "v1alpha1",
                    "groupPriorityMinimum": 1000,
                    "versionPriority": 15,
                    "caBundle": base64.b64encode(hub_ca.certificate_pem).decode(),
                    "service": {
                        "name": "clusternet-hub",
                        "namespace": "clusternet-system",
                        "port": self.hub_port,
                    },
                },
            },
        ]
        self.parent_kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

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
        assert self.parent is not None
        self._hub_argv = [
            *self._twist,
            "--log-format=text",
            "clusternet-hub",
            f"--kubeconfig={self.parent.kubeconfig}",
            f"--secure-port={self.hub_port}",
            "--bind-address="
            + (
                "127.0.0.1"
                if self.hub_host in ("localhost", "127.0.0.1")
                else "0.0.0.0"  # noqa: S104 - a hub a remote parent must reach
            ),
            f"--tls-cert-file={self.data_dir / 'hub.crt'}",
            f"--tls-private-key-file={self.data_dir / 'hub.key'}",
            f"--cluster-lease-grace-period={self.lease_grace}",
            # Request-header trust comes from the parent's
            # kube-system/extension-apiserver-authentication ConfigMap, as from
            # a real parent.
        ]
        self.restart_hub()

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
            f"--kubeconfig={child.kubeconfig}",
            f"--cluster-reg-parent-url={self.parent.url}",
            f"--cluster-reg-token={BOOTSTRAP_TOKEN}",
            f"--cluster-reg-name={child.name}",
            f"--cluster-status-update-frequency={self.status_frequency}",
            f"--cluster-status-collect-frequency={self.status_frequency}",
            *self._agent_args,
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
                    raise DemoError(
                        f"{process.name} exited ({process.popen.returncode}); "
                        f"see {process.log}"
                    )
            if time.monotonic() > deadline:
                raise DemoError(
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
            raise DemoError(
                f"clusternet kubeconfig {child.name} failed: {result.stderr.strip()}"
            )
        return out

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


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


def _aggregated_groups(cluster: Cluster | None) -> set[str]:
    """
    The groups in the aggregated discovery document, which kubectl reads.
    """
    assert cluster is not None
    # Exactly what kubectl v1.32 asks for.
    accept = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
        "application/json"
    )
    document = json.loads(_admin_get(cluster, "/apis", accept))
    return {item["metadata"]["name"] for item in document.get("items", [])}


MARKER = ".clusternet-demo"


def _fresh(data_dir: Path) -> None:
    """
    Empty a folder the demo made before; refuse any other non-empty folder.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise DemoError(
                f"{data_dir} is not empty and was not made by the demo; "
                "choose another --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by clusternet demo\n")


def run_demo(args: Any) -> int:
    """
    The C{clusternet demo} command.
    """
    data_dir = Path(args.data_dir).resolve()
    _fresh(data_dir)

    def terminated(number: int, frame: object) -> None:
        # Stop the fleet (the finally below) as on Ctrl-C, rather than dying and
        # leaving its processes behind.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    fleet = Fleet(data_dir, args.children)
    try:
        fleet.start()
        fleet.say("Waiting for every child to register, be approved and be Ready:")
        fleet.wait_ready(args.timeout)
        fleet.say(
            f"All {args.children} children are Ready "
            f"({time.monotonic() - started:.0f}s).\n"
        )
        assert fleet.parent is not None
        parent = fleet.parent.kubeconfig
        for command in (("get", "clsrr"), ("get", "mcls", "-A"), ("get", "sockets")):
            fleet.say(f"$ kubectl --kubeconfig {parent} {' '.join(command)}")
            fleet.say(fleet.eventually_kubectl(parent, *command).rstrip() + "\n")
        child_configs = []
        for child in fleet.child_clusters:
            config = fleet.child_kubeconfig(child)
            child_configs.append(config)
            fleet.say(
                f"# {child.name}, reached through the parent "
                f"(clusternet kubeconfig {child.name}):"
            )
            fleet.say(f"$ kubectl --kubeconfig {config} get ns")
            fleet.say(fleet.eventually_kubectl(config, "get", "ns").rstrip() + "\n")
        fleet.say("Try next:")
        fleet.say(f"  export KUBECONFIG={parent}")
        fleet.say(
            "  kubectl get clsrr; kubectl get mcls -A -o wide; kubectl get sockets"
        )
        fleet.say(
            f"  kubectl --kubeconfig {child_configs[0]} "
            "create configmap hello --from-literal=k=v"
        )
        fleet.say(f"  kubectl --kubeconfig {child_configs[0]} get configmaps -w")
        installed = Path(sys.executable).parent / "clusternet"
        clusternet = str(installed) if installed.exists() else "clusternet"
        fleet.say(f"  {clusternet} get clusters --kubeconfig {parent}")
        fleet.say(f"  logs: {data_dir}/*.log")
        if args.check:
            fleet.say("Check passed.")
            return 0
        fleet.say("\nThe fleet is running; press Ctrl-C to stop it.")
        while all(p.alive() for p in fleet.processes):
            time.sleep(1)
        dead = [p for p in fleet.processes if not p.alive()]
        raise DemoError(f"{dead[0].name} exited; see {dead[0].log}")
    except KeyboardInterrupt:
        fleet.say("\nStopping the fleet.")
        return 0
    finally:
        fleet.stop()
