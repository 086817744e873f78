"""DaemonSet controller: one pod per eligible node, bound directly (simulation of upstream's).

Eligibility follows upstream ``NodeShouldRunDaemonPod``: the pod template's nodeSelector and required node
affinity, and the node's taints against the template's tolerations plus the ones the real controller adds to
every daemon pod (not-ready/unreachable NoExecute, the pressure and unschedulable NoSchedule taints, and
network-unavailable for hostNetwork pods). A node with a NoSchedule taint the pod does not tolerate gets no
new pod but keeps a running one; a NoExecute one removes it. Pods get ``spec.nodeName`` directly (the real
controller uses node affinity and the scheduler; the result is the same binding). Updates roll with
``maxUnavailable`` (default 1), or wait for deletions with ``OnDelete``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import (
    Obj,
    PerObject,
    int_or_percent,
    owned_by,
    pod_from_template,
    status_differs,
    template_hash,
)
from pykops.sandbox.controllers.kube import DAEMON_SET, NODE, POD, Kube
from pykops.sandbox.scheduler import (
    first_untolerated_taint,
    labels,
    meta,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    pod_matches_node_affinity,
    spec,
    status,
)

log = logging.getLogger(__name__)

REVISION_HASH = "controller-revision-hash"
TEMPLATE_GENERATION = "pod-template-generation"

DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


def daemon_pod_spec(template_spec: Mapping[str, Any]) -> Obj:
    """The template's pod spec with the daemon tolerations added (as the real controller does)."""
    pod_spec = copy.deepcopy(dict(template_spec))
    tolerations = list(pod_spec.get("tolerations") or [])
    extra = [*DAEMON_TOLERATIONS, *([NETWORK_UNAVAILABLE] if pod_spec.get("hostNetwork") else [])]
    for tol in extra:
        if not any(t.get("key") == tol["key"] and t.get("effect") == tol["effect"] for t in tolerations):
            tolerations.append(dict(tol))
    pod_spec["tolerations"] = tolerations
    return pod_spec


def node_should_run(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[bool, bool]:
    """(should run a new pod here, may keep an existing one) for a daemon pod spec (tolerations added)."""
    if not pod_matches_node_affinity(pod_spec, node):
        return False, False
    tolerations = pod_spec.get("tolerations") or []
    taints = spec(node).get("taints") or []
    keep = first_untolerated_taint(taints, tolerations, ("NoExecute",)) is None
    run = keep and first_untolerated_taint(taints, tolerations, ("NoSchedule",)) is None
    return run, keep


@dataclass
class DaemonSetPlan:
    create_on: list[str] = field(default_factory=list)  # node names
    delete: list[Obj] = field(default_factory=list)
    status: Obj = field(default_factory=dict)


def plan_daemonset(
    ds: Mapping[str, Any], nodes: Sequence[Obj], pods: Sequence[Obj], now: float
) -> DaemonSetPlan:
    """Pure: the pods to create (by node) and delete, and the resulting status."""
    uid = meta(ds).get("uid", "")
    ns = meta(ds).get("namespace", "default")
    template = spec(ds).get("template") or {}
    pod_spec = daemon_pod_spec(template.get("spec") or {})
    current_hash = template_hash(template)
    min_ready = int(spec(ds).get("minReadySeconds") or 0)
    mine = [
        p for p in pods if meta(p).get("namespace", "default") == ns and owned_by(p, uid) and pod_is_active(p)
    ]
    by_node: dict[str, list[Obj]] = {}
    for p in mine:
        by_node.setdefault(spec(p).get("nodeName") or "", []).append(p)

    plan = DaemonSetPlan()
    desired = scheduled = ready = available = updated = misscheduled = 0
    eligible: list[tuple[str, Obj]] = []  # (node, its one daemon pod) for the update step
    node_names = set()
    for node in sorted(nodes, key=lambda n: meta(n).get("name", "")):
        name = meta(node).get("name", "")
        node_names.add(name)
        run, keep = node_should_run(pod_spec, node)
        here = sorted(by_node.get(name, []), key=lambda p: meta(p).get("creationTimestamp") or "")
        if run:
            desired += 1
        if not keep:
            plan.delete.extend(here)
            continue
        if not here:
            if run:
                plan.create_on.append(name)
                scheduled += 1  # bound at creation
            continue
        if run:
            scheduled += 1
        else:
            misscheduled += 1
        plan.delete.extend(here[1:])  # duplicates: keep the oldest
        pod = here[0]
        ready += pod_is_ready(pod)
        available += pod_is_available(pod, min_ready, now)
        updated += labels(pod).get(REVISION_HASH) == current_hash
        eligible.append((name, pod))
    for node_name, stray in by_node.items():
        if node_name not in node_names:
            plan.delete.extend(stray)  # no such node (or not bound): the pod GC would remove it anyway

    strategy = spec(ds).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        max_unavailable = int_or_percent(
            (strategy.get("rollingUpdate") or {}).get("maxUnavailable"), desired, round_up=True, default=1
        )
        max_unavailable = max(max_unavailable, 1)
        unavailable = desired - available
        outdated = [(n, p) for n, p in eligible if labels(p).get(REVISION_HASH) != current_hash]
        # not-available old pods go at once (they cost no availability); then available ones within budget
        for _, pod in outdated:
            if not pod_is_available(pod, min_ready, now):
                plan.delete.append(pod)
        budget = max_unavailable - unavailable
        for _, pod in outdated:
            if budget <= 0:
                break
            if pod_is_available(pod, min_ready, now):
                plan.delete.append(pod)
                budget -= 1

    plan.status = {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": max(0, desired - available),
        "updatedNumberScheduled": updated,
        "observedGeneration": meta(ds).get("generation", 1),
    }
    return plan


def sync_daemonsets(
    kube: Kube, now: float, nodes: list[Obj] | None = None, pods: list[Obj] | None = None
) -> None:
    """One pass over every DaemonSet."""
    daemonsets = kube.list(DAEMON_SET)
    if not daemonsets:
        return
    nodes = kube.list(NODE) if nodes is None else nodes
    pods = kube.list(POD) if pods is None else pods
    errors = PerObject("daemonset")
    for ds in daemonsets:
        with errors.guard(ds):
            m = meta(ds)
            if m.get("deletionTimestamp"):
                continue
            ns, name = m.get("namespace", "default"), m.get("name", "")
            plan = plan_daemonset(ds, nodes, pods, now)
            template = spec(ds).get("template") or {}
            h = template_hash(template)
            extra = {REVISION_HASH: h, TEMPLATE_GENERATION: str(m.get("generation", 1))}
            for node_name in plan.create_on:
                body = pod_from_template(ds, template, generate_name=f"{name}-", extra_labels=extra)
                body["spec"] = daemon_pod_spec(body["spec"])
                body["spec"]["nodeName"] = node_name
                kube.create(POD, ns, body)
                log.debug("DaemonSet %s/%s: pod for node %s", ns, name, node_name)
            for pod in plan.delete:
                kube.delete(POD, ns, meta(pod).get("name", ""), uid=meta(pod).get("uid"))
            if status_differs(status(ds), plan.status):
                kube.patch(DAEMON_SET, ns, name, {"status": plan.status}, status=True)
    errors.raise_first()
