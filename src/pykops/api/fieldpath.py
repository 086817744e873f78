"""``--set path=value`` and ``--unset path`` on kops objects (pure).

Paths use the YAML field names: ``spec.minSize``, ``spec.kubernetesVersion``, ``spec.subnets[0].cidr``,
and ``spec.nodeLabels[kops.k8s.io/spot]`` for map keys that contain dots. A leading ``cluster.`` or
``instancegroup.`` (kops' spelling) is accepted and ignored. Values are typed by the field they land in:
``3`` becomes a number for ``minSize``, ``a,b`` a list for ``subnets``, ``true`` a boolean.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.serialize import parse_object, to_dict
from pykops.errors import SpecError, UsageError

_TOKEN = re.compile(r"\.?([A-Za-z0-9_-]+)|\[([^\]]+)\]")


def parse_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None or match.end() == pos:
            raise UsageError(
                f"invalid field path {path!r}: expected something like spec.minSize or spec.subnets[0]"
            )
        name, bracket = match.groups()
        if bracket is not None:
            tokens.append(int(bracket) if bracket.isdigit() else bracket)
        else:
            tokens.append(name)
        pos = match.end()
    if tokens and tokens[0] in ("cluster", "instancegroup", "ig"):
        tokens = tokens[1:]
    if not tokens or tokens[0] not in ("spec", "metadata"):
        raise UsageError(f"invalid field path {path!r}: it must start with spec. (for example spec.minSize)")
    if tokens[:2] == ["metadata", "name"]:
        raise UsageError("metadata.name cannot be changed; create a new object instead")
    return tokens


def _walk(doc: dict[str, Any], tokens: list[str | int], create: bool, path: str) -> tuple[Any, str | int]:
    node: Any = doc
    for i, token in enumerate(tokens[:-1]):
        nxt = tokens[i + 1]
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                raise UsageError(f"{path}: index {token} is out of range")
            node = node[token]
            continue
        if not isinstance(node, dict):
            raise UsageError(f"{path}: {token!r} is not a field of an object")
        if token not in node or node[token] is None:
            if not create:
                raise UsageError(f"{path}: not set")
            node[token] = [] if isinstance(nxt, int) else {}
        node = node[token]
    return node, tokens[-1]


def _candidates(raw: str) -> list[Any]:
    out: list[Any] = [raw]
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        parsed = raw
    if parsed != raw:
        out.append(parsed)
    out.append([p.strip() for p in raw.split(",") if p.strip()] if raw else [])
    return out


def _strip_location(message: str, path: str) -> str:
    """Drop the "<source>: <Kind> "name": <path>: " prefix of a loader message about ``path``."""
    _, sep, rest = message.partition(f": {path}: ")
    return rest if sep else message.split(": ", 2)[-1]


def apply_changes(
    obj: Cluster | InstanceGroup, sets: list[str], unsets: list[str]
) -> Cluster | InstanceGroup:
    """A new object with the changes applied and re-validated; the input is not modified."""
    doc = to_dict(obj)
    kind = obj.kind
    for expr in sets:
        path, sep, raw = expr.partition("=")
        if not sep:
            raise UsageError(f"--set {expr!r}: expected path=value, e.g. --set spec.minSize=3")
        tokens = parse_path(path)
        errors: list[SpecError] = []
        for value in _candidates(raw):
            trial = copy.deepcopy(doc)
            parent, key = _walk(trial, tokens, True, path)
            if isinstance(key, int):
                if not isinstance(parent, list) or key > len(parent):
                    raise UsageError(f"{path}: index {key} is out of range")
                if key == len(parent):
                    parent.append(value)
                else:
                    parent[key] = value
            else:
                parent[key] = value
            try:
                parse_object(trial, f"--set {path}")
            except SpecError as exc:
                errors.append(exc)
                continue
            doc = trial
            break
        else:
            # The typed reading (YAML) says more than the plain-string one ("one plugin only" rather
            # than "not a dictionary"), unless the value was just a string.
            chosen = errors[1] if len(errors) > 2 else errors[0]
            raise SpecError(f"--set {expr}: {_strip_location(str(chosen), path)}")
    for path in unsets:
        tokens = parse_path(path)
        parent, key = _walk(doc, tokens, False, path)
        try:
            del parent[key]
        except (KeyError, IndexError, TypeError):
            raise UsageError(f"--unset {path}: not set") from None
    return parse_object(doc, kind)
