"""
The patch formats the API server accepts: JSON merge patch (RFC 7386), JSON patch
(RFC 6902, as lenient as the real server), strategic merge patch for the built-in
kinds, and server-side apply with managed fields.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "field_set",
    "fields_v1",
    "parse_fields_v1",
    "server_side_apply",
]

JSON = Any


class PatchError(ValueError):
    """
    A patch that cannot apply; C{code} is the HTTP answer (400, 409, 422).
    """

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _bounded_depth(apply: Callable[_P, _R]) -> Callable[_P, _R]:
    """
    C{apply}, with a document nested deeper than Python recurses refused as a
    L{PatchError} (400) rather than a L{RecursionError}.
    """

    @functools.wraps(apply)
    def bounded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return apply(*args, **kwargs)
        except RecursionError:
            raise PatchError("the object or the patch is nested too deeply") from None

    return bounded


# --- JSON merge patch ---------------------------------------------------------


@_bounded_depth
def apply_merge_patch(target: JSON, patch: JSON) -> JSON:
    """
    RFC 7386: maps merge recursively, C{null} deletes, anything else replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def make_merge_patch(source: JSON, target: JSON) -> JSON:
    """
    The merge patch that turns C{source} into C{target} (for tests and SSA).
    """
    if not isinstance(source, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, JSON] = {}
    for key in source:
        if key not in target:
            patch[key] = None
    for key, value in target.items():
        if key not in source:
            patch[key] = copy.deepcopy(value)
        elif source[key] != value:
            if isinstance(value, dict) and isinstance(source[key], dict):
                patch[key] = make_merge_patch(source[key], value)
            else:
                patch[key] = copy.deepcopy(value)
    return patch


# --- JSON patch ---------------------------------------------------------------


def _pointer(path: object) -> list[str]:
    if not isinstance(path, str):
        raise PatchError("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f'JSON pointer "{path}" must start with "/"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], part: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(container)
    if not (part.isascii() and part.isdigit()) or (len(part) > 1 and part[0] == "0"):
        raise PatchError(f"invalid array index {part[:20]!r}")
    if len(part) > len(str(len(container))):
        raise PatchError(f"array index out of bounds: {part[:20]}")
    index = int(part)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index out of bounds: {index}")
    return index


def _parent(doc: JSON, parts: list[str], op: str) -> tuple[JSON, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict):
            if part not in node:
                raise PatchError(
                    f'doc is missing path: "/{"/".join(parts)}": missing value'
                )
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, False)]
        else:
            raise PatchError(
                f'doc is missing path: "/{"/".join(parts)}": missing value'
            )
    return node, parts[-1]


def _get(doc: JSON, parts: list[str]) -> JSON:
    node = doc
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                raise PatchError(
                    f'doc is missing path: "/{"/".join(parts)}": missing value'
                )
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, False)]
        else:
            raise PatchError(
                f'doc is missing path: "/{"/".join(parts)}": missing value'
            )
    return node


def _add(doc: JSON, parts: list[str], value: JSON, replace: bool = False) -> JSON:
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts, "add")
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, False)] = copy.deepcopy(value)
        else:
            parent.insert(_index(parent, last, True), copy.deepcopy(value))
    else:
        raise PatchError(f'doc is missing path: "/{"/".join(parts)}"')
    return doc


def _remove(doc: JSON, parts: list[str]) -> JSON:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, parts, "remove")
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(
                f"Unable to remove nonexistent key: {last}: missing value", 422
            )
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, False)]
    else:
        raise PatchError(f'doc is missing path: "/{"/".join(parts)}"')
    return doc


@_bounded_depth
def apply_json_patch(target: JSON, patch: JSON) -> JSON:
    """
    RFC 6902, with the real server's leniency: C{replace} of a missing key adds it.
    """
    if not isinstance(patch, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for operation in patch:
        if not isinstance(operation, dict) or "op" not in operation:
            raise PatchError('Unexpected kind: operation without "op"')
        op = operation["op"]
        parts = _pointer(operation.get("path"))
        if op == "add":
            if "value" not in operation:
                raise PatchError("add operation does not apply: missing value")
            doc = _add(doc, parts, operation["value"])
        elif op == "remove":
            doc = _remove(doc, parts)
        elif op == "replace":
            if "value" not in operation:
                raise PatchError("replace operation does not apply: missing value")
            doc = _add(doc, parts, operation["value"], replace=True)
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = copy.deepcopy(_get(doc, source))
            if op == "move":
                if parts[: len(source)] == source and len(parts) > len(source):
                    raise PatchError("cannot move a value into one of its children")
                doc = _remove(doc, source)
            doc = _add(doc, parts, value)
        elif op == "test":
            if _get(doc, parts) != operation.get("value"):
                raise PatchError(
                    f"testing value {operation.get('path')} failed: test failed", 422
                )
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return doc


# --- strategic merge patch ----------------------------------------------------

# field name -> merge key for lists merged by key in the built-in kinds.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "secrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ownerReferences": "uid",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "readinessGates": "conditionType",
    "resourceClaims": "name",
}
# primitive lists merged as sets
MERGE_PRIMITIVE = {"finalizers"}


def _merge_key(field: str, items: Iterable[JSON]) -> str | None:
    if field == "ports":
        for item in items:
            if isinstance(item, dict):
                if "containerPort" in item:
                    return "containerPort"
                return "port"
        return "port"
    return MERGE_KEYS.get(field)


@_bounded_depth
def apply_strategic_merge_patch(target: JSON, patch: JSON) -> JSON:
    """
    Strategic merge patch for the built-in kinds: maps merge, lists with a merge
    key merge by it, C{$patch}, C{$retainKeys}, C{$setElementOrder} and
    C{$deleteFromPrimitiveList} directives.
    """
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be an object")
    return _smp_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, JSON], patch: dict[str, JSON]) -> dict[str, JSON]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: _strip(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list[JSON]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            if isinstance(value, list):
                orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(target.get(field), list) and isinstance(value, list):
                target[field] = [v for v in target[field] if v not in value]
            continue
        if value is None:
            target.pop(key, None)
            continue
        current = target.get(key)
        if isinstance(value, dict):
            target[key] = _smp_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            target[key] = _smp_list(
                key, current if isinstance(current, list) else None, value
            )
        else:
            target[key] = value
    if isinstance(retain, list):
        keep = {k for k in retain if isinstance(k, str)}
        for key in list(target):
            if key not in keep:
                del target[key]
    for field, order in orders.items():
        current = target.get(field)
        if isinstance(current, list):
            target[field] = _order(field, current, order)
    return target


def _strip(value: JSON) -> JSON:
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _smp_list(field: str, current: list[JSON] | None, patch: list[JSON]) -> list[JSON]:
    if field in MERGE_PRIMITIVE:
        result = list(current or [])
        for item in patch:
            if item not in result:
                result.append(item)
        return result
    key = _merge_key(field, list(current or []) + patch)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [_strip(p) for p in patch]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip(p) for p in patch if p.get("$patch") != "replace"]
    result = [copy.deepcopy(c) for c in (current or [])]
    for item in patch:
        ident = item.get(key)
        matches = [
            i
            for i, c in enumerate(result)
            if isinstance(c, dict) and c.get(key) == ident
        ]
        if item.get("$patch") == "delete":
            result = [c for i, c in enumerate(result) if i not in matches]
        elif matches:
            result[matches[0]] = _smp_map(result[matches[0]], item)
        else:
            result.append(_strip(item))
    return result


def _order(field: str, current: list[JSON], order: list[JSON]) -> list[JSON]:
    key = _merge_key(field, current)

    def ident(item: JSON) -> JSON:
        if key is not None and isinstance(item, dict):
            return item.get(key)
        return item

    positions = {json.dumps(ident(o), sort_keys=True): i for i, o in enumerate(order)}
    indexed = list(enumerate(current))
    indexed.sort(
        key=lambda pair: (
            positions.get(json.dumps(ident(pair[1]), sort_keys=True), len(positions)),
            pair[0],
        )
    )
    return [item for _, item in indexed]


# --- managed fields and server-side apply ---------------------------------------

Path = tuple[str, ...]


def _item_key(field: str, item: JSON, siblings: list[JSON]) -> str | None:
    if isinstance(item, dict):
        key = _merge_key(field, siblings) or ("name" if "name" in item else None)
        if key is not None and key in item:
            return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))
        return None
    if field in MERGE_PRIMITIVE:
        return "v:" + json.dumps(item, separators=(",", ":"))
    return None


def field_set(obj: JSON, prefix: Path = ()) -> set[Path]:
    """
    The set of field paths an object sets: leaves and, for nested maps, the map
    itself (the C{"."} of FieldsV1).
    """
    paths: set[Path] = set()
    if not isinstance(obj, dict):
        return paths
    for key, value in obj.items():
        if not prefix and key in ("apiVersion", "kind"):
            continue
        if not prefix and key == "metadata" and isinstance(value, dict):
            value = {
                k: v
                for k, v in value.items()
                if k in ("labels", "annotations", "finalizers", "ownerReferences")
            }
            if not value:
                continue
            paths |= field_set(value, ("f:metadata",))
            continue
        path = (*prefix, f"f:{key}")
        if isinstance(value, dict) and value:
            paths.add((*path, "."))
            paths |= field_set(value, path)
        elif (
            isinstance(value, list)
            and value
            and any(_item_key(key, item, value) is not None for item in value)
        ):
            paths.add((*path, "."))
            for item in value:
                item_key = _item_key(key, item, value)
                if item_key is None:
                    continue
                item_path = (*path, item_key)
                if isinstance(item, dict):
                    paths.add((*item_path, "."))
                    paths |= field_set(item, item_path)
                else:
                    paths.add(item_path)
        else:
            paths.add(path)
    return paths


def fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def parse_fields_v1(tree: JSON, prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    if not isinstance(tree, dict):
        return paths
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            paths |= parse_fields_v1(value, path)
        else:
            paths.add(path)
    return paths


def _lookup(obj: JSON, path: Path) -> tuple[bool, JSON]:
    node = obj
    for part in path:
        if part == ".":
            return True, node
        kind, _, name = part.partition(":")
        if kind == "f" and isinstance(node, dict) and name in node:
            node = node[name]
        elif kind == "k" and isinstance(node, list):
            want = json.loads(name)
            for item in node:
                if isinstance(item, dict) and all(
                    item.get(k) == v for k, v in want.items()
                ):
                    node = item
                    break
            else:
                return False, None
        elif kind == "v" and isinstance(node, list):
            value = json.loads(name)
            if value not in node:
                return False, None
            return True, value
        else:
            return False, None
    return True, node


def _remove_path(obj: JSON, path: Path) -> None:
    if not path or path[-1] == ".":
        return
    found, parent = _lookup(obj, path[:-1])
    if not found:
        return
    kind, _, name = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == "k" and isinstance(parent, list):
        want = json.loads(name)
        parent[:] = [
            i
            for i in parent
            if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))
        ]
    elif kind == "v" and isinstance(parent, list):
        value = json.loads(name)
        parent[:] = [i for i in parent if i != value]


def _merge_apply(live: JSON, applied: JSON, field: str = "") -> JSON:
    if isinstance(live, dict) and isinstance(applied, dict):
        result = dict(live)
        for key, value in applied.items():
            result[key] = _merge_apply(live.get(key), value, key)
        return result
    if isinstance(live, list) and isinstance(applied, list):
        keys = [_item_key(field, item, applied) for item in applied]
        if all(k is not None for k in keys) and applied:
            result_list = [copy.deepcopy(i) for i in live]
            for item, key in zip(applied, keys, strict=True):
                existing = [
                    n
                    for n, i in enumerate(result_list)
                    if _item_key(field, i, live) == key
                ]
                if existing:
                    result_list[existing[0]] = _merge_apply(
                        result_list[existing[0]], item, field
                    )
                else:
                    result_list.append(copy.deepcopy(item))
            return result_list
    return copy.deepcopy(applied)


def _strip_empty(obj: JSON) -> JSON:
    if isinstance(obj, dict):
        return {k: _strip_empty(v) for k, v in obj.items()}
    return obj


@_bounded_depth
def server_side_apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    manager: str,
    managed: list[dict[str, Any]],
    *,
    force: bool,
    api_version: str,
    now: str,
    subresource: str = "",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """
    Apply C{applied} for C{manager} over C{live}; returns the new object and
    managedFields.

    @raise PatchError: 409 when another manager owns a field whose value would
        change and C{force} is false.
    """
    new_paths = field_set(applied)
    owners: list[tuple[dict[str, Any], set[Path]]] = [
        (entry, parse_fields_v1(entry.get("fieldsV1", {}))) for entry in managed
    ]
    mine_before: set[Path] = set()
    for entry, paths in owners:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            mine_before |= paths
    conflicts: list[tuple[str, Path]] = []
    for entry, paths in owners:
        if entry.get("manager") == manager:
            continue
        for path in paths & new_paths:
            if path[-1] == ".":
                continue
            found_live, live_value = _lookup(live, path)
            found_new, new_value = _lookup(applied, path)
            if found_live and found_new and live_value != new_value:
                conflicts.append((str(entry.get("manager")), path))
    if conflicts and not force:
        described = [
            f'conflict with "{who}": .{_dotted(path)}'
            for who, path in sorted(conflicts)
        ]
        noun = "conflict" if len(described) == 1 else "conflicts"
        raise PatchError(
            f"Apply failed with {len(described)} {noun}: " + "\n".join(described), 409
        )
    others: set[Path] = set()
    for entry, paths in owners:
        if entry.get("manager") != manager:
            others |= paths
    result = copy.deepcopy(live)
    for path in sorted(mine_before - new_paths - others, key=len, reverse=True):
        _remove_path(result, path)
    result = _merge_apply(result, applied)
    taken = {path for _, path in conflicts}
    entries: list[dict[str, Any]] = []
    for entry, paths in owners:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            continue
        remaining = paths - taken
        remaining = {
            p for p in remaining if p[-1] != "." or _has_leaf_below(remaining, p)
        }
        if not remaining:
            continue
        if remaining != paths:
            entry = {**entry, "fieldsV1": fields_v1(remaining)}
        entries.append(entry)
    mine = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(new_paths),
    }
    if subresource:
        mine["subresource"] = subresource
    entries.insert(0, mine)
    return result, entries


def _dotted(path: Path) -> str:
    parts = []
    for part in path:
        kind, _, name = part.partition(":")
        if kind == "f":
            parts.append(name)
        elif kind in ("k", "v"):
            parts[-1] = parts[-1] + f"[{name}]" if parts else f"[{name}]"
    return ".".join(parts)


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    managed: list[dict[str, Any]],
    *,
    api_version: str,
    now: str,
    subresource: str = "",
) -> list[dict[str, Any]]:
    """
    managedFields after an C{Update} by C{manager}: it takes ownership of every
    field it set or changed; fields that are gone leave every owner.
    """
    old_paths = field_set(old) if old is not None else set()
    new_paths = field_set(new)
    changed: set[Path] = set()
    for path in new_paths:
        if path not in old_paths:
            changed.add(path)
            continue
        _, before = _lookup(old, path)
        _, after = _lookup(new, path)
        if path[-1] != "." and before != after:
            changed.add(path)
    entries: list[dict[str, Any]] = []
    mine: set[Path] = set()
    for entry in managed:
        paths = parse_fields_v1(entry.get("fieldsV1", {})) & new_paths
        same = (
            entry.get("manager") == manager
            and entry.get("operation") == "Update"
            and entry.get("subresource", "") == subresource
        )
        if same:
            mine |= paths
            continue
        paths -= {p for p in changed if p[-1] != "."}
        paths = {p for p in paths if p[-1] != "." or _has_leaf_below(paths, p)}
        if paths:
            entries.append({**entry, "fieldsV1": fields_v1(paths)})
    mine |= changed
    mine = {p for p in mine if p[-1] != "." or _has_leaf_below(mine, p)}
    if mine:
        entry = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(mine),
        }
        if subresource:
            entry["subresource"] = subresource
        entries.append(entry)
    return entries


def _has_leaf_below(paths: set[Path], marker: Path) -> bool:
    base = marker[:-1]
    return any(
        len(p) > len(base) and p[: len(base)] == base and p != marker for p in paths
    )
