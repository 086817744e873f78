"""Small pure helpers shared by the controllers: template hashes, int-or-percent, owner references, pods."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pykops.sandbox.controllers.kube import Kube, Resource
from pykops.sandbox.scheduler import (
    controller_ref,
    is_terminating,
    label_selector_matches,
    labels,
    meta,
    spec,
)

Obj = dict[str, Any]

_log = logging.getLogger(__name__)

# Upstream's k8s.io/apimachinery/pkg/util/rand alphabet: no vowels, no confusable characters.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    """FNV-1a 32-bit (what upstream hashes pod templates with); hashlib has no FNV."""
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """A ``pod-template-hash`` in upstream's shape: the decimal FNV-32a, safe-encoded (``7c5ddbdf54``).

    Upstream hashes Go's printed struct; we hash canonical JSON, so values differ from a real cluster's but
    are just as stable: same template, same hash.
    """
    payload = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        payload += str(collision_count).encode()
    digits = str(fnv32a(payload))
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in digits)


def int_or_percent(value: Any, total: int, *, round_up: bool, default: Any) -> int:
    """Upstream ``GetScaledValueFromIntOrPercent``: an int, or ``"25%"`` of ``total`` rounded as asked."""
    if value is None:
        value = default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        try:
            pct = float(text[:-1])
        except ValueError:
            return 0
        scaled = pct * total / 100
        return math.ceil(scaled - 1e-9) if round_up else math.floor(scaled + 1e-9)
    try:
        return int(text)
    except ValueError:
        return 0


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    """A controller ownerReference to ``owner`` (an object dict with kind/apiVersion/metadata)."""
    return {
        "apiVersion": owner.get("apiVersion", "v1"),
        "kind": owner.get("kind", ""),
        "name": meta(owner).get("name", ""),
        "uid": meta(owner).get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_from_template(
    owner: Mapping[str, Any],
    template: Mapping[str, Any],
    *,
    generate_name: str,
    extra_labels: Mapping[str, str] | None = None,
) -> Obj:
    """A new pod for ``owner`` from its pod template (labels, annotations, spec; ownerReferences)."""
    tmeta = template.get("metadata") or {}
    lbls = dict(tmeta.get("labels") or {})
    lbls.update(extra_labels or {})
    metadata: Obj = {
        "generateName": generate_name,
        "namespace": meta(owner).get("namespace", "default"),
        "labels": lbls,
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        metadata["annotations"] = dict(tmeta["annotations"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == owner_uid
        for ref in meta(obj).get("ownerReferences") or []
    )


def generation_observed(obj: Mapping[str, Any]) -> bool:
    """The object's status reflects its current spec (observedGeneration >= generation, when both exist)."""
    gen = meta(obj).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return gen is None or observed is None or int(observed) >= int(gen)


def replicas_of(obj: Mapping[str, Any], default: int = 1) -> int:
    value = spec(obj).get("replicas")
    return default if value is None else int(value)


def status_differs(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether writing ``desired`` would change any of its fields in ``current`` (ignores other fields)."""
    return any(current.get(k) != v for k, v in desired.items())


def orphans_to_adopt(owner: Mapping[str, Any], candidates: Sequence[Obj]) -> list[Obj]:
    """Objects in the owner's namespace with no controller, not being deleted, whose labels its selector
    matches: what upstream's ``ClaimReplicaSets``/``ClaimPods`` adopt."""
    ns = meta(owner).get("namespace", "default")
    selector = spec(owner).get("selector")
    if not selector:
        return []
    return [
        c
        for c in candidates
        if meta(c).get("namespace", "default") == ns
        and controller_ref(c) is None
        and not is_terminating(c)
        and label_selector_matches(selector, labels(c))
    ]


def adopt(kube: Kube, res: Resource, obj: Obj, owner: Mapping[str, Any]) -> None:
    """Make ``owner`` the controller of ``obj`` (in the API and in the dict passed in)."""
    m = obj.setdefault("metadata", {})
    refs = [*(m.get("ownerReferences") or []), owner_reference(owner)]
    kube.patch(res, m.get("namespace", "default"), m.get("name", ""), {"metadata": {"ownerReferences": refs}})
    m["ownerReferences"] = refs


class PerObject:
    """Isolates the objects of one controller pass: a failing object is logged and skipped, the others
    still sync, and ``raise_first`` then reports the first failure to the pass."""

    def __init__(self, controller: str) -> None:
        self.controller = controller
        self.first: Exception | None = None

    @contextlib.contextmanager
    def guard(self, obj: Mapping[str, Any]) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            m = meta(obj)
            _log.debug("%s: %s/%s failed: %s", self.controller, m.get("namespace", ""), m.get("name"), err)
            if self.first is None:
                self.first = err

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first
