"""
C{clusternet kubeconfig} and C{clusternet get clusters}: the fleet as a user of
the parent cluster sees it. C{kubectl clusternet} (L{clusternet.kubectl_plugin})
runs the same commands.

The parent is chosen as kubectl chooses it (L{load_parent_kubeconfig}):
C{--kubeconfig}, else the files of C{$KUBECONFIG} merged, else
C{~/.kube/config}; C{--context}, else the current context.

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
from collections.abc import Mapping
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


def kubeconfig_files(
    explicit: str | None, environ: Mapping[str, str] | None = None
) -> tuple[list[Path], bool]:
    """
    The kubeconfig files to read, as kubectl picks them, and whether each must
    exist: C{--kubeconfig} alone (it must), else every file of C{$KUBECONFIG}
    (a list split on C{os.pathsep}; missing ones are skipped), else
    C{~/.kube/config} (it must).
    """
    if explicit:
        return [Path(explicit).expanduser()], True
    env = (os.environ if environ is None else environ).get("KUBECONFIG", "")
    listed = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    if listed:
        return listed, False
    return [Path.home() / ".kube" / "config"], True


def _load_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise CommandError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CommandError(f"kubeconfig {path} is not valid YAML: {e}") from None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise CommandError(f"kubeconfig {path} is not a kubeconfig")
    return config


@frozen
class ParentKubeconfig:
    """
    The parent's kubeconfig as kubectl sees it.

    @ivar config: the files merged, their file references made absolute.
    @ivar files: the files read, in order.
    """

    config: dict[str, Any]
    files: tuple[Path, ...]

    @property
    def source(self) -> str:
        """
        How messages name it.
        """
        return os.pathsep.join(str(f) for f in self.files)


_KUBECONFIG_LISTS = (("clusters", "cluster"), ("users", "user"), ("contexts", None))


def merge_kubeconfigs(configs: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """
    Merge kubeconfig files with kubectl's rules (client-go's loader): the first
    file to name a cluster, user or context wins, and so does the first to set
    C{current-context}. File references (and an C{exec} command given as a
    relative path) are made absolute against the folder of the file that holds
    them, as kubectl resolves them.

    The C{kubernetes} client's own loader merges the same lists, but takes
    C{current-context} from the last file that sets it; kubectl's rule wins here.
    """
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    for key, _ in _KUBECONFIG_LISTS:
        merged[key] = []
    for path, config in configs:
        base = path.parent
        for key, inner in _KUBECONFIG_LISTS:
            known = {e.get("name") for e in merged[key]}
            for entry in config.get(key) or []:
                if not isinstance(entry, dict) or entry.get("name") in known:
                    continue
                known.add(entry.get("name"))
                if inner and isinstance(entry.get(inner), dict):
                    entry = {**entry, inner: _resolve_references(entry[inner], base)}
                merged[key].append(entry)
        if config.get("current-context") and not merged.get("current-context"):
            merged["current-context"] = config["current-context"]
    return merged


def _resolve_references(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    fixed = _absolute_paths(entry, base)
    command = (fixed.get("exec") or {}).get("command")
    if isinstance(command, str) and os.sep in command and not os.path.isabs(command):
        fixed["exec"] = {**fixed["exec"], "command": str((base / command).resolve())}
    return fixed


def load_parent_kubeconfig(
    explicit: str | None, environ: Mapping[str, str] | None = None
) -> ParentKubeconfig:
    """
    Read the parent's kubeconfig as kubectl would: L{kubeconfig_files}, merged
    by L{merge_kubeconfigs}.
    """
    paths, required = kubeconfig_files(explicit, environ)
    configs = [
        (path, _load_kubeconfig(path)) for path in paths if required or path.exists()
    ]
    if not configs:
        listed = os.pathsep.join(str(p) for p in paths)
        raise CommandError(f"no kubeconfig: none of $KUBECONFIG ({listed}) exists")
    return ParentKubeconfig(
        merge_kubeconfigs(configs), tuple(path for path, _ in configs)
    )


def _named(
    entries: list[dict[str, Any]] | None, name: str, what: str
) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry
    raise CommandError(f"kubeconfig has no {what} named {name!r}")


def _api_client(parent: ParentKubeconfig, context: str | None) -> Any:
    """
    A client for C{context} of C{parent} (its current context by default).

    The C{kubernetes} loader reads the files again itself (so relative paths,
    exec plugins and refreshed tokens work as it knows how), merging them by
    the same first-name-wins rule; only the current context is given to it, the
    one kubectl picks.
    """
    from kubernetes import config

    context = context or parent.config.get("current-context")
    if not context:
        raise CommandError(
            f"kubeconfig {parent.source} has no current context; pass --context"
        )
    _named(parent.config.get("contexts"), context, "context")
    try:
        return config.new_client_from_config(config_file=parent.source, context=context)
    except Exception as e:  # the loader raises many kinds; report one line
        raise CommandError(f"cannot use kubeconfig {parent.source}: {e}") from None


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


def _front(parser: argparse.ArgumentParser) -> str:
    """
    The command a subcommand's parser belongs to (C{clusternet} or
    C{kubectl clusternet}), for help texts that name it.
    """
    return parser.prog.rsplit(" ", 1)[0]


def configure_parent(parser: argparse.ArgumentParser) -> None:
    """
    Add C{--kubeconfig} and C{--context}, which choose the parent as kubectl does.
    """
    parser.add_argument(
        "--kubeconfig",
        help="the parent's kubeconfig (default: the files of $KUBECONFIG, "
        "merged as kubectl merges them, or ~/.kube/config)",
    )
    parser.add_argument(
        "--context", help="context of the parent kubeconfig (default: current)"
    )


def parent_client(args: argparse.Namespace) -> tuple[ParentKubeconfig, Any]:
    """
    The parent's kubeconfig and a C{kubernetes} client for it, from the options
    of L{configure_parent}.
    """
    parent = load_parent_kubeconfig(args.kubeconfig)
    return parent, _api_client(parent, args.context)


def _configure_kubeconfig(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "cluster",
        help=f"cluster name or ID, as `{_front(parser)} get clusters` lists",
    )
    configure_parent(parser)
    parser.add_argument(
        "--mode",
        choices=("direct", "http", "https"),
        default="direct",
        help="direct: the child API server the agent is configured for (default); "
        "http/https: a target the agent allows, given with --target",
    )
    parser.add_argument("--target", help="HOST:PORT for --mode http/https")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="file to write, mode 0600 (default: standard output)",
    )


def _write_private(path: Path, text: str) -> None:
    """
    Write credentials to C{path}, readable only by the user from the start.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path.chmod(0o600)
    except OSError as e:
        raise CommandError(f"cannot write {path}: {e.strerror}") from None


def _run_kubeconfig(args: argparse.Namespace) -> int:
    parent, api_client = parent_client(args)
    view = read_fleet(api_client)
    if not view.verified:
        warn_about(view)
    mcls = resolve_cluster(view.clusters, args.cluster)
    cluster_id = (mcls.get("spec") or {}).get("clusterId") or ""
    if not cluster_id:
        raise CommandError(f"cluster {args.cluster!r} has no spec.clusterId yet")
    config = build_child_kubeconfig(
        parent.config,
        parent.files[0],
        args.context,
        cluster_id,
        _cluster_name(mcls),
        args.mode,
        args.target,
    )
    text = yaml.safe_dump(config, sort_keys=False)
    if args.output:
        out = Path(args.output)
        _write_private(out, text)
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


def cluster_items(
    clusters: list[dict[str, Any]],
    sockets: dict[str, dict[str, Any]],
    now: float,
    verified: bool = True,
) -> list[dict[str, Any]]:
    """
    What C{get clusters} shows of each ManagedCluster and its tunnel, by name:
    the items of C{-o json} and C{-o yaml}, from which the tables are made.
    Times are as the objects give them (RFC 3339); C{tunnel.age} is how long
    the tunnel has been attached, as the TUNNEL column shows it.
    """
    items = []
    for mcls in sorted(clusters, key=_cluster_name):
        status = mcls.get("status") or {}
        cluster_id = (mcls.get("spec") or {}).get("clusterId") or ""
        socket = sockets.get(cluster_id) if cluster_id else None
        tunnel = (socket or {}).get("status") or {}
        since = tunnel.get("attachedSince") or None
        items.append(
            {
                "name": _cluster_name(mcls),
                "clusterId": cluster_id,
                "namespace": mcls["metadata"].get("namespace", ""),
                "ready": _ready(mcls),
                "kubernetesVersion": status.get("k8sVersion") or None,
                "platform": status.get("platform") or None,
                "lastHeartbeat": status.get("lastObservedTime") or None,
                "parent": status.get("parentAPIServerURL") or None,
                "verified": verified,
                "tunnel": {
                    "attached": socket is not None,
                    "peer": tunnel.get("peer") or None,
                    "since": since,
                    "age": _age(since, now) if since else None,
                    "streams": tunnel.get("openStreams"),
                    "attachedBy": tunnel.get("attachedBy") or None,
                },
            }
        )
    return items


OUTPUT_FORMATS = ("wide", "json", "yaml")
COLUMNS = (
    "NAME",
    "CLUSTER-ID",
    "NAMESPACE",
    "READY",
    "KUBERNETES",
    "PLATFORM",
    "HEARTBEAT",
    "TUNNEL",
)
WIDE_COLUMNS = ("PEER", "STREAMS", "ATTACHED-BY", "PARENT")


def cluster_header(verified: bool = True, wide: bool = False) -> list[str]:
    return [
        *COLUMNS,
        *(WIDE_COLUMNS if wide else ()),
        *([] if verified else ["VERIFIED"]),
    ]


def _row(item: dict[str, Any], now: float, wide: bool) -> list[str]:
    tunnel = item["tunnel"]
    row = [
        item["name"],
        item["clusterId"],
        item["namespace"],
        item["ready"],
        item["kubernetesVersion"] or "-",
        item["platform"] or "-",
        _age(item["lastHeartbeat"], now),
        tunnel["age"] or "-",
    ]
    if wide:
        streams = tunnel["streams"]
        row += [
            tunnel["peer"] or "-",
            "-" if streams is None else str(streams),
            tunnel["attachedBy"] or "-",
            item["parent"] or "-",
        ]
    if not item["verified"]:
        row.append("no")
    return row


def cluster_rows(
    clusters: list[dict[str, Any]],
    sockets: dict[str, dict[str, Any]],
    now: float,
    verified: bool = True,
    wide: bool = False,
) -> list[list[str]]:
    """
    One row per ManagedCluster, under L{cluster_header}: with C{wide}, the
    tunnel's peer, open streams and the user that attached it, and the parent
    the agent says it registered with (C{status.parentAPIServerURL});
    unless C{verified}, a last column VERIFIED saying C{no}.
    """
    items = cluster_items(clusters, sockets, now, verified)
    return [_row(item, now, wide) for item in items]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "".join(
        "   ".join(
            str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        + "\n"
        for row in [header, *rows]
    )


def render_clusters(
    items: list[dict[str, Any]],
    output: str | None,
    now: float,
    verified: bool = True,
) -> str:
    """
    The text of C{get clusters -o OUTPUT}: a table (C{None}, C{wide}), or a
    C{List} of L{cluster_items} (C{json}, C{yaml}) as kubectl prints lists.
    """
    if output in ("json", "yaml"):
        listed = {"apiVersion": "v1", "kind": "List", "items": items}
        if output == "json":
            return json.dumps(listed, indent=4) + "\n"
        return yaml.safe_dump(listed, sort_keys=False)
    if output not in (None, "wide"):
        raise CommandError(
            f"unable to match a printer suitable for the output format "
            f"{output!r}, allowed formats are: {','.join(OUTPUT_FORMATS)}"
        )
    wide = output == "wide"
    return _table(
        cluster_header(verified, wide), [_row(item, now, wide) for item in items]
    )


def _configure_get(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=("clusters",), help="what to list")
    configure_parent(parser)
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        help="wide: a table with the tunnel's peer, streams and user, and the "
        "parent the agent registered with; json, yaml: a List of the clusters' "
        "data (default: a table)",
    )


def _run_get(args: argparse.Namespace) -> int:
    _, api_client = parent_client(args)
    view = read_fleet(api_client)
    warn_about(view)
    output = getattr(args, "output", None)
    if not view.clusters and output in (None, "wide"):
        print("No clusters registered.", file=sys.stderr)
        return 0
    now = time.time()
    sockets = _sockets(api_client) if view.clusters else {}
    items = cluster_items(view.clusters, sockets, now, view.verified)
    sys.stdout.write(render_clusters(items, output, now, view.verified))
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
        "list the fleet: `get clusters` (-o wide|json|yaml)",
        _configure_get,
        _run_get,
    )
)
