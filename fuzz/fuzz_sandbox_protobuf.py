"""
Fuzz target: the sandbox's decoder of Kubernetes protobuf request bodies
(L{clusternet.sandbox._protobuf.decode_body}).

Feeds: the first byte chooses the endpoint (its group, version and the kind
it expects); the rest is the request body, C{k8s\\x00} and the
C{runtime.Unknown} envelope.

A crash is: any exception but L{ValueError}; a result that is not a JSON
object with C{kind} and C{apiVersion}, or that strict JSON cannot write.
"""

from __future__ import annotations

import json
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.sandbox._protobuf import decode_body

ENDPOINTS: tuple[tuple[str, str, str | None], ...] = (
    ("", "v1", "Namespace"),
    ("", "v1", "Secret"),
    ("", "v1", "ConfigMap"),
    ("", "v1", "Pod"),
    ("apps", "v1", "Deployment"),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview"),
    ("authentication.k8s.io", "v1", "TokenRequest"),
    ("coordination.k8s.io", "v1", "Lease"),
    ("", "v1", None),
    ("", "", None),
)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    group, version, kind = ENDPOINTS[data[0] % len(ENDPOINTS)]
    try:
        obj = decode_body(data[1:], group, version, kind)
    except ValueError:
        return
    if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
        raise AssertionError(f"not an object: {obj!r}")
    json.dumps(obj, allow_nan=False)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
