"""
An API error carrying the whole Status the real server would answer.
"""

from __future__ import annotations

from typing import Any

from clusternet.apis.status import status_object

from .._store_api import StoreError

__all__ = ["APIError", "invalid", "not_found"]


class APIError(StoreError):
    """
    A L{StoreError} with Status C{details} (causes of a 422, the name and kind
    of a 404), so the HTTP layer can write the exact body with L{status}.
    """

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, reason, message)
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return status_object(self.code, self.message, self.reason, self.details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def not_found(resource: str, name: str, group: str = "") -> APIError:
    qualified = f"{resource}.{group}" if group else resource
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = resource
    return APIError(404, "NotFound", f'{qualified} "{name}" not found', details)


def invalid(
    kind: str, group: str, name: str, causes: list[tuple[str, str, str]]
) -> APIError:
    """
    A 422 as C{apierrors.NewInvalid}: C{causes} are (field, value as Go prints
    it, detail) of C{field.Invalid} errors.
    """
    qualified = f"{kind}.{group}" if group else kind
    parts = [f"{f}: Invalid value: {v}: {d}" for f, v, d in causes]
    if len(parts) == 1:
        summary = parts[0]
    else:
        summary = "[" + ", ".join(parts) + "]"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = [
        {
            "reason": "FieldValueInvalid",
            "message": f"Invalid value: {v}: {d}",
            "field": f,
        }
        for f, v, d in causes
    ]
    return APIError(
        422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details
    )
