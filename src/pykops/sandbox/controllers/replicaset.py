"""ReplicaSet controller: keep ``spec.replicas`` active pods, report status (simulation of upstream's)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import (
    Obj,
    PerObject,
    adopt,
    generation_observed,
    orphans_to_adopt,
    owned_by,
    pod_from_template,
    replicas_of,
    status_differs,
)
from pykops.sandbox.controllers.kube import POD, REPLICA_SET, Kube
from pykops.sandbox.scheduler import (
    label_selector_matches,
    labels,
    meta,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    spec,
    status,
)

log = logging.getLogger(__name__)

BURST = 100  # pods created or deleted per ReplicaSet per pass (upstream: slow-start batches up to 500)

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: Mapping[str, Any]) -> tuple[int, int, int, int, str]:
    """Sort key, lowest deleted first, after upstream ``ActivePods``: unassigned before assigned, Pending
    before Unknown before Running, not ready before ready, more restarts first, newer before older."""
    restarts = sum(int(c.get("restartCount") or 0) for c in status(pod).get("containerStatuses") or [])
    created = meta(pod).get("creationTimestamp") or ""
    return (
        1 if spec(pod).get("nodeName") else 0,
        _PHASE_RANK.get(status(pod).get("phase") or "Pending", 0),
        1 if pod_is_ready(pod) else 0,
        -restarts,
        # newer first: invert the timestamp's characters so a plain ascending sort puts newest first
        "".join(chr(0x10FFFF - ord(c)) for c in created),
    )


@dataclass
class ReplicaSetPlan:
    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def owned_pods(rs: Mapping[str, Any], pods: Sequence[Obj]) -> list[Obj]:
    uid = meta(rs).get("uid", "")
    ns = meta(rs).get("namespace", "default")
    return [p for p in pods if meta(p).get("namespace", "default") == ns and owned_by(p, uid)]


def plan_replicaset(rs: Mapping[str, Any], pods: Sequence[Obj], now: float) -> ReplicaSetPlan:
    """Pure: how many pods to create, which to delete, and the status once that is done."""
    mine = owned_pods(rs, pods)
    active = [p for p in mine if pod_is_active(p)]
    want = replicas_of(rs)
    plan = ReplicaSetPlan()
    if len(active) < want:
        plan.create = min(want - len(active), BURST)
    elif len(active) > want:
        plan.delete = sorted(active, key=deletion_rank)[: min(len(active) - want, BURST)]
    min_ready = int(spec(rs).get("minReadySeconds") or 0)
    remaining = [p for p in active if p not in plan.delete]
    template_labels = ((spec(rs).get("template") or {}).get("metadata") or {}).get("labels") or {}
    plan.status = {
        "replicas": len(remaining),
        "fullyLabeledReplicas": sum(
            1 for p in remaining if all(labels(p).get(k) == v for k, v in template_labels.items())
        ),
        "readyReplicas": sum(1 for p in remaining if pod_is_ready(p)),
        "availableReplicas": sum(1 for p in remaining if pod_is_available(p, min_ready, now)),
        "observedGeneration": meta(rs).get("generation", 1),
    }
    return plan


def sync_replicasets(kube: Kube, now: float, pods: list[Obj] | None = None) -> None:
    """One pass over every ReplicaSet."""
    replicasets = kube.list(REPLICA_SET)
    if pods is None:
        pods = kube.list(POD)
    errors = PerObject("replicaset")
    for rs in replicasets:
        with errors.guard(rs):
            m = meta(rs)
            ns, name = m.get("namespace", "default"), m.get("name", "")
            if m.get("deletionTimestamp"):
                continue
            if not label_selector_matches(spec(rs).get("selector"), labels(spec(rs).get("template") or {})):
                log.debug("ReplicaSet %s/%s: selector does not match its template; skipped", ns, name)
                continue
            for orphan in orphans_to_adopt(rs, pods):
                adopt(kube, POD, orphan, rs)
            plan = plan_replicaset(rs, pods, now)
            template = spec(rs).get("template") or {}
            for _ in range(plan.create):
                created = kube.create(POD, ns, pod_from_template(rs, template, generate_name=f"{name}-"))
                pods.append(created)
            for pod in plan.delete:
                kube.delete(POD, ns, meta(pod).get("name", ""), uid=meta(pod).get("uid"))
            if plan.create:  # the new pods are Pending and not ready: count them as the next pass will
                plan.status["replicas"] += plan.create
                plan.status["fullyLabeledReplicas"] += plan.create
            if status_differs(status(rs), plan.status) or not generation_observed(rs):
                kube.patch(REPLICA_SET, ns, name, {"status": plan.status}, status=True)
    errors.raise_first()
