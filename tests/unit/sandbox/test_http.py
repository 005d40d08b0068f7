"""
The HTTP API in memory (StubTreq), compared with what a real kube-apiserver
answered (../shared/kube-wire).
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clusternet.pki import issue_certificate, make_ca
from clusternet.sandbox._auth_api import (
    Attributes,
    IAuthenticator,
    IAuthorizer,
    RequestCredentials,
    UserInfo,
)
from clusternet.sandbox._controllers import CRDController
from clusternet.sandbox._defaultauth import CertificateAuthenticator, MastersAuthorizer
from clusternet.sandbox._http import SandboxAPI
from clusternet.sandbox._resources import Registry
from clusternet.sandbox._store import Store
from tests.support.wire import recorded


def wire(name: str) -> dict[str, Any]:
    return recorded(name)


@implementer(IAuthenticator)
class HeaderAuthenticator:
    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        users = credentials.headers.get("x-test-user")
        if not users:
            return None
        return UserInfo(users[0], groups=credentials.headers.get("x-test-group", ()))


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.registry = Registry.with_builtins()
        self.store = Store(self.registry, self.clock, history=5, rng=random.Random(0))
        CRDController(self.store, self.registry).start()
        self.api = SandboxAPI(
            self.store,
            self.registry,
            self.clock,
            HeaderAuthenticator(),
            MastersAuthorizer(),
        )
        self.treq = StubTreq(self.api)
        self.store.create("/namespaces", None, {"metadata": {"name": "ns"}})

    def result(self, deferred: Any) -> Any:
        out: list[Any] = []
        deferred.addBoth(out.append)
        for _ in range(3):
            self.treq.flush()
            self.clock.advance(0)
        assert out, "no answer"
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str = "admin",
        groups: tuple[str, ...] = ("system:masters",),
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> tuple[int, Any, Any]:
        headers = {"accept": [accept], "content-type": [content_type]}
        if user:
            headers["x-test-user"] = [user]
            headers["x-test-group"] = list(groups)
        data = (
            body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        )
        response = self.result(
            self.treq.request(
                method, "https://sandbox" + path, headers=headers, data=data
            )
        )
        text = self.result(response.content())
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return response.code, parsed, response.headers


@pytest.fixture
def h() -> Harness:
    return Harness()


def cm(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }


def test_default_auth_implements_the_interfaces() -> None:
    ca = make_ca("kubernetes")
    assert verifyObject(IAuthenticator, CertificateAuthenticator(ca.certificate))
    assert verifyObject(IAuthorizer, MastersAuthorizer())


def test_certificate_authenticator_takes_cn_and_o_from_certs_of_its_ca() -> None:
    ca, other = make_ca("kubernetes"), make_ca("other")
    admin = issue_certificate(
        ca, "kubernetes-admin", organizations=["system:masters"], client=True
    )
    stranger = issue_certificate(
        other, "x", organizations=["system:masters"], client=True
    )
    auth = CertificateAuthenticator(ca.certificate)
    user = auth.authenticate(
        RequestCredentials(headers={}, peer_chain=(admin.certificate,))
    )
    assert user == UserInfo(
        "kubernetes-admin", groups=("system:masters", "system:authenticated")
    )
    assert (
        auth.authenticate(
            RequestCredentials(headers={}, peer_chain=(stranger.certificate,))
        )
        is None
    )
    assert auth.authenticate(RequestCredentials(headers={})) is None


def test_no_credentials_is_401_like_the_real_server(h: Harness) -> None:
    code, body, _ = h.request("GET", "/api/v1/namespaces", user="")
    real = wire("075-unauthorized-401.json")["response"]
    assert (code, body) == (real["status"], real["body"])


def test_forbidden_is_403_with_the_real_message(h: Harness) -> None:
    code, body, _ = h.request(
        "GET",
        "/api/v1/namespaces/wire-37a0a/secrets",
        user="system:serviceaccount:wire-37a0a:agent",
        groups=(),
    )
    real = wire("074-forbidden-403-sa.json")["response"]
    assert code == 403 and body == real["body"]


def test_create_get_and_errors_match_the_real_bodies(h: Harness) -> None:
    code, body, _ = h.request(
        "POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1")
    )
    assert code == 201 and body["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {".": {}, "f:a": {}}
    }
    code, body, _ = h.request(
        "POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1")
    )
    assert (code, body["reason"], body["details"]) == (
        409,
        "AlreadyExists",
        {"name": "c1", "kind": "configmaps"},
    )
    code, body, _ = h.request("GET", "/api/v1/namespaces/ns/configmaps/nope")
    assert body == wire("023-cm-get-404.json")["response"]["body"]
    code, body, _ = h.request("POST", "/api/v1/namespaces/ns/configmaps/c1", {"a": 1})
    assert (code, body) == (405, wire("040-cm-method-405.json")["response"]["body"])
    code, body, _ = h.request(
        "GET", "/api/v1/namespaces/ns/configmaps?fieldSelector=data.a%3D1"
    )
    assert (code, body) == (
        400,
        wire("037-cm-list-bad-field-400.json")["response"]["body"],
    )
    code, body, _ = h.request(
        "POST",
        "/api/v1/namespaces/ns/configmaps",
        {**cm("m"), "metadata": {"name": "m", "namespace": "other"}},
    )
    assert (code, body) == (
        400,
        wire("033-cm-create-400-ns-mismatch.json")["response"]["body"],
    )
    code, body, _ = h.request("GET", "/apis/nonexistent.example.com/v1/things")
    assert code == 404 and body["kind"] == "Status"


def test_stale_update_is_409_conflict(h: Harness) -> None:
    _, made, _ = h.request("POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1"))
    h.request(
        "PUT", "/api/v1/namespaces/ns/configmaps/c1", {**made, "data": {"a": "2"}}
    )
    code, body, _ = h.request(
        "PUT", "/api/v1/namespaces/ns/configmaps/c1", {**made, "data": {"a": "stale"}}
    )
    assert code == 409
    assert (
        body["message"]
        == wire("030-cm-update-409-conflict.json")["response"]["body"]["message"]
    )


def test_patch_types(h: Harness) -> None:
    h.request("POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1"))
    _, body, _ = h.request(
        "PATCH",
        "/api/v1/namespaces/ns/configmaps/c1",
        {"data": {"a": "2"}},
        content_type="application/merge-patch+json",
    )
    assert body["data"] == {"a": "2"}
    _, body, _ = h.request(
        "PATCH",
        "/api/v1/namespaces/ns/configmaps/c1",
        [{"op": "replace", "path": "/data/zzz", "value": "3"}],
        content_type="application/json-patch+json",
    )
    assert body["data"] == {"a": "2", "zzz": "3"}
    _, body, _ = h.request(
        "PATCH",
        "/api/v1/namespaces/ns/configmaps/c1",
        {"metadata": {"labels": {"s": "1"}}},
        content_type="application/strategic-merge-patch+json",
    )
    assert body["metadata"]["labels"] == {"s": "1"}
    code, body, _ = h.request(
        "PATCH",
        "/api/v1/namespaces/ns/configmaps/ssa?fieldManager=kubectl",
        cm("ssa", x="1"),
        content_type="application/apply-patch+yaml",
    )
    assert code == 201 and body["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_lists_with_limit_and_continue(h: Harness) -> None:
    for name in ("a", "b", "c"):
        h.request("POST", "/api/v1/namespaces/ns/configmaps", cm(name))
    _, page, _ = h.request("GET", "/api/v1/namespaces/ns/configmaps?limit=2")
    assert [i["metadata"]["name"] for i in page["items"]] == ["a", "b"]
    assert (
        page["metadata"]["remainingItemCount"] == 1 and "kind" not in page["items"][0]
    )
    _, rest, _ = h.request(
        "GET",
        f"/api/v1/namespaces/ns/configmaps?limit=2&continue={page['metadata']['continue']}",
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]


def test_table_output_has_the_real_columns(h: Harness) -> None:
    h.request(
        "POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1", b="2", zzz="3")
    )
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, table, _ = h.request("GET", "/api/v1/namespaces/ns/configmaps", accept=accept)
    real = wire("038-cm-list-table.json")["response"]["body"]
    assert table["columnDefinitions"] == real["columnDefinitions"]
    assert table["rows"][0]["cells"] == ["c1", 3, "0s"]
    _, table, _ = h.request("GET", "/api/v1/namespaces/ns", accept=accept)
    assert (
        table["columnDefinitions"]
        == wire("039-ns-get-table.json")["response"]["body"]["columnDefinitions"]
    )
    assert table["rows"][0]["cells"] == ["ns", "Active", "0s"]


def test_crd_resources_validation_and_strategic_415(h: Harness) -> None:
    crd = wire("045-crd-create.json")["request"]["body"]
    code, _, _ = h.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert code == 201
    code, body, _ = h.request("GET", "/apis/wire.example.com/v1")
    assert body == wire("047-discovery-crd-group.json")["response"]["body"] | {
        "resources": body["resources"]
    }
    assert [r["name"] for r in body["resources"]] == ["widgets", "widgets/status"]
    bad = wire("049-cr-create-422-invalid.json")
    h.store.create("/namespaces", None, {"metadata": {"name": "wire-37a0a"}})
    code, body, _ = h.request(
        "POST",
        "/apis/wire.example.com/v1/namespaces/wire-37a0a/widgets",
        bad["request"]["body"],
    )
    assert (code, body) == (422, bad["response"]["body"])
    good = wire("048-cr-create.json")["request"]["body"] | {
        "metadata": {"name": "w1", "namespace": "ns"}
    }
    assert (
        h.request("POST", "/apis/wire.example.com/v1/namespaces/ns/widgets", good)[0]
        == 201
    )
    code, body, _ = h.request(
        "PATCH",
        "/apis/wire.example.com/v1/namespaces/ns/widgets/w1",
        {"spec": {"color": "red"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert (code, body) == (
        415,
        wire("054-cr-patch-strategic-415.json")["response"]["body"],
    )
    _, table, _ = h.request(
        "GET",
        "/apis/wire.example.com/v1/widgets",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    assert (
        table["columnDefinitions"]
        == wire("051-cr-list-all-namespaces-table.json")["response"]["body"][
            "columnDefinitions"
        ]
    )
    assert table["rows"][0]["cells"] == ["w1", "blue", "0s"]


def test_watch_from_compacted_history_sends_the_real_error_event(h: Harness) -> None:
    for i in range(8):
        h.request("POST", "/api/v1/namespaces/ns/configmaps", cm(f"c{i}"))
    code, body, _ = h.request(
        "GET", "/api/v1/namespaces/ns/configmaps?watch=1&resourceVersion=1"
    )
    assert code == 200
    event = json.loads(body) if isinstance(body, bytes) else body
    assert event["type"] == "ERROR"
    real = wire("043-cm-watch-410-too-old.json")["response"]["body"][0]["object"]
    assert {k: v for k, v in event["object"].items() if k != "message"} == {
        k: v for k, v in real.items() if k != "message"
    }
    assert event["object"]["message"].startswith("too old resource version: 1 (")


def test_discovery_documents(h: Harness) -> None:
    _, body, headers = h.request(
        "GET",
        "/apis",
        accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
    )
    assert body["kind"] == "APIGroupDiscoveryList"
    assert headers.getRawHeaders("content-type") == [
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    ]
    _, body, _ = h.request("GET", "/apis/coordination.k8s.io/v1")
    real = wire("012-discovery-apis-coordination.k8s.io-v1.json")["response"]["body"]
    assert [r["name"] for r in body["resources"]] == [
        r["name"] for r in real["resources"]
    ]
    assert body["resources"][0]["verbs"] == real["resources"][0]["verbs"]
    _, body, _ = h.request("GET", "/version")
    assert set(body) == set(wire("001-version.json")["response"]["body"])
    code, body, _ = h.request("GET", "/readyz?verbose=1")
    assert code == 200 and body.endswith(b"readyz check passed\n")


def test_request_attributes_reach_the_authorizer(h: Harness) -> None:
    seen: list[Attributes] = []

    @implementer(IAuthorizer)
    class Recorder:
        def authorize(self, attributes: Attributes) -> Any:
            seen.append(attributes)
            return MastersAuthorizer().authorize(attributes)

    h.api.authorizer = Recorder()
    h.request("GET", "/api/v1/namespaces/ns/configmaps?watch=true&timeoutSeconds=0")
    h.request(
        "PATCH",
        "/apis/wire.example.com/v1/namespaces/ns/widgets/w1/status",
        {},
        content_type="application/merge-patch+json",
    )
    h.request("DELETE", "/api/v1/namespaces/ns/configmaps")
    h.request("GET", "/healthz")
    got = [
        (
            a.verb,
            a.api_group,
            a.resource,
            a.subresource,
            a.namespace,
            a.name,
            a.resource_request,
        )
        for a in seen
    ]
    assert got == [
        ("watch", "", "configmaps", "", "ns", "", True),
        ("patch", "wire.example.com", "widgets", "status", "ns", "w1", True),
        ("deletecollection", "", "configmaps", "", "ns", "", True),
        ("get", "", "", "", "", "", False),
    ]


# kubectl v1.32 "create token default -n default --duration=1h --audience=api"
# (the protobuf body of tests/unit/sandbox/test_protobuf_kubectl.py).
KUBECTL_TOKEN_REQUEST = base64.b64decode(
    "azhzAAooChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESDFRva2VuUmVxdWVzdBIiChAKABIAGgAi"
    "ACoAMgA4AEIAEggKA2FwaSCQHBoECgASABoAIgA="
)


def _serve_token_subresource(h: Harness) -> list[Any]:
    """
    Serve C{serviceaccounts/<name>/token} the way the sandbox wiring does (a
    code handler answering TokenRequest) and return the bodies it receives.
    """
    seen: list[Any] = []
    accounts = h.registry.lookup("", "v1", "serviceaccounts")
    assert accounts is not None
    extra = ("token", "authentication.k8s.io", "v1", "TokenRequest", ("create",))
    h.registry.add(
        attrs.evolve(accounts, subresource_kinds=(*accounts.subresource_kinds, extra))
    )

    def handler(user: UserInfo, namespace: str, name: str, body: Any) -> Any:
        seen.append(body)
        return {**body, "status": {"token": "t", "expirationTimestamp": None}}

    h.api.sub_handlers[("", "serviceaccounts", "token")] = handler
    return seen


def test_token_subresource_takes_a_token_request_not_a_service_account(
    h: Harness,
) -> None:
    seen = _serve_token_subresource(h)
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    code, body, _ = h.request(
        "POST", "/api/v1/namespaces/ns/serviceaccounts/default/token", request
    )
    assert (code, body["kind"], seen) == (201, "TokenRequest", [request])
    code, body, _ = h.request(
        "POST",
        "/api/v1/namespaces/ns/serviceaccounts/default/token",
        KUBECTL_TOKEN_REQUEST,
        content_type="application/vnd.kubernetes.protobuf",
    )
    assert code == 201, body
    assert seen[-1]["kind"] == "TokenRequest"
    assert seen[-1]["spec"]["audiences"] == ["api"]


def test_token_subresource_refuses_other_kinds_naming_token_request(
    h: Harness,
) -> None:
    seen = _serve_token_subresource(h)
    code, body, _ = h.request(
        "POST",
        "/api/v1/namespaces/ns/serviceaccounts/default/token",
        {"apiVersion": "v1", "kind": "ServiceAccount"},
    )
    assert (code, seen) == (400, [])
    assert body["message"].startswith(
        "the object provided is unrecognized (must be of type TokenRequest): "
        'no kind "ServiceAccount" is registered'
    )
    code, body, _ = h.request(
        "POST",
        "/api/v1/namespaces/ns/serviceaccounts/default/token",
        {"apiVersion": "v1", "kind": "TokenRequest"},
    )
    assert (code, seen) == (400, [])
    assert body["message"] == (
        "the API version in the data (v1) does not match the expected API "
        "version (authentication.k8s.io/v1)"
    )


def _pod(h: Harness, name: str, spec: dict[str, Any]) -> None:
    code, body, _ = h.request(
        "POST",
        "/api/v1/namespaces/ns/pods",
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec},
    )
    assert code == 201, body


def test_pod_log_of_an_unscheduled_pod_is_empty_like_the_real_server(
    h: Harness,
) -> None:
    _pod(h, "p1", {"containers": [{"name": "c", "image": "x"}]})
    code, body, headers = h.request("GET", "/api/v1/namespaces/ns/pods/p1/log")
    assert (code, body) == (200, b"")
    assert headers.getRawHeaders("content-type") == ["text/plain"]
    code, body, _ = h.request("GET", "/api/v1/namespaces/ns/pods/nope/log")
    assert (code, body["message"]) == (404, 'pods "nope" not found')
    code, body, _ = h.request("POST", "/api/v1/namespaces/ns/pods/p1/log", {})
    assert code == 405


def test_pod_exec_attach_portforward_without_a_node_are_400(h: Harness) -> None:
    _pod(h, "p1", {"containers": [{"name": "c", "image": "x"}]})
    for sub in ("exec?command=ls", "attach?stdout=true", "portforward?ports=80"):
        for method in ("GET", "POST"):
            code, body, _ = h.request(
                method, f"/api/v1/namespaces/ns/pods/p1/{sub}", None
            )
            assert (code, body["reason"], body["message"]) == (
                400,
                "BadRequest",
                "pod p1 does not have a host assigned",
            ), sub


def test_pod_connect_checks_the_container_with_the_real_messages(
    h: Harness,
) -> None:
    _pod(
        h,
        "p2",
        {
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}],
        },
    )
    base = "/api/v1/namespaces/ns/pods/p2"
    answers = {
        path: h.request("GET", base + path)[1]["message"]
        for path in ("/log", "/exec?command=ls", "/log?container=z")
    }
    assert answers == {
        "/log": "a container name must be specified for pod p2, choose one of: [i a b]",
        "/exec?command=ls": "a container name must be specified for pod p2, "
        "choose one of: [a b] or one of the init containers: [i]",
        "/log?container=z": "container z is not valid for pod p2",
    }


def test_pod_connect_on_a_node_says_the_sandbox_runs_no_kubelet(h: Harness) -> None:
    _pod(h, "p3", {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]})
    code, body, _ = h.request("GET", "/api/v1/namespaces/ns/pods/p3/log?container=c")
    assert (code, body["kind"], body["reason"]) == (503, "Status", "ServiceUnavailable")
    assert "runs no kubelet" in body["message"]


# --- custom resources with the status subresource (kube-wire 052, 053, 092) ---

CRR_CRD = (
    Path(__file__).resolve().parents[3]
    / "deploy"
    / "hub"
    / "clusters.clusternet.io_clusterregistrationrequests.yaml"
)


def _managed(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in obj["metadata"]["managedFields"]
    ]


def test_creating_a_custom_resource_drops_its_status(h: Harness) -> None:
    import yaml

    real = wire("092-customresource-create-drops-status.json")
    crd = yaml.safe_load(CRR_CRD.read_text())
    code, _, _ = h.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert code == 201
    request = real["request"]
    code, body, _ = h.request(request["method"], request["path"], request["body"])
    expected = real["response"]["body"]
    assert code == real["response"]["status"]
    assert "status" not in body
    assert body["spec"] == expected["spec"]
    assert _managed(body) == _managed(expected)
    _, stored, _ = h.request(
        "GET", request["path"] + "/" + request["body"]["metadata"]["name"]
    )
    assert "status" not in stored


def test_server_side_apply_create_drops_a_custom_resource_status(h: Harness) -> None:
    crd = wire("045-crd-create.json")["request"]["body"]
    h.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    widget = wire("048-cr-create.json")["request"]["body"] | {
        "metadata": {"name": "w1", "namespace": "ns"},
        "status": {"phase": "X"},
    }
    code, body, _ = h.request(
        "PATCH",
        "/apis/wire.example.com/v1/namespaces/ns/widgets/w1?fieldManager=m",
        widget,
        content_type="application/apply-patch+yaml",
    )
    assert code == 201 and "status" not in body
    assert body["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:spec": {".": {}, "f:color": {}, "f:size": {}}
    }


def test_main_resource_ignores_status_and_status_ignores_the_rest(
    h: Harness,
) -> None:
    crd = wire("045-crd-create.json")["request"]["body"]
    h.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    h.store.create("/namespaces", None, {"metadata": {"name": "wire-37a0a"}})
    created = wire("048-cr-create.json")["request"]["body"] | {"status": {"phase": "A"}}
    path = "/apis/wire.example.com/v1/namespaces/wire-37a0a/widgets"
    code, made, _ = h.request("POST", path, created)
    assert code == 201 and "status" not in made
    main = wire("052-cr-status-patch-main-ignored.json")
    code, body, _ = h.request(
        main["request"]["method"],
        main["request"]["path"],
        main["request"]["body"],
        content_type=main["request"]["headers"]["Content-Type"],
    )
    assert code == 200 and "status" not in body
    assert _managed(body) == _managed(main["response"]["body"])
    assert body["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    status = wire("053-cr-status-patch.json")
    code, body, _ = h.request(
        status["request"]["method"],
        status["request"]["path"],
        {**status["request"]["body"], "spec": {"color": "red"}},
        content_type=status["request"]["headers"]["Content-Type"],
    )
    expected = status["response"]["body"]
    assert code == 200
    assert (body["spec"], body["status"]) == (expected["spec"], expected["status"])
    assert _managed(body) == _managed(expected)
    # A PUT of the main resource keeps the status and its owner.
    changed = {**body, "spec": {"color": "green", "size": 3}, "status": {"phase": "B"}}
    code, body, _ = h.request("PUT", path + "/w1", changed)
    assert code == 200
    assert body["status"] == {"phase": "Done"} and body["spec"]["color"] == "green"
    owners = {
        e.get("subresource", ""): e["fieldsV1"]
        for e in body["metadata"]["managedFields"]
    }
    assert owners == {
        "": {"f:spec": {".": {}, "f:color": {}, "f:size": {}}},
        "status": {"f:status": {".": {}, "f:phase": {}}},
    }


# --- methods are case-sensitive (kube-wire 091) ---


def _as_sent(h: Harness, method: bytes, path: str) -> tuple[int, Any]:
    """
    One request whose method is sent as given (treq upper-cases it).
    """
    from treq.testing import RequestTraversalAgent
    from twisted.web.client import readBody
    from twisted.web.http_headers import Headers

    agent = RequestTraversalAgent(h.api)
    answers: list[Any] = []
    requested = agent.request(
        method,
        b"https://sandbox" + path.encode(),
        Headers({b"x-test-user": [b"admin"], b"x-test-group": [b"system:masters"]}),
    )

    def read(response: Any) -> Any:
        answers.append(response.code)
        return readBody(response).addCallback(answers.append)

    requested.addCallback(read)
    agent.flush()
    assert len(answers) == 2, answers
    return answers[0], json.loads(answers[1])


@pytest.mark.filterwarnings("ignore:Using readBody")
def test_a_lower_case_delete_is_405_and_deletes_nothing(h: Harness) -> None:
    real = wire("091-method-lowercase-delete.json")
    assert real["request"]["method"] == "delete"
    h.request("POST", "/api/v1/namespaces/ns/configmaps", cm("victim2"))
    path = "/api/v1/namespaces/ns/configmaps/victim2"
    code, body = _as_sent(h, b"delete", path)
    answer = real["response"]["body"]
    assert (code, body) == (real["response"]["status"], answer["answer"])
    assert answer["object_still_exists_afterwards"] is True
    assert h.request("GET", path)[0] == 200
    for method, target in [
        (b"delete", "/api/v1/namespaces/ns/configmaps"),
        (b"Delete", path),
        (b"get", path),
        (b"put", path),
        (b"patch", path),
        (b"post", "/api/v1/namespaces/ns/configmaps"),
        (b"delete", "/api/v1/namespaces/ns"),
    ]:
        assert _as_sent(h, method, target) == (405, answer["answer"]), method
    assert h.request("GET", path)[0] == 200
    assert h.request("GET", "/api/v1/namespaces/ns")[0] == 200


def test_request_info_does_not_fold_the_case_of_methods() -> None:
    from clusternet.sandbox._http import parse_request_info

    path = "/api/v1/namespaces/ns/configmaps/c1"
    assert parse_request_info("DELETE", path, {}).verb == "delete"
    assert parse_request_info("delete", path, {}).verb == ""
    assert parse_request_info("post", "/api/v1/namespaces/ns/configmaps", {}).verb == ""
    # Non-resource requests keep the lower-cased method, as the real server.
    assert parse_request_info("GET", "/healthz", {}).verb == "get"


@pytest.mark.parametrize(
    ("selector", "name"),
    [
        (
            "metadata.name=extension-apiserver-authentication",
            "extension-apiserver-authentication",
        ),
        ("metadata.name==one,metadata.namespace=kube-system", "one"),
        ("metadata.name!=one", ""),
        ("metadata.name=a/b", ""),
        ("spec.nodeName=one", ""),
        ("", ""),
    ],
)
def test_a_list_of_one_name_is_authorized_for_that_name(
    selector: str, name: str
) -> None:
    """
    As the real server's request info: a list or watch with
    C{fieldSelector=metadata.name=NAME} is authorized for NAME, so that a rule
    with C{resourceNames} allows it (the hub's ConfigMap informer needs that).
    """
    from clusternet.sandbox._auth_api import UserInfo
    from clusternet.sandbox._http import request_attributes

    for query, verb in (
        ({"fieldSelector": selector}, "list"),
        ({"fieldSelector": selector, "watch": "true"}, "watch"),
    ):
        _, attributes = request_attributes(
            UserInfo("u"), "GET", "/api/v1/namespaces/kube-system/configmaps", query
        )
        assert (attributes.verb, attributes.name) == (verb, name)


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/api/v1/namespaces/ns/configmaps", "application/json"),
        ("POST", "/api/v1/namespaces/ns/configmaps", "application/yaml"),
        (
            "PATCH",
            "/api/v1/namespaces/ns/configmaps/c1",
            "application/merge-patch+json",
        ),
        ("DELETE", "/api/v1/namespaces/ns/configmaps/c1", "application/json"),
    ],
)
def test_a_body_nested_too_deep_is_400_not_a_crash(
    h: Harness, method: str, path: str, content_type: str
) -> None:
    """
    Found by the fuzzing campaign: the JSON decoder's RecursionError on a body
    of many nested arrays is a 400 like any undecodable body.
    """
    h.request("POST", "/api/v1/namespaces/ns/configmaps", cm("c1", a="1"))
    code, body, _ = h.request(
        method, path, b"[" * 100_000 + b"]" * 100_000, content_type=content_type
    )
    assert code == 400, body
    assert body["kind"] == "Status"
