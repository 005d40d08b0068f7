"""
The Kubernetes C{Status} object, as every error over HTTP is written.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REASONS", "status_body", "status_object"]

# HTTP code -> the StatusReason a real kube-apiserver writes for it.
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """
    A C{v1.Status} with C{status: Failure} for an error C{code}.
    """
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else REASONS.get(code, ""),
        "code": code,
    }
    if details:
        body["details"] = details
    if not body["reason"]:
        del body["reason"]
    return body


def status_body(
    code: int,
    message: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> bytes:
    """
    L{status_object} serialized as the JSON bytes of a response body.
    """
    return json.dumps(status_object(code, message, reason, details)).encode("utf-8")
