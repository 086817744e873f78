"""The diff: desired resources against actual ones, as a list of changes (pure; no cloud calls).

Rules (docs/resources.md):

* Refs in desired props resolve to the attrs of the actual resource they point at. When that resource is
  about to be created or replaced (or updated, for an attr its kind lists in ``update_attrs``) the value is
  not known yet: it is :class:`Unknown`, shown ``(known after apply: VPC/x)``, and always counts as changed.
* Only keys present in the desired props are compared, at every dict level (so ``tags`` are compared
  restricted to the desired keys, ``root_volume`` to the desired sub-keys); a change is reported per leaf
  path (``root_volume.size``). Lists compare in order, except the paths a kind lists in ``unordered``.
* A change to a path a kind lists in ``immutable`` (or below one) is a replacement when the kind is
  ``replaceable``, and refused with a :class:`PlanError` naming every such field otherwise.
* Actual resources no desired resource matches by (kind, name) are deleted, except those a desired
  ``shared`` resource matched, those a desired resource references (external ones), and those whose
  attrs say ``shared: True`` (a kind's mark for resources it found tagged ``shared``).
* Desired ``shared`` resources (matched by their ``id`` prop, else by name) are never created, changed or
  deleted; a missing one is an error.

Optional class attributes read from a :class:`Kind` (with these defaults; not in the protocol):
``unordered: frozenset[str] = frozenset()`` (list props compared as multisets) and
``update_attrs: frozenset[str] = frozenset()`` (attrs an in-place update changes, such as a launch
template's ``version``; Refs to them become Unknown when that resource is updated).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pykops.engine.graph import Key, actual_references, build_graph, delete_order, key_str
from pykops.engine.types import Action, Actual, Change, FieldChange, Kind, Ref, Resource
from pykops.errors import PykopsError

SENSITIVE_WORDS: tuple[str, ...] = ("secret", "password", "private")
SENSITIVE_NAMES: frozenset[str] = frozenset({"user_data"})


class PlanError(PykopsError):
    """The desired state cannot be reached from the actual one (immutable change, missing shared resource)."""


@dataclass(frozen=True)
class Unknown:
    """A value that will only be known once the resource ``ref`` points at has been created or replaced."""

    ref: Ref

    def __str__(self) -> str:
        return f"(known after apply: {self.ref})"


def contains_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


def resolve(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """``value`` with every Ref replaced by ``lookup(ref)`` (dicts and lists copied; tuples become lists)."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, Mapping):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, lookup) for v in value]
    return value


# --- comparison ---------------------------------------------------------------------------------------------


def values_equal(a: Any, b: Any) -> bool:
    """Deep equality where ``True`` is not ``1``, lists equal tuples, and Unknown equals nothing."""
    if isinstance(a, Unknown) or isinstance(b, Unknown):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping | list | tuple) or isinstance(b, Mapping | list | tuple):
        return False
    return bool(a == b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def compare_props(
    old: Mapping[str, Any], new: Mapping[str, Any], *, unordered: Iterable[str] = ()
) -> list[FieldChange]:
    """The leaf changes from ``old`` (actual props) to ``new`` (resolved desired props), sorted by path.

    Only keys of ``new`` are compared, at every dict level; a key missing from ``old`` is ``None`` there.
    Lists at a path in ``unordered`` compare as multisets. A value containing :class:`Unknown` is changed.
    """
    out: list[FieldChange] = []
    _compare("", old, new, frozenset(unordered), out)
    return sorted(out, key=lambda f: f.path)


def _compare(path: str, old: Any, new: Any, unordered: frozenset[str], out: list[FieldChange]) -> None:
    if isinstance(new, Mapping) and (isinstance(old, Mapping) or not path):
        old_map: Mapping[str, Any] = old if isinstance(old, Mapping) else {}
        for k, v in new.items():
            _compare(f"{path}.{k}" if path else str(k), old_map.get(k), v, unordered, out)
        return
    if contains_unknown(new):
        out.append(FieldChange(path, old, new))
        return
    if (
        path in unordered
        and isinstance(old, list | tuple)
        and isinstance(new, list | tuple)
        and len(old) == len(new)
    ):
        if sorted(map(_canonical, old)) == sorted(map(_canonical, new)):
            return
    elif values_equal(old, new):
        return
    out.append(FieldChange(path, old, new))


# --- kinds --------------------------------------------------------------------------------------------------


def kind_unordered(kind: Kind) -> frozenset[str]:
    return frozenset(getattr(kind, "unordered", frozenset()))


def kind_update_attrs(kind: Kind) -> frozenset[str]:
    return frozenset(getattr(kind, "update_attrs", frozenset()))


def is_immutable(kind: Kind, path: str) -> bool:
    """Whether ``path`` or one of its parents (``root_volume`` for ``root_volume.size``) is immutable."""
    parts = path.split(".")
    return any(".".join(parts[:i]) in kind.immutable for i in range(1, len(parts) + 1))


def _kind(kinds: Mapping[str, Kind], name: str) -> Kind:
    try:
        return kinds[name]
    except KeyError:
        raise PlanError(f"no implementation for resource kind {name!r}") from None


# --- values as shown to people ------------------------------------------------------------------------------


def is_sensitive(path: str) -> bool:
    """Whether a prop path holds a secret-looking value (``user_data``, ``*secret*``, ``*password*``...)."""
    for part in path.lower().split("."):
        if part in SENSITIVE_NAMES or any(word in part for word in SENSITIVE_WORDS):
            return True
    return False


def redact(value: Any) -> str:
    """``<sensitive, N bytes, sha256 abcd1234>``: enough to see whether it changed, nothing of the content."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = _canonical(value).encode()
    return f"<sensitive, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:8]}>"


def format_value(value: Any, path: str = "") -> str:
    """A one-line rendering of a prop value; values at a sensitive ``path`` are redacted."""
    if path and is_sensitive(path) and value is not None and not isinstance(value, Unknown):
        return redact(value)
    return _format(value)


def _format(value: Any) -> str:
    if isinstance(value, Unknown):
        return str(value)
    if isinstance(value, Ref):
        return f"{value.attr} of {value.kind}/{value.name}"
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and value.isprintable() else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_format(value[k])}" for k in sorted(value, key=str)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


# --- matching actual resources ------------------------------------------------------------------------------


def index_actual(desired: Sequence[Resource], actual: Sequence[Actual]) -> dict[Key, Actual]:
    """Actual resources by key, plus each desired shared resource's key mapped to the actual it matches.

    A shared resource matches the actual of its kind whose id is its ``id`` prop, else the one with its
    name. Raises :class:`PlanError` for a missing shared resource or two actual resources with one key.
    """
    index: dict[Key, Actual] = {}
    duplicates: set[str] = set()
    for a in actual:
        if a.key in index:
            duplicates.add(f"{key_str(a.key)} ({index[a.key].attrs.get('id')}, {a.attrs.get('id')})")
        index[a.key] = a
    if duplicates:
        raise PlanError(
            f"several cloud resources have the same name: {'; '.join(sorted(duplicates))}",
            hint="delete the extra ones or remove their cluster tags",
        )
    by_id = {(a.kind, str(a.attrs.get("id"))): a for a in actual if "id" in a.attrs}
    missing: list[str] = []
    for r in desired:
        if not r.shared:
            continue
        wanted = r.props.get("id")
        match = by_id.get((r.kind, str(wanted))) if wanted is not None else index.get(r.key)
        if match is None:
            missing.append(f"shared {r.kind} {wanted if wanted is not None else r.name} not found")
        else:
            index[r.key] = match
    if missing:
        raise PlanError("; ".join(missing), hint="check the ids in the cluster spec and its region")
    return index


# --- the plan -----------------------------------------------------------------------------------------------


def plan_changes(desired: list[Resource], actual: list[Actual], kinds: Mapping[str, Kind]) -> list[Change]:
    """The changes that make ``actual`` match ``desired``: creates, updates and replaces in dependency
    order, then deletes (referrers first). Pure. Raises :class:`PlanError` (or a graph error) when the
    desired state cannot be reached."""
    for kind_name in sorted({r.kind for r in desired} | {a.kind for a in actual}):
        _kind(kinds, kind_name)
    found = index_actual(desired, actual)
    graph = build_graph(desired, actual)

    status: dict[Key, Action | None] = {}
    changes: list[Change] = []
    refused: list[str] = []

    def lookup_for(owner: Resource) -> Callable[[Ref], Any]:
        def lookup(ref: Ref) -> Any:
            state = status.get(ref.key)
            if state in ("create", "replace"):
                return Unknown(ref)
            if state == "update" and ref.attr in kind_update_attrs(kinds[ref.kind]):
                return Unknown(ref)
            target = found[ref.key]
            if ref.attr not in target.attrs:
                raise PlanError(
                    f"{owner} references {ref}, but the {ref.kind} found in the cloud "
                    f"({target.attrs.get('id')}) has no attribute {ref.attr!r}"
                )
            return target.attrs[ref.attr]

        return lookup

    for key in graph.order():
        resource = graph.resources[key]
        if resource.shared:
            # Never created, changed or deleted; only the tags the model asks for may be added (kops tags
            # shared subnets kubernetes.io/cluster/<name>=shared so the cloud controller can use them).
            status[key] = None
            current = found.get(key)
            wanted_tags = resource.props.get("tags")
            if current is not None and wanted_tags:
                tag_fields = compare_props({"tags": current.props.get("tags") or {}}, {"tags": wanted_tags})
                if tag_fields:
                    changes.append(
                        Change(
                            "update",
                            resource.kind,
                            resource.name,
                            desired=resource,
                            actual=current,
                            fields=tag_fields,
                        )
                    )
            continue
        kind = kinds[resource.kind]
        props = resolve(resource.props, lookup_for(resource))
        current = found.get(key)
        if current is None:
            status[key] = "create"
            changes.append(Change("create", resource.kind, resource.name, desired=resource))
            continue
        fields = compare_props(current.props, props, unordered=kind_unordered(kind))
        if not fields:
            status[key] = None
            continue
        fixed = [f for f in fields if is_immutable(kind, f.path)]
        action: Action = "update"
        if fixed and kind.replaceable:
            action = "replace"
        elif fixed:
            refused.extend(
                f"{resource}: {f.path} cannot change "
                f"({format_value(f.old, f.path)} → {format_value(f.new, f.path)})"
                for f in fixed
            )
        status[key] = action
        changes.append(
            Change(action, resource.kind, resource.name, desired=resource, actual=current, fields=fields)
        )
    if refused:
        raise PlanError(
            "; ".join(refused), hint="revert these changes, or delete the resources so they are recreated"
        )

    # Kept: what a desired resource names or references, and what a desired shared resource matched.
    keep = set(graph.resources) | graph.external_keys()
    kept_actual = {id(found[k]) for k in graph.resources if k in found}
    orphans = [
        a
        for a in actual
        if a.key not in keep and id(a) not in kept_actual and a.attrs.get("shared") is not True
    ]
    references = actual_references(actual)
    by_key = {a.key: a for a in orphans}
    for key in delete_order(by_key, references):
        a = by_key[key]
        changes.append(Change("delete", a.kind, a.name, actual=a))
    return changes
