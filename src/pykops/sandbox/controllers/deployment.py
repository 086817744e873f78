"""Deployment controller: ReplicaSets per pod template, RollingUpdate and Recreate (simulation of upstream's).

The rollout arithmetic follows upstream's ``rolling.go``/``recreate.go``: the new ReplicaSet grows
while the total stays within ``replicas + maxSurge``; old ones shrink (unhealthy pods first) while the
available pods stay at least ``replicas - maxUnavailable``. Counts come from the pods themselves (not
the ReplicaSets' possibly stale status), so one pass never over-shrinks.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from pykops.sandbox.controllers.common import (
    Obj,
    PerObject,
    adopt,
    int_or_percent,
    orphans_to_adopt,
    owned_by,
    owner_reference,
    replicas_of,
    status_differs,
    template_hash,
)
from pykops.sandbox.controllers.kube import DEPLOYMENT, POD, REPLICA_SET, Kube, is_conflict
from pykops.sandbox.scheduler import (
    format_time,
    meta,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    set_condition,
    spec,
    status,
)

log = logging.getLogger(__name__)

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


@dataclass
class RsView:
    """What the rollout math needs of one ReplicaSet."""

    name: str
    replicas: int  # spec.replicas
    active: int = 0  # active pods
    ready: int = 0
    available: int = 0
    created: str = ""
    revision: int = 0


@dataclass
class RolloutPlan:
    new_replicas: int
    old_replicas: dict[str, int] = field(default_factory=dict)  # only the changed ones


def surge_and_unavailable(strategy: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """Upstream ``ResolveFenceposts``: surge rounds up, unavailable down; both zero means unavailable 1."""
    ru = strategy.get("rollingUpdate") or {}
    surge = int_or_percent(ru.get("maxSurge"), desired, round_up=True, default="25%")
    unavailable = int_or_percent(ru.get("maxUnavailable"), desired, round_up=False, default="25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def plan_rolling(
    desired: int, strategy: Mapping[str, Any], new: RsView | None, olds: Sequence[RsView]
) -> RolloutPlan:
    """Pure: the next step of a RollingUpdate (``new`` None: the new ReplicaSet is yet to be created)."""
    surge, max_unavailable = surge_and_unavailable(strategy, desired)
    new_now = new.replicas if new else 0
    all_replicas = new_now + sum(o.replicas for o in olds)

    # reconcileNewReplicaSet
    if new_now > desired:
        new_target = desired
    elif new_now == desired:
        new_target = new_now
    else:
        max_total = desired + surge
        room = max(0, max_total - all_replicas)
        new_target = new_now + min(room, desired - new_now)
    plan = RolloutPlan(new_target)
    all_replicas += new_target - new_now

    # reconcileOldReplicaSets
    old_total = sum(o.replicas for o in olds)
    if old_total == 0:
        return plan
    min_available = desired - max_unavailable
    new_unavailable = new_target - (new.available if new else 0)
    max_scaled_down = all_replicas - min_available - max(0, new_unavailable)
    if max_scaled_down <= 0:
        return plan
    targets = {o.name: o.replicas for o in olds}
    ordered = sorted(olds, key=lambda o: (o.created, o.name))
    # cleanupUnhealthyReplicas: drop old pods that are not available first
    for o in ordered:
        if max_scaled_down <= 0:
            break
        unhealthy = max(0, targets[o.name] - o.available)
        cut = min(unhealthy, max_scaled_down)
        if cut:
            targets[o.name] -= cut
            max_scaled_down -= cut
    # scaleDownOldReplicaSetsForRollingUpdate: then available ones, keeping minAvailable
    available = (new.available if new else 0) + sum(min(o.available, targets[o.name]) for o in olds)
    budget = min(available - min_available, max_scaled_down)
    for o in ordered:
        if budget <= 0:
            break
        cut = min(targets[o.name], budget)
        targets[o.name] -= cut
        budget -= cut
    plan.old_replicas = {
        n: r for n, r in targets.items() if r != next(o.replicas for o in olds if o.name == n)
    }
    return plan


def plan_recreate(desired: int, new: RsView | None, olds: Sequence[RsView]) -> RolloutPlan:
    """Pure: Recreate scales every old ReplicaSet to 0, waits for their pods to go, then scales up the new."""
    if any(o.replicas > 0 for o in olds):
        return RolloutPlan(new.replicas if new else 0, {o.name: 0 for o in olds if o.replicas > 0})
    if any(o.active > 0 for o in olds):
        return RolloutPlan(new.replicas if new else 0)
    return RolloutPlan(desired)


def deployment_status(
    deploy: Mapping[str, Any], new: RsView | None, views: Sequence[RsView], now_str: str, created_new: bool
) -> Obj:
    """Pure: the status a Deployment reports for these ReplicaSets."""
    desired = replicas_of(deploy)
    strategy = spec(deploy).get("strategy") or {}
    _, max_unavailable = (
        surge_and_unavailable(strategy, desired)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate"
        else (0, 0)
    )
    total = sum(v.active for v in views)
    available = sum(v.available for v in views)
    updated = new.active if new else 0
    conds = list(status(deploy).get("conditions") or [])
    if available >= desired - max_unavailable:
        avail_cond = {
            "type": "Available",
            "status": "True",
            "reason": "MinimumReplicasAvailable",
            "message": "Deployment has minimum availability.",
        }
    else:
        avail_cond = {
            "type": "Available",
            "status": "False",
            "reason": "MinimumReplicasUnavailable",
            "message": "Deployment does not have minimum availability.",
        }
    complete = new is not None and updated == desired and total == desired and available >= desired
    name = new.name if new else ""
    if complete:
        prog = {
            "reason": "NewReplicaSetAvailable",
            "message": f'ReplicaSet "{name}" has successfully progressed.',
        }
    elif created_new:
        prog = {"reason": "NewReplicaSetCreated", "message": f'Created new replica set "{name}"'}
    else:
        prog = {"reason": "ReplicaSetUpdated", "message": f'ReplicaSet "{name}" is progressing.'}
    prog_cond = {"type": "Progressing", "status": "True", **prog}
    old_prog: Obj = next((c for c in conds if c.get("type") == "Progressing"), {})
    conds = set_condition(conds, avail_cond, now_str)
    if old_prog.get("reason") != prog["reason"] or old_prog.get("message") != prog["message"]:
        conds = set_condition(conds, {**prog_cond, "lastUpdateTime": now_str}, now_str)
    for c in conds:
        c.setdefault("lastUpdateTime", now_str)
    return {
        "observedGeneration": meta(deploy).get("generation", 1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": sum(v.ready for v in views),
        "availableReplicas": available,
        "unavailableReplicas": max(0, desired - available),
        "conditions": conds,
    }


def new_rs_template(deploy: Mapping[str, Any]) -> tuple[str, Obj]:
    """The hash of the Deployment's pod template and the template its ReplicaSet gets (hash label added)."""
    template = copy.deepcopy(spec(deploy).get("template") or {})
    h = template_hash(template, int((deploy.get("status") or {}).get("collisionCount") or 0))
    template.setdefault("metadata", {})
    template["metadata"]["labels"] = {**(template["metadata"].get("labels") or {}), HASH_LABEL: h}
    return h, template


def _view(rs: Obj, pods: Sequence[Obj], now: float) -> RsView:
    uid = meta(rs).get("uid", "")
    ns = meta(rs).get("namespace", "default")
    active = [
        p for p in pods if meta(p).get("namespace", "default") == ns and owned_by(p, uid) and pod_is_active(p)
    ]
    min_ready = int(spec(rs).get("minReadySeconds") or 0)
    try:
        revision = int((meta(rs).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        revision = 0
    return RsView(
        name=meta(rs).get("name", ""),
        replicas=replicas_of(rs),
        active=len(active),
        ready=sum(1 for p in active if pod_is_ready(p)),
        available=sum(1 for p in active if pod_is_available(p, min_ready, now)),
        created=meta(rs).get("creationTimestamp") or "",
        revision=revision,
    )


def sync_deployment(
    kube: Kube, deploy: Obj, replicasets: Sequence[Obj], pods: Sequence[Obj], now: float
) -> None:
    m = meta(deploy)
    ns, name, uid = m.get("namespace", "default"), m.get("name", ""), m.get("uid", "")
    desired = replicas_of(deploy)
    strategy = spec(deploy).get("strategy") or {}
    h, template = new_rs_template(deploy)
    for orphan in orphans_to_adopt(deploy, replicasets):
        adopt(kube, REPLICA_SET, orphan, deploy)
    mine = [rs for rs in replicasets if meta(rs).get("namespace", "default") == ns and owned_by(rs, uid)]
    new_rs = next((rs for rs in mine if (labels_of(rs)).get(HASH_LABEL) == h), None)
    olds = [rs for rs in mine if rs is not new_rs]
    old_views = [_view(rs, pods, now) for rs in olds]
    new_view = _view(new_rs, pods, now) if new_rs is not None else None
    max_revision = max([v.revision for v in old_views] + [0])

    if spec(deploy).get("paused"):
        plan = RolloutPlan(new_view.replicas if new_view else 0)
    elif strategy.get("type") == "Recreate":
        plan = plan_recreate(desired, new_view, [v for v in old_views])
    else:
        plan = plan_rolling(desired, strategy, new_view, old_views)

    created_new = False
    surge, _ = surge_and_unavailable(strategy, desired)
    annotations = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + surge)}
    if new_rs is None and not spec(deploy).get("paused"):
        revision = max_revision + 1
        selector = copy.deepcopy(spec(deploy).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{h}",
                "namespace": ns,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {**annotations, REVISION: str(revision)},
                "ownerReferences": [owner_reference(deploy)],
            },
            "spec": {
                "replicas": plan.new_replicas,
                "minReadySeconds": int(spec(deploy).get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            new_rs = kube.create(REPLICA_SET, ns, body)
        except ApiException as err:
            if not is_conflict(err):
                raise
            # a ReplicaSet of that name that is not this template's (upstream: a hash collision): bump
            # collisionCount so the next pass hashes to another name
            count = int(status(deploy).get("collisionCount") or 0) + 1
            kube.patch(DEPLOYMENT, ns, name, {"status": {"collisionCount": count}}, status=True)
            log.warning(
                "Deployment %s/%s: ReplicaSet %s exists; collisionCount %d",
                ns,
                name,
                body["metadata"]["name"],
                count,
            )
            return
        new_view = RsView(name=f"{name}-{h}", replicas=plan.new_replicas, revision=revision)
        created_new = True
        log.info("Deployment %s/%s: created ReplicaSet %s (%d)", ns, name, new_view.name, plan.new_replicas)
    elif new_rs is not None and new_view is not None:
        patch: Obj = {}
        if plan.new_replicas != new_view.replicas:
            patch["spec"] = {"replicas": plan.new_replicas}
        rs_ann = meta(new_rs).get("annotations") or {}
        if new_view.revision <= max_revision:
            annotations[REVISION] = str(max_revision + 1)
            new_view.revision = max_revision + 1
        if any(rs_ann.get(k) != v for k, v in annotations.items()):
            patch["metadata"] = {"annotations": annotations}
        if patch:
            kube.patch(REPLICA_SET, ns, new_view.name, patch)
            new_view.replicas = plan.new_replicas
    for rs_name, replicas in plan.old_replicas.items():
        kube.patch(REPLICA_SET, ns, rs_name, {"spec": {"replicas": replicas}})
        log.info("Deployment %s/%s: scaled ReplicaSet %s to %d", ns, name, rs_name, replicas)
        for v in old_views:
            if v.name == rs_name:
                v.replicas = replicas

    cleanup_history(kube, deploy, olds, old_views)

    if new_view is not None:
        dep_ann = m.get("annotations") or {}
        if dep_ann.get(REVISION) != str(new_view.revision):
            kube.patch(
                DEPLOYMENT, ns, name, {"metadata": {"annotations": {REVISION: str(new_view.revision)}}}
            )
    views = [*old_views, *([new_view] if new_view else [])]
    new_status = deployment_status(deploy, new_view, views, format_time(now), created_new)
    current = status(deploy)
    comparable = {k: v for k, v in new_status.items() if k != "conditions"}
    conds_changed = [
        (c.get("type"), c.get("status"), c.get("reason")) for c in current.get("conditions") or []
    ] != [(c.get("type"), c.get("status"), c.get("reason")) for c in new_status["conditions"]]
    if status_differs(current, comparable) or conds_changed:
        kube.patch(DEPLOYMENT, ns, name, {"status": new_status}, status=True)


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def cleanup_history(
    kube: Kube, deploy: Mapping[str, Any], olds: Sequence[Obj], views: Sequence[RsView]
) -> None:
    """Delete the oldest scaled-down ReplicaSets beyond ``revisionHistoryLimit`` (default 10)."""
    limit = spec(deploy).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    idle = [(rs, v) for rs, v in zip(olds, views, strict=True) if v.replicas == 0 and v.active == 0]
    idle.sort(key=lambda rv: (rv[1].revision, rv[1].created))
    for rs, _ in idle[: max(0, len(idle) - limit)]:
        kube.delete(
            REPLICA_SET,
            meta(rs).get("namespace", "default"),
            meta(rs).get("name", ""),
            uid=meta(rs).get("uid"),
        )


def sync_deployments(kube: Kube, now: float) -> None:
    """One pass over every Deployment."""
    deployments = kube.list(DEPLOYMENT)
    if not deployments:
        return
    replicasets = kube.list(REPLICA_SET)
    pods = kube.list(POD)
    errors = PerObject("deployment")
    for deploy in deployments:
        with errors.guard(deploy):
            if meta(deploy).get("deletionTimestamp"):
                continue
            sync_deployment(kube, deploy, replicasets, pods, now)
    errors.raise_first()
