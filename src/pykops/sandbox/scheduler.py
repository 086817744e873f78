"""The sandbox's scheduler (a simulation of kube-scheduler's default profile, much reduced).

It binds Pending pods that have no ``spec.nodeName`` (and ask for ``default-scheduler``) to a node,
the way kube-scheduler's filter plugins would allow, in their order: NodeUnschedulable (cordoned nodes),
TaintToleration (NoSchedule/NoExecute taints; a node whose Ready condition is not True counts as tainted
``node.kubernetes.io/not-ready`` even before the node lifecycle controller taints it), NodeAffinity
(``nodeSelector`` and required node affinity), NodePorts (host ports) and NodeResourcesFit (cpu, memory and
pod count requests against ``status.allocatable`` minus what bound pods request; no allocatable = no limit).
Among the feasible nodes it spreads: fewest pods of the same controller in the node's zone
(``topology.kubernetes.io/zone``), then on the node, then fewest pods overall, then the node name. An
unschedulable pod gets ``PodScheduled=False`` (reason ``Unschedulable``) with kube-scheduler's message
("0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) had untolerated taint {...}.").

This module also holds the object predicates the controllers share (label selectors, node affinity, taints
and tolerations, readiness, resource requests): pure functions over the API's JSON dicts. Written here
rather than taken from a library because no maintained Python library implements Kubernetes' scheduling
predicates; each follows the upstream semantics it names.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kubernetes.utils import parse_quantity

if TYPE_CHECKING:
    from pykops.sandbox.controllers.kube import Kube

log = logging.getLogger(__name__)

Obj = dict[str, Any]

ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_SCHEDULER = "default-scheduler"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# ------------------------------------------------------------------------------------------------ time


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(t: datetime.datetime | float) -> str:
    """RFC 3339 with second precision and ``Z``, as the API server writes timestamps."""
    if isinstance(t, float | int):
        t = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an API timestamp, or None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.UTC)
    return t.timestamp()


# ------------------------------------------------------------------------------------------------ objects


def meta(obj: Mapping[str, Any]) -> Obj:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def spec(obj: Mapping[str, Any]) -> Obj:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


def status(obj: Mapping[str, Any]) -> Obj:
    s = obj.get("status")
    return s if isinstance(s, dict) else {}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def controller_ref(obj: Mapping[str, Any]) -> Obj | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    ref = controller_ref(obj)
    return str(ref["uid"]) if ref and ref.get("uid") else None


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def is_mirror_pod(pod: Mapping[str, Any]) -> bool:
    return MIRROR_ANNOTATION in (meta(pod).get("annotations") or {})


def pod_is_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward a controller's replicas: not terminating, not Succeeded/Failed (upstream IsPodActive)."""
    return not is_terminating(pod) and status(pod).get("phase") not in ("Succeeded", "Failed")


def condition(obj: Mapping[str, Any], type_: str) -> Obj | None:
    for cond in status(obj).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (upstream IsPodAvailable)."""
    if not pod_is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def node_is_ready(node: Mapping[str, Any]) -> bool:
    cond = condition(node, "Ready")
    return cond is not None and cond.get("status") == "True"


def node_zone(node: Mapping[str, Any]) -> str:
    lbl = labels(node)
    return lbl.get(ZONE_LABEL) or lbl.get("failure-domain.beta.kubernetes.io/zone") or ""


def set_condition(conditions: Sequence[Mapping[str, Any]], new: Mapping[str, Any], now: str) -> list[Obj]:
    """Replace (or add) the condition of ``new['type']``; lastTransitionTime moves only on a status change."""
    out: list[Obj] = []
    found = False
    for cond in conditions:
        if cond.get("type") == new["type"]:
            found = True
            merged = {**cond, **new}
            if cond.get("status") != new.get("status") or not cond.get("lastTransitionTime"):
                merged["lastTransitionTime"] = now
            out.append(merged)
        else:
            out.append(dict(cond))
    if not found:
        out.append({**new, "lastTransitionTime": now})
    return out


# ------------------------------------------------------------------------------------------------ selectors


def _requirement_matches(key_present: bool, value: str | None, operator: str, values: Sequence[str]) -> bool:
    if operator == "In":
        return key_present and value in values
    if operator == "NotIn":
        return not key_present or value not in values
    if operator == "Exists":
        return key_present
    if operator == "DoesNotExist":
        return not key_present
    if operator in ("Gt", "Lt"):
        try:
            left, right = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return key_present and (left > right if operator == "Gt" else left < right)
    return False


def label_selector_matches(selector: Mapping[str, Any] | None, lbls: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector``: matchLabels AND matchExpressions. None selects nothing, {} everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if lbls.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        if not _requirement_matches(
            key in lbls, lbls.get(key), expr.get("operator", ""), expr.get("values") or []
        ):
            return False
    return True


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One ``NodeSelectorTerm``: its matchExpressions (labels) AND matchFields (metadata.name)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no objects (upstream)
    lbls = labels(node)
    for expr in exprs:
        key = expr.get("key", "")
        if not _requirement_matches(
            key in lbls, lbls.get(key), expr.get("operator", ""), expr.get("values") or []
        ):
            return False
    name = meta(node).get("name", "")
    for expr in fields:
        if expr.get("key") != "metadata.name":
            return False
        if not _requirement_matches(True, name, expr.get("operator", ""), expr.get("values") or []):
            return False
    return True


def pod_matches_node_affinity(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """``nodeSelector`` and ``requiredDuringSchedulingIgnoredDuringExecution`` (terms ORed)."""
    lbls = labels(node)
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if lbls.get(key) != value:
            return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(node_selector_term_matches(t, node) for t in terms)


# ------------------------------------------------------------------------------------------------ taints


def toleration_tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Upstream ``Toleration.ToleratesTaint``: effect (empty = all), key (empty with Exists = all), value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    return any(toleration_tolerates(t, taint) for t in tolerations)


def first_untolerated_taint(
    taints: Iterable[Mapping[str, Any]],
    tolerations: Sequence[Mapping[str, Any]],
    effects: Sequence[str] = ("NoSchedule", "NoExecute"),
) -> Obj | None:
    for taint in taints:
        if taint.get("effect") in effects and not tolerates(tolerations, taint):
            return dict(taint)
    return None


def effective_taints(node: Mapping[str, Any]) -> list[Obj]:
    """The node's taints, plus ``not-ready:NoSchedule`` when it is not Ready and not tainted for it yet."""
    taints = [dict(t) for t in spec(node).get("taints") or []]
    if not node_is_ready(node) and not any(
        t.get("key") in (TAINT_NOT_READY, TAINT_UNREACHABLE) and t.get("effect") == "NoSchedule"
        for t in taints
    ):
        taints.append({"key": TAINT_NOT_READY, "effect": "NoSchedule"})
    return taints


# ------------------------------------------------------------------------------------------------ resources


def _quantity(value: Any) -> Decimal:
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


def pod_requests(pod_spec: Mapping[str, Any]) -> dict[str, Decimal]:
    """Effective requests: the sum over containers, at least the largest init container's (upstream)."""
    total: dict[str, Decimal] = {}
    for c in pod_spec.get("containers") or []:
        for name, value in ((c.get("resources") or {}).get("requests") or {}).items():
            total[name] = total.get(name, Decimal(0)) + _quantity(value)
    for c in pod_spec.get("initContainers") or []:
        for name, value in ((c.get("resources") or {}).get("requests") or {}).items():
            total[name] = max(total.get(name, Decimal(0)), _quantity(value))
    for name, value in (pod_spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + _quantity(value)
    return total


def pod_host_ports(pod_spec: Mapping[str, Any]) -> set[tuple[str, int]]:
    """(protocol, port) the pod takes on its node: hostPorts, and every containerPort of a hostNetwork pod
    (the API server defaults hostPort to containerPort there)."""
    ports: set[tuple[str, int]] = set()
    host_network = bool(pod_spec.get("hostNetwork"))
    for c in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        for p in c.get("ports") or []:
            port = p.get("hostPort") or (p.get("containerPort") if host_network else None)
            if port:
                ports.add((p.get("protocol") or "TCP", int(port)))
    return ports


# ------------------------------------------------------------------------------------------------ scheduling

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_VOLUME_AFFINITY = "node(s) had volume node affinity conflict"


def taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value') or ''}}}"


@dataclass
class NodeState:
    """A node and what the pods already bound to it use."""

    node: Obj
    requested: dict[str, Decimal] = field(default_factory=dict)
    host_ports: set[tuple[str, int]] = field(default_factory=set)
    pod_count: int = 0
    owner_counts: Counter[str] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return str(meta(self.node).get("name", ""))

    def add(self, pod: Mapping[str, Any]) -> None:
        for name, value in pod_requests(spec(pod)).items():
            self.requested[name] = self.requested.get(name, Decimal(0)) + value
        self.host_ports |= pod_host_ports(spec(pod))
        self.pod_count += 1
        uid = controller_uid(pod)
        if uid:
            self.owner_counts[uid] += 1


def build_node_states(nodes: Iterable[Obj], pods: Iterable[Obj]) -> dict[str, NodeState]:
    states = {str(meta(n).get("name")): NodeState(n) for n in nodes}
    for pod in pods:
        node_name = spec(pod).get("nodeName")
        if node_name in states and status(pod).get("phase") not in ("Succeeded", "Failed"):
            states[node_name].add(pod)
    return states


#: (namespace, claim name) → the node selector terms of the PersistentVolume it is bound to (None: any node,
#: e.g. a claim still waiting for its first consumer); a missing key: the claim does not exist.
ClaimTerms = Mapping[tuple[str, str], list[Obj] | None]


def claim_terms(
    claims: Iterable[Obj], volumes: Iterable[Obj], default_class: str | None = None
) -> dict[tuple[str, str], list[Obj] | None]:
    """What the VolumeBinding plugin needs: each claim's volume's required node affinity (pure). A claim not
    bound yet counts with the volume the binder will give it (an Available one that fits, as
    :func:`pykops.sandbox.cloudsim.pick_static_pv` chooses), so a pod created together with its claim is not
    placed in a zone its volume cannot reach; a claim that no volume fits is left to dynamic provisioning,
    which follows the pod."""
    from pykops.sandbox.cloudsim import pick_static_pv  # here: cloudsim imports the controllers

    volumes = list(volumes)
    terms_of_pv = {
        meta(pv).get("name"): (
            ((spec(pv).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
        )
        for pv in volumes
    }
    claims = list(claims)
    taken = {spec(c).get("volumeName") for c in claims}
    free = [pv for pv in volumes if meta(pv).get("name") not in taken]
    terms: dict[tuple[str, str], list[Obj] | None] = {}
    for c in claims:
        volume = spec(c).get("volumeName") or pick_static_pv(c, free, default_class)
        terms[(meta(c).get("namespace", "default"), meta(c).get("name", ""))] = terms_of_pv.get(volume)
    return terms


def volume_reason(
    pod_spec: Mapping[str, Any], node: Mapping[str, Any], namespace: str, claims: ClaimTerms
) -> str | None:
    """Why the pod's volumes keep it off this node: a missing claim, or a bound volume in another zone."""
    for volume in pod_spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim:
            continue
        if (namespace, claim) not in claims:
            return f'persistentvolumeclaim "{claim}" not found'
        terms = claims[(namespace, claim)]
        if terms and not any(node_selector_term_matches(term, node) for term in terms):
            return REASON_VOLUME_AFFINITY
    return None


def filter_node(pod: Mapping[str, Any], state: NodeState, claims: ClaimTerms | None = None) -> list[str]:
    """Why the pod cannot go to this node (empty: it fits), first failing plugin only, like kube-scheduler."""
    pod_spec = spec(pod)
    node = state.node
    tolerations = pod_spec.get("tolerations") or []
    if spec(node).get("unschedulable") and not tolerates(
        tolerations, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    ):
        return [REASON_UNSCHEDULABLE]
    taint = first_untolerated_taint(effective_taints(node), tolerations)
    if taint is not None:
        return [taint_reason(taint)]
    if not pod_matches_node_affinity(pod_spec, node):
        return [REASON_AFFINITY]
    if pod_host_ports(pod_spec) & state.host_ports:
        return [REASON_PORTS]
    if claims is not None:
        why = volume_reason(pod_spec, node, meta(pod).get("namespace", "default"), claims)
        if why:
            return [why]
    allocatable = status(node).get("allocatable") or {}
    reasons: list[str] = []
    if "pods" in allocatable and state.pod_count + 1 > _quantity(allocatable["pods"]):
        reasons.append("Too many pods")
    for name, request in sorted(pod_requests(pod_spec).items()):
        if name not in allocatable or request == 0:
            continue
        if state.requested.get(name, Decimal(0)) + request > _quantity(allocatable[name]):
            reasons.append(f"Insufficient {name}")
    return reasons


def unschedulable_message(total_nodes: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError text: the reason histogram, sorted as strings."""
    if total_nodes == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."


def zone_owner_counts(states: Mapping[str, NodeState], owner: str | None) -> Counter[str]:
    counts: Counter[str] = Counter()
    if owner:
        for st in states.values():
            counts[node_zone(st.node)] += st.owner_counts[owner]
    return counts


def pick_node(
    pod: Mapping[str, Any], states: Mapping[str, NodeState], claims: ClaimTerms | None = None
) -> tuple[str | None, Counter[str]]:
    """The node to bind to (None if none fits) and, when none does, the reasons histogram."""
    reasons: Counter[str] = Counter()
    feasible: list[NodeState] = []
    for st in states.values():
        why = filter_node(pod, st, claims)
        if why:
            reasons.update(why)
        else:
            feasible.append(st)
    if not feasible:
        return None, reasons
    owner = controller_uid(pod)
    per_zone = zone_owner_counts(states, owner)

    def score(st: NodeState) -> tuple[int, int, int, str]:
        same_owner = st.owner_counts[owner] if owner else 0
        return (per_zone[node_zone(st.node)] if owner else 0, same_owner, st.pod_count, st.name)

    return min(feasible, key=score).name, reasons


def wants_default_scheduler(pod: Mapping[str, Any]) -> bool:
    return (spec(pod).get("schedulerName") or DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER


def pending_unbound(pods: Iterable[Obj]) -> list[Obj]:
    """Pods waiting for this scheduler, highest priority first, then oldest."""
    waiting = [
        p
        for p in pods
        if not spec(p).get("nodeName")
        and not is_terminating(p)
        and status(p).get("phase", "Pending") in ("Pending", "", None)
        and wants_default_scheduler(p)
        and not spec(p).get("schedulingGates")
    ]
    return sorted(
        waiting,
        key=lambda p: (
            -int(spec(p).get("priority") or 0),
            meta(p).get("creationTimestamp") or "",
            meta(p).get("name", ""),
        ),
    )


@dataclass(frozen=True)
class Decision:
    namespace: str
    pod: str
    node: str | None  # None: unschedulable
    message: str = ""


def schedule(pods: Sequence[Obj], nodes: Sequence[Obj], claims: ClaimTerms | None = None) -> list[Decision]:
    """Pure: a decision per pending pod, in order, each seeing the bindings decided before it. ``claims``
    (see :func:`claim_terms`) makes pods follow their volumes' zones; ``None`` skips volume checks."""
    states = build_node_states(nodes, pods)
    decisions: list[Decision] = []
    for pod in pending_unbound(pods):
        node, reasons = pick_node(pod, states, claims)
        ns, name = meta(pod).get("namespace", "default"), meta(pod).get("name", "")
        if node is None:
            decisions.append(Decision(ns, name, None, unschedulable_message(len(states), reasons)))
        else:
            states[node].add(pod)
            decisions.append(Decision(ns, name, node))
    return decisions


def schedule_pending(kube: Kube) -> int:
    """One scheduling pass against the API; returns how many pods were bound."""
    from pykops.sandbox.controllers.kube import NODE, POD, PV, PVC, STORAGE_CLASS, is_conflict, is_not_found

    pods = kube.list(POD)
    nodes = kube.list(NODE)
    uses_claims = any(
        (v.get("persistentVolumeClaim") or {}).get("claimName")
        for p in pending_unbound(pods)
        for v in spec(p).get("volumes") or []
    )
    claims = None
    if uses_claims:
        from pykops.sandbox.cloudsim import DEFAULT_CLASS

        default_class = next(
            (
                meta(c).get("name")
                for c in kube.list(STORAGE_CLASS)
                if (meta(c).get("annotations") or {}).get(DEFAULT_CLASS) == "true"
            ),
            None,
        )
        claims = claim_terms(kube.list(PVC), kube.list(PV), default_class)
    by_key = {(meta(p).get("namespace", "default"), meta(p).get("name")): p for p in pods}
    bound = 0
    now = format_time(now_utc())
    for d in schedule(pods, nodes, claims):
        pod = by_key[(d.namespace, d.pod)]
        try:
            if d.node is not None:
                kube.bind(d.namespace, d.pod, d.node)
                bound += 1
                log.debug("bound %s/%s to %s", d.namespace, d.pod, d.node)
                continue
            current = condition(pod, "PodScheduled") or {}
            if current.get("status") == "False" and current.get("message") == d.message:
                continue
            conds = set_condition(
                status(pod).get("conditions") or [],
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": d.message},
                now,
            )
            kube.patch(POD, d.namespace, d.pod, {"status": {"conditions": conds}}, status=True)
        except Exception as err:
            if not (is_not_found(err) or is_conflict(err)):  # gone, or bound meanwhile
                raise
    return bound
