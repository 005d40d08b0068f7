"""
C{/openapi/v2} as JSON and as a gnostic protobuf C{openapi_v2.Document},
compared with what a real kube-apiserver answered (../shared/kube-wire 090).
"""

from __future__ import annotations

import base64
import json
import random
import struct
from typing import Any

import pytest
import yaml

from treq.testing import StubTreq
from twisted.internet.task import Clock
from zope.interface import implementer

from clusternet.sandbox._auth_api import IAuthenticator, RequestCredentials, UserInfo
from clusternet.sandbox._controllers import CRDController
from clusternet.sandbox._defaultauth import MastersAuthorizer
from clusternet.sandbox._http import SandboxAPI, VersionInfo
from clusternet.sandbox._openapi_v2 import encode_document, openapi_v2_document
from clusternet.sandbox._protobuf import read_fields
from clusternet.sandbox._resources import Registry
from clusternet.sandbox._store import Store
from tests.support.wire import recorded

PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def wire(name: str) -> dict[str, Any]:
    return recorded(name)


@implementer(IAuthenticator)
class Admin:
    def authenticate(self, credentials: RequestCredentials) -> UserInfo | None:
        return UserInfo("admin", groups=("system:masters",))


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.registry = Registry.with_builtins()
        self.store = Store(self.registry, self.clock, rng=random.Random(0))
        CRDController(self.store, self.registry).start()
        self.api = SandboxAPI(
            self.store,
            self.registry,
            self.clock,
            Admin(),
            MastersAuthorizer(),
            version=VersionInfo("v1.32.13"),
        )
        self.treq = StubTreq(self.api)

    def get(self, path: str, **headers: str) -> tuple[int, bytes, Any]:
        answers: list[Any] = []
        requested = self.treq.get(
            "https://sandbox" + path,
            headers={k.replace("_", "-"): [v] for k, v in headers.items()},
        )
        requested.addCallback(answers.append)
        self.treq.flush()
        response = answers[0]
        content = self.treq.content(response)
        content.addCallback(answers.append)
        self.treq.flush()
        return response.code, answers[1], response.headers


@pytest.fixture
def h() -> Harness:
    return Harness()


def fields(data: bytes) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {}
    for number, value in read_fields(data):
        found.setdefault(number, []).append(value)
    return found


def named(entries: list[bytes]) -> dict[str, bytes]:
    """
    The (name, value) messages of a gnostic C{Named*} list, by name.
    """
    out = {}
    for entry in entries:
        parts = fields(entry)
        out[parts[1][0].decode()] = parts[2][0] if 2 in parts else b""
    return out


def test_protobuf_begins_like_the_real_document(h: Harness) -> None:
    real = wire("090-openapi-v2-protobuf.json")
    request = real["request"]
    code, body, headers = h.get(request["path"], Accept=request["headers"]["Accept"])
    response = real["response"]
    assert code == response["status"]
    assert headers.getRawHeaders("content-type") == [
        response["headers"]["content-type"]
    ]
    assert headers.getRawHeaders("vary") == [response["headers"]["vary"]]
    assert headers.getRawHeaders("cache-control") == [
        response["headers"]["cache-control"]
    ]
    etag = headers.getRawHeaders("etag")[0]
    assert len(etag) == len(response["headers"]["etag"])
    first = base64.b64decode(response["body"]["first_64_bytes_base64"])
    # swagger "2.0", info {title "Kubernetes", version "1.32"}, then paths.
    document = fields(first[:25])
    assert document[1] == [b"2.0"]
    assert fields(document[2][0]) == {1: [b"Kubernetes"], 2: [b"1.32"]}
    assert body[:25] == first[:25]
    assert body[25] == first[25] == 0x42  # field 8 (paths), length-delimited


def test_protobuf_definitions_carry_schemas_and_kinds(h: Harness) -> None:
    crd = wire("045-crd-create.json")["request"]["body"]
    h.store.create("apiextensions.k8s.io/customresourcedefinitions", None, crd)
    _, body, _ = h.get("/openapi/v2", Accept=PROTOBUF)
    document = fields(body)
    assert set(document) == {1, 2, 8, 9}
    definitions = named(fields(document[9][0])[1])
    config_map = fields(definitions["io.k8s.api.core.v1.ConfigMap"])
    assert fields(config_map[22][0]) == {1: [b"object"]}
    properties = named(fields(config_map[25][0])[1])
    assert sorted(properties) == [
        "apiVersion",
        "binaryData",
        "data",
        "immutable",
        "kind",
        "metadata",
    ]
    assert fields(properties["metadata"])[1] == [
        b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    ]
    extensions = named(config_map[31])
    gvk = yaml.safe_load(fields(extensions["x-kubernetes-group-version-kind"])[2][0])
    assert gvk == [{"group": "", "kind": "ConfigMap", "version": "v1"}]
    widget = fields(definitions["com.example.wire.v1.Widget"])
    spec = fields(named(fields(widget[25][0])[1])["spec"])
    assert sorted(named(fields(spec[25][0])[1])) == ["color", "size"]
    size = fields(named(fields(spec[25][0])[1])["size"])
    assert fields(size[22][0]) == {1: [b"integer"]}
    assert size[9] == [struct.pack("<d", 1.0)]  # minimum: 1


def test_json_and_protobuf_are_the_same_document(h: Harness) -> None:
    code, as_json, headers = h.get("/openapi/v2", Accept="application/json")
    assert code == 200
    assert headers.getRawHeaders("content-type") == ["application/json"]
    document = json.loads(as_json)
    assert document == openapi_v2_document(h.registry, "v1.32.13")
    _, as_protobuf, proto_headers = h.get("/openapi/v2", Accept=PROTOBUF)
    assert as_protobuf == encode_document(document)
    assert proto_headers.getRawHeaders("etag") == headers.getRawHeaders("etag")
    # kubectl's first choice first: the order of Accept decides.
    _, body, _ = h.get("/openapi/v2", Accept=f"{PROTOBUF}, application/json")
    assert body == as_protobuf
    code, _, _ = h.get("/openapi/v2", Accept="application/yaml")
    assert code == 406


def test_encoded_once_per_schema_change_and_etag_revalidates(h: Harness) -> None:
    _, first, headers = h.get("/openapi/v2", Accept=PROTOBUF)
    cached = h.api._openapi_v2_cache
    assert cached is not None
    _, again, _ = h.get("/openapi/v2", Accept=PROTOBUF)
    assert again == first and h.api._openapi_v2_cache is cached
    etag = headers.getRawHeaders("etag")[0]
    code, body, _ = h.get("/openapi/v2", Accept=PROTOBUF, If_None_Match=etag)
    assert (code, body) == (304, b"")
    crd = wire("045-crd-create.json")["request"]["body"]
    h.store.create("apiextensions.k8s.io/customresourcedefinitions", None, crd)
    code, changed, new_headers = h.get(
        "/openapi/v2", Accept=PROTOBUF, If_None_Match=etag
    )
    assert code == 200 and changed != first
    assert new_headers.getRawHeaders("etag") != [etag]
