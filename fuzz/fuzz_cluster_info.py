"""
Fuzz target: the agent's check of C{kube-public/cluster-info}
(L{clusternet.agent._bootstrap}): the anonymous GET's body, read over TLS that
is not verified, so anyone on the path may have written it.

Feeds, by the first byte:
  - 0: the response body, through L{fetch_cluster_info} (a fake agent) and
    then L{cluster_info_from_configmap};
  - 1: the kubeconfig text, properly signed with the bootstrap token (what
    the holder of the token, shared by every edge site, could sign);
  - 2: the detached JWS over the real kubeconfig of kube-wire 087.

A crash is: any exception but L{BootstrapError} (L{JWSError} and
L{ClusterInfoUnavailable} are ones); a forged signature that verifies; a
verified cluster-info whose server is not the parent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped]

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

with atheris.instrument_imports(include=["clusternet", "yaml"]):
    from clusternet.agent._bootstrap import (
        BootstrapError,
        cluster_info_from_configmap,
        fetch_cluster_info,
        same_server,
    )

# kube-wire 087: a real kube-apiserver's cluster-info and its bootstrap token.
TOKEN = "07401b.f395accd246ae52d"  # noqa: S105 - kube-wire 087's test token
PARENT = "https://127.0.0.1:6443"
JWS_KEY = "jws-kubeconfig-07401b"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(content: bytes) -> str:
    header = _b64url(b'{"alg":"HS256","kid":"07401b"}')
    mac = hmac.new(
        TOKEN.split(".")[1].encode(),
        (header + "." + _b64url(content)).encode(),
        hashlib.sha256,
    ).digest()
    return header + ".." + _b64url(mac)


class _Response:
    code = 200

    def __init__(self, body: bytes) -> None:
        self._body = body

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(None)
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class _Agent:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def request(self, *args: object) -> Deferred[_Response]:
        return succeed(_Response(self._body))


def _text(data: bytes) -> str:
    # A JSON string may hold lone surrogates: so may this text.
    return data.decode("utf-8", "surrogatepass")


def _check(configmap: Any) -> None:
    try:
        info = cluster_info_from_configmap(configmap, TOKEN, PARENT)
    except BootstrapError:
        return
    if not same_server(info.server, PARENT):
        raise AssertionError(f"verified for another server: {info.server!r}")


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        outcome: list[object] = []
        Deferred.fromCoroutine(
            fetch_cluster_info(_Agent(rest), Clock(), PARENT)  # type: ignore[arg-type]
        ).addBoth(outcome.append)
        if isinstance(outcome[0], Failure):
            if not outcome[0].check(BootstrapError):
                outcome[0].raiseException()
            return
        _check(outcome[0])
        return
    try:
        text = _text(rest)
    except UnicodeDecodeError:
        return
    if mode == 1:
        try:
            signature = _sign(text.encode("utf-8", "surrogatepass"))
        except UnicodeEncodeError:
            return
        _check({"data": {"kubeconfig": text, JWS_KEY: signature}})
        return
    try:
        info = cluster_info_from_configmap(
            {"data": {"kubeconfig": KUBECONFIG, JWS_KEY: text}}, TOKEN, PARENT
        )
    except BootstrapError:
        return
    if text != SIGNATURE or not same_server(info.server, PARENT):
        raise AssertionError(f"a forged signature verified: {text!r}")


# The kubeconfig and its signature of kube-wire 087, from the seed corpus.
_RECORDED = json.loads(
    (Path(__file__).parent / "corpus" / "cluster_info" / "recorded-body").read_bytes()[
        1:
    ]
)
KUBECONFIG: str = _RECORDED["data"]["kubeconfig"]
SIGNATURE: str = _RECORDED["data"][JWS_KEY]


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
