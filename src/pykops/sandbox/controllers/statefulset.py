"""StatefulSet controller (simulation of upstream's, without volume claims).

Pods are ``<name>-<ordinal>`` with stable hostnames (``spec.hostname``, ``spec.subdomain`` = serviceName).
``OrderedReady`` (the default) creates them one at a time in ordinal order, each once the previous ones are
Running and Ready, and removes surplus ones from the highest ordinal down; ``Parallel`` does both at once.
``RollingUpdate`` replaces outdated pods from the highest ordinal down to ``partition``, one at a time, when
all are Ready; ``OnDelete`` waits for deletions. ``volumeClaimTemplates`` are not provisioned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import (
    Obj,
    PerObject,
    owned_by,
    pod_from_template,
    replicas_of,
    status_differs,
    template_hash,
)
from pykops.sandbox.controllers.kube import POD, STATEFUL_SET, Kube
from pykops.sandbox.scheduler import (
    is_terminating,
    labels,
    meta,
    pod_is_available,
    pod_is_ready,
    spec,
    status,
)

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass
class StatefulSetPlan:
    create: list[int] = field(default_factory=list)  # ordinals
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    prefix = sts_name + "-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix) :]
    return int(tail) if tail.isdigit() else None


def update_revision(sts: Mapping[str, Any]) -> str:
    return f"{meta(sts).get('name', '')}-{template_hash(spec(sts).get('template') or {})}"


def plan_statefulset(sts: Mapping[str, Any], pods: Sequence[Obj], now: float) -> StatefulSetPlan:
    """Pure: the ordinals to create, the pods to delete, and the status."""
    name = meta(sts).get("name", "")
    ns = meta(sts).get("namespace", "default")
    uid = meta(sts).get("uid", "")
    want = replicas_of(sts)
    parallel = spec(sts).get("podManagementPolicy") == "Parallel"
    min_ready = int(spec(sts).get("minReadySeconds") or 0)
    revision = update_revision(sts)
    by_ordinal: dict[int, Obj] = {}
    for p in pods:
        if meta(p).get("namespace", "default") != ns or not owned_by(p, uid):
            continue
        ordinal = ordinal_of(name, meta(p).get("name", ""))
        if ordinal is not None:
            by_ordinal[ordinal] = p
    plan = StatefulSetPlan()

    def healthy(p: Obj) -> bool:
        return not is_terminating(p) and status(p).get("phase") == "Running" and pod_is_ready(p)

    blocked = False  # OrderedReady: stop at the first missing or unhealthy pod
    for i in range(want):
        pod = by_ordinal.get(i)
        if pod is None:
            if not blocked:
                plan.create.append(i)
            blocked = blocked or not parallel
        elif status(pod).get("phase") == "Failed" and not is_terminating(pod):
            plan.delete.append(pod)  # recreated on the next pass
            blocked = blocked or not parallel
        elif not healthy(pod):
            blocked = blocked or not parallel
    condemned = sorted((o for o in by_ordinal if o >= want), reverse=True)
    if parallel:
        plan.delete.extend(by_ordinal[o] for o in condemned if not is_terminating(by_ordinal[o]))
    elif condemned and not blocked and not plan.create:
        top = by_ordinal[condemned[0]]
        if not is_terminating(top) and all(healthy(by_ordinal[o]) for o in by_ordinal if o != condemned[0]):
            plan.delete.append(top)

    strategy = spec(sts).get("updateStrategy") or {}
    settled = not plan.create and not plan.delete and not condemned
    if strategy.get("type", "RollingUpdate") == "RollingUpdate" and settled:
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        live = [by_ordinal[i] for i in range(want) if i in by_ordinal]
        if all(healthy(p) for p in live):
            for i in range(want - 1, partition - 1, -1):
                pod = by_ordinal.get(i)
                if pod is not None and labels(pod).get(REVISION_LABEL) != revision:
                    plan.delete.append(pod)
                    break

    active = [p for p in by_ordinal.values() if not is_terminating(p) and p not in plan.delete]
    updated = sum(1 for p in active if labels(p).get(REVISION_LABEL) == revision)
    current_rev = status(sts).get("currentRevision") or revision
    if updated == want and len(active) == want and all(pod_is_ready(p) for p in active):
        current_rev = revision
    plan.status = {
        "observedGeneration": meta(sts).get("generation", 1),
        "replicas": len(active),
        "readyReplicas": sum(1 for p in active if pod_is_ready(p)),
        "availableReplicas": sum(1 for p in active if pod_is_available(p, min_ready, now)),
        "currentReplicas": sum(1 for p in active if labels(p).get(REVISION_LABEL) == current_rev),
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": revision,
    }
    return plan


def stateful_pod(sts: Mapping[str, Any], ordinal: int) -> Obj:
    name = meta(sts).get("name", "")
    pod_name = f"{name}-{ordinal}"
    extra = {REVISION_LABEL: update_revision(sts), POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal)}
    body = pod_from_template(sts, spec(sts).get("template") or {}, generate_name="", extra_labels=extra)
    del body["metadata"]["generateName"]
    body["metadata"]["name"] = pod_name
    body["spec"]["hostname"] = pod_name
    if spec(sts).get("serviceName"):
        body["spec"]["subdomain"] = spec(sts)["serviceName"]
    return body


def sync_statefulsets(kube: Kube, now: float, pods: list[Obj] | None = None) -> None:
    """One pass over every StatefulSet."""
    statefulsets = kube.list(STATEFUL_SET)
    if not statefulsets:
        return
    pods = kube.list(POD) if pods is None else pods
    errors = PerObject("statefulset")
    for sts in statefulsets:
        with errors.guard(sts):
            m = meta(sts)
            if m.get("deletionTimestamp"):
                continue
            ns, name = m.get("namespace", "default"), m.get("name", "")
            plan = plan_statefulset(sts, pods, now)
            for ordinal in plan.create:
                kube.create(POD, ns, stateful_pod(sts, ordinal))
                log.debug("StatefulSet %s/%s: created %s-%d", ns, name, name, ordinal)
            for pod in plan.delete:
                kube.delete(POD, ns, meta(pod).get("name", ""), uid=meta(pod).get("uid"))
            if status_differs(status(sts), plan.status):
                kube.patch(STATEFUL_SET, ns, name, {"status": plan.status}, status=True)
    errors.raise_first()
