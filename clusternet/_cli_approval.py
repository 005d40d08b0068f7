"""
C{clusternet approve} and C{clusternet deny}: an operator's decision on a
registration request, for a hub run with C{--cluster-approval=manual}.

The decision goes into the request's status (C{result}), which only holders of
C{clusterregistrationrequests/status} may write (the hub and administrators):
the bootstrap token that made the request cannot. The hub then makes the
cluster's namespace, RBAC and sealed token (docs/trust.md).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clusternet._cli_fleet import configure_parent, parent_client
from clusternet.apis import (
    CLUSTERS_GROUP,
    CLUSTERS_VERSION,
    CRR_PLURAL,
    RESULT_APPROVED,
    RESULT_DENIED,
    cluster_id_errors,
    crr_name,
)
from clusternet.cli import Command, CommandError, register

__all__: list[str] = []


def _requests(api: Any) -> list[dict[str, Any]]:
    from kubernetes.client.rest import ApiException

    try:
        listed = api.list_cluster_custom_object(
            CLUSTERS_GROUP, CLUSTERS_VERSION, CRR_PLURAL
        )
    except ApiException as e:
        raise CommandError(
            f"listing registration requests failed: {e.status} {e.reason}"
        ) from None
    except Exception as e:
        raise CommandError(f"cannot reach the parent: {e}") from None
    items: list[dict[str, Any]] = (listed or {}).get("items") or []
    return items


def find_request(requests: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """
    The request named C{wanted}: its object name, its cluster ID, or the cluster
    name it asks for.
    """
    names = {wanted}
    if not cluster_id_errors(wanted):
        names.add(crr_name(wanted))
    found = [
        r
        for r in requests
        if r["metadata"]["name"] in names
        or (r.get("spec") or {}).get("clusterName") == wanted
    ]
    if not found:
        raise CommandError(f"no registration request {wanted!r}")
    if len(found) > 1:
        listed = ", ".join(sorted(r["metadata"]["name"] for r in found))
        raise CommandError(f"{wanted!r} names several requests: {listed}")
    return found[0]


def _decide(args: argparse.Namespace, result: str, message: str) -> int:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    _, api_client = parent_client(args)
    api: Any = client.CustomObjectsApi(api_client)
    request = find_request(_requests(api), args.request)
    name = request["metadata"]["name"]
    current = (request.get("status") or {}).get("result")
    if current in (RESULT_APPROVED, RESULT_DENIED) and current != result:
        raise CommandError(
            f"{name} is already {current}: delete it for the agent to ask again"
        )
    body = {"status": {"result": result, "errorMessage": message}}
    try:
        api.patch_cluster_custom_object_status(
            CLUSTERS_GROUP, CLUSTERS_VERSION, CRR_PLURAL, name, body
        )
    except ApiException as e:
        raise CommandError(f"updating {name} failed: {e.status} {e.reason}") from None
    spec = request.get("spec") or {}
    print(
        f"{name}: {result} (cluster {spec.get('clusterName') or '?'}, "
        f"ID {spec.get('clusterId')})",
        file=sys.stdout,
    )
    return 0


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "request", help="the request's name, its cluster ID or its cluster name"
    )
    configure_parent(parser)


def _configure_deny(parser: argparse.ArgumentParser) -> None:
    _configure(parser)
    parser.add_argument(
        "--reason", default="denied by an operator", help="why, shown to the agent"
    )


def _run_approve(args: argparse.Namespace) -> int:
    return _decide(args, RESULT_APPROVED, "")


def _run_deny(args: argparse.Namespace) -> int:
    return _decide(args, RESULT_DENIED, args.reason[:1024])


register(
    Command(
        "approve",
        "approve a cluster's registration request (hub run with "
        "--cluster-approval=manual)",
        _configure,
        _run_approve,
    )
)
register(
    Command("deny", "deny a cluster's registration request", _configure_deny, _run_deny)
)
