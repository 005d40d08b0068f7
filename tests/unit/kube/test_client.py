"""
KubeClient: requests through the kubernetes client's ApiClient, answers and
errors mapped, watch streams delivered as events; no sockets (the ApiClient's
call_api answers from memory) and no threads (a synchronous pool).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.rest import RESTResponse

from zope.interface.verify import verifyObject

from clusternet.kube import (
    CLUSTER_REGISTRATION_REQUESTS,
    CONFIG_MAPS,
    AlreadyExists,
    IKubeAPI,
    KubeClient,
    KubeUnavailable,
    NotFound,
)
from clusternet.kube.testing import ImmediateReactor, SynchronousThreadPool


class CannedApiClient(ApiClient):
    """
    The real ApiClient (parameter serialization, auth headers), with the network
    call answered from a list of canned responses.
    """

    def __init__(self, answers: list[Any]) -> None:
        configuration = Configuration(host="https://parent.test:6443")
        configuration.api_key["BearerToken"] = "t0ken"
        configuration.api_key_prefix["BearerToken"] = "Bearer"
        super().__init__(configuration)
        self.answers = answers
        self.sent: list[dict[str, Any]] = []

    def call_api(  # type: ignore[override]
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> RESTResponse:
        self.sent.append(
            {"method": method, "url": url, "headers": header_params, "body": body}
        )
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, payload = answer
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(data),
            status=status,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )
        return RESTResponse(raw)


def client(*answers: Any) -> tuple[KubeClient, CannedApiClient]:
    api = CannedApiClient(list(answers))
    kube = KubeClient(ImmediateReactor(), api, pool=SynchronousThreadPool())
    kube.startService()
    return kube, api


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def test_client_provides_ikubeapi() -> None:
    kube, _ = client()
    assert verifyObject(IKubeAPI, kube)


def test_get_sends_the_path_and_bearer_token_and_decodes_json() -> None:
    kube, api = client((200, {"kind": "ConfigMap", "metadata": {"name": "a"}}))
    d = kube.get(CONFIG_MAPS, "a", "default")
    assert d.result["metadata"]["name"] == "a"  # type: ignore[attr-defined]
    sent = api.sent[0]
    assert sent["method"] == "GET"
    assert (
        sent["url"] == "https://parent.test:6443/api/v1/namespaces/default/configmaps/a"
    )
    assert sent["headers"]["authorization"] == "Bearer t0ken"
    assert sent["headers"]["Accept"] == "application/json"


def test_not_found_status_becomes_not_found() -> None:
    kube, _ = client((404, status(404, "NotFound", 'configmaps "a" not found')))
    failures: list[Any] = []
    kube.get(CONFIG_MAPS, "a", "default").addErrback(failures.append)
    error = failures[0].value
    assert isinstance(error, NotFound)
    assert (error.status, error.reason) == (404, "NotFound")
    assert "not found" in error.message


def test_create_conflict_is_already_exists_and_sends_the_body() -> None:
    kube, api = client((409, status(409, "AlreadyExists", "exists")))
    failures: list[Any] = []
    body = {"metadata": {"name": "clusternet-x"}, "spec": {"clusterId": "x"}}
    kube.create(CLUSTER_REGISTRATION_REQUESTS, body, dry_run=True).addErrback(
        failures.append
    )
    assert isinstance(failures[0].value, AlreadyExists)
    sent = api.sent[0]
    assert sent["url"].endswith(
        "/apis/clusters.clusternet.io/v1beta1/clusterregistrationrequests?dryRun=All"
    )
    assert sent["body"] == body


def test_merge_patch_sends_its_content_type() -> None:
    kube, api = client((200, {"kind": "ConfigMap"}))
    kube.patch(CONFIG_MAPS, "a", {"data": {"k": "v"}}, "default", subresource=None)
    assert api.sent[0]["method"] == "PATCH"
    assert api.sent[0]["headers"]["Content-Type"] == "application/merge-patch+json"


def test_connection_errors_become_kube_unavailable() -> None:
    kube, _ = client(urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    failures: list[Any] = []
    kube.list(CONFIG_MAPS).addErrback(failures.append)
    assert isinstance(failures[0].value, KubeUnavailable)
    assert failures[0].value.status == 0


def test_raw_get_answers_any_status() -> None:
    kube, _ = client((500, b"[-]etcd failed\nreadyz check failed\n"))
    d = kube.raw_get("/readyz")
    response = d.result  # type: ignore[attr-defined]
    assert response.status == 500
    assert response.body.startswith(b"[-]etcd")


def test_watch_delivers_each_line_as_an_event_then_fires() -> None:
    lines = [
        {
            "type": "ADDED",
            "object": {"metadata": {"name": "a", "resourceVersion": "5"}},
        },
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
        {"type": "ERROR", "object": status(410, "Expired", "too old")},
    ]
    stream = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    kube, api = client((200, stream))
    events: list[tuple[str, Any]] = []
    d = kube.watch(
        CONFIG_MAPS,
        lambda kind, obj: events.append((kind, obj)),
        namespace="default",
        resource_version="4",
        timeout_seconds=30,
    )
    assert d.called
    assert [kind for kind, _ in events] == ["ADDED", "BOOKMARK", "ERROR"]
    url = api.sent[0]["url"]
    assert "watch=true" in url and "resourceVersion=4" in url
    assert "timeoutSeconds=30" in url and "allowWatchBookmarks=true" in url


def test_malformed_watch_stream_fails_the_watch() -> None:
    kube, _ = client((200, b'{"type": "ADDED", "object": {}}\nnot json\n'))
    failures: list[Any] = []
    events: list[Any] = []
    kube.watch(CONFIG_MAPS, lambda k, o: events.append(k)).addErrback(failures.append)
    assert events == ["ADDED"]
    assert failures and failures[0].value.reason == "BadResponse"


def test_update_needs_a_name() -> None:
    kube, _ = client()
    with pytest.raises(ValueError):
        kube.update(CONFIG_MAPS, {"metadata": {}}, "default")


def test_stop_stops_the_pool() -> None:
    pool = SynchronousThreadPool()
    kube = KubeClient(ImmediateReactor(), CannedApiClient([]), pool=pool)
    kube.startService()
    assert pool.started
    kube.stopService()
    import time

    deadline = time.monotonic() + 5
    while pool.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pool.started
