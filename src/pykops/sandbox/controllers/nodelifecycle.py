"""Node lifecycle (simulation of upstream's node lifecycle controller and taint-based eviction).

- A Node whose Ready condition was last heartbeated (``lastHeartbeatTime``, or its Lease's ``renewTime`` in
  ``kube-node-lease`` if later) more than ``node_grace`` seconds ago becomes Ready=Unknown ("Kubelet stopped
  posting node status."). The kubelet's next heartbeat (which writes Ready=True) brings it back.
- Taints follow the Ready condition: False → ``node.kubernetes.io/not-ready``, Unknown →
  ``node.kubernetes.io/unreachable``, both NoSchedule and NoExecute (with ``timeAdded``); True → neither.
  A cordoned node gets ``node.kubernetes.io/unschedulable:NoSchedule``.
- Pods on a node with a NoExecute taint they do not tolerate are deleted ``eviction_grace`` seconds after the
  taint was added (a toleration with ``tolerationSeconds`` waits that long instead), so their controllers
  recreate them elsewhere. Mirror pods are left to their kubelet. Pods on a not-Ready node are marked
  Ready=False.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pykops.sandbox.controllers.common import Obj, PerObject
from pykops.sandbox.controllers.kube import LEASE, NODE, POD, Kube
from pykops.sandbox.scheduler import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    condition,
    format_time,
    is_mirror_pod,
    is_terminating,
    meta,
    parse_time,
    pod_is_ready,
    set_condition,
    spec,
    status,
    toleration_tolerates,
)

log = logging.getLogger(__name__)

OUR_TAINT_KEYS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
NODE_LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class NodePlan:
    ready_unknown: bool = False  # set Ready=Unknown
    taints: list[Obj] | None = None  # new spec.taints, when they change
    evict: list[Obj] = field(default_factory=list)
    mark_not_ready: list[Obj] = field(default_factory=list)


def ready_status_after(
    node: Mapping[str, Any], now: float, node_grace: float, lease_renewed: float | None = None
) -> str | None:
    """The Ready status the node should have now (None: it has no Ready condition yet). The heartbeat is
    the later of the Ready condition's ``lastHeartbeatTime`` and the node's Lease ``renewTime``."""
    ready = condition(node, "Ready")
    if ready is None:
        return None
    current = str(ready.get("status") or "Unknown")
    heartbeat = parse_time(ready.get("lastHeartbeatTime")) or parse_time(ready.get("lastTransitionTime"))
    if lease_renewed is not None:
        heartbeat = max(heartbeat or 0.0, lease_renewed)
    if current != "Unknown" and heartbeat is not None and now - heartbeat > node_grace:
        return "Unknown"
    return current


def desired_taints(node: Mapping[str, Any], ready: str | None, now_str: str) -> list[Obj]:
    """The node's taints with ours set for its Ready status (``timeAdded`` kept while a taint stays)."""
    existing = [dict(t) for t in spec(node).get("taints") or []]
    keep = [t for t in existing if t.get("key") not in (*OUR_TAINT_KEYS, TAINT_UNSCHEDULABLE)]
    if spec(node).get("unschedulable"):  # upstream TaintNodesByCondition mirrors cordoning as a taint
        old = next((t for t in existing if t.get("key") == TAINT_UNSCHEDULABLE), None)
        keep.append(old or {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule", "timeAdded": now_str})
    if ready == "True":
        return keep
    key = TAINT_UNREACHABLE if ready == "Unknown" else TAINT_NOT_READY
    effects = ("NoSchedule", "NoExecute") if ready is not None else ("NoSchedule",)
    for effect in effects:
        old = next((t for t in existing if t.get("key") == key and t.get("effect") == effect), None)
        keep.append(old if old is not None else {"key": key, "effect": effect, "timeAdded": now_str})
    return keep


def eviction_due(
    pod: Mapping[str, Any], taint: Mapping[str, Any], since: float, now: float, grace: float
) -> bool:
    """Whether a pod must leave a node tainted NoExecute since ``since``."""
    matching = [t for t in spec(pod).get("tolerations") or [] if toleration_tolerates(t, taint)]
    if not matching:
        return now - since >= grace
    limits = [t.get("tolerationSeconds") for t in matching]
    if any(lim is None for lim in limits):
        return False  # tolerated forever
    return now - since >= min(int(lim) for lim in limits if lim is not None)


def plan_node(
    node: Mapping[str, Any],
    pods: Sequence[Obj],
    now: float,
    *,
    node_grace: float,
    eviction_grace: float,
    first_seen: Mapping[tuple[str, str], float] | None = None,
    lease_renewed: float | None = None,
) -> NodePlan:
    """Pure: what the controller does about one node and the pods bound to it."""
    now_str = format_time(now)
    plan = NodePlan()
    ready = ready_status_after(node, now, node_grace, lease_renewed)
    current = condition(node, "Ready")
    plan.ready_unknown = ready == "Unknown" and current is not None and current.get("status") != "Unknown"
    taints = desired_taints(node, ready, now_str)
    old = [dict(t) for t in spec(node).get("taints") or []]
    if taints != old:
        plan.taints = taints
    name = meta(node).get("name", "")
    here = [
        p for p in pods if spec(p).get("nodeName") == name and not is_mirror_pod(p) and not is_terminating(p)
    ]
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        since = parse_time(taint.get("timeAdded"))
        if since is None:
            since = (first_seen or {}).get((str(taint.get("key")), str(taint.get("value") or "")), now)
        for pod in here:
            if pod not in plan.evict and eviction_due(pod, taint, since, now, eviction_grace):
                plan.evict.append(pod)
    if ready not in ("True", None):
        plan.mark_not_ready = [p for p in here if p not in plan.evict and pod_is_ready(p)]
    return plan


def lease_renewals(leases: Sequence[Obj]) -> dict[str, float]:
    """Node name → last renewal of its Lease in ``kube-node-lease`` (kubelets' lightweight heartbeat)."""
    out: dict[str, float] = {}
    for lease in leases:
        if meta(lease).get("namespace") != NODE_LEASE_NAMESPACE:
            continue
        renewed = parse_time(spec(lease).get("renewTime"))
        if renewed is not None:
            out[meta(lease).get("name", "")] = renewed
    return out


class NodeLifecycle:
    """The I/O side; remembers when it first saw NoExecute taints that carry no ``timeAdded``."""

    def __init__(self, node_grace: float, eviction_grace: float) -> None:
        self.node_grace = node_grace
        self.eviction_grace = eviction_grace
        self._first_seen: dict[str, dict[tuple[str, str], float]] = {}

    def sync(self, kube: Kube, now: float) -> None:
        nodes = kube.list(NODE)
        pods = kube.list(POD)
        renewed = self._lease_renewals(kube)
        now_str = format_time(now)
        errors = PerObject("node-lifecycle")
        for node in nodes:
            with errors.guard(node):
                name = meta(node).get("name", "")
                seen = self._first_seen.setdefault(name, {})
                for t in spec(node).get("taints") or []:
                    if t.get("effect") == "NoExecute":
                        seen.setdefault((str(t.get("key")), str(t.get("value") or "")), now)
                plan = plan_node(
                    node,
                    pods,
                    now,
                    node_grace=self.node_grace,
                    eviction_grace=self.eviction_grace,
                    first_seen=seen,
                    lease_renewed=renewed.get(name),
                )
                if plan.ready_unknown:
                    conds = set_condition(
                        status(node).get("conditions") or [],
                        {
                            "type": "Ready",
                            "status": "Unknown",
                            "reason": "NodeStatusUnknown",
                            "message": "Kubelet stopped posting node status.",
                        },
                        now_str,
                    )
                    kube.patch(NODE, "", name, {"status": {"conditions": conds}}, status=True)
                    log.warning("node %s stopped posting status: Ready=Unknown", name)
                if plan.taints is not None:
                    kube.patch(NODE, "", name, {"spec": {"taints": plan.taints}})
                for pod in plan.evict:
                    m = meta(pod)
                    log.info("evicting %s/%s from node %s", m.get("namespace"), m.get("name"), name)
                    kube.delete(POD, m.get("namespace", "default"), m.get("name", ""), uid=m.get("uid"))
                for pod in plan.mark_not_ready:
                    m = meta(pod)
                    conds = set_condition(
                        status(pod).get("conditions") or [], {"type": "Ready", "status": "False"}, now_str
                    )
                    kube.patch(
                        POD,
                        m.get("namespace", "default"),
                        m.get("name", ""),
                        {"status": {"conditions": conds}},
                        status=True,
                    )
        errors.raise_first()
        names = {meta(n).get("name", "") for n in nodes}
        for gone in set(self._first_seen) - names:
            del self._first_seen[gone]

    @staticmethod
    def _lease_renewals(kube: Kube) -> dict[str, float]:
        try:
            return lease_renewals(kube.list(LEASE))
        except Exception as err:  # a server without leases: the Ready condition alone is the heartbeat
            log.debug("cannot list leases: %s", err)
            return {}
