"""
Workloads and events are served as plain objects (no controllers), enough for
C{kubectl apply --dry-run=server} of deploy trees and for clients that write
events.
"""

from __future__ import annotations

import json

import pytest

from tests.support.sandbox import KUBECTL, Sandbox

pytestmark = pytest.mark.slow

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_deployment_applies_and_prints_the_real_columns(sandbox: Sandbox) -> None:
    dry = sandbox.kubectl("apply", "--dry-run=server", "-f", "-", input=DEPLOYMENT)
    assert "created (server dry run)" in dry.stdout
    sandbox.kubectl("apply", "-f", "-", input=DEPLOYMENT)
    table = sandbox.kubectl("get", "deploy", "web").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == ["web", "0/2", "0", "0"]
    got = json.loads(sandbox.kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert got["metadata"]["generation"] == 1


def test_workload_kinds_and_events_are_served(sandbox: Sandbox) -> None:
    from kubernetes import client

    api = sandbox.client()
    apps = client.AppsV1Api(api)
    spec = {
        "selector": {"matchLabels": {"a": "b"}},
        "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    }
    apps.create_namespaced_daemon_set(
        "default", {"metadata": {"name": "ds1"}, "spec": spec}
    )
    apps.create_namespaced_stateful_set(
        "default", {"metadata": {"name": "st1"}, "spec": {**spec, "serviceName": "s"}}
    )
    apps.create_namespaced_replica_set(
        "default", {"metadata": {"name": "rs1"}, "spec": spec}
    )
    client.BatchV1Api(api).create_namespaced_job(
        "default",
        {
            "metadata": {"name": "job1"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                }
            },
        },
    )
    client.EventsV1Api(api).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "ev1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "test",
            "reportingInstance": "test-1",
            "action": "Tested",
            "reason": "Testing",
            "type": "Normal",
        },
    )
    assert [
        d.metadata.name for d in apps.list_namespaced_daemon_set("default").items
    ] == ["ds1"]
    assert apps.read_namespaced_stateful_set("st1", "default").spec.service_name == "s"
    assert (
        client.BatchV1Api(api).read_namespaced_job("job1", "default").metadata.name
        == "job1"
    )
