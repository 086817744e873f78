"""PodDisruptionBudget status (simulation of upstream's disruption controller).

``expectedPods`` is the pod count for an integer ``minAvailable``; otherwise the scale of the pods'
controllers (a ReplicaSet owned by a Deployment counts the Deployment's replicas; StatefulSets and
ReplicaSets their own), falling back to the pod count for pods without a known controller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pykops.sandbox.controllers.common import Obj, PerObject, replicas_of, status_differs
from pykops.sandbox.controllers.kube import DEPLOYMENT, PDB, POD, REPLICA_SET, STATEFUL_SET, Kube
from pykops.sandbox.scheduler import (
    controller_ref,
    format_time,
    is_terminating,
    label_selector_matches,
    labels,
    meta,
    pod_is_ready,
    set_condition,
    spec,
    status,
)


def _percent(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1])
        except ValueError:
            return None
    return None


def expected_count(pdb: Mapping[str, Any], pods: Sequence[Obj], scales: Mapping[tuple[str, str], int]) -> int:
    """How many pods the budget expects; ``scales`` maps (kind, uid) of controllers to their replicas."""
    min_available = spec(pdb).get("minAvailable")
    if min_available is not None and _percent(min_available) is None:
        return len(pods)
    seen: set[tuple[str, str]] = set()
    total = 0
    for pod in pods:
        ref = controller_ref(pod)
        key = (str(ref.get("kind")), str(ref.get("uid"))) if ref else None
        if key is None or key not in scales:
            total += 1
        elif key not in seen:
            seen.add(key)
            total += scales[key]
    return total


def desired_healthy(pdb: Mapping[str, Any], expected: int) -> int:
    s = spec(pdb)
    if s.get("minAvailable") is not None:
        value = s["minAvailable"]
        pct = _percent(value)
        return math.ceil(pct * expected / 100) if pct is not None else int(value)
    if s.get("maxUnavailable") is not None:
        value = s["maxUnavailable"]
        pct = _percent(value)
        unavailable = math.ceil(pct * expected / 100) if pct is not None else int(value)
        return max(0, expected - unavailable)
    return expected  # neither set: no disruption allowed (upstream default minAvailable 1 applies on create)


def plan_pdb_status(
    pdb: Mapping[str, Any], pods: Sequence[Obj], scales: Mapping[tuple[str, str], int], now_str: str
) -> Obj:
    """Pure: the budget's status for the pods in its namespace."""
    ns = meta(pdb).get("namespace", "default")
    selector = spec(pdb).get("selector")
    matching = [
        p
        for p in pods
        if meta(p).get("namespace", "default") == ns
        and not is_terminating(p)
        and label_selector_matches(selector, labels(p))
    ]
    expected = expected_count(pdb, matching, scales)
    desired = desired_healthy(pdb, expected)
    healthy = sum(1 for p in matching if pod_is_ready(p))
    allowed = max(0, healthy - desired) if expected > 0 or desired == 0 else 0
    cond = (
        {"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": ""}
        if allowed > 0
        else {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": ""}
    )
    return {
        "observedGeneration": meta(pdb).get("generation", 1),
        "expectedPods": expected,
        "desiredHealthy": desired,
        "currentHealthy": healthy,
        "disruptionsAllowed": allowed,
        "conditions": set_condition(status(pdb).get("conditions") or [], cond, now_str),
    }


def controller_scales(
    deployments: Sequence[Obj], replicasets: Sequence[Obj], statefulsets: Sequence[Obj]
) -> dict[tuple[str, str], int]:
    scales: dict[tuple[str, str], int] = {}
    deploy_replicas = {meta(d).get("uid", ""): replicas_of(d) for d in deployments}
    for rs in replicasets:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment" and ref.get("uid") in deploy_replicas:
            scales[("ReplicaSet", meta(rs).get("uid", ""))] = deploy_replicas[ref["uid"]]
        else:
            scales[("ReplicaSet", meta(rs).get("uid", ""))] = replicas_of(rs)
    for sts in statefulsets:
        scales[("StatefulSet", meta(sts).get("uid", ""))] = replicas_of(sts)
    return scales


def sync_pdbs(kube: Kube, now: float) -> None:
    pdbs = kube.list(PDB)
    if not pdbs:
        return
    pods = kube.list(POD)
    scales = controller_scales(kube.list(DEPLOYMENT), kube.list(REPLICA_SET), _list_or_empty(kube))
    now_str = format_time(now)
    errors = PerObject("disruption")
    for pdb in pdbs:
        with errors.guard(pdb):
            new = plan_pdb_status(pdb, pods, scales, now_str)
            current = status(pdb)
            comparable = {k: v for k, v in new.items() if k != "conditions"}
            if status_differs(current, comparable) or not current.get("conditions"):
                kube.patch(
                    PDB,
                    meta(pdb).get("namespace", "default"),
                    meta(pdb).get("name", ""),
                    {"status": new},
                    status=True,
                )
    errors.raise_first()


def _list_or_empty(kube: Kube) -> list[Obj]:
    try:
        return kube.list(STATEFUL_SET)
    except Exception:
        return []  # a server without StatefulSets: no StatefulSet scales
