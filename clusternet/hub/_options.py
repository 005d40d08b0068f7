"""
Command-line options of C{twist clusternet-hub}.
"""

from __future__ import annotations

from typing import ClassVar

from twisted.python.usage import UsageError

from clusternet._options import (
    TUNNEL_QUEUE_HELP,
    ClusternetOptions,
    coerce_bool,
    coerce_byte_size,
    coerce_choice,
    coerce_duration,
    coerce_port,
    coerce_positive_int,
    coerce_tunnel_queue,
    require_readable_file,
)
from clusternet.hub._fairness import (
    DEFAULT_STREAM_RESERVE,
    coerce_stream_reserve,
    coerce_streams_per_user,
)

__all__ = ["HubOptions"]


def _coerce_head_bytes(text: str) -> int:
    size = coerce_byte_size(text)
    if size < 4096:
        raise ValueError(f"{text!r} is too small for a request head; at least 4Ki")
    return size


_coerce_head_bytes.coerceDoc = coerce_byte_size.coerceDoc  # type: ignore[attr-defined]


class HubOptions(ClusternetOptions):
    """
    Run the clusternet hub: the aggregated API server C{proxies.clusternet.io}
    that holds the agents' tunnels and proxies requests to child clusters.
    """

    synopsis = "[options]"
    longdesc = (
        "The hub runs in (or beside) the parent cluster, behind the parent "
        "kube-apiserver's aggregation layer. Logging is set with twist's own "
        "--log-level, --log-format and --log-file."
    )

    optParameters: ClassVar[list[list[object]]] = [
        [
            "kubeconfig",
            None,
            None,
            "Kubeconfig of the parent cluster. In-cluster configuration when absent.",
        ],
        ["secure-port", None, "443", "Port to serve HTTPS on (0 picks a free one)."],
        ["bind-address", None, "0.0.0.0", "Address to serve HTTPS on."],  # noqa: S104
        [
            "listen",
            None,
            None,
            "Twisted endpoint string to serve on instead of --bind-address and "
            "--secure-port, for example ssl:6443:interface=127.0.0.1:"
            "privateKey=tls.key:certKey=tls.crt.",
        ],
        [
            "tls-cert-file",
            None,
            None,
            "Serving certificate (PEM, may carry the chain). When this and "
            "--tls-private-key-file are absent, the hub keeps a CA and a serving "
            "certificate in the Secret --serving-secret of --namespace (made on "
            "first start, renewed before it expires) and puts that CA in its "
            "APIService's caBundle.",
        ],
        ["tls-private-key-file", None, None, "Private key of --tls-cert-file (PEM)."],
        [
            "namespace",
            None,
            None,
            "Namespace of the hub's own objects (its serving Secret). The pod's "
            "namespace in a cluster, else clusternet-system.",
        ],
        [
            "serving-secret",
            None,
            "clusternet-hub-serving",
            "Secret (type kubernetes.io/tls, with ca.crt and ca.key) holding the "
            "hub's serving CA and certificate when --tls-cert-file is not given.",
        ],
        [
            "apiservice-name",
            None,
            "v1alpha1.proxies.clusternet.io",
            "The hub's APIService in the parent, whose caBundle the hub keeps.",
        ],
        [
            "apiservice-ca-injection",
            None,
            "true",
            "Keep the APIService's caBundle equal to the hub's CA (or "
            "--apiservice-ca-file) and insecureSkipTLSVerify unset. false when "
            "another tool (cert-manager's CA injector) sets caBundle.",
        ],
        [
            "apiservice-ca-file",
            None,
            None,
            "With --tls-cert-file or --listen: a CA bundle (PEM) to put in the "
            "APIService's caBundle. Without it the hub leaves the APIService "
            "alone when it is given a certificate.",
        ],
        [
            "client-ca-file",
            None,
            None,
            "CA bundle that signs client certificates sent directly to the hub.",
        ],
        [
            "requestheader-client-ca-file",
            None,
            None,
            "CA bundle that signs the front-proxy client certificate of the parent "
            "kube-apiserver. Read from the parent's kube-system/"
            "extension-apiserver-authentication ConfigMap when absent.",
        ],
        [
            "requestheader-allowed-names",
            None,
            "",
            "Comma-separated common names allowed for the front-proxy client "
            "certificate; empty allows any certificate the CA signed.",
        ],
        [
            "requestheader-username-headers",
            None,
            "X-Remote-User",
            "Header(s) carrying the user.",
        ],
        [
            "requestheader-group-headers",
            None,
            "X-Remote-Group",
            "Header(s) carrying groups.",
        ],
        [
            "requestheader-extra-headers-prefix",
            None,
            "X-Remote-Extra-",
            "Prefix of headers carrying user extras.",
        ],
        [
            "metrics-listen",
            None,
            None,
            "Extra plain-HTTP endpoint for /metrics and the probes, such as "
            "tcp:9090:interface=127.0.0.1. Off when absent; the HTTPS port always "
            "serves them.",
        ],
        [
            "kube-threads",
            None,
            "10",
            "Threads for calls to the parent's API server (never made on the "
            "reactor thread).",
        ],
        [
            "max-request-header-bytes",
            None,
            "1Mi",
            "Largest request head (request line and headers) the hub reads, as "
            "kube-apiserver's; a larger one is answered 431 (414 for the request "
            "line alone) and its connection closed. Also what one connection may "
            "make the hub buffer before its request is authenticated. At least 4Ki.",
        ],
        [
            "request-header-timeout",
            None,
            "10s",
            "Time within which a request head must be complete (from the "
            "connection's start for its first request, TLS handshake included; "
            "from its first byte for a later one), else 408 and close. 0: none.",
        ],
        [
            "idle-timeout",
            None,
            "60s",
            "How long a connection may be silent while it waits for a request or "
            "sends a request body before it is closed. 0: never.",
        ],
        [
            "max-refused-body-bytes",
            None,
            "1Mi",
            "Request body the hub reads and throws away after answering a request "
            "early (401, 403, 404, 429, 503), so the client reads the answer; a "
            "longer body, or one that takes longer than --request-header-timeout, "
            "closes the connection.",
        ],
        [
            "trim-memory",
            None,
            "true",
            "After connections holding 4Mi of unfinished request heads between "
            "them are gone, give the freed memory back to the system (glibc's "
            "malloc_trim; at most every 10s). false: leave it to the allocator.",
        ],
        [
            "cluster-approval",
            None,
            "auto",
            "How registration requests are approved: auto (every valid request), or "
            "manual (an operator approves each: clusternet approve <name>).",
        ],
        [
            "max-pending-registrations",
            None,
            "100",
            "Registration requests that may wait at once; newer ones are denied.",
        ],
        [
            "cluster-token-lifetime",
            None,
            "24h",
            "Lifetime of each parent token the hub issues a cluster (sealed to its "
            "agent's key); the next one is issued when a fifth of it is left. At "
            "least 10m.",
        ],
        [
            "cluster-lease-grace-period",
            None,
            "40s",
            "How long after a child's last lease renewal its ManagedCluster turns "
            "Ready=Unknown.",
        ],
        [
            "shutdown-timeout",
            None,
            "8s",
            "How long SIGTERM waits for tunnels and requests to drain.",
        ],
        ["tunnel-queue", None, "auto", TUNNEL_QUEUE_HELP],
        [
            "max-streams-per-user",
            None,
            "auto",
            "Tunnel streams one user may hold on one cluster at once (each "
            "proxied request holds one while it runs; a watch, exec or "
            "port-forward for its whole life); more are answered 429 with "
            "Retry-After. auto: a quarter of the cluster's stream limit (256 of "
            "1024); never more than that limit minus --stream-reserve.",
        ],
        [
            "stream-reserve",
            None,
            str(DEFAULT_STREAM_RESERVE),
            "Streams of each cluster's tunnel kept for users who hold none, so a "
            "new user gets one however many others are at their limit (at most "
            "an eighth of the cluster's stream limit; 0: none).",
        ],
        [
            "stream-metrics-per-cluster",
            None,
            "false",
            "The same as --metrics-per-cluster (its former name, kept working).",
        ],
        [
            "metrics-per-cluster",
            None,
            "false",
            "Label the proxy's request metrics, the tunnel bytes and streams, "
            "clusternet_hub_stream_users and clusternet_hub_streams_held with "
            "the cluster ID (series per cluster in use; leave off for large "
            "fleets). See docs/metrics.md.",
        ],
    ]

    coercions = {
        "secure-port": coerce_port,
        "max-request-header-bytes": _coerce_head_bytes,
        "request-header-timeout": coerce_duration,
        "idle-timeout": coerce_duration,
        "max-refused-body-bytes": coerce_byte_size,
        "trim-memory": coerce_bool,
        "kube-threads": coerce_positive_int,
        "cluster-lease-grace-period": coerce_duration,
        "cluster-approval": coerce_choice("auto", "manual"),
        "max-pending-registrations": coerce_positive_int,
        "cluster-token-lifetime": coerce_duration,
        "shutdown-timeout": coerce_duration,
        "tunnel-queue": coerce_tunnel_queue,
        "apiservice-ca-injection": coerce_bool,
        "max-streams-per-user": coerce_streams_per_user,
        "stream-reserve": coerce_stream_reserve,
        "stream-metrics-per-cluster": coerce_bool,
        "metrics-per-cluster": coerce_bool,
    }

    def __init__(self) -> None:
        super().__init__()
        self["tls-san"] = []

    def opt_tls_san(self, value: str) -> None:
        """
        Another DNS name or IP address for the serving certificate the hub
        makes itself, besides clusternet-hub.<namespace>.svc[.cluster.local]
        and clusternet-hub (repeatable, or comma-separated).
        """
        self["tls-san"].extend(v.strip() for v in value.split(",") if v.strip())

    def postOptions(self) -> None:
        super().postOptions()
        if self["cluster-token-lifetime"] < 600:
            # The TokenRequest API's minimum.
            raise UsageError("--cluster-token-lifetime must be at least 10m")
        cert, key = self["tls-cert-file"], self["tls-private-key-file"]
        if bool(cert) != bool(key):
            raise UsageError(
                "--tls-cert-file and --tls-private-key-file go together: give both "
                "or neither"
            )
        if self["listen"] and cert:
            raise UsageError(
                "--listen carries its own certificate (privateKey=/certKey=); do not "
                "also give --tls-cert-file"
            )
        own_certificate = bool(cert or self["listen"])
        if own_certificate and self["tls-san"]:
            raise UsageError(
                "--tls-san names the certificate the hub makes itself; it does "
                "not go with --tls-cert-file or --listen"
            )
        if self["apiservice-ca-file"] and not own_certificate:
            raise UsageError(
                "--apiservice-ca-file goes with --tls-cert-file or --listen: "
                "without them the hub puts its own CA in the APIService"
            )
        for flag in (
            "kubeconfig",
            "tls-cert-file",
            "tls-private-key-file",
            "client-ca-file",
            "requestheader-client-ca-file",
            "apiservice-ca-file",
        ):
            require_readable_file(flag, self[flag])
        self["requestheader-allowed-names"] = [
            name.strip()
            for name in self["requestheader-allowed-names"].split(",")
            if name.strip()
        ]
