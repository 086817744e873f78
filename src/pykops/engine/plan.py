"""A plan shown to people, kops style: what will be created, modified, replaced and deleted.

The text is deterministic (sections in a fixed order, resources by kind order then name, props by path)::

    Will create resources:
      VPC/example.com
        cidr_block  10.0.0.0/16
        tags.Name   example.com

    Will modify resources:
      LaunchTemplate/nodes.example.com
        instance_type  t3.medium -> t3.large

Creates list their desired props (nested dicts flattened with dots, Refs as ``id of VPC/x``); modifications
and replacements list each changed path as ``old -> new`` (paths that force a replacement are marked);
deletes list the id. Secret-looking values (``user_data``, or a name containing ``secret``, ``password``
or ``private``) appear as ``<sensitive, N bytes, sha256 abcd1234>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.engine.diff import format_value, is_immutable, is_sensitive
from pykops.engine.graph import sort_key
from pykops.engine.types import Action, Change, Kind

__all__ = ["SECTIONS", "Plan", "render", "render_plan", "summary"]

SECTIONS: tuple[tuple[Action, str], ...] = (
    ("create", "Will create resources:"),
    ("update", "Will modify resources:"),
    ("replace", "Will replace resources:"),
    ("delete", "Will delete resources:"),
)
NO_CHANGES = "No changes need to be applied."
FORCES_REPLACEMENT = "(forces replacement)"


def counts(changes: Sequence[Change]) -> dict[Action, int]:
    out: dict[Action, int] = {action: 0 for action, _ in SECTIONS}
    for change in changes:
        out[change.action] += 1
    return out


def summary(changes: Sequence[Change]) -> str:
    """``3 to create, 1 to modify, 0 to replace, 2 to delete``."""
    n = counts(changes)
    words: tuple[tuple[Action, str], ...] = (
        ("create", "create"),
        ("update", "modify"),
        ("replace", "replace"),
        ("delete", "delete"),
    )
    return ", ".join(f"{n[action]} to {word}" for action, word in words)


def flatten(props: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``(path, value)`` leaves of ``props`` sorted by path; nested dicts are walked (``a.b``), except
    below a sensitive key (kept whole, to be redacted) and when empty (kept as ``{}``)."""
    out: list[tuple[str, Any]] = []
    for key in sorted(props, key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        value = props[key]
        if isinstance(value, Mapping) and value and not is_sensitive(path):
            out.extend(flatten(value, path))
        else:
            out.append((path, value))
    return out


def _rows(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"    {k.ljust(width)}  {v}".rstrip() for k, v in rows]


def _block(change: Change, kinds: Mapping[str, Kind] | None) -> list[str]:
    lines = [f"  {change.kind}/{change.name}"]
    if change.action == "create":
        props = change.desired.props if change.desired is not None else {}
        lines += _rows([(path, format_value(value, path)) for path, value in flatten(props)])
    elif change.action == "delete":
        if change.actual is not None and "id" in change.actual.attrs:
            lines += _rows([("id", format_value(change.actual.attrs["id"]))])
    else:
        kind = kinds.get(change.kind) if kinds is not None else None
        rows = []
        for f in sorted(change.fields, key=lambda f: f.path):
            text = f"{format_value(f.old, f.path)} -> {format_value(f.new, f.path)}"
            if change.action == "replace" and kind is not None and is_immutable(kind, f.path):
                text += f"  {FORCES_REPLACEMENT}"
            rows.append((f.path, text))
        lines += _rows(rows)
    return lines


def render(changes: Sequence[Change], kinds: Mapping[str, Kind] | None = None) -> str:
    """The plan text (ends with a newline). With ``kinds``, fields forcing a replacement are marked."""
    sections: list[str] = []
    for action, title in SECTIONS:
        chosen = sorted((c for c in changes if c.action == action), key=lambda c: sort_key(c.key))
        if chosen:
            blocks = ["\n".join(_block(c, kinds)) for c in chosen]
            sections.append(title + "\n" + "\n\n".join(blocks))
    if not sections:
        return NO_CHANGES + "\n"
    return "\n\n".join(sections) + "\n"


render_plan = render  # the name the CLI uses


@dataclass
class Plan:
    """The changes of one ``update cluster`` run, with their rendering."""

    changes: list[Change] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def counts(self) -> dict[Action, int]:
        """Number of changes per action (every action present, zero included)."""
        return counts(self.changes)

    def summary(self) -> str:
        return summary(self.changes)

    def render(self, kinds: Mapping[str, Kind] | None = None) -> str:
        return render(self.changes, kinds)
