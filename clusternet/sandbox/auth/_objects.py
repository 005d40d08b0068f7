"""
Reading the plain JSON objects of the store: Secret data, metadata, timestamps.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from typing import Any

__all__ = ["format_time", "metadata", "parse_rfc3339", "secret_data"]

_RFC3339 = re.compile(
    r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z"
)


def metadata(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            return meta
    return {}


def object_annotations(obj: Any) -> dict[str, str]:
    value = metadata(obj).get("annotations")
    return value if isinstance(value, dict) else {}


def secret_data(secret: Any) -> dict[str, str]:
    """
    A Secret's C{data} decoded (base64, then UTF-8); values that do not decode
    are left out.  C{stringData}, which the API merges into C{data} on write, is
    honoured too in case a stored object still carries it.
    """
    result: dict[str, str] = {}
    if not isinstance(secret, dict):
        return result
    data = secret.get("data")
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            try:
                result[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                continue
    string_data = secret.get("stringData")
    if isinstance(string_data, dict):
        for key, value in string_data.items():
            if isinstance(key, str) and isinstance(value, str):
                result[key] = value
    return result


def encode_data(value: str | bytes) -> str:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


def parse_rfc3339(text: str) -> datetime.datetime | None:
    """
    An RFC 3339 timestamp as Go's C{time.Parse(time.RFC3339, ...)} reads it, or
    C{None}.
    """
    match = _RFC3339.match(text)
    if match is None:
        return None
    fraction = match.group(1)
    normalized = text
    if fraction:
        normalized = text.replace(fraction, "." + (fraction[1:] + "000000")[:6], 1)
    normalized = normalized.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(normalized)
    except ValueError:
        return None


def format_time(seconds: float) -> str:
    """
    A Kubernetes C{metav1.Time}: RFC 3339 in UTC, whole seconds.
    """
    moment = datetime.datetime.fromtimestamp(int(seconds), datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
