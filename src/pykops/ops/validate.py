"""``validate cluster``: the pure verdict (kops' ``pkg/validation/validate_cluster.go`` semantics) plus an
HA summary, and the I/O that gathers its inputs from AWS and the Kubernetes API.

The pure core, :func:`validate`, takes plain records (instance groups, cloud groups, nodes, pods) so it is
tested without any server and reused by ``rolling-update`` (filtered to the group being rolled).

kops' checks, kept: each cloud group has at least its target number of instances that joined as Ready
nodes; every instance joined as a Node; every node is Ready; every pod with priority class
``system-cluster-critical`` / ``system-node-critical`` is Running and Ready (Pending says so); every Ready
control-plane node runs kube-apiserver, kube-controller-manager and kube-scheduler. pykops adds the etcd
quorum (from the etcd mirror pods' readiness) and how many losses the control plane tolerates now.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from pykops.errors import PykopsError

CONTROL_PLANE_ROLES = ("ControlPlane", "Master")
CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
CRITICAL_PRIORITY_CLASSES = ("system-cluster-critical", "system-node-critical")
ETCD_MAIN_PREFIX = "etcd-server-"
ETCD_EVENTS_PREFIX = "etcd-server-events-"


class ValidationFailed(PykopsError):
    """The cluster did not validate (exit code 2, as kops)."""

    exit_code = 2


class ApiUnreachable(PykopsError):
    """The cluster's Kubernetes API could not be reached."""


# ---------------------------------------------------------------------------------------------------------
# Records (plain data: built from AWS / Kubernetes answers, or by tests)


@dataclass
class GroupSpec:
    """An instance group as the spec says (what ``INSTANCE GROUPS`` prints)."""

    name: str
    role: str  # ControlPlane, Master, Node, APIServer, Bastion
    machine_type: str = ""
    min_size: int = 0
    max_size: int = 0
    subnets: list[str] = field(default_factory=list)

    @property
    def is_control_plane(self) -> bool:
        return self.role in CONTROL_PLANE_ROLES


@dataclass
class CloudInstance:
    id: str
    group: str  # instance group name
    lifecycle: str = "InService"  # the ASG's LifecycleState
    state: str = "running"  # the EC2 state
    lt_version: str | None = None  # the launch-template version it was launched from
    needs_update: bool = False
    zone: str = ""
    machine_type: str = ""
    private_ip: str = ""
    public_ip: str = ""

    @property
    def alive(self) -> bool:
        """In service (or coming up) and not on its way out."""
        return self.state in ("pending", "running") and not self.lifecycle.startswith("Terminat")


@dataclass
class CloudGroup:
    name: str  # instance group name
    asg_name: str
    min_size: int
    max_size: int
    desired: int
    lt_version: str | None = None
    instances: list[CloudInstance] = field(default_factory=list)

    @property
    def target(self) -> int:
        return self.desired


@dataclass
class NodeInfo:
    name: str
    role: str  # "control-plane" or "node"
    ready: bool
    instance_id: str | None = None
    group: str | None = None
    zone: str = ""
    kubelet_version: str = ""
    unschedulable: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    taints: list[str] = field(default_factory=list)  # taint keys


@dataclass
class PodInfo:
    namespace: str
    name: str
    node: str | None
    phase: str
    ready: bool
    priority_class: str = ""
    mirror: bool = False
    daemonset: bool = False
    component: str = ""  # label k8s-app or component


@dataclass
class ValidationError:
    kind: str  # InstanceGroup, Machine, Node, Pod, etcd
    name: str
    message: str
    group: str | None = None  # the instance group it concerns, None when cluster-wide


@dataclass
class HASummary:
    control_plane_by_zone: dict[str, tuple[int, int]]  # zone -> (ready, total) control-plane nodes
    etcd_members: int  # expected members of etcd main
    etcd_up: int
    etcd_quorum: int
    control_plane_losses_tolerated: int
    zone_losses_tolerated: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    groups: list[GroupSpec]
    nodes: list[NodeInfo]
    failures: list[ValidationError]
    ha: HASummary | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def only_group(self, *groups: str) -> list[ValidationError]:
        """The failures relevant to rolling ``groups``: theirs and the cluster-wide ones."""
        return [f for f in self.failures if f.group is None or f.group in groups]

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": [asdict(f) for f in self.failures],
            "nodes": [
                {"name": n.name, "hostname": n.name, "role": n.role, "status": "True" if n.ready else "False"}
                for n in self.nodes
            ],
            "instanceGroups": [asdict(g) for g in self.groups],
            "ha": asdict(self.ha) if self.ha else None,
        }


# ---------------------------------------------------------------------------------------------------------
# The pure verdict


def validate(
    groups: list[GroupSpec],
    cloud_groups: list[CloudGroup],
    nodes: list[NodeInfo],
    pods: list[PodInfo],
    *,
    etcd_members: int | None = None,
) -> ValidationResult:
    """kops' checks over the gathered facts (see the module docstring); ``etcd_members`` is the number of
    members of etcd main in the spec (default: the number of control-plane instances wanted)."""
    failures: list[ValidationError] = []
    by_instance = {n.instance_id: n for n in nodes if n.instance_id}
    node_group = {n.name: n.group for n in nodes}
    spec_names = {g.name for g in groups}
    for cg in sorted(cloud_groups, key=lambda c: c.name):
        if cg.name not in spec_names:
            continue
        alive = [i for i in cg.instances if i.alive]
        joined_ready = [i for i in alive if (n := by_instance.get(i.id)) is not None and n.ready]
        if len(joined_ready) < cg.target:
            failures.append(
                ValidationError(
                    "InstanceGroup",
                    cg.name,
                    f'InstanceGroup "{cg.name}" did not have enough nodes {len(joined_ready)} vs {cg.target}',
                    cg.name,
                )
            )
        for inst in alive:
            if inst.id not in by_instance:
                failures.append(
                    ValidationError(
                        "Machine", inst.id, f'machine "{inst.id}" has not yet joined cluster', cg.name
                    )
                )
    pods_by_node: dict[str, list[PodInfo]] = {}
    for pod in pods:
        if pod.node:
            pods_by_node.setdefault(pod.node, []).append(pod)
    for node in sorted(nodes, key=lambda n: n.name):
        if not node.ready:
            failures.append(
                ValidationError(
                    "Node", node.name, f'node "{node.name}" of role "{node.role}" is not ready', node.group
                )
            )
            continue
        if node.role == "control-plane":
            running = {
                _component(p) for p in pods_by_node.get(node.name, []) if p.phase == "Running" and p.ready
            }
            for component in CONTROL_PLANE_COMPONENTS:
                if component not in running:
                    failures.append(
                        ValidationError(
                            "Node",
                            node.name,
                            f'control-plane node "{node.name}" is missing {component} pod',
                            node.group,
                        )
                    )
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if pod.priority_class not in CRITICAL_PRIORITY_CLASSES:
            continue
        group = node_group.get(pod.node) if pod.node else None
        full = f"{pod.namespace}/{pod.name}"
        if pod.phase == "Pending":
            message = f'{pod.priority_class} pod "{full}" is pending'
        elif pod.phase in ("Succeeded",):
            continue
        elif pod.phase != "Running" or not pod.ready:
            message = f'{pod.priority_class} pod "{full}" is not ready'
        else:
            continue
        failures.append(ValidationError("Pod", full, message, group))
    cp_instances = sum(cg.target for cg in cloud_groups if _is_cp_group(cg.name, groups))
    # Only nodes backed by a running instance of the cluster's groups count towards the HA summary: a
    # terminated machine's Node can still read Ready until its heartbeats are missed.
    running = {i.id for cg in cloud_groups for i in cg.instances if i.alive}
    counted = [n for n in nodes if not n.instance_id or n.instance_id in running]
    ha = ha_summary(counted, pods, etcd_members if etcd_members is not None else cp_instances)
    if ha.etcd_members and ha.etcd_up < ha.etcd_quorum:
        failures.append(
            ValidationError(
                "etcd",
                "main",
                f"etcd has lost quorum: {ha.etcd_up} of {ha.etcd_members} members up, "
                f"{ha.etcd_quorum} needed",
            )
        )
    return ValidationResult(groups, nodes, failures, ha)


def _is_cp_group(name: str, groups: list[GroupSpec]) -> bool:
    return any(g.name == name and g.is_control_plane for g in groups)


def _component(pod: PodInfo) -> str:
    if pod.component:
        return pod.component
    for component in CONTROL_PLANE_COMPONENTS:
        if pod.name.startswith(component + "-"):
            return component
    return pod.name


def _is_etcd_main(pod: PodInfo) -> bool:
    return pod.name.startswith(ETCD_MAIN_PREFIX) and not pod.name.startswith(ETCD_EVENTS_PREFIX)


def ha_summary(nodes: list[NodeInfo], pods: list[PodInfo], etcd_members: int) -> HASummary:
    """Control-plane nodes per zone, etcd main members up vs quorum, and the losses tolerated now."""
    cp = [n for n in nodes if n.role == "control-plane"]
    by_zone: dict[str, tuple[int, int]] = {}
    for n in cp:
        ready, total = by_zone.get(n.zone or "?", (0, 0))
        by_zone[n.zone or "?"] = (ready + int(n.ready), total + 1)
    zone_of = {n.name: n.zone or "?" for n in nodes}
    ready_nodes = {n.name for n in nodes if n.ready}
    etcd_up_by_zone: dict[str, int] = {}
    for p in pods:
        if _is_etcd_main(p) and p.phase == "Running" and p.ready and p.node in ready_nodes:
            zone = zone_of.get(p.node or "", "?")
            etcd_up_by_zone[zone] = etcd_up_by_zone.get(zone, 0) + 1
    up = sum(etcd_up_by_zone.values())
    members = max(etcd_members, up)
    quorum = members // 2 + 1 if members else 0
    apiservers = sum(
        1
        for p in pods
        if _component(p) == "kube-apiserver" and p.phase == "Running" and p.ready and p.node in ready_nodes
    )
    cp_losses = max(0, min(up - quorum, apiservers - 1)) if members else max(0, apiservers - 1)
    zone_losses = 0
    remaining_up = up
    remaining_api = apiservers
    api_by_zone: dict[str, int] = {}
    for p in pods:
        if _component(p) == "kube-apiserver" and p.phase == "Running" and p.ready and p.node in ready_nodes:
            zone = zone_of.get(p.node or "", "?")
            api_by_zone[zone] = api_by_zone.get(zone, 0) + 1
    # Worst case: the zones holding the most etcd members go first.
    for zone in sorted(etcd_up_by_zone, key=lambda z: -etcd_up_by_zone[z]):
        remaining_up -= etcd_up_by_zone[zone]
        remaining_api -= api_by_zone.get(zone, 0)
        if remaining_up < quorum or remaining_api < 1:
            break
        zone_losses += 1
    warnings: list[str] = []
    if members and up < quorum:
        warnings.append(
            f"etcd has no quorum ({up} of {members} members up, {quorum} needed): the API cannot store "
            "anything until control-plane instances come back"
        )
    elif cp_losses == 0:
        warnings.append(
            "the cluster tolerates no control-plane loss now: losing one more control-plane node "
            + ("loses etcd quorum" if members and up - 1 < quorum else "leaves no API server")
        )
    if zone_losses == 0 and not (members and up < quorum) and len(by_zone) > 0:
        warnings.append("the cluster tolerates no zone loss now")
    return HASummary(by_zone, members, up, quorum, cp_losses, zone_losses, warnings)


def cloud_only_ha(groups: list[GroupSpec], cloud_groups: list[CloudGroup], etcd_members: int) -> str | None:
    """When the API is unreachable: what the running control-plane instances say about etcd quorum."""
    cp = [i for cg in cloud_groups if _is_cp_group(cg.name, groups) for i in cg.instances if i.alive]
    if not etcd_members:
        return None
    quorum = etcd_members // 2 + 1
    if len(cp) < quorum:
        return (
            f"only {len(cp)} of {etcd_members} control-plane instances are running: etcd needs {quorum} "
            "members for quorum, so the API cannot serve until the groups replace the lost instances"
        )
    return (
        f"{len(cp)} of {etcd_members} control-plane instances are running in the cloud; the API serves "
        f"only while {quorum} of the {etcd_members} etcd members are up (quorum), and a booting machine's "
        "member is not up yet"
    )


# ---------------------------------------------------------------------------------------------------------
# Repeated validation (--wait/--count, and rolling-update's --validate-count)


@dataclass
class Attempt:
    number: int
    ok: bool
    consecutive: int
    result: ValidationResult | None
    error: str | None = None


def validate_until(
    check: Callable[[], ValidationResult],
    *,
    wait: float,
    count: int = 1,
    interval: float = 10.0,
    ok: Callable[[ValidationResult], bool] = lambda r: r.ok,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> tuple[bool, ValidationResult | None, str | None]:
    """Run ``check`` until ``count`` consecutive successes or ``wait`` seconds pass (one try when 0).

    An unreachable API counts as a failed attempt (it breaks the run of successes). Returns
    ``(passed, last result, last error)``.
    """
    deadline = clock() + wait
    consecutive = 0
    number = 0
    last: ValidationResult | None = None
    error: str | None = None
    while True:
        number += 1
        try:
            last, error = check(), None
            good = ok(last)
        except ApiUnreachable as exc:
            last, error, good = None, str(exc), False
        consecutive = consecutive + 1 if good else 0
        if on_attempt:
            on_attempt(Attempt(number, good, consecutive, last, error))
        if consecutive >= count:
            return True, last, error
        if clock() + interval > deadline:
            return False, last, error
        sleep(interval)


# ---------------------------------------------------------------------------------------------------------
# I/O: gather the facts


def group_specs(groups: Iterable[Any]) -> list[GroupSpec]:
    """``api.models.InstanceGroup`` → :class:`GroupSpec`."""
    return [
        GroupSpec(
            g.name,
            g.role_label,
            g.spec.machine_type or "",
            g.spec.min_size or 0,
            g.spec.max_size or 0,
            list(g.spec.subnets or []),
        )
        for g in groups
    ]


def etcd_member_count(cluster: Any) -> int:
    for etcd in cluster.spec.etcd_clusters or []:
        if etcd.name == "main":
            return len(etcd.etcd_members or [])
    return 0


@dataclass
class ClusterFacts:
    groups: list[GroupSpec]
    cloud_groups: list[CloudGroup]
    etcd_members: int


def validate_cluster(facts: ClusterFacts, kube: Any) -> ValidationResult:
    """Gather nodes and pods from ``kube`` (a :class:`pykops.ops.kubeclient.KubeClient`) and validate."""
    nodes = kube.nodes()
    pods = kube.pods()
    return validate(facts.groups, facts.cloud_groups, nodes, pods, etcd_members=facts.etcd_members)
