"""
C{ObjectMeta} and the small decoding helpers the object models share.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from attrs import field, frozen

from clusternet.apis._time import format_time, parse_time

__all__ = ["InvalidObject", "ObjectMeta"]


class InvalidObject(ValueError):
    """
    A dict that does not have the shape of the object it claims to be.
    """


def get_map(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidObject(f"{path}{key}: expected an object, got {_kind(value)}")
    return value


def get_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidObject(f"{path}{key}: expected a string, got {_kind(value)}")
    return value


def get_bool(data: Mapping[str, Any], key: str, path: str) -> bool:
    value = data.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidObject(f"{path}{key}: expected a boolean, got {_kind(value)}")
    return value


def get_int(data: Mapping[str, Any], key: str, path: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidObject(f"{path}{key}: expected an integer, got {_kind(value)}")
    return value


def get_time(data: Mapping[str, Any], key: str, path: str) -> datetime | None:
    text = get_str(data, key, path)
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise InvalidObject(f"{path}{key}: {e}") from None


def get_string_map(data: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    value = get_map(data, key, path)
    for k, v in value.items():
        if not isinstance(v, str):
            raise InvalidObject(f"{path}{key}.{k}: expected a string, got {_kind(v)}")
    return dict(value)


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


_KNOWN_META = (
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
)


@frozen
class ObjectMeta:
    """
    The parts of C{metadata} we read and write. Anything else (ownerReferences,
    finalizers, managedFields, ...) is kept in C{extra} so that a read-modify-write
    round trip loses nothing.
    """

    name: str = ""
    namespace: str = ""
    generate_name: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: Mapping[str, str] = field(factory=dict)
    annotations: Mapping[str, str] = field(factory=dict)
    extra: Mapping[str, Any] = field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for key, value in (
            ("name", self.name),
            ("namespace", self.namespace),
            ("generateName", self.generate_name),
            ("uid", self.uid),
            ("resourceVersion", self.resource_version),
        ):
            if value:
                out[key] = value
        if self.generation is not None:
            out["generation"] = self.generation
        if self.creation_timestamp is not None:
            out["creationTimestamp"] = format_time(self.creation_timestamp)
        if self.deletion_timestamp is not None:
            out["deletionTimestamp"] = format_time(self.deletion_timestamp)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "metadata.") -> ObjectMeta:
        return cls(
            name=get_str(data, "name", path),
            namespace=get_str(data, "namespace", path),
            generate_name=get_str(data, "generateName", path),
            uid=get_str(data, "uid", path),
            resource_version=get_str(data, "resourceVersion", path),
            generation=get_int(data, "generation", path),
            creation_timestamp=get_time(data, "creationTimestamp", path),
            deletion_timestamp=get_time(data, "deletionTimestamp", path),
            labels=get_string_map(data, "labels", path),
            annotations=get_string_map(data, "annotations", path),
            extra={k: v for k, v in data.items() if k not in _KNOWN_META},
        )
