"""
Small helpers shared by the sandbox's store and HTTP layer: errors that carry a
Kubernetes Status, timestamps, name validation.
"""

from __future__ import annotations

import copy
import datetime
import re
from typing import Any

from clusternet.apis.status import status_object
from clusternet.sandbox._store_api import JSONObject, StoreError

__all__ = [
    "ApiError",
    "conflict",
    "deep_copy",
    "format_time",
    "invalid",
    "not_found",
    "parse_time",
    "validate_name",
]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
    "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
    "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
    "start with an alphabetic character, and end with an alphanumeric character "
    "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
    "'[a-z]([-a-z0-9]*[a-z0-9])?')"
)


class ApiError(StoreError):
    """
    A L{StoreError} that also carries the Status C{details}.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, reason, message)
        self.details = details

    def status(self) -> JSONObject:
        return status_object(self.code, self.message, self.reason, self.details)


def error_status(error: StoreError) -> JSONObject:
    """
    The Status object for any L{StoreError}.
    """
    if isinstance(error, ApiError):
        return error.status()
    return status_object(error.code, error.message, error.reason or None)


def _details(plural: str, name: str, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        _details(plural, name, group),
    )


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        _details(plural, name, group),
    )


def conflict(plural: str, name: str, group: str = "", why: str = "") -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest "
        "version and try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        _details(plural, name, group),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(
    kind: str, name: str, group: str, causes: list[tuple[str, str, str]]
) -> ApiError:
    """
    422 Invalid with C{causes} as (reason, field, message) like the real server.
    """
    messages = [f"{field}: {message}" for _, field, message in causes]
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [
        {"reason": reason, "message": message, "field": field}
        for reason, field, message in causes
    ]
    return ApiError(
        422, "Invalid", f'{qualified_kind} "{name}" is invalid: {joined}', details
    )


def deep_copy(obj: JSONObject) -> JSONObject:
    return copy.deepcopy(obj)


def format_time(seconds: float) -> str:
    """
    RFC 3339 with whole seconds, as metav1.Time serializes.
    """
    moment = datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """
    Seconds since the epoch for an RFC 3339 timestamp.

    @raise ValueError: when it is not one.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    value = text.replace("Z", "+00:00").replace("z", "+00:00")
    return datetime.datetime.fromisoformat(value).timestamp()


_MICRO_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$"
)


def check_micro_time(text: object) -> str | None:
    """
    C{None} when C{text} is a MicroTime the real server accepts, else the Go parse
    error it writes.
    """
    if isinstance(text, str) and _MICRO_TIME.match(text):
        try:
            parse_time(text)
            return None
        except ValueError:
            pass
    shown = text if isinstance(text, str) else repr(text)
    tail = "Z"
    if isinstance(text, str):
        match = re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(.*)$", text)
        tail = match.group(1) if match else text
    return (
        f'parsing time "{shown}" as "2006-01-02T15:04:05.000000Z07:00": '
        f'cannot parse "{tail}" as ".000000"'
    )


def validate_name(name: str, rule: str) -> str | None:
    """
    C{None} when C{name} is valid under C{rule} (C{subdomain}, C{label},
    C{dns1035}, C{path}), else the real server's message.
    """
    if rule == "path":
        if name in (".", ".."):
            return f"may not be '{name}'"
        for bad in ("/", "%"):
            if bad in name:
                return f"may not contain '{bad}'"
        return None
    if rule == "label":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _DNS1123_LABEL.match(name) else LABEL_MESSAGE
    if rule == "dns1035":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _DNS1035_LABEL.match(name) else DNS1035_MESSAGE
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if _DNS1123_SUBDOMAIN.match(name) else SUBDOMAIN_MESSAGE


def human_duration(seconds: float) -> str:
    """
    Kubernetes' C{duration.HumanDuration}, as the AGE column shows it.
    """
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = (s % 3600) // 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"
