"""Reading and writing kops YAML (single or multi-document) and JSON.

Errors are one line each and name the document and the field path, e.g.
``cluster.yaml: InstanceGroup "nodes": spec.machineTyp: unknown field``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from pykops.api.models import API_VERSION, Cluster, InstanceGroup, KopsModel, dump_obj
from pykops.errors import SpecError

KINDS: dict[str, type[Cluster] | type[InstanceGroup]] = {"Cluster": Cluster, "InstanceGroup": InstanceGroup}


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with kops' look: lists indented under their key, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def format_loc(loc: Sequence[int | str]) -> str:
    """``("spec", "subnets", 0, "cidr")`` → ``spec.subnets[0].cidr``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _describe_error(err: dict[str, Any]) -> str:
    # pydantic reports union members and function validators with extra location parts; drop them.
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    path = format_loc(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown field"
    elif kind == "literal_error":
        msg = f"invalid value {err.get('input')!r}: {err['msg'].replace('Input should be', 'expected')}"
    elif kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
    elif kind == "missing":
        msg = "required field is missing"
    elif kind in _EXPECTED:
        msg = f"invalid value {err.get('input')!r}: {_EXPECTED[kind].format(**(err.get('ctx') or {}))}"
    else:
        msg = f"invalid value {err.get('input')!r}: {err['msg']}"
    return f"{path}: {msg}" if path else msg


# pydantic's wording ("Input should be a valid integer, unable to parse string as an integer") → ours.
_EXPECTED = {
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
}


def parse_object(data: Any, source: str = "<input>") -> Cluster | InstanceGroup:
    """Turn one decoded document into a Cluster or InstanceGroup, or raise a one-line SpecError."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a kops object (a mapping with apiVersion and kind)")
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        raise SpecError(
            f"{source}: unsupported apiVersion {api_version!r}; pykops reads {API_VERSION} "
            "(convert other versions with kops first)"
        )
    if kind not in KINDS:
        raise SpecError(f"{source}: unsupported kind {kind!r}; expected Cluster or InstanceGroup")
    name = (data.get("metadata") or {}).get("name") if isinstance(data.get("metadata"), dict) else None
    label = f'{kind} "{name}"' if name else str(kind)
    try:
        return KINDS[kind].model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe_error(dict(errors[0]))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(f"{source}: {label}: {first}{more}") from None


def load_documents(text: str, source: str = "<input>") -> list[Cluster | InstanceGroup]:
    """Load every object of a YAML (or JSON) stream; empty documents are skipped."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise SpecError(f"{source}:{where}: invalid YAML: {problem}") from None
    objects: list[Cluster | InstanceGroup] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        where = source if len(docs) == 1 else f"{source} (document {index + 1})"
        # A kubectl-style List wrapper is accepted, as `kops get -o yaml` can produce one.
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            objects.extend(parse_object(item, where) for item in doc["items"])
        else:
            objects.append(parse_object(doc, where))
    if not objects:
        raise SpecError(f"{source}: no Cluster or InstanceGroup found")
    return objects


def to_dict(obj: KopsModel) -> dict[str, Any]:
    """Top-level objects always carry apiVersion, kind, metadata and spec, in kops' order."""
    body = dump_obj(obj)
    if isinstance(obj, Cluster | InstanceGroup):
        ordered: dict[str, Any] = {
            "apiVersion": obj.api_version,
            "kind": obj.kind,
            "metadata": body.get("metadata", {}),
            "spec": body.get("spec", {}),
        }
        return ordered
    return body


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def dump_yaml(objects: Iterable[KopsModel]) -> str:
    """YAML as kops writes it: top-level order apiVersion/kind/metadata/spec, nested keys sorted."""
    parts = []
    for obj in objects:
        body = to_dict(obj)
        doc = {k: _sorted(v) if k in ("metadata", "spec") else v for k, v in body.items()}
        parts.append(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000))
    return "\n---\n\n".join(parts)


def dump_json(objects: Sequence[KopsModel]) -> str:
    bodies = [to_dict(o) for o in objects]
    payload: Any = bodies[0] if len(bodies) == 1 else {"apiVersion": "v1", "kind": "List", "items": bodies}
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"


def load_one(text: str, kind: type[Cluster] | type[InstanceGroup], source: str) -> Any:
    objects = load_documents(text, source)
    if len(objects) != 1 or not isinstance(objects[0], kind):
        raise SpecError(f"{source}: expected exactly one {kind.__name__}")
    return objects[0]
