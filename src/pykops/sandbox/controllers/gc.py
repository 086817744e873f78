"""Garbage collection (simulation of upstream's garbage collector and pod GC, background propagation only).

A Pod or ReplicaSet whose every owner is gone (no object of that kind and name with that uid) is deleted;
so deleting a Deployment removes its ReplicaSets, whose pods go on the next pass. Owners of a kind this
collector cannot list are assumed present (never delete on doubt). Pods bound to a Node that no longer
exists are deleted too (upstream's PodGC orphan rule). Owners deleted with ``propagationPolicy`` Foreground or
Orphan carry a finalizer until this collector has deleted (or released) their dependents.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import Obj
from pykops.sandbox.controllers.kube import BY_KIND, POD, REPLICA_SET, Kube
from pykops.sandbox.scheduler import is_terminating, meta, parse_time, spec

log = logging.getLogger(__name__)

POD_GC_MIN_AGE = 10.0  # seconds; upstream's PodGC waits 40 s before deleting pods of a missing node
OWNER_KINDS = ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "Node")


def owner_key(kind: str, namespace: str, name: str) -> tuple[str, str, str]:
    return (kind, "" if kind == "Node" else namespace, name)


def index_owners(objects: Iterable[Obj]) -> dict[tuple[str, str, str], str]:
    """(kind, namespace, name) → uid of existing objects (Nodes are cluster-scoped)."""
    return {
        owner_key(str(o.get("kind")), meta(o).get("namespace", "default"), meta(o).get("name", "")): meta(
            o
        ).get("uid", "")
        for o in objects
    }


def orphaned(
    obj: Mapping[str, Any], owners: Mapping[tuple[str, str, str], str], known_kinds: set[str]
) -> bool:
    """Every ownerReference points at an absent object (of a kind we could list): collect it."""
    refs = meta(obj).get("ownerReferences") or []
    if not refs:
        return False
    ns = meta(obj).get("namespace", "default")
    for ref in refs:
        kind = ref.get("kind", "")
        if kind not in known_kinds:
            return False
        if owners.get(owner_key(kind, ns, ref.get("name", ""))) == ref.get("uid"):
            return False
    return True


def on_missing_node(
    pod: Mapping[str, Any], node_names: set[str], now: float, min_age: float = POD_GC_MIN_AGE
) -> bool:
    """Bound to a node that does not exist, and old enough that the node is not just registering."""
    node = spec(pod).get("nodeName")
    if not node or node in node_names:
        return False
    created = parse_time(meta(pod).get("creationTimestamp"))
    return created is None or now - created >= min_age


def collect(
    dependents: Sequence[Obj], owners: Mapping[tuple[str, str, str], str], known_kinds: set[str]
) -> list[Obj]:
    return [d for d in dependents if orphaned(d, owners, known_kinds)]


@dataclass
class FinalizerPlan:
    """What to do for one owner being deleted with Foreground or Orphan propagation."""

    owner: Obj
    delete: list[Obj] = field(default_factory=list)  # dependents to delete (foreground)
    orphan: list[Obj] = field(default_factory=list)  # dependents to strip the owner reference from
    remove_finalizer: str | None = None


def plan_finalizers(owners: Sequence[Obj], dependents: Sequence[Obj]) -> list[FinalizerPlan]:
    """Pure: owners marked for deletion with ``orphan``/``foregroundDeletion`` finalizers (the API server adds
    them for ``propagationPolicy`` Orphan/Foreground) and what their dependents need first."""
    plans: list[FinalizerPlan] = []
    for owner in owners:
        m = meta(owner)
        finalizers = m.get("finalizers") or []
        if not m.get("deletionTimestamp") or not ({"orphan", "foregroundDeletion"} & set(finalizers)):
            continue
        uid = m.get("uid")
        deps = [
            d
            for d in dependents
            if d is not owner and any(r.get("uid") == uid for r in meta(d).get("ownerReferences") or [])
        ]
        plan = FinalizerPlan(owner)
        if "orphan" in finalizers:
            plan.orphan = deps
            plan.remove_finalizer = "orphan"
        else:
            plan.delete = [d for d in deps if not is_terminating(d)]
            if not deps:
                plan.remove_finalizer = "foregroundDeletion"
        plans.append(plan)
    return plans


def _apply_finalizer_plans(kube: Kube, plans: Sequence[FinalizerPlan]) -> None:
    for plan in plans:
        owner_meta = meta(plan.owner)
        uid = owner_meta.get("uid")
        for dep in plan.orphan:
            m = meta(dep)
            refs = [r for r in m.get("ownerReferences") or [] if r.get("uid") != uid]
            kube.patch(BY_KIND[str(dep.get("kind"))], m.get("namespace", "default"), m.get("name", ""),
                       {"metadata": {"ownerReferences": refs or None}})  # fmt: skip
        for dep in plan.delete:
            m = meta(dep)
            kube.delete(BY_KIND[str(dep.get("kind"))], m.get("namespace", "default"), m.get("name", ""),
                        uid=m.get("uid"), propagation_policy="Foreground")  # fmt: skip
        if plan.remove_finalizer:
            remaining = [f for f in owner_meta.get("finalizers") or [] if f != plan.remove_finalizer]
            kube.patch(BY_KIND[str(plan.owner.get("kind"))], owner_meta.get("namespace", "default"),
                       owner_meta.get("name", ""), {"metadata": {"finalizers": remaining}})  # fmt: skip


def sync_gc(kube: Kube, now: float, *, orphan_pod_age: float = POD_GC_MIN_AGE) -> None:
    # dependents first, owners second: an owner created after its dependent was listed is then seen
    pods = kube.list(POD)
    replicasets = kube.list(REPLICA_SET)
    owners: list[Obj] = []
    known: set[str] = set()
    for kind in OWNER_KINDS:
        try:
            owners.extend(kube.list(BY_KIND[kind]))
        except Exception as err:  # a kind the server lacks: treat its owners as present
            log.debug("garbage collector cannot list %s: %s", kind, err)
            continue
        known.add(kind)
    index = index_owners(owners)
    # pods too: a pod deleted in the foreground carries the finalizer though it owns nothing
    _apply_finalizer_plans(kube, plan_finalizers([*owners, *pods], [*replicasets, *pods]))
    node_names = {meta(o).get("name", "") for o in owners if o.get("kind") == "Node"}
    for rs in collect(replicasets, index, known):
        m = meta(rs)
        log.info("garbage-collecting ReplicaSet %s/%s", m.get("namespace"), m.get("name"))
        kube.delete(REPLICA_SET, m.get("namespace", "default"), m.get("name", ""), uid=m.get("uid"))
    for pod in pods:
        m = meta(pod)
        if orphaned(pod, index, known):
            log.info("garbage-collecting Pod %s/%s", m.get("namespace"), m.get("name"))
            kube.delete(POD, m.get("namespace", "default"), m.get("name", ""), uid=m.get("uid"))
        elif "Node" in known and on_missing_node(pod, node_names, now, orphan_pod_age):
            log.info(
                "deleting Pod %s/%s: its node %s is gone",
                m.get("namespace"),
                m.get("name"),
                spec(pod)["nodeName"],
            )
            kube.delete(
                POD,
                m.get("namespace", "default"),
                m.get("name", ""),
                uid=m.get("uid"),
                grace_period_seconds=0,
            )
