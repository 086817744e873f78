"""The four patch types the apiserver accepts.

* JSON merge patch (RFC 7386): ``merge_patch``.
* Strategic merge patch: ``strategic_merge`` — merge keys for the common list fields of the built-in types
  (the apiserver takes them from the Go struct tags; we keep a table keyed by field name, and for ``ports`` we
  pick ``containerPort`` or ``port`` by what the items hold). Directives: ``$patch: delete|replace|merge``,
  ``$deleteFromPrimitiveList/<field>``; ``$setElementOrder/<field>`` and ``$retainKeys`` are ignored.
* JSON patch (RFC 6902): ``json_patch``. Written here (40 lines) rather than depending on ``jsonpatch``, which
  is not a pykops dependency (it is only installed here for moto's cfn-lint).
* Server-side apply is served as a strategic merge of the applied configuration (see the package docstring).
"""

from __future__ import annotations

import copy
import json
from typing import Any

# field name → merge key; fields not listed are replaced as a whole (atomic), like tolerations.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "addresses": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
}
# lists of scalars merged as sets
PRIMITIVE_MERGE = {"finalizers"}


class PatchError(ValueError):
    """A patch that cannot be applied (the server answers 422 or 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for item in items:
            if isinstance(item, dict):
                return "containerPort" if "containerPort" in item else "port"
        return "port"
    return MERGE_KEYS.get(field)


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    cur = list(current) if isinstance(current, list) else []
    if field in PRIMITIVE_MERGE:
        out = copy.deepcopy(cur)
        for v in patch:
            if v not in out:
                out.append(copy.deepcopy(v))
        return out
    key = _merge_key(field, cur + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and i.get("$patch"))]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not i.get("$patch")]
    out = copy.deepcopy(cur)
    for item in patch:
        ident = item.get(key)
        index = next(
            (
                n
                for n, c in enumerate(out)
                if isinstance(c, dict) and ident is not None and c.get(key) == ident
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append(strategic_merge({}, item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


# --- RFC 6902 -------------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise PatchError(f"index {part!r} out of range") from None
        elif isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path element {part!r} not found")
            doc = doc[part]
        else:
            raise PatchError(f"cannot descend into {part!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any, replace: bool = False) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
            return doc
        try:
            index = int(last)
        except ValueError:
            raise PatchError(f"invalid list index {last!r}") from None
        if index < 0 or index > len(parent) or (replace and index >= len(parent)):
            raise PatchError(f"index {index} out of range")
        if replace:
            parent[index] = value
        else:
            parent.insert(index, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"replace: path element {last!r} not found")
        parent[last] = value
    else:
        raise PatchError(f"cannot add to {last!r}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, list):
            return parent.pop(int(last))
        if isinstance(parent, dict):
            return parent.pop(last)
    except (ValueError, IndexError, KeyError):
        pass
    raise PatchError(f"remove: path element {last!r} not found")


def json_patch(target: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind, parts = op["op"], _pointer(str(op["path"]))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")), replace=True)
        elif kind in ("move", "copy"):
            source = _pointer(str(op.get("from", "")))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_walk(doc, source))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise PatchError(f"test operation failed at {op['path']}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return doc


def fields_v1(obj: Any) -> dict[str, Any]:
    """A FieldsV1 set (``f:`` keys, ``k:`` for keyed list items) of the fields present in ``obj``."""
    out: dict[str, Any] = {}
    if not isinstance(obj, dict):
        return out
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or key.startswith("$"):
            continue
        if isinstance(value, dict):
            out[f"f:{key}"] = fields_v1(value) if value else {}
        elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
            merge = _merge_key(key, value)
            sub: dict[str, Any] = {}
            for item in value:
                if merge and merge in item:
                    sub["k:" + json.dumps({merge: item[merge]}, separators=(",", ":"))] = {
                        ".": {},
                        **fields_v1(item),
                    }
            out[f"f:{key}"] = sub
        else:
            out[f"f:{key}"] = {}
    return out
