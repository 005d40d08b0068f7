"""
Errors of calls to a Kubernetes API server, by HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeError",
    "KubeUnavailable",
    "MethodNotAllowed",
    "NotFound",
    "ServerError",
    "TooManyRequests",
    "Unauthorized",
    "error_for",
]


class KubeError(Exception):
    """
    The API server answered with an error (or could not be reached: status 0).

    @ivar status: the HTTP status code, 0 when there was no answer.
    @ivar reason: the Status C{reason} (C{NotFound}, C{AlreadyExists}, ...) or the
        HTTP reason phrase.
    @ivar message: the Status C{message}, or a description.
    @ivar body: the decoded Status object, when the answer carried one.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    def __str__(self) -> str:
        if self.status:
            return f"{self.status} {self.reason}: {self.message}"
        return f"{self.reason}: {self.message}"


class KubeUnavailable(KubeError):
    """
    No answer: connection refused or reset, TLS failure, timeout.
    """

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unavailable", message)


class BadRequest(KubeError):
    pass


class Unauthorized(KubeError):
    pass


class Forbidden(KubeError):
    pass


class NotFound(KubeError):
    pass


class MethodNotAllowed(KubeError):
    pass


class Conflict(KubeError):
    """
    409: a stale resourceVersion on update, or (L{AlreadyExists}) a create of a
    name that exists.
    """


class AlreadyExists(Conflict):
    pass


class Gone(KubeError):
    """
    410: a watch or list from a resourceVersion the server no longer has.
    """


class Invalid(KubeError):
    """
    422: the object failed validation.
    """


class TooManyRequests(KubeError):
    pass


class ServerError(KubeError):
    """
    5xx.
    """


_BY_STATUS: dict[int, type[KubeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for(
    status: int, body: bytes | Mapping[str, Any] | None, http_reason: str = ""
) -> KubeError:
    """
    The L{KubeError} for an answer with C{status} and C{body} (a Status object as
    JSON bytes or decoded, or anything else).
    """
    decoded: Mapping[str, Any] | None = None
    if isinstance(body, Mapping):
        decoded = body
    elif body:
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict):
            decoded = value
    reason = http_reason
    message = ""
    if decoded is not None and decoded.get("kind") == "Status":
        reason = str(decoded.get("reason") or http_reason)
        message = str(decoded.get("message") or "")
        code = decoded.get("code")
        if isinstance(code, int) and not status:
            status = code
    elif isinstance(body, bytes | bytearray) and body:
        message = bytes(body[:500]).decode("utf-8", "replace")
    if not message:
        message = f"the server answered {status} {http_reason}".strip()
    if status == 409 and reason == "AlreadyExists":
        cls: type[KubeError] = AlreadyExists
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, KubeError)
    return cls(status, reason or str(status), message, decoded)
