"""
C{clusternet kubeconfig} and C{clusternet get clusters}: the fleet as a user of
the parent cluster sees it.

These are short-lived commands, so they call the C{kubernetes} client directly
(there is no reactor to keep free).

Both believe only each cluster's genuine ManagedCluster, as the hub does
(L{clusternet.apis.sort_managed_clusters}): the one in the namespace the hub made
for its cluster ID, read from the Namespaces labelled
C{clusters.clusternet.io/dedicated-for} and the ClusterRegistrationRequests.
ManagedClusters elsewhere are left out, each with a warning on stderr. A user who
may not list namespaces still sees every ManagedCluster, but marked: a warning
line, and a VERIFIED column that says C{no} on every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from attrs import frozen

from clusternet.apis import (
    CLUSTERS_GROUP,
    CLUSTERS_VERSION,
    CRR_PLURAL,
    DEDICATED_FOR_LABEL,
    ForeignManagedCluster,
    sort_managed_clusters,
)
from clusternet.cli import Command, CommandError, register

__all__: list[str] = []

PROXY_PREFIX = "/apis/proxies.clusternet.io/v1alpha1/sockets"
MCLS = ("clusters.clusternet.io", "v1beta1", "managedclusters")


def _kubeconfig_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _load_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise CommandError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CommandError(f"kubeconfig {path} is not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise CommandError(f"kubeconfig {path} is not a kubeconfig")
    return config


def _named(
    entries: list[dict[str, Any]] | None, name: str, what: str
) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry
    raise CommandError(f"kubeconfig has no {what} named {name!r}")


def _api_client(path: Path, context: str | None) -> Any:
    from kubernetes import config

    try:
        return config.new_client_from_config(config_file=str(path), context=context)
    except Exception as e:  # the loader raises many kinds; report one line
        raise CommandError(f"cannot use kubeconfig {path}: {e}") from None


def _list_managed_clusters(api_client: Any) -> list[dict[str, Any]]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api: Any = client.CustomObjectsApi(api_client)
    group, version, plural = MCLS
    try:
        listed = api.list_cluster_custom_object(group, version, plural)
    except ApiException as e:
        if e.status == 404:
            raise CommandError(
                "the parent has no ManagedCluster API: is clusternet installed there?"
            ) from None
        raise CommandError(
            f"listing ManagedClusters failed: {e.status} {e.reason}"
        ) from None
    except Exception as e:
        raise CommandError(f"cannot reach the parent: {e}") from None
    items: list[dict[str, Any]] = listed.get("items", [])
    return items


class CannotVerify(Exception):
    """
    The user may not read what tells genuine ManagedClusters from the others.
    """


def _list_dedicated_namespaces(api_client: Any) -> list[dict[str, Any]]:
    """
    The Namespaces the hub made for clusters.

    @raise CannotVerify: the user may not list namespaces.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api: Any = client.CoreV1Api(api_client)
    try:
        response = api.list_namespace(
            label_selector=DEDICATED_FOR_LABEL, _preload_content=False
        )
        listed = json.loads(response.data)
    except ApiException as e:
        if e.status in (401, 403):
            raise CannotVerify(
                f"cannot list namespaces ({e.status} {e.reason})"
            ) from None
        raise CommandError(
            f"listing namespaces failed: {e.status} {e.reason}"
        ) from None
    except ValueError as e:
        raise CommandError(f"listing namespaces failed: {e}") from None
    except Exception as e:
        raise CommandError(f"cannot reach the parent: {e}") from None
    items: list[dict[str, Any]] = listed.get("items") or []
    return items


def _list_registration_requests(api_client: Any) -> list[dict[str, Any]]:
    """
    The ClusterRegistrationRequests; none when the user may not read them
    (then the namespaces' labels alone decide, which believes less, never more).
    """
    from kubernetes import client

    api: Any = client.CustomObjectsApi(api_client)
    try:
        listed = api.list_cluster_custom_object(
            CLUSTERS_GROUP, CLUSTERS_VERSION, CRR_PLURAL
        )
    except Exception:
        return []
    items: list[dict[str, Any]] = (listed or {}).get("items") or []
    return items


@frozen
class FleetView:
    """
    The ManagedClusters to show.

    @ivar clusters: the genuine ones; every one when not C{verified}.
    @ivar ignored: the others, left out.
    @ivar verified: whether C{clusters} were checked against the namespaces the
        hub made; when not, C{why_not} says why.
    """

    clusters: list[dict[str, Any]]
    ignored: tuple[ForeignManagedCluster, ...] = ()
    verified: bool = True
    why_not: str = ""


def fleet_view(
    clusters: list[dict[str, Any]],
    namespaces: list[dict[str, Any]] | None,
    requests: list[dict[str, Any]],
) -> FleetView:
    """
    Keep the genuine ManagedClusters; with C{namespaces} C{None} (they could not
    be read), keep them all, unverified.
    """
    if namespaces is None:
        return FleetView(list(clusters), verified=False)
    ownership = sort_managed_clusters(clusters, namespaces, requests)
    return FleetView(list(ownership.genuine.values()), ownership.foreign)


def read_fleet(api_client: Any) -> FleetView:
    clusters = _list_managed_clusters(api_client)
    try:
        namespaces = _list_dedicated_namespaces(api_client)
    except CannotVerify as e:
        return FleetView(clusters, verified=False, why_not=str(e))
    return fleet_view(clusters, namespaces, _list_registration_requests(api_client))


def warn_about(view: FleetView) -> None:
    """
    Say on stderr what was left out, or that nothing could be checked.
    """
    for foreign in view.ignored:
        print(
            f"Warning: ignoring ManagedCluster {foreign.namespace}/{foreign.name}, "
            f"which claims cluster {foreign.cluster_id or '(none)'}: "
            f"{foreign.reason}",
            file=sys.stderr,
        )
    if not view.verified:
        print(
            f"Warning: {view.why_not or 'cannot list namespaces'}: these "
            "ManagedClusters are not checked against the namespaces the hub made "
            "for their clusters, and any of them may be forged (VERIFIED no); "
            "ask for list on namespaces to see only the genuine ones",
            file=sys.stderr,
        )


def _cluster_name(mcls: dict[str, Any]) -> str:
    labels = mcls.get("metadata", {}).get("labels") or {}
    return str(
        labels.get("clusters.clusternet.io/cluster-name") or mcls["metadata"]["name"]
    )


def resolve_cluster(clusters: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """
    The ManagedCluster whose name, cluster-name label or cluster ID is C{wanted}.
    """
    matches = [
        c
        for c in clusters
        if wanted
        in (
            c.get("metadata", {}).get("name"),
            _cluster_name(c),
            (c.get("spec") or {}).get("clusterId"),
        )
    ]
    if not matches:
        known = ", ".join(sorted(_cluster_name(c) for c in clusters)) or "none"
        raise CommandError(f"no cluster {wanted!r} in the parent (known: {known})")
    if len(matches) > 1:
        raise CommandError(
            f"{wanted!r} names {len(matches)} clusters; use the cluster ID"
        )
    return matches[0]


def child_server_url(
    parent_server: str, cluster_id: str, mode: str, target: str | None
) -> str:
    base = f"{parent_server.rstrip('/')}{PROXY_PREFIX}/{cluster_id}/proxy"
    if mode == "direct":
        return f"{base}/direct"
    if not target:
        raise CommandError(
            f"--mode {mode} needs --target HOST:PORT of the child's API server"
        )
    return f"{base}/{mode}/{target}"


def _absolute_paths(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    """
    Make file references of a cluster or user entry absolute, as they were
    relative to the parent kubeconfig's folder.
    """
    fixed = dict(entry)
    for key, value in entry.items():
        if key.endswith(("-file", "-data")) or key in (
            "certificate-authority",
            "client-certificate",
            "client-key",
            "tokenFile",
        ):
            if (
                isinstance(value, str)
                and not key.endswith("-data")
                and not os.path.isabs(value)
            ):
                fixed[key] = str((base / value).resolve())
    return fixed


def build_child_kubeconfig(
    parent: dict[str, Any],
    parent_path: Path,
    context_name: str | None,
    cluster_id: str,
    cluster_name: str,
    mode: str,
    target: str | None,
) -> dict[str, Any]:
    context_name = context_name or parent.get("current-context")
    if not context_name:
        raise CommandError("kubeconfig has no current context; pass --context")
    context = _named(parent.get("contexts"), context_name, "context")["context"]
    cluster = _named(parent.get("clusters"), context["cluster"], "cluster")["cluster"]
    user = _named(parent.get("users"), context["user"], "user")["user"]
    base = parent_path.parent
    cluster = _absolute_paths(cluster, base)
    cluster["server"] = child_server_url(cluster["server"], cluster_id, mode, target)
    name = f"clusternet-{cluster_name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-user", "user": _absolute_paths(user, base)}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-user"}}
        ],
        "current-context": name,
    }


def _configure_kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "cluster", help="cluster name or ID, as `clusternet get clusters` lists"
    )
    parser.add_argument(
        "--kubeconfig",
        help="the parent's kubeconfig (default: $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument(
        "--context", help="context of the parent kubeconfig (default: current)"
    )
    parser.add_argument(
        "--mode",
        choices=("direct", "http", "https"),
        default="direct",
        help="direct: the child API server the agent is configured for (default); "
        "http/https: a target the agent allows, given with --target",
    )
    parser.add_argument("--target", help="HOST:PORT for --mode http/https")
    parser.add_argument(
        "-o", "--output", help="file to write (default: standard output)"
    )


def _run_kubeconfig(args: argparse.Namespace) -> int:
    path = _kubeconfig_path(args.kubeconfig)
    parent = _load_kubeconfig(path)
    view = read_fleet(_api_client(path, args.context))
    if not view.verified:
        warn_about(view)
    mcls = resolve_cluster(view.clusters, args.cluster)
    cluster_id = (mcls.get("spec") or {}).get("clusterId") or ""
    if not cluster_id:
        raise CommandError(f"cluster {args.cluster!r} has no spec.clusterId yet")
    config = build_child_kubeconfig(
        parent,
        path,
        args.context,
        cluster_id,
        _cluster_name(mcls),
        args.mode,
        args.target,
    )
    text = yaml.safe_dump(config, sort_keys=False)
    if args.output:
        out = Path(args.output)
        out.write_text(text)
        out.chmod(0o600)
        print(f"wrote {out}: kubectl --kubeconfig {out} get ns", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _age(stamp: str | None, now: float) -> str:
    if not stamp:
        return "-"
    import datetime

    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "-"
    seconds = max(0, int(now - when))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _ready(mcls: dict[str, Any]) -> str:
    for condition in (mcls.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def _sockets(api_client: Any) -> dict[str, dict[str, Any]]:
    """
    The attached tunnels by cluster ID; empty when the hub is not reachable.
    """
    from kubernetes import client

    api: Any = client.CustomObjectsApi(api_client)
    try:
        listed = api.list_cluster_custom_object(
            "proxies.clusternet.io", "v1alpha1", "sockets"
        )
    except Exception:
        return {}
    return {i["metadata"]["name"]: i for i in (listed or {}).get("items", [])}


def cluster_rows(
    clusters: list[dict[str, Any]],
    sockets: dict[str, dict[str, Any]],
    now: float,
    verified: bool = True,
) -> list[list[str]]:
    """
    One row per ManagedCluster; unless C{verified}, with a last column
    VERIFIED saying C{no}.
    """
    rows = []
    for mcls in sorted(clusters, key=_cluster_name):
        status = mcls.get("status") or {}
        cluster_id = (mcls.get("spec") or {}).get("clusterId", "")
        socket = sockets.get(cluster_id)
        since = (
            _age((socket or {}).get("status", {}).get("attachedSince"), now)
            if socket
            else "-"
        )
        rows.append(
            [
                _cluster_name(mcls),
                cluster_id,
                mcls["metadata"].get("namespace", ""),
                _ready(mcls),
                status.get("k8sVersion") or "-",
                status.get("platform") or "-",
                _age(status.get("lastObservedTime"), now),
                since,
                *([] if verified else ["no"]),
            ]
        )
    return rows


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "   ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _configure_get(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("clusters",), help="what to list")
    parser.add_argument(
        "--kubeconfig",
        help="the parent's kubeconfig (default: $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument(
        "--context", help="context of the parent kubeconfig (default: current)"
    )


def _run_get(args: argparse.Namespace) -> int:
    api_client = _api_client(_kubeconfig_path(args.kubeconfig), args.context)
    view = read_fleet(api_client)
    warn_about(view)
    header = [
        "NAME",
        "CLUSTER-ID",
        "NAMESPACE",
        "READY",
        "KUBERNETES",
        "PLATFORM",
        "HEARTBEAT",
        "TUNNEL",
        *([] if view.verified else ["VERIFIED"]),
    ]
    if not view.clusters:
        print("No clusters registered.", file=sys.stderr)
        return 0
    _print_table(
        header,
        cluster_rows(view.clusters, _sockets(api_client), time.time(), view.verified),
    )
    return 0


register(
    Command(
        "kubeconfig",
        "write a kubeconfig that reaches a child cluster through the parent",
        _configure_kubeconfig,
        _run_kubeconfig,
    )
)
register(
    Command(
        "get",
        "list the fleet: `clusternet get clusters`",
        _configure_get,
        _run_get,
    )
)
