"""
Command-line options of C{twist clusternet-agent}.
"""

from __future__ import annotations

import re
from typing import ClassVar

from twisted.python.usage import UsageError

from clusternet._options import (
    TUNNEL_QUEUE_HELP,
    ClusternetOptions,
    coerce_bool,
    coerce_choice,
    coerce_duration,
    coerce_positive_int,
    coerce_tunnel_queue,
    coerce_url,
    require_readable_file,
)
from clusternet.agent._identity import KUBERNETES_EXTRAS

__all__ = ["CLUSTER_TYPES", "AgentOptions"]

CLUSTER_TYPES = ("EdgeClusterSelfProvisioned",)

# A DNS-1123 label, as Kubernetes object names in the name part must be.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CLUSTER_NAME_MAX_LENGTH = 60
CLUSTER_NAME_PREFIX_MAX_LENGTH = 50


def _cluster_name(text: str) -> str:
    if len(text) > CLUSTER_NAME_MAX_LENGTH or not _DNS_LABEL.match(text):
        raise ValueError(
            "expected lowercase letters, digits and '-', starting and ending with a "
            f"letter or digit, at most {CLUSTER_NAME_MAX_LENGTH} characters"
        )
    return text


def _cluster_name_prefix(text: str) -> str:
    if len(text) > CLUSTER_NAME_PREFIX_MAX_LENGTH or not _DNS_LABEL.match(text):
        raise ValueError(
            "expected lowercase letters, digits and '-', starting and ending with a "
            f"letter or digit, at most {CLUSTER_NAME_PREFIX_MAX_LENGTH} characters"
        )
    return text


def _group_map(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parent, sep, child = item.partition("=")
        if not sep or not parent.strip() or not child.strip():
            raise ValueError(f"{item!r} is not PARENT=CHILD")
        mapping[parent.strip()] = child.strip()
    return mapping


def _extra_keys(text: str) -> tuple[str, ...] | None:
    if text.strip() == "*":
        return None
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    for key in keys:
        if key == "*" or any(c.isspace() for c in key):
            raise ValueError(f"{key!r} is not a user extra key (or give * alone)")
    return keys


def _dial_patterns(text: str) -> tuple[str, ...]:
    from clusternet.tunnel import AllowList

    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    AllowList(patterns)  # raises ValueError naming a bad pattern
    return patterns


class AgentOptions(ClusternetOptions):
    """
    Run the clusternet agent in (or beside) a child cluster.
    """

    synopsis = "[options]"
    longdesc = (
        "The agent registers its child cluster with the parent using a bootstrap "
        "token, keeps a tunnel open to the hub and reports the child's health. "
        "Logging is set with twist's own --log-level, --log-format and --log-file."
    )

    optFlags: ClassVar[list[list[str | None]]] = [
        [
            "cluster-reg-insecure-skip-tls-verify",
            None,
            "Do not verify the parent's serving certificate while bootstrapping. "
            "Unsafe: logs a warning on every start.",
        ],
        [
            "allow-masters-impersonation",
            None,
            "In impersonate mode, pass the parent group system:masters on to the "
            "child (never done otherwise).",
        ],
    ]

    optParameters: ClassVar[list[list[object]]] = [
        [
            "kubeconfig",
            None,
            None,
            "Kubeconfig of the child cluster. In-cluster configuration when absent.",
        ],
        [
            "cluster-id",
            None,
            None,
            "Cluster ID to register with; the UID of the child's kube-system "
            "namespace when absent.",
        ],
        [
            "cluster-reg-parent-url",
            None,
            None,
            "URL of the parent cluster's API server.",
        ],
        [
            "cluster-reg-token",
            None,
            None,
            "Bootstrap token (<id>.<secret>) to register with. Never logged. "
            "Visible in the process list: prefer --cluster-reg-token-file.",
        ],
        [
            "cluster-reg-token-file",
            None,
            None,
            "File holding the bootstrap token (read once at start).",
        ],
        [
            "cluster-reg-parent-ca-file",
            None,
            None,
            "CA bundle of the parent's API server. When absent the CA is discovered "
            "from kube-public/cluster-info and trusted only if its signature with "
            "the bootstrap token verifies.",
        ],
        ["cluster-reg-name", None, None, "Name of this cluster in the parent."],
        [
            "cluster-reg-name-prefix",
            None,
            "clusternet-cluster",
            "Prefix of a generated cluster name (5 random characters are added) "
            "when --cluster-reg-name is absent.",
        ],
        [
            "cluster-type",
            None,
            CLUSTER_TYPES[0],
            "Type of the cluster: " + ", ".join(CLUSTER_TYPES) + ".",
        ],
        [
            "cluster-reg-namespace",
            None,
            "edge-system",
            "Namespace in the child holding the agent's secrets and leader lease.",
        ],
        [
            "cluster-reg-secret",
            None,
            "clusternet-agent-cluster-registration",
            "Secret holding parentURL and regToken, read when the flags are absent.",
        ],
        [
            "parent-secret",
            None,
            "parent-cluster",
            "Secret where the agent keeps the credentials the parent granted.",
        ],
        [
            "cluster-status-collect-frequency",
            None,
            "20s",
            "How often the child's status is collected.",
        ],
        [
            "cluster-status-update-frequency",
            None,
            "3m",
            "How often the collected status is reported to the parent.",
        ],
        [
            "leader-elect",
            None,
            "true",
            "Elect a leader among agent replicas (true/false).",
        ],
        ["lease-duration", None, "15s", "Duration of the leader-election lease."],
        [
            "renew-deadline",
            None,
            "10s",
            "How long the leader tries to renew before giving up.",
        ],
        ["retry-period", None, "2s", "How often candidates try to acquire the lease."],
        [
            "metrics-listen",
            None,
            None,
            "Plain-HTTP endpoint for /metrics and the probes, such as "
            "tcp:9091:interface=127.0.0.1. Off when absent.",
        ],
        [
            "identity-mode",
            None,
            "impersonate",
            "Credentials towards the child API server for requests from the parent: "
            "impersonate (the agent's own, plus Impersonate-User/-Group of the parent "
            "user), token (the caller's own, from the user extras clusternet-token or "
            "clusternet-certificate/-privatekey), or none.",
        ],
        [
            "impersonate-group-map",
            None,
            "",
            "Comma-separated PARENT=CHILD group renames applied in impersonate mode, "
            "such as devs=child-devs,system:masters=child-admins.",
        ],
        [
            "impersonate-extras",
            None,
            ",".join(KUBERNETES_EXTRAS),
            "Comma-separated user extras passed on to the child in impersonate mode "
            "(others are left out), or * for all. The agent's RBAC in the child must "
            "allow impersonating userextras/<key> for each (RBAC has no wildcard for "
            'keys: * needs resources ["*"] in authentication.k8s.io).',
        ],
        [
            "dial-allow",
            None,
            "",
            "Comma-separated HOST:PORT patterns the hub may reach through this agent "
            "besides the child API server (wildcards, CIDRs and port ranges: "
            "*.svc:443, 10.0.0.0/8:8000-8100).",
        ],
        [
            "credential-check-frequency",
            None,
            "30s",
            "How often the agent reads its registration request for the next token "
            "the hub sealed to its key.",
        ],
        ["kube-threads", None, "10", "Threads for calls to the API servers."],
        ["tunnel-queue", None, "auto", TUNNEL_QUEUE_HELP],
        [
            "tunnel-transport",
            None,
            "auto",
            "How the tunnel crosses the parent: upgrade (an HTTP upgrade to the "
            "tunnel's own framing), websocket, or auto: upgrade, and websocket "
            "from then on where the parent answers the upgrade like a hub that "
            "does not know it and WebSocket works.",
        ],
        [
            "shutdown-timeout",
            None,
            "8s",
            "How long SIGTERM waits for streams to drain.",
        ],
    ]

    coercions = {
        "cluster-reg-parent-url": coerce_url,
        "cluster-reg-name": _cluster_name,
        "cluster-reg-name-prefix": _cluster_name_prefix,
        "cluster-type": coerce_choice(*CLUSTER_TYPES),
        "cluster-status-collect-frequency": coerce_duration,
        "cluster-status-update-frequency": coerce_duration,
        "credential-check-frequency": coerce_duration,
        "leader-elect": coerce_bool,
        "lease-duration": coerce_duration,
        "renew-deadline": coerce_duration,
        "retry-period": coerce_duration,
        "kube-threads": coerce_positive_int,
        "tunnel-queue": coerce_tunnel_queue,
        "tunnel-transport": coerce_choice("auto", "upgrade", "websocket"),
        "shutdown-timeout": coerce_duration,
        "identity-mode": coerce_choice("impersonate", "token", "none"),
        "impersonate-group-map": _group_map,
        "dial-allow": _dial_patterns,
        "impersonate-extras": _extra_keys,
    }

    def postOptions(self) -> None:
        super().postOptions()
        for flag in (
            "cluster-status-collect-frequency",
            "cluster-status-update-frequency",
            "credential-check-frequency",
            "lease-duration",
            "renew-deadline",
            "retry-period",
        ):
            if self[flag] <= 0:
                raise UsageError(f"--{flag} must be longer than zero")
        if not self["lease-duration"] > self["renew-deadline"]:
            raise UsageError("--lease-duration must be longer than --renew-deadline")
        if not self["renew-deadline"] > self["retry-period"]:
            raise UsageError("--renew-deadline must be longer than --retry-period")
        token_file = self["cluster-reg-token-file"]
        if token_file:
            if self["cluster-reg-token"]:
                raise UsageError(
                    "give --cluster-reg-token or --cluster-reg-token-file, not both"
                )
            require_readable_file("cluster-reg-token-file", token_file)
            with open(token_file, encoding="utf-8") as f:
                self["cluster-reg-token"] = f.read().strip()
        token = self["cluster-reg-token"]
        if token is not None and not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token):
            # Never echo the value: it is a secret.
            raise UsageError(
                "--cluster-reg-token: expected a bootstrap token of the form "
                "[a-z0-9]{6}.[a-z0-9]{16}"
            )
        for flag in ("kubeconfig", "cluster-reg-parent-ca-file"):
            require_readable_file(flag, self[flag])
        if not self["impersonate-group-map"]:
            self["impersonate-group-map"] = {}
        if not self["dial-allow"]:
            self["dial-allow"] = ()
        if self["impersonate-extras"] == "":
            self["impersonate-extras"] = ()

    def __repr__(self) -> str:
        shown = {
            k: ("<redacted>" if k == "cluster-reg-token" and v else v)
            for k, v in self.items()
        }
        return f"<AgentOptions {shown!r}>"
