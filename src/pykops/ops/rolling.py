"""``rolling-update cluster``: replace the instances whose launch template changed, safely and resumably.

Two layers:

* a pure planner (:func:`plan_groups`, :func:`resolve_surge`, :func:`stale_marks`): given the groups, the
  cloud's instances and the nodes, which instances to replace, in which order and how many at once;
* an executor (:class:`RollingUpdate`) that carries the plan out against a cloud side (AWS Auto Scaling:
  :class:`pykops.ops.instances.AwsGroups`) and a Kubernetes side (:class:`pykops.ops.kubeclient.KubeClient`),
  with an injectable clock and sleep so tests and the benchmark drive it without real waiting.

The algorithm (kops' ``pkg/instancegroups/rollingupdate.go``, with pykops' safety additions): bastions,
then the control plane one instance at a time and never surging, then API servers, then nodes; each batch
surges first (raise the ASG's desired capacity by ``maxSurge``, wait for the new nodes to be Ready), then
per instance: cordon, taint, drain with the eviction API (PodDisruptionBudgets honoured: a 429 is retried
until ``--drain-timeout``; DaemonSet and mirror pods left), the post-drain delay, terminate in the ASG
(``ShouldDecrementDesiredCapacity`` true for the surged ones, so the capacity returns to what it was, false
for the others, so the group replaces them), delete the Node, wait for the replacements to be Ready, and
validate ``--validate-count`` times in a row counting only failures relevant to the group.

Resumable: each node being replaced carries the annotation ``pykops.io/rolling-update`` (``draining``, then
``drained``); a rerun terminates a ``drained`` node without draining it again, and removes the mark (and the
cordon it put) from a node that no longer needs replacing. A group's capacity before surging is kept in the
state store (``<cluster>/.pykops/rolling-update.json``) so a rerun restores it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from pykops.errors import PykopsError
from pykops.ops.selection import canonical_role
from pykops.ops.validate import (
    CONTROL_PLANE_ROLES,
    ApiUnreachable,
    CloudGroup,
    CloudInstance,
    GroupSpec,
    NodeInfo,
    PodInfo,
    ValidationResult,
    validate_until,
)

MARK = "pykops.io/rolling-update"
TAINT_KEY = "kops.k8s.io/scheduled-for-update"  # kops' taint on nodes about to be replaced
ROLE_ORDER = {"Bastion": 0, "ControlPlane": 1, "Master": 1, "APIServer": 2, "Node": 3}
DEFAULT_MAX_SURGE_AWS = 1


class RollingUpdateError(PykopsError):
    """The rolling update stopped (drain or validation failed, or a timeout)."""


class DrainCancelled(Exception):
    """A drain stopped because the run is stopping (not a drain failure: the node is left as it is)."""


# ---------------------------------------------------------------------------------------------------------
# The pure planner


@dataclass(frozen=True)
class Surge:
    max_surge: int
    max_unavailable: int

    @property
    def batch(self) -> int:
        return max(1, self.max_surge + self.max_unavailable)


def _amount(value: int | str | None, total: int, *, round_up: bool) -> int | None:
    """An int-or-percentage (``"20%"``) of ``total``; surge rounds up, unavailable down (as kops)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        fraction = float(value.strip()[:-1]) / 100.0 * total
        return int(math.ceil(fraction) if round_up else math.floor(fraction))
    return int(value)


def resolve_surge(
    group: GroupSpec,
    to_update: int,
    *,
    spec_surge: int | str | None = None,
    spec_unavailable: int | str | None = None,
    flag_surge: int | None = None,
    flag_unavailable: int | None = None,
) -> Surge:
    """How many instances a batch adds first (surge) and may take away (unavailable).

    The control plane never surges and goes one at a time. Nodes: flags, else the spec (group, then
    cluster), else maxSurge 1 (kops' AWS default) and maxUnavailable 0 when surging, 1 otherwise; both 0
    means 1 unavailable; surge is capped at the number of instances to replace.
    """
    if group.role in CONTROL_PLANE_ROLES:
        return Surge(0, 1)
    surge = flag_surge if flag_surge is not None else _amount(spec_surge, to_update, round_up=True)
    if surge is None:
        surge = DEFAULT_MAX_SURGE_AWS if group.role in ("Node", "APIServer") else 0
    unavailable = (
        flag_unavailable
        if flag_unavailable is not None
        else _amount(spec_unavailable, to_update, round_up=False)
    )
    if unavailable is None:
        unavailable = 0 if surge > 0 else 1
    surge = max(0, min(surge, to_update))
    unavailable = max(0, unavailable)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return Surge(surge, unavailable)


@dataclass
class GroupPlan:
    group: GroupSpec
    cloud: CloudGroup
    to_update: list[CloudInstance]
    surge: Surge
    ready: int  # instances whose node is Ready

    @property
    def batches(self) -> list[list[CloudInstance]]:
        size = self.surge.batch
        return [self.to_update[i : i + size] for i in range(0, len(self.to_update), size)]


def plan_groups(
    groups: list[GroupSpec],
    cloud: list[CloudGroup],
    nodes: list[NodeInfo],
    *,
    force: bool = False,
    only: list[str] | None = None,
    roles: list[str] | None = None,
    surge_spec: dict[str, tuple[int | str | None, int | str | None]] | None = None,
    flag_surge: int | None = None,
    flag_unavailable: int | None = None,
) -> list[GroupPlan]:
    """The groups to roll, in kops' order, each with the instances to replace (already-drained first, so
    a resumed run finishes what it started)."""
    by_cloud = {c.name: c for c in cloud}
    by_instance = {n.instance_id: n for n in nodes if n.instance_id}
    wanted_roles = {canonical_role(r) for r in roles or []}
    plans: list[GroupPlan] = []
    for g in sorted(groups, key=lambda g: (ROLE_ORDER.get(g.role, 9), g.name)):
        if only and g.name not in only:
            continue
        if wanted_roles and canonical_role(g.role) not in wanted_roles:
            continue
        cg = by_cloud.get(g.name)
        if cg is None:
            continue
        alive = [i for i in cg.instances if i.alive]
        todo = [i for i in alive if force or i.needs_update]

        def order(i: CloudInstance) -> tuple[int, str]:
            node = by_instance.get(i.id)
            mark = node.annotations.get(MARK) if node else None
            return ({"drained": 0, "draining": 1}.get(mark or "", 2), i.id)

        todo.sort(key=order)
        spec_surge, spec_unavailable = (surge_spec or {}).get(g.name, (None, None))
        surge = resolve_surge(
            g,
            len(todo),
            spec_surge=spec_surge,
            spec_unavailable=spec_unavailable,
            flag_surge=flag_surge,
            flag_unavailable=flag_unavailable,
        )
        ready = sum(1 for i in alive if (n := by_instance.get(i.id)) is not None and n.ready)
        plans.append(GroupPlan(g, cg, todo, surge, ready))
    return plans


@dataclass(frozen=True)
class StaleMark:
    node: str
    action: str  # "delete" (its instance is gone) or "release" (uncordon, untaint, unmark)


def stale_marks(cloud: list[CloudGroup], nodes: list[NodeInfo], to_update: set[str]) -> list[StaleMark]:
    """Nodes marked by an earlier (interrupted) run that the plan no longer covers."""
    alive = {i.id for cg in cloud for i in cg.instances if i.alive}
    stale: list[StaleMark] = []
    for n in nodes:
        if MARK not in n.annotations:
            continue
        if n.instance_id not in alive:
            stale.append(StaleMark(n.name, "delete"))
        elif n.instance_id not in to_update:
            stale.append(StaleMark(n.name, "release"))
    return stale


def table_rows(plans: list[GroupPlan], nodes_by_group: dict[str, int]) -> list[list[object]]:
    """``NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES`` (kops' rolling-update table)."""
    rows: list[list[object]] = []
    for p in plans:
        status = "NeedsUpdate" if p.to_update else "Ready"
        rows.append(
            [
                p.group.name,
                status,
                len(p.to_update),
                p.ready,
                p.cloud.min_size,
                p.cloud.desired,
                p.cloud.max_size,
                nodes_by_group.get(p.group.name, 0),
            ]
        )
    return rows


# ---------------------------------------------------------------------------------------------------------
# The sides the executor drives


class CloudSide(Protocol):
    def groups(self) -> list[CloudGroup]: ...

    def terminate(self, instance_id: str, *, decrement: bool) -> None: ...

    def set_desired(self, group: CloudGroup, desired: int) -> None: ...

    def restore_max(self, group: CloudGroup, max_size: int) -> None: ...


class KubeSide(Protocol):
    def nodes(self) -> list[NodeInfo]: ...

    def pods(self, node: str | None = None) -> list[PodInfo]: ...

    def cordon(self, name: str, unschedulable: bool = True) -> None: ...

    def annotate(self, name: str, key: str, value: str | None) -> None: ...

    def node_taints(self, name: str) -> list[dict[str, str]]: ...

    def set_taints(self, name: str, taints: list[dict[str, str]]) -> None: ...

    def evict(self, namespace: str, name: str) -> str: ...

    def pod_exists(self, namespace: str, name: str) -> bool: ...

    def delete_node(self, name: str) -> None: ...


class Journal(Protocol):
    """Where a group's capacity before surging is kept across runs."""

    def load(self) -> dict[str, Any]: ...

    def save(self, data: dict[str, Any]) -> None: ...


class MemoryJournal:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))  # type: ignore[no-any-return]

    def save(self, data: dict[str, Any]) -> None:
        self.data = json.loads(json.dumps(data))


class StoreJournal:
    """The journal in the state store: ``<cluster>/.pykops/rolling-update.json``."""

    def __init__(self, store: Any, cluster: str) -> None:
        self.store = store
        self.key = f"{cluster}/.pykops/rolling-update.json"

    def load(self) -> dict[str, Any]:
        found = self.store.read(self.key)
        if found is None:
            return {}
        try:
            data = json.loads(found.data)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        if data:
            self.store.put(self.key, json.dumps(data, sort_keys=True).encode())
        elif self.store.read(self.key) is not None:
            self.store.delete(self.key)


# ---------------------------------------------------------------------------------------------------------
# The executor


@dataclass
class Settings:
    force: bool = False
    cloud_only: bool = False
    instance_groups: list[str] | None = None
    roles: list[str] | None = None
    drain_timeout: float = 900.0
    drain_retry: float = 5.0
    post_drain_delay: float = 5.0
    validate_count: int = 2
    validation_timeout: float = 900.0
    validation_interval: float = 10.0
    control_plane_interval: float = 15.0
    node_interval: float = 15.0
    fail_on_validate_error: bool = True
    fail_on_drain_error: bool = True
    max_surge: int | None = None
    max_unavailable: int | None = None
    poll: float = 5.0  # how often to look at the cloud and the nodes while waiting
    #: the Kubernetes version new machines bootstrap with (one, or per instance group): nodes running
    #: another kubelet need replacing
    kubernetes_version: str | Mapping[str, str] | None = None


@dataclass
class GroupReport:
    name: str
    replaced: int = 0
    seconds: float = 0.0
    resumed: int = 0  # drained by an earlier run: terminated without draining again
    warnings: list[str] = field(default_factory=list)


@dataclass
class Summary:
    groups: list[GroupReport]
    seconds: float
    cleaned: list[StaleMark] = field(default_factory=list)

    @property
    def replaced(self) -> int:
        return sum(g.replaced for g in self.groups)


@dataclass
class Progress:
    """One step, for the progress display: what happens to which instance, elapsed and remaining."""

    group: str
    group_index: int
    group_count: int
    instance: str | None
    node: str | None
    step: str
    done: int
    total: int
    elapsed: float
    remaining: float | None

    def line(self) -> str:
        who = f" {self.instance}" + (f" ({self.node})" if self.node else "") if self.instance else ""
        left = f", ~{self.remaining:.0f}s left" if self.remaining is not None else ""
        return (
            f"[{self.elapsed:7.1f}s] {self.group} ({self.group_index}/{self.group_count}):{who} {self.step}"
            f" [{self.done}/{self.total} replaced{left}]"
        )


Check = Callable[[], ValidationResult]


class RollingUpdate:
    """Carry out a rolling update (see the module docstring)."""

    def __init__(
        self,
        cloud: CloudSide,
        kube: KubeSide | None,
        groups: list[GroupSpec],
        settings: Settings,
        *,
        check: Check | None = None,
        journal: Journal | None = None,
        surge_spec: dict[str, tuple[int | str | None, int | str | None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[Progress], None] | None = None,
        confirm: Callable[[str], bool] | None = None,
        parallel: bool = True,
    ) -> None:
        if kube is None and not settings.cloud_only:
            raise RollingUpdateError("a rolling update without --cloudonly needs the Kubernetes API")
        self.cloud = cloud
        self.kube = kube
        self.groups = groups
        self.s = settings
        self.check = check
        self.journal = journal or MemoryJournal()
        self.surge_spec = surge_spec or {}
        self.clock = clock
        self.sleep = sleep
        self.on_progress = on_progress
        self.confirm = confirm
        self.parallel = parallel
        self._start = 0.0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()  # set when the run stops while drains run in parallel
        #: every node this run drained (tests check none is drained twice across runs)
        self.drained: list[str] = []

    # --- planning ----------------------------------------------------------------------------------------

    def plan(self) -> tuple[list[GroupPlan], list[NodeInfo]]:
        cloud = self.cloud.groups()
        nodes = self.kube.nodes() if self.kube is not None and not self.s.cloud_only else []
        if self.s.kubernetes_version:
            from pykops.ops.instances import mark_version_skew

            mark_version_skew(cloud, nodes, self.s.kubernetes_version)
        plans = plan_groups(
            self.groups,
            cloud,
            nodes,
            force=self.s.force,
            only=self.s.instance_groups,
            roles=self.s.roles,
            surge_spec=self.surge_spec,
            flag_surge=self.s.max_surge,
            flag_unavailable=self.s.max_unavailable,
        )
        return plans, nodes

    # --- running -----------------------------------------------------------------------------------------

    def run(self) -> Summary:
        self._start = self.clock()
        plans, nodes = self.plan()
        cleaned = self._clean(plans, nodes)
        reports: list[GroupReport] = []
        active = [p for p in plans if p.to_update]
        for index, plan in enumerate(active, start=1):
            reports.append(self._roll_group(plan, index, len(active)))
        return Summary(reports, self.clock() - self._start, cleaned)

    def replace_instances(self, group: str, instance_ids: list[str], *, surge: bool) -> GroupReport:
        """Replace given instances of one group (``delete instance``): with ``surge`` a replacement is
        launched and Ready before the old one is drained and terminated; otherwise drain, terminate, and
        the group launches the replacement."""
        self._start = self.clock()
        plans, _ = self.plan()
        plan = next((p for p in plans if p.group.name == group), None)
        if plan is None:
            raise RollingUpdateError(f"instance group {group} not found in the cloud")
        alive = {i.id: i for i in plan.cloud.instances if i.alive}
        missing = [i for i in instance_ids if i not in alive]
        if missing:
            raise RollingUpdateError(f"instance {missing[0]} is not running in instance group {group}")
        plan.to_update = [alive[i] for i in instance_ids]
        n = len(instance_ids)
        plan.surge = Surge(n, 0) if surge and plan.group.role not in CONTROL_PLANE_ROLES else Surge(0, n)
        return self._roll_group(plan, 1, 1)

    def _clean(self, plans: list[GroupPlan], nodes: list[NodeInfo]) -> list[StaleMark]:
        if self.kube is None or self.s.cloud_only:
            return []
        planned = {i.id for p in plans for i in p.to_update}
        stale = stale_marks([p.cloud for p in plans], nodes, planned)
        for mark in stale:
            if mark.action == "delete":
                self.kube.delete_node(mark.node)
            else:
                self._release(mark.node)
        return stale

    def _release(self, node: str) -> None:
        assert self.kube is not None
        self.kube.set_taints(node, [t for t in self.kube.node_taints(node) if t.get("key") != TAINT_KEY])
        self.kube.cordon(node, False)
        self.kube.annotate(node, MARK, None)

    def _emit(
        self,
        plan: GroupPlan,
        index: int,
        count: int,
        step: str,
        done: int,
        started: float,
        instance: CloudInstance | None = None,
        node: str | None = None,
    ) -> None:
        if self.on_progress is None:
            return
        now = self.clock()
        total = len(plan.to_update)
        remaining: float | None = None
        if done:
            per_batch = (now - started) / math.ceil(done / plan.surge.batch)
            remaining = per_batch * math.ceil((total - done) / plan.surge.batch)
        with self._lock:
            self.on_progress(
                Progress(
                    plan.group.name,
                    index,
                    count,
                    instance.id if instance else None,
                    node,
                    step,
                    done,
                    total,
                    now - self._start,
                    remaining,
                )
            )

    def _roll_group(self, plan: GroupPlan, index: int, count: int) -> GroupReport:
        report = GroupReport(plan.group.name)
        started = self.clock()
        name = plan.group.name
        validating = not self.s.cloud_only and self.check is not None
        self._emit(
            plan,
            index,
            count,
            f"rolling {len(plan.to_update)} instance(s), {plan.surge.max_surge} surge / "
            f"{plan.surge.max_unavailable} unavailable at a time",
            0,
            started,
        )
        if validating:
            self._validate(plan, index, count, started, report, before=True)
        journal = self.journal.load()
        saved = journal.get(plan.cloud.asg_name)
        if plan.surge.max_surge and saved is None:
            saved = {"desired": plan.cloud.desired, "max": plan.cloud.max_size}
            journal[plan.cloud.asg_name] = saved
            self.journal.save(journal)
        original = int(saved["desired"]) if saved else plan.cloud.desired
        nodes = {n.instance_id: n for n in (self.kube.nodes() if self.kube and not self.s.cloud_only else [])}
        done = 0
        for batch in plan.batches:
            if self.confirm is not None:
                ids = ", ".join(i.id for i in batch)
                if not self.confirm(f"Replace {ids} of {name}?"):
                    raise RollingUpdateError(f"stopped at your request before replacing {ids}")
            surge = min(plan.surge.max_surge, len(batch))
            if surge:
                self._emit(
                    plan,
                    index,
                    count,
                    f"surging: desired capacity {original} → {original + surge}",
                    done,
                    started,
                )
                self.cloud.set_desired(self._fresh(plan.cloud), original + surge)
                self._wait_ready(plan, original + surge, set(), index, count, done, started)
            infos = [(inst, nodes.get(inst.id)) for inst in batch]
            if not self.s.cloud_only and self.kube is not None:
                work = [(inst, node) for inst, node in infos if node is not None]
                if self.parallel and len(work) > 1:
                    pool = ThreadPoolExecutor(max_workers=len(work))
                    try:
                        futures = [
                            pool.submit(self._drain_node, plan, i, n, index, count, done, started)
                            for i, n in work
                        ]
                        results = [f.result() for f in futures]
                    except BaseException:
                        # Ctrl-C, or another drain failed: the others stop at their next retry
                        self._cancelled.set()
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
                    pool.shutdown()
                else:
                    results = [self._drain_node(plan, i, n, index, count, done, started) for i, n in work]
                report.resumed += sum(1 for r in results if r == "resumed")
                if self.s.post_drain_delay > 0:
                    self.sleep(self.s.post_drain_delay)
            for n, (inst, node) in enumerate(infos):
                decrement = n < surge
                self._guard_control_plane(plan, inst, report, (index, count, done, started))
                self._emit(
                    plan,
                    index,
                    count,
                    "terminating" + (" (capacity back down)" if decrement else ""),
                    done,
                    started,
                    inst,
                    node.name if node else None,
                )
                self.cloud.terminate(inst.id, decrement=decrement)
                if node is not None and self.kube is not None and not self.s.cloud_only:
                    self.kube.delete_node(node.name)
            interval = (
                self.s.control_plane_interval
                if plan.group.role in CONTROL_PLANE_ROLES
                else self.s.node_interval
            )
            if interval > 0:
                self.sleep(interval)
            gone = {i.id for i in batch}
            if not self.s.cloud_only:
                self._wait_ready(plan, original, gone, index, count, done, started)
            done += len(batch)
            report.replaced += len(batch)
            self._emit(plan, index, count, "batch replaced", done, started)
            if validating:
                self._validate(plan, index, count, started, report, done=done)
            nodes = {
                n.instance_id: n for n in (self.kube.nodes() if self.kube and not self.s.cloud_only else [])
            }
        if saved:
            current = self._fresh(plan.cloud)
            if current.desired != original:
                self.cloud.set_desired(current, original)
            if current.max_size != int(saved["max"]):
                self.cloud.restore_max(current, int(saved["max"]))
            journal = self.journal.load()
            journal.pop(plan.cloud.asg_name, None)
            self.journal.save(journal)
        report.seconds = self.clock() - started
        self._emit(plan, index, count, f"done in {report.seconds:.1f}s", done, started)
        return report

    def _fresh(self, group: CloudGroup) -> CloudGroup:
        return next((g for g in self.cloud.groups() if g.asg_name == group.asg_name), group)

    def _drain_node(
        self,
        plan: GroupPlan,
        inst: CloudInstance,
        node: NodeInfo,
        index: int,
        count: int,
        done: int,
        started: float,
    ) -> str:
        """Cordon, taint, drain; returns ``"resumed"`` when an earlier run had already drained it."""
        assert self.kube is not None
        if node.annotations.get(MARK) == "drained":
            self._emit(
                plan, index, count, "already drained by an earlier run", done, started, inst, node.name
            )
            return "resumed"
        self._emit(plan, index, count, "cordoning and draining", done, started, inst, node.name)
        self.kube.annotate(node.name, MARK, "draining")
        self.kube.cordon(node.name, True)
        taints = self.kube.node_taints(node.name)
        if not any(t.get("key") == TAINT_KEY for t in taints):
            self.kube.set_taints(node.name, [*taints, {"key": TAINT_KEY, "effect": "PreferNoSchedule"}])
        try:
            self._drain(node.name)
        except RollingUpdateError as exc:
            if self.s.fail_on_drain_error:
                self._release(node.name)
                raise RollingUpdateError(f"{exc}; {node.name} was uncordoned and left in place") from None
            self._emit(
                plan, index, count, f"drain failed, terminating anyway: {exc}", done, started, inst, node.name
            )
        self.kube.annotate(node.name, MARK, "drained")
        with self._lock:
            self.drained.append(node.name)
        return "drained"

    def _drain(self, node: str) -> None:
        assert self.kube is not None
        drain_node(
            self.kube,
            node,
            timeout=self.s.drain_timeout,
            retry=self.s.drain_retry,
            clock=self.clock,
            sleep=self.sleep,
            cancelled=self._cancelled.is_set,
        )

    def _guard_control_plane(
        self, plan: GroupPlan, inst: CloudInstance, report: GroupReport, where: tuple[int, int, int, float]
    ) -> None:
        """Right before a control-plane instance is terminated, every other control-plane member (as many as
        the control-plane groups' minimum sizes add up to, less this one) must run as a Ready node.

        Validation passed after the previous replacement, but a node can fail (or vanish) while this one
        drains; losing this member then as well could cost etcd its quorum. So wait (up to
        ``--validation-timeout``) and stop rather than terminate while another one is not Ready.
        """
        if plan.group.role not in CONTROL_PLANE_ROLES or self.s.cloud_only or self.kube is None:
            return
        index, count, done, started = where
        expected = sum(g.min_size for g in self.groups if g.role in CONTROL_PLANE_ROLES)
        deadline = self.clock() + self.s.validation_timeout
        announced = False
        while True:
            try:
                nodes = self.kube.nodes()
            except ApiUnreachable:
                nodes = None
            if nodes is not None:
                others = [n for n in nodes if n.role == "control-plane" and n.instance_id != inst.id]
                ready = sum(1 for n in others if n.ready)
                if ready >= expected - 1:
                    return
                not_ready = sorted(n.name for n in others if not n.ready)
                what = f"{ready} of the other {expected - 1} control-plane nodes Ready" + (
                    f" ({', '.join(not_ready)} not Ready)" if not_ready else ""
                )
            else:
                what = "the API is unreachable"
            if self.clock() + self.s.poll > deadline:
                message = (
                    f"not terminating {inst.id} of {plan.group.name}: {what} for "
                    f"{self.s.validation_timeout:.0f}s; replacing another control-plane member now could "
                    "cost etcd its quorum"
                )
                if self.s.fail_on_validate_error:
                    raise RollingUpdateError(
                        message,
                        hint="bring the control plane back to Ready (pykops validate cluster) and run again, "
                        "or pass --fail-on-validate-error=false to go on anyway",
                    )
                report.warnings.append(f"{message} (went on anyway)")
                self._emit(plan, index, count, f"warning: {message} (going on anyway)", done, started)
                return
            if not announced:
                self._emit(plan, index, count, f"waiting before terminating: {what}", done, started)
                announced = True
            self.sleep(self.s.poll)

    def _wait_ready(
        self, plan: GroupPlan, want: int, gone: set[str], index: int, count: int, done: int, started: float
    ) -> None:
        """Until ``gone`` have left the group and ``want`` of its instances run as Ready nodes."""
        deadline = self.clock() + self.s.validation_timeout
        self._emit(plan, index, count, f"waiting for {want} Ready instance(s)", done, started)
        while True:
            cg = self._fresh(plan.cloud)
            alive = [i for i in cg.instances if i.alive]
            still = [i.id for i in alive if i.id in gone]
            ready = len(alive)
            if not self.s.cloud_only and self.kube is not None:
                try:
                    nodes = {n.instance_id: n for n in self.kube.nodes() if n.ready}
                except ApiUnreachable:
                    nodes = {}
                ready = sum(1 for i in alive if i.id in nodes and i.id not in gone)
            if not still and ready >= want:
                return
            if self.clock() + self.s.poll > deadline:
                raise RollingUpdateError(
                    f"instance group {plan.group.name}: {ready} of {want} instances Ready after "
                    f"{self.s.validation_timeout:.0f}s"
                    + (f" ({', '.join(still)} still running)" if still else "")
                )
            self.sleep(self.s.poll)

    def _validate(
        self,
        plan: GroupPlan,
        index: int,
        count: int,
        started: float,
        report: GroupReport,
        *,
        before: bool = False,
        done: int = 0,
    ) -> None:
        assert self.check is not None
        name = plan.group.name
        # The control plane is one: no control-plane instance is replaced while another one is not well.
        relevant = (
            [g.name for g in self.groups if g.role in CONTROL_PLANE_ROLES]
            if plan.group.role in CONTROL_PLANE_ROLES
            else [name]
        )
        passed, last, error = validate_until(
            self.check,
            wait=self.s.validation_timeout,
            count=1 if before else self.s.validate_count,
            interval=self.s.validation_interval,
            ok=lambda r: not r.only_group(*relevant),
            clock=self.clock,
            sleep=self.sleep,
        )
        if passed:
            self._emit(
                plan, index, count, "validated" + (" before starting" if before else ""), done, started
            )
            return
        details = error or "; ".join(f.message for f in (last.only_group(*relevant) if last else []))
        when = "before rolling" if before else "after replacing instances of"
        message = f"cluster did not validate {when} {name}: {details}"
        if self.s.fail_on_validate_error:
            raise RollingUpdateError(message, hint="fix it, or pass --fail-on-validate-error=false")
        report.warnings.append(message)
        self._emit(plan, index, count, f"warning: {message}", done, started)


def drain_node(
    kube: KubeSide,
    node: str,
    *,
    timeout: float,
    retry: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Evict every pod of ``node`` but DaemonSet, mirror and finished pods (as ``kubectl drain
    --ignore-daemonsets``); 429s (a PodDisruptionBudget) are retried until ``timeout``, when
    :class:`RollingUpdateError` says which pods are left and why. ``cancelled()`` true stops it at the
    next retry (the node stays cordoned and marked: a later run resumes it)."""
    deadline = clock() + timeout
    pending = {
        (p.namespace, p.name)
        for p in kube.pods(node)
        if not p.mirror and not p.daemonset and p.phase not in ("Succeeded", "Failed")
    }
    evicted: set[tuple[str, str]] = set()
    blocked: dict[tuple[str, str], str] = {}
    while True:
        for key in sorted(pending - evicted):
            answer = kube.evict(*key)
            if answer in ("evicted", "gone"):
                evicted.add(key)
                blocked.pop(key, None)
            else:
                blocked[key] = answer
        evicted = {k for k in evicted if kube.pod_exists(*k)}
        pending = {k for k in pending if k in blocked or k in evicted}
        if not pending:
            return
        if clock() + retry > deadline:
            why = "; ".join(
                f"{ns}/{n} {blocked.get((ns, n), 'still terminating')}" for ns, n in sorted(pending)
            )
            raise RollingUpdateError(f"draining {node} did not finish within {timeout:.0f}s: {why}")
        if cancelled():
            raise DrainCancelled(f"draining {node} stopped: the rolling update is stopping")
        sleep(retry)


def drain_group(
    kube: KubeSide,
    group: str,
    *,
    timeout: float,
    retry: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_node: Callable[[str], None] | None = None,
) -> list[str]:
    """Cordon and drain every node of instance group ``group`` (``delete ig``); returns their names."""
    names = [n.name for n in kube.nodes() if n.group == group]
    for name in names:
        if on_node:
            on_node(name)
        kube.cordon(name, True)
        drain_node(kube, name, timeout=timeout, retry=retry, clock=clock, sleep=sleep)
    return names


# ---------------------------------------------------------------------------------------------------------
# An in-memory simulated cluster (a FAKE, for unit tests and the benchmark's fast mode; not the sandbox)


@dataclass
class _SimInstance:
    id: str
    group: str
    lt_version: str
    launched: float
    zone: str
    terminated: float | None = None


@dataclass
class _SimGroup:
    spec: GroupSpec
    desired: int
    min_size: int
    max_size: int
    lt_version: str = "1"
    zones: list[str] = field(default_factory=lambda: ["zone-a", "zone-b", "zone-c"])


@dataclass
class _SimPod:
    namespace: str
    name: str
    node: str | None
    ready_at: float | None
    app: str = ""
    daemonset: bool = False
    mirror: bool = False
    priority_class: str = ""


class SimulatedCluster:
    """A FAKE cloud + Kubernetes API in memory, driven by an injectable clock: ASGs that launch instances
    up to their desired capacity, instances that join as Ready nodes ``boot`` seconds after launch, a
    Deployment-like workload whose evicted pods come back Ready ``pod_start`` seconds later on another
    schedulable node, and a PodDisruptionBudget (``min_available``) that the eviction API honours. It
    implements :class:`CloudSide` and :class:`KubeSide`. It simulates nothing of AWS or Kubernetes beyond
    what the rolling-update logic needs; integration tests use the real emulators."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        boot: float = 30.0,
        pod_start: float = 2.0,
        control_plane_pods: bool = True,
    ) -> None:
        self.clock = clock
        self.boot = boot
        self.pod_start = pod_start
        self.control_plane_pods = control_plane_pods
        self._groups: dict[str, _SimGroup] = {}
        self._instances: dict[str, _SimInstance] = {}
        self._node_state: dict[str, dict[str, Any]] = {}
        self._deleted_nodes: set[str] = set()
        self._pods: dict[tuple[str, str], _SimPod] = {}
        self._pdb: dict[str, int] = {}
        self._counter = 0
        self._lock = threading.RLock()
        self.evictions = 0
        self.blocked_evictions = 0
        self.min_ready: dict[str, int] = {}
        self.terminations: list[str] = []

    # --- set up ------------------------------------------------------------------------------------------

    def add_group(self, name: str, role: str, size: int, *, start_ready: bool = True) -> GroupSpec:
        spec = GroupSpec(name, role, "t3.medium", size, size, [f"subnet-{z}" for z in "abc"])
        self._groups[name] = _SimGroup(spec, size, size, size)
        self._reconcile(launched=self.clock() - (self.boot if start_ready else 0))
        return spec

    def add_workload(self, app: str, replicas: int, min_available: int) -> None:
        with self._lock:
            for n in range(replicas):
                self._new_pod(app, f"{app}-{n}", start=0.0)
            self._pdb[app] = min_available
            self._note_ready(app)

    def new_version(self, group: str) -> None:
        """Like ``update cluster`` after a spec change: a new launch-template version for the group."""
        g = self._groups[group]
        g.lt_version = str(int(g.lt_version) + 1)

    # --- internals ---------------------------------------------------------------------------------------

    def _reconcile(self, launched: float | None = None) -> None:
        with self._lock:
            now = self.clock()
            for g in self._groups.values():
                alive = [
                    i for i in self._instances.values() if i.group == g.spec.name and i.terminated is None
                ]
                for _ in range(g.desired - len(alive)):
                    self._counter += 1
                    iid = f"i-{self._counter:08x}"
                    zone = g.zones[(self._counter) % len(g.zones)]
                    self._instances[iid] = _SimInstance(iid, g.spec.name, g.lt_version, launched or now, zone)
            for iid, inst in list(self._instances.items()):
                if inst.terminated is not None and now - inst.terminated > 1.0:
                    del self._instances[iid]
            ready_nodes = self._ready_nodes()
            for pod in self._pods.values():
                if pod.node is not None and pod.node not in ready_nodes and not pod.mirror:
                    pod.node, pod.ready_at = None, None  # its machine went away: rescheduled
                if pod.node is None and not pod.mirror:
                    target = self._schedule()
                    if target:
                        pod.node, pod.ready_at = target, now + self.pod_start
            for app in self._pdb:
                self._note_ready(app)

    def _node_name(self, inst: _SimInstance) -> str:
        return f"ip-{inst.id[2:]}.internal"

    def _ready_nodes(self) -> dict[str, _SimInstance]:
        now = self.clock()
        return {
            self._node_name(i): i
            for i in self._instances.values()
            if i.terminated is None
            and now >= i.launched + self.boot
            and self._node_name(i) not in self._deleted_nodes
        }

    def _schedule(self) -> str | None:
        nodes = [
            n
            for n, inst in self._ready_nodes().items()
            if not self._node_state.get(n, {}).get("unschedulable")
            and self._groups[inst.group].spec.role == "Node"
        ]
        if not nodes:
            return None
        load = {n: 0 for n in nodes}
        for p in self._pods.values():
            if p.node in load:
                load[p.node] += 1
        return min(nodes, key=lambda n: (load[n], n))

    def _new_pod(self, app: str, name: str, start: float | None = None) -> None:
        target = self._schedule()
        ready_at = (self.clock() + (self.pod_start if start is None else start)) if target else None
        self._pods[("default", name)] = _SimPod("default", name, target, ready_at, app)

    def _ready_count(self, app: str) -> int:
        now = self.clock()
        ready_nodes = self._ready_nodes()
        return sum(
            1
            for p in self._pods.values()
            if p.app == app and p.node in ready_nodes and p.ready_at is not None and now >= p.ready_at
        )

    def _note_ready(self, app: str) -> None:
        count = self._ready_count(app)
        self.min_ready[app] = min(self.min_ready.get(app, count), count)

    # --- CloudSide ---------------------------------------------------------------------------------------

    def groups(self) -> list[CloudGroup]:
        with self._lock:
            self._reconcile()
            result = []
            for g in self._groups.values():
                cg = CloudGroup(
                    g.spec.name, f"{g.spec.name}.sim", g.min_size, g.max_size, g.desired, g.lt_version
                )
                for i in sorted(self._instances.values(), key=lambda i: i.id):
                    if i.group != g.spec.name:
                        continue
                    cg.instances.append(
                        CloudInstance(
                            i.id,
                            g.spec.name,
                            lifecycle="Terminating" if i.terminated is not None else "InService",
                            state="shutting-down" if i.terminated is not None else "running",
                            lt_version=i.lt_version,
                            needs_update=i.lt_version != g.lt_version,
                            zone=i.zone,
                        )
                    )
                result.append(cg)
            return result

    def terminate(self, instance_id: str, *, decrement: bool) -> None:
        with self._lock:
            inst = self._instances[instance_id]
            inst.terminated = self.clock()
            self.terminations.append(instance_id)
            if decrement:
                g = self._groups[inst.group]
                if g.desired - 1 < g.min_size:
                    raise RollingUpdateError("ValidationError: desired capacity would go below the minimum")
                g.desired -= 1
            self._reconcile()

    def set_desired(self, group: CloudGroup, desired: int) -> None:
        with self._lock:
            g = self._groups[group.name]
            g.desired = desired
            g.max_size = max(g.max_size, desired)
            self._reconcile()

    def restore_max(self, group: CloudGroup, max_size: int) -> None:
        self._groups[group.name].max_size = max_size

    # --- KubeSide ----------------------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        with self._lock:
            self._reconcile()
            result = []
            for name, inst in sorted(self._ready_nodes().items()):
                state = self._node_state.setdefault(name, {})
                role = self._groups[inst.group].spec.role
                result.append(
                    NodeInfo(
                        name,
                        "control-plane" if role in CONTROL_PLANE_ROLES else "node",
                        True,
                        inst.id,
                        inst.group,
                        inst.zone,
                        f"v1.{30 + int(inst.lt_version)}.0",
                        bool(state.get("unschedulable")),
                        dict(state.get("annotations", {})),
                        [t["key"] for t in state.get("taints", [])],
                    )
                )
            return result

    def pods(self, node: str | None = None) -> list[PodInfo]:
        with self._lock:
            self._reconcile()
            now = self.clock()
            result = []
            for p in self._pods.values():
                if node is not None and p.node != node:
                    continue
                ready = p.ready_at is not None and now >= p.ready_at
                result.append(
                    PodInfo(
                        p.namespace,
                        p.name,
                        p.node,
                        "Running" if p.node else "Pending",
                        ready,
                        p.priority_class,
                        p.mirror,
                        p.daemonset,
                        p.app,
                    )
                )
            if self.control_plane_pods:
                for name, inst in self._ready_nodes().items():
                    if node is not None and name != node:
                        continue
                    if self._groups[inst.group].spec.role in CONTROL_PLANE_ROLES:
                        for comp in (
                            "kube-apiserver",
                            "kube-controller-manager",
                            "kube-scheduler",
                            "etcd-server",
                        ):
                            result.append(
                                PodInfo(
                                    "kube-system",
                                    f"{comp}-{name}",
                                    name,
                                    "Running",
                                    True,
                                    "system-cluster-critical",
                                    True,
                                    False,
                                    "",
                                )
                            )
            return result

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        with self._lock:
            self._node_state.setdefault(name, {})["unschedulable"] = unschedulable

    def annotate(self, name: str, key: str, value: str | None) -> None:
        with self._lock:
            notes = self._node_state.setdefault(name, {}).setdefault("annotations", {})
            if value is None:
                notes.pop(key, None)
            else:
                notes[key] = value

    def node_taints(self, name: str) -> list[dict[str, str]]:
        return list(self._node_state.get(name, {}).get("taints", []))

    def set_taints(self, name: str, taints: list[dict[str, str]]) -> None:
        with self._lock:
            self._node_state.setdefault(name, {})["taints"] = list(taints)

    def evict(self, namespace: str, name: str) -> str:
        with self._lock:
            self._reconcile()
            pod = self._pods.get((namespace, name))
            if pod is None:
                return "gone"
            now = self.clock()
            minimum = self._pdb.get(pod.app)
            if minimum is not None:
                ready = self._ready_count(pod.app)
                this_ready = (
                    pod.ready_at is not None and now >= pod.ready_at and pod.node in self._ready_nodes()
                )
                if ready - int(this_ready) < minimum:
                    self.blocked_evictions += 1
                    return f"blocked: the eviction would violate the disruption budget of {pod.app}"
            del self._pods[(namespace, name)]
            self.evictions += 1
            self._counter += 1
            self._new_pod(pod.app, f"{pod.app}-r{self._counter}")
            self._note_ready(pod.app)
            return "evicted"

    def pod_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._pods

    def delete_node(self, name: str) -> None:
        with self._lock:
            self._deleted_nodes.add(name)
            self._node_state.pop(name, None)
            self._reconcile()


class FakeClock:
    """Simulated time for tests: ``sleep`` advances it at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)
