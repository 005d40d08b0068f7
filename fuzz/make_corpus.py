"""
Write the seed corpora in fuzz/corpus/<target>/: a few small valid and
invalid inputs per target, the first byte of each being the target's
selector (see each fuzz_<target>.py).  Run from the repository's root:

    .venv/bin/python fuzz/make_corpus.py
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from clusternet import sealing
from clusternet.tunnel._codec import (
    Data,
    Fin,
    GoAway,
    Hello,
    Open,
    OpenFail,
    OpenOk,
    Ping,
    Reset,
    WindowUpdate,
    encode,
)

CORPUS = Path(__file__).parent / "corpus"
KUBE_WIRE = Path("/work/shared/kube-wire")

# Real kubectl v1.32 bodies (tests/unit/sandbox/test_protobuf_kubectl.py):
# create namespace, create secret generic, auth can-i.
KUBECTL_PROTOBUF = {
    "namespace": (
        0,
        "azhzAAoPCgJ2MRIJTmFtZXNwYWNlEh8KFwoHZGVtby1ucxIAGgAiACoAMgA4AEIAEgAaAgoAGgAiAA==",
    ),
    "secret": (
        1,
        "azhzAAoMCgJ2MRIGU2VjcmV0EjoKGQoCczESABoHZGVmYXVsdCIAKgAyADgAQgASDAoEcGFzcxIEcEBz"
        "cxINCgR1c2VyEgVhZG1pbhoAGgAiAA==",
    ),
    "can-i": (
        5,
        "azhzAAoyChdhdXRob3JpemF0aW9uLms4cy5pby92MRIXU2VsZlN1YmplY3RBY2Nlc3NSZXZpZXcSPAoQ"
        "CgASABoAIgAqADIAOABCABIeChwKB2RlZmF1bHQSA2dldBoAIgAqBHBvZHMyADoAGggIABIAGgAgABoA"
        "IgA=",
    ),
    "deployment": (
        4,
        "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50EsQBCiYKA3dlYhIAGgdkZWZhdWx0IgAqADIAOABCAFoK"
        "CgNhcHASA3dlYhKLAQgDEgwKCgoDYXBwEgN3ZWIacQocCgASABoAIgAqADIAOABCAFoKCgNhcHASA3dl"
        "YhJREjMKBW5naW54EgpuZ2lueDoxLjI3KgAyCgoAEAAYUCIAKgBCAGoAcgCAAQCIAQCQAQCiAQAaADIA"
        "QgBKAFIAWABgAGgAggEAigEAmgEAwgEAIgIKACgAOAAaDAgAEAAYACAAKAA4ABoAIgA=",
    ),
}


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def tunnel_codec() -> None:
    session = b"".join(
        encode(frame)
        for frame in (
            Hello(capabilities=("batch",)),
            Open(1, "kubernetes.default.svc:443"),
            OpenOk(1),
            Data(1, b"GET /version HTTP/1.1\r\nHost: k\r\n\r\n"),
            WindowUpdate(1, 4096),
            Fin(1),
            Ping(b"12345678"),
        )
    )
    _write("tunnel_codec", "session", b"\x07" + session)
    _write(
        "tunnel_codec",
        "failures",
        b"\x00"
        + encode(OpenFail(3, 2, "dial tcp: refused"))
        + encode(Reset(3, 8, "cancel"))
        + encode(GoAway(3, 0, "bye")),
    )
    _write(
        "tunnel_codec",
        "too-large",
        b"\x01" + b"\x00\x10\x00\x00\x04\x00\x00\x00\x00\x01",
    )
    _write(
        "tunnel_codec",
        "bad-type",
        b"\x03" + b"\x00\x00\x00\x00\x0f\x00\x00\x00\x00\x01",
    )


def tunnel_upgrade() -> None:
    switched = (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: clusternet-tunnel.v1\r\n\r\n" + encode(Hello())
    )
    _write("tunnel_upgrade", "switched", b"\x3f\x00" + switched)
    refused = json.dumps(
        {"kind": "Status", "code": 403, "message": "forbidden: no"}
    ).encode()
    _write(
        "tunnel_upgrade",
        "refused",
        b"\x05\x01HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(refused) + refused,
    )
    _write(
        "tunnel_upgrade",
        "not-found-stalls",
        b"\x10\x02HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\n404 page",
    )
    _write("tunnel_upgrade", "garbage", b"\x00\x01SSH-2.0-OpenSSH_9.6\r\n")


def proxy_head() -> None:
    # What a kube-apiserver answers to kubectl exec's SPDY upgrade, and a 401.
    _write(
        "proxy_head",
        "spdy-101",
        b"\x3f"
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
        b"Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
        b"Date: Wed, 26 Nov 2025 18:59:49 GMT\r\n\r\n\x80\x03\x00\x04",
    )
    _write(
        "proxy_head",
        "unauthorized",
        b"\x07"
        b"HTTP/1.1 401 Unauthorized\r\nAudit-Id: 0b8b7c1e\r\nCache-Control: no-cache, "
        b"private\r\nContent-Type: application/json\r\nContent-Length: 129\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n{",
    )
    _write("proxy_head", "folded", b"\x01HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n")
    _write("proxy_head", "http2", b"\x01HTTP/2 200\r\n\r\n")


def hub_auth() -> None:
    # The headers kube-aggregator adds to a kubectl request it forwards.
    _write(
        "hub_auth",
        "front-proxy",
        b"\x01User-Agent: kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd\n"
        b"Accept: application/json, */*\nX-Remote-User: kubernetes-admin\n"
        b"X-Remote-Group: system:masters\nX-Remote-Group: system:authenticated\n"
        b"X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id: X509SHA256=ab\n"
        b"X-Forwarded-For: 10.0.0.1",
    )
    _write("hub_auth", "bearer", b"\x00Authorization: Bearer good")
    _write("hub_auth", "bad-bearer", b"\x03Authorization: Bearer \nX-Remote-User: x")
    _write("hub_auth", "client-cert", b"\x02X-Remote-User: mallory")


def cluster_info() -> None:
    recorded = json.loads((KUBE_WIRE / "087-cluster-info-signed.json").read_text())
    body = recorded["response"]["body"]
    _write("cluster_info", "recorded-body", b"\x00" + json.dumps(body).encode())
    _write("cluster_info", "kubeconfig", b"\x01" + body["data"]["kubeconfig"].encode())
    jws = body["data"]["jws-kubeconfig-07401b"]
    _write("cluster_info", "signature", b"\x02" + jws.encode())
    _write("cluster_info", "not-a-configmap", b'\x00{"kind": "Status", "code": 403}')


def sandbox_protobuf() -> None:
    for name, (endpoint, body) in KUBECTL_PROTOBUF.items():
        _write("sandbox_protobuf", name, bytes([endpoint]) + base64.b64decode(body))
    _write("sandbox_protobuf", "no-magic", b'\x00{"kind": "Namespace"}')
    _write("sandbox_protobuf", "truncated", b"\x00k8s\x00\x0a\x0f\x0a\x02v1\x12")


def sandbox_patch() -> None:
    live: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm1", "namespace": "default", "finalizers": ["a"]},
        "data": {"a": "1"},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"port": 1}]}]},
    }
    patches: dict[str, tuple[int, Any, Any]] = {
        "json": (
            0,
            live,
            [
                {"op": "replace", "path": "/data/a", "value": "2"},
                {"op": "move", "from": "/data/a", "path": "/data/b"},
            ],
        ),
        "json-bad-index": (
            0,
            pod,
            [{"op": "add", "path": "/spec/containers/01", "value": {}}],
        ),
        "merge": (1, live, {"data": {"a": None, "b": "2"}}),
        "strategic": (
            2,
            pod,
            {
                "spec": {
                    "containers": [{"name": "c", "image": "j"}],
                    "$setElementOrder/containers": [{"name": "c"}],
                },
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
            },
        ),
        "strategic-retain": (
            2,
            live,
            {"$retainKeys": ["data"], "data": {"$patch": "replace"}},
        ),
        "apply": (
            3,
            {
                **live,
                "metadata": {
                    **live["metadata"],
                    "managedFields": [
                        {
                            "manager": "kubectl",
                            "operation": "Apply",
                            "fieldsType": "FieldsV1",
                            "fieldsV1": {"f:data": {"f:a": {}}},
                        }
                    ],
                },
            },
            {"data": {"a": "3"}},
        ),
    }
    for name, (kind, target, patch) in patches.items():
        _write(
            "sandbox_patch", name, bytes([kind]) + json.dumps([target, patch]).encode()
        )


def sealing_corpus() -> None:
    key = sealing.X25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = sealing.public_key_pem(key)
    sealed = sealing.seal(public, b"seed-token", b"cluster=c1\nrequest=r1")
    _write("sealing", "sealed", b"\x00" + sealed.encode())
    _write("sealing", "public-key", b"\x01" + public.encode())
    _write(
        "sealing", "raw-sealed", b"\x02" + base64.urlsafe_b64decode(sealed[3:] + "==")
    )
    _write("sealing", "not-v1", b"\x00v2.AAAA")


if __name__ == "__main__":
    tunnel_codec()
    tunnel_upgrade()
    proxy_head()
    hub_auth()
    cluster_info()
    sandbox_protobuf()
    sandbox_patch()
    sealing_corpus()
