"""
Label and field selectors, parsed and matched as the real API server does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from attrs import frozen

__all__ = [
    "FieldSelector",
    "LabelSelector",
    "SelectorError",
    "parse_field_selector",
    "parse_label_selector",
]


class SelectorError(ValueError):
    """
    A selector that does not parse; the message is what the real server says.
    """


@frozen
class Requirement:
    key: str
    operator: str  # =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if self.key not in labels:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == "gt" else have < want


@frozen
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_KEY_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_PREFIX = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _check_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        raise SelectorError(
            f'invalid label key "{key}": prefix part must be a DNS-1123 subdomain'
        )
    if not name or len(name) > 63 or not _KEY_NAME.match(name):
        raise SelectorError(
            f'invalid label key "{key}": name part must consist of alphanumeric '
            "characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(
            f'invalid label value: "{value}": at key: must be no more than 63 '
            "characters and consist of alphanumeric characters, '-', '_' or '.', "
            "starting and ending with an alphanumeric character"
        )


_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|<|>|[^\s!=(),<>]+)")


def _tokens(text: str) -> list[str]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos:].strip() == "":
                break
            raise SelectorError(f"unable to parse requirement: {text!r}")
        tokens.append(match.group(1))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def parse_label_selector(text: str) -> LabelSelector:
    """
    Parse the C{labelSelector} query syntax (C{a=b,c!=d,e in (f,g),!h,i}).
    """
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    while i < len(tokens):
        current = tokens[i]
        if current == "!":
            i += 1
            key = peek()
            if key is None or key in ("!", "=", "==", "!=", "(", ")", ",", "<", ">"):
                raise SelectorError("found '', expected: identifier after '!'")
            _check_key(key)
            requirements.append(Requirement(key, "!"))
            i += 1
        else:
            key = current
            if key in ("=", "==", "!=", "(", ")", ",", "<", ">"):
                raise SelectorError(
                    f"found '{key}', expected: !, identifier, or 'end of string'"
                )
            _check_key(key)
            i += 1
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = peek()
                if value is None or value == ",":
                    value = ""
                else:
                    if value in ("(", ")", "!", "=", "==", "!=", "<", ">"):
                        raise SelectorError(f"found '{value}', expected: identifier")
                    i += 1
                _check_value(value)
                requirements.append(
                    Requirement(key, "!=" if op == "!=" else "=", (value,))
                )
            elif op in ("in", "notin"):
                i += 1
                if peek() != "(":
                    raise SelectorError(f"found '{peek()}', expected: '('")
                i += 1
                values: list[str] = []
                while True:
                    value = peek()
                    if value is None:
                        raise SelectorError("found '', expected: ')'")
                    if value == ")":
                        i += 1
                        break
                    if value == ",":
                        values.append("")
                        i += 1
                        continue
                    _check_value(value)
                    values.append(value)
                    i += 1
                    if peek() == ",":
                        i += 1
                    elif peek() != ")":
                        raise SelectorError(f"found '{peek()}', expected: ',' or ')'")
                requirements.append(Requirement(key, op, tuple(values)))
            elif op in ("<", ">"):
                i += 1
                value = peek()
                if value is None or not re.match(r"^-?\d+$", value):
                    raise SelectorError(
                        "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                i += 1
                requirements.append(
                    Requirement(key, "gt" if op == ">" else "lt", (value,))
                )
            else:
                raise SelectorError(
                    f"found '{op}', expected: '=', '!=', '==', 'in', notin'"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(
                    f"found '{tokens[i]}', expected: ',' or 'end of string'"
                )
            i += 1
            if i == len(tokens):
                raise SelectorError("found '', expected: identifier")
    return LabelSelector(tuple(requirements))


@frozen
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal, value)

    def matches(self, fields: Mapping[str, str]) -> bool:
        for name, equal, value in self.terms:
            have = fields.get(name, "")
            if (have == value) != equal:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.terms


def parse_field_selector(text: str, known: Sequence[str]) -> FieldSelector:
    """
    Parse C{fieldSelector}; fields outside C{known} are refused as the real server
    does (400).
    """
    terms: list[tuple[str, bool, str]] = []
    for part in _split_unescaped(text):
        if not part.strip():
            continue
        for op in ("!=", "==", "="):
            if op in part:
                name, _, value = part.partition(op)
                equal = op != "!="
                break
        else:
            raise SelectorError(
                f"invalid selector: '{text}'; can't understand '{part}'"
            )
        name = name.strip()
        if name not in known:
            only = ", ".join(f'"{k}"' for k in known[:2])
            raise SelectorError(f'"{name}" is not a known field selector: only {only}')
        terms.append((name, equal, _unescape(value)))
    return FieldSelector(tuple(terms))


def _split_unescaped(text: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def object_fields(obj: Mapping[str, object], extra: Sequence[str]) -> dict[str, str]:
    """
    The field-selector view of an object: C{metadata.name}, C{metadata.namespace}
    and C{extra} dotted paths.
    """
    metadata = obj.get("metadata")
    meta = metadata if isinstance(metadata, dict) else {}
    fields = {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
    }
    for path in extra:
        node: object = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        fields[path] = "" if node is None else str(node)
    return fields
