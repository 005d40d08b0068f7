# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
Structural-schema validation, pruning and defaulting of custom resources, with
the real server's error messages.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Cause", "default_and_prune", "validate"]

Cause = tuple[str, str, str]  # (reason, field, message)

_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), "unknown")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return '"' + _type_of(value) + '"'
    return str(value)


def _type_matches(want: str, value: Any) -> bool:
    if want == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if want == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want == "string":
        return isinstance(value, str)
    if want == "boolean":
        return isinstance(value, bool)
    if want == "array":
        return isinstance(value, list)
    if want == "object":
        return isinstance(value, dict)
    return True


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[Cause]:
    """
    Every violation of C{schema} in C{value}, in field order.
    """
    causes: list[Cause] = []
    _validate(value, schema, path, causes)
    return causes


def _validate(
    value: Any, schema: dict[str, Any], path: str, causes: list[Cause]
) -> None:
    shown = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return
        if "type" in schema and path:
            causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f'Invalid value: "null": {shown} in body must be of type '
                    f'{schema["type"]}: "null"',
                )
            )
        return
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (
            isinstance(value, str)
            or (isinstance(value, int) and not isinstance(value, bool))
        ):
            causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {shown} in body must be of type "
                    f'integer,string: "{_type_of(value)}"',
                )
            )
        return
    if isinstance(want, str) and not _type_matches(want, value):
        causes.append(
            (
                "FieldValueTypeInvalid",
                path,
                f'Invalid value: "{_type_of(value)}": {shown} in body must be of type '
                f'{want}: "{_type_of(value)}"',
            )
        )
        return
    if (
        "enum" in schema
        and isinstance(schema["enum"], list)
        and value not in schema["enum"]
    ):
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append(
            (
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_show(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minimum = schema.get("minimum")
        if isinstance(minimum, (int, float)):
            if schema.get("exclusiveMinimum") and value <= minimum:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path,
                        f"Invalid value: {_show(value)}: {shown} in body should be greater than {_show(minimum)}",
                    )
                )
            elif value < minimum:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path,
                        f"Invalid value: {_show(value)}: {shown} in body should be greater than or equal to {_show(minimum)}",
                    )
                )
        maximum = schema.get("maximum")
        if isinstance(maximum, (int, float)):
            if schema.get("exclusiveMaximum") and value >= maximum:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path,
                        f"Invalid value: {_show(value)}: {shown} in body should be less than {_show(maximum)}",
                    )
                )
            elif value > maximum:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path,
                        f"Invalid value: {_show(value)}: {shown} in body should be less than or equal to {_show(maximum)}",
                    )
                )
    if isinstance(value, str):
        if (
            isinstance(schema.get("minLength"), int)
            and len(value) < schema["minLength"]
        ):
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {_show(value)}: {shown} in body should be at least {schema['minLength']} chars long",
                )
            )
        if (
            isinstance(schema.get("maxLength"), int)
            and len(value) > schema["maxLength"]
        ):
            causes.append(
                (
                    "FieldValueTooLong",
                    path,
                    f"Too long: may not be more than {schema['maxLength']} bytes",
                )
            )
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                ok = re.search(pattern, value) is not None
            except re.error:
                ok = True
            if not ok:
                causes.append(
                    (
                        "FieldValueInvalid",
                        path,
                        f"Invalid value: {_show(value)}: {shown} in body should match '{pattern}'",
                    )
                )
    if isinstance(value, list):
        if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
            causes.append(
                (
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {len(value)}: {shown} in body should have at least {schema['minItems']} items",
                )
            )
        if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
            causes.append(
                (
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _validate(item, items, f"{path}[{i}]", causes)
    if isinstance(value, dict):
        for name in schema.get("required", []) or []:
            if name not in value:
                field = f"{path}.{name}" if path else name
                causes.append(("FieldValueRequired", field, "Required value"))
        properties = schema.get("properties")
        if isinstance(properties, dict):
            for name in sorted(value):
                if name in properties:
                    field = f"{path}.{name}" if path else name
                    _validate(value[name], properties[name], field, causes)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for name in sorted(value):
                _validate(value[name], additional, f"{path}[{name}]", causes)


def default_and_prune(value: Any, schema: dict[str, Any], top: bool = True) -> Any:
    """
    Apply C{default}s and drop fields the schema does not know (unless it says
    C{x-kubernetes-preserve-unknown-fields}); C{apiVersion}, C{kind} and
    C{metadata} at the top are kept.
    """
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        result: dict[str, Any] = {}
        for name, item in value.items():
            if top and name in ("apiVersion", "kind", "metadata"):
                result[name] = item
            elif isinstance(properties, dict) and name in properties:
                result[name] = default_and_prune(item, properties[name], False)
            elif isinstance(additional, dict):
                result[name] = default_and_prune(item, additional, False)
            elif (
                preserve
                or additional is True
                or (
                    properties is None
                    and additional is None
                    and not top
                    and "type" not in schema
                )
            ):
                result[name] = item
        if isinstance(properties, dict):
            for name, sub in properties.items():
                if name not in result and isinstance(sub, dict) and "default" in sub:
                    result[name] = default_and_prune(
                        json.loads(json.dumps(sub["default"])), sub, False
                    )
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [default_and_prune(item, schema["items"], False) for item in value]
    return value


def unknown_fields(
    value: Any, schema: dict[str, Any], path: str = "", top: bool = True
) -> list[str]:
    """
    The dotted paths C{default_and_prune} would drop (for C{fieldValidation=Strict}).
    """
    found: list[str] = []
    if not isinstance(schema, dict) or not isinstance(value, dict):
        return found
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    if schema.get("x-kubernetes-preserve-unknown-fields") is True or additional is True:
        return found
    for name, item in value.items():
        field = f"{path}.{name}" if path else name
        if top and name in ("apiVersion", "kind", "metadata"):
            continue
        if isinstance(properties, dict) and name in properties:
            sub = properties[name]
            if (
                isinstance(item, list)
                and isinstance(sub, dict)
                and isinstance(sub.get("items"), dict)
            ):
                for i, element in enumerate(item):
                    found += unknown_fields(
                        element, sub["items"], f"{field}[{i}]", False
                    )
            else:
                found += unknown_fields(item, sub, field, False)
        elif isinstance(additional, dict):
            found += unknown_fields(item, additional, field, False)
        elif properties is not None or "type" in schema:
            found.append(field)
    return found
