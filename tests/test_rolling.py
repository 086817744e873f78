"""rolling-update: the pure planner, and the executor against the in-memory SimulatedCluster (a fake, with a
simulated clock): order, surge, PodDisruptionBudgets, resumption after an interruption, failures."""

from __future__ import annotations

import pytest

from pykops.ops.rolling import (
    MARK,
    TAINT_KEY,
    FakeClock,
    MemoryJournal,
    Progress,
    RollingUpdate,
    RollingUpdateError,
    Settings,
    SimulatedCluster,
    Surge,
    plan_groups,
    resolve_surge,
    stale_marks,
    table_rows,
)
from pykops.ops.validate import CloudGroup, CloudInstance, GroupSpec, NodeInfo, ValidationResult, validate

NODE = GroupSpec("nodes", "Node", "t3.medium", 3, 3)
CP = GroupSpec("control-plane-a", "ControlPlane", "t3.medium", 1, 1)


# --- planner ----------------------------------------------------------------------------------------------


def test_control_plane_never_surges_and_goes_one_at_a_time() -> None:
    assert resolve_surge(CP, 3, flag_surge=5, flag_unavailable=4) == Surge(0, 1)
    assert resolve_surge(GroupSpec("m", "Master"), 3) == Surge(0, 1)


def test_node_defaults_surge_one_on_aws_then_flags_then_spec() -> None:
    assert resolve_surge(NODE, 5) == Surge(1, 0)
    assert resolve_surge(NODE, 5, flag_surge=3) == Surge(3, 0)
    assert resolve_surge(NODE, 2, flag_surge=3) == Surge(2, 0)  # capped at what needs replacing
    assert resolve_surge(NODE, 5, flag_surge=0) == Surge(0, 1)
    assert resolve_surge(NODE, 5, flag_surge=0, flag_unavailable=0) == Surge(0, 1)
    assert resolve_surge(NODE, 10, spec_surge="25%", spec_unavailable="15%") == Surge(3, 1)
    assert resolve_surge(NODE, 10, spec_surge=2, flag_surge=1).max_surge == 1


def _cloud(name: str, versions: list[str], group_version: str = "2") -> CloudGroup:
    cg = CloudGroup(name, f"{name}.c", len(versions), len(versions), len(versions), group_version)
    for n, v in enumerate(versions):
        cg.instances.append(
            CloudInstance(f"i-{name}-{n}", name, lt_version=v, needs_update=v != group_version)
        )
    return cg


def test_plan_orders_control_plane_first_and_picks_outdated_instances() -> None:
    groups = [NODE, CP, GroupSpec("bastions", "Bastion")]
    cloud = [_cloud("nodes", ["1", "2", "1"]), _cloud("control-plane-a", ["1"]), _cloud("bastions", ["2"])]
    plans = plan_groups(groups, cloud, [])
    assert [p.group.name for p in plans] == ["bastions", "control-plane-a", "nodes"]
    assert [i.id for i in plans[2].to_update] == ["i-nodes-0", "i-nodes-2"]
    assert plans[0].to_update == []
    forced = plan_groups(groups, cloud, [], force=True, only=["nodes"])
    assert [p.group.name for p in forced] == ["nodes"] and len(forced[0].to_update) == 3
    by_role = plan_groups(groups, cloud, [], roles=["master"])
    assert [p.group.name for p in by_role] == ["control-plane-a"]


def test_plan_puts_instances_drained_by_an_earlier_run_first() -> None:
    cloud = [_cloud("nodes", ["1", "1", "1"])]
    nodes = [NodeInfo("n2", "node", True, "i-nodes-2", "nodes", annotations={MARK: "drained"})]
    plan = plan_groups([NODE], cloud, nodes)[0]
    assert plan.to_update[0].id == "i-nodes-2"
    assert [len(b) for b in plan.batches] == [1, 1, 1]


def test_table_rows_have_kops_columns() -> None:
    plans = plan_groups([NODE], [_cloud("nodes", ["1", "2", "2"])], [])
    assert table_rows(plans, {"nodes": 3}) == [["nodes", "NeedsUpdate", 1, 0, 3, 3, 3, 3]]


def test_stale_marks_delete_gone_nodes_and_release_up_to_date_ones() -> None:
    cloud = [_cloud("nodes", ["2", "2"])]
    nodes = [
        NodeInfo("gone", "node", False, "i-old", "nodes", annotations={MARK: "drained"}),
        NodeInfo("kept", "node", True, "i-nodes-0", "nodes", annotations={MARK: "draining"}),
        NodeInfo("other", "node", True, "i-nodes-1", "nodes", unschedulable=True),
    ]
    assert [(m.node, m.action) for m in stale_marks(cloud, nodes, set())] == [
        ("gone", "delete"),
        ("kept", "release"),
    ]


# --- executor against the in-memory fake --------------------------------------------------------------------


def _setup(
    nodes: int = 3, cps: int = 1, boot: float = 30.0
) -> tuple[FakeClock, SimulatedCluster, list[GroupSpec]]:
    clock = FakeClock()
    sim = SimulatedCluster(clock, boot=boot, pod_start=2.0)
    specs = [sim.add_group(f"control-plane-{z}", "ControlPlane", 1) for z in "abc"[:cps]]
    specs.append(sim.add_group("nodes", "Node", nodes))
    return clock, sim, specs


def _fast(**kw: object) -> Settings:
    base: dict[str, object] = dict(
        post_drain_delay=1,
        control_plane_interval=0,
        node_interval=0,
        validation_interval=1,
        poll=1,
        drain_retry=1,
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def _check(sim: SimulatedCluster, specs: list[GroupSpec]) -> ValidationResult:
    return validate(specs, sim.groups(), sim.nodes(), sim.pods())


def _runner(sim: SimulatedCluster, clock: FakeClock, specs: list[GroupSpec], settings: Settings,
            journal: MemoryJournal | None = None, **kw: object) -> RollingUpdate:  # fmt: skip
    return RollingUpdate(
        sim,
        sim,
        specs,
        settings,
        check=lambda: _check(sim, specs),
        journal=journal,
        clock=clock,
        sleep=clock.sleep,
        parallel=False,
        **kw,  # type: ignore[arg-type]
    )


def test_rolls_every_outdated_instance_keeping_the_pdb_and_control_plane_ready() -> None:
    clock, sim, specs = _setup(nodes=3, cps=3)
    sim.add_workload("web", replicas=4, min_available=3)
    for name in ("control-plane-a", "control-plane-b", "control-plane-c", "nodes"):
        sim.new_version(name)
    events: list[Progress] = []
    cp_ready_at_termination: list[int] = []
    real_terminate = sim.terminate

    def terminate(instance_id: str, *, decrement: bool) -> None:
        group = next(g for g in sim.groups() for i in g.instances if i.id == instance_id)
        if group.name.startswith("control-plane"):
            cp_ready_at_termination.append(
                sum(1 for n in sim.nodes() if n.role == "control-plane" and n.ready)
            )
        real_terminate(instance_id, decrement=decrement)

    sim.terminate = terminate  # type: ignore[method-assign]
    summary = _runner(sim, clock, specs, _fast(), on_progress=events.append).run()
    assert [g.name for g in summary.groups] == [
        "control-plane-a",
        "control-plane-b",
        "control-plane-c",
        "nodes",
    ]
    assert summary.replaced == 6
    assert all(not i.needs_update for g in sim.groups() for i in g.instances if i.alive)
    assert all(len([i for i in g.instances if i.alive]) == g.desired for g in sim.groups())
    assert sim.groups()[-1].desired == 3 and sim.groups()[-1].max_size == 3  # surge undone
    assert cp_ready_at_termination == [3, 3, 3]  # never replaced one while another was not Ready
    assert sim.min_ready["web"] >= 3
    assert sim.evictions >= 3
    assert not [n for n in sim.nodes() if n.unschedulable or MARK in n.annotations]
    assert any("~" in e.line() and "left" in e.line() for e in events)
    assert _check(sim, specs).ok


def test_pdb_blocks_eviction_until_replacements_are_ready() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.add_workload("web", replicas=2, min_available=2)  # nothing may go: every eviction waits
    sim.new_version("nodes")
    with pytest.raises(RollingUpdateError, match="did not finish within 20s"):
        _runner(sim, clock, specs, _fast(drain_timeout=20)).run()
    assert sim.blocked_evictions > 0 and sim.min_ready["web"] == 2
    # failing the drain uncordons the node and removes the mark: nothing cordoned is left behind
    assert not [n for n in sim.nodes() if n.unschedulable or MARK in n.annotations]
    assert sim.terminations == []


def test_surge_three_replaces_in_fewer_batches() -> None:
    times = {}
    for surge in (1, 3):
        clock, sim, specs = _setup(nodes=6, cps=1, boot=30.0)
        sim.new_version("nodes")
        start = clock()
        summary = _runner(sim, clock, specs, _fast(max_surge=surge, instance_groups=["nodes"])).run()
        times[surge] = clock() - start
        assert summary.replaced == 6
        assert all(not i.needs_update for g in sim.groups() for i in g.instances if i.alive)
        assert sim.groups()[-1].desired == 6
    assert times[3] < times[1] / 2


def test_interrupted_run_resumes_without_draining_twice_or_leaving_cordons() -> None:
    clock, sim, specs = _setup(nodes=4, cps=1)
    sim.add_workload("web", replicas=3, min_available=2)
    sim.new_version("nodes")
    journal = MemoryJournal()
    terminations = 0

    def crash_on_third_terminate(p: Progress) -> None:
        nonlocal terminations
        if p.step.startswith("terminating"):
            terminations += 1
            if terminations == 3:
                raise KeyboardInterrupt  # Ctrl-C after the node was drained, before it was terminated

    first = _runner(
        sim, clock, specs, _fast(instance_groups=["nodes"]), journal, on_progress=crash_on_third_terminate
    )
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert journal.data  # the surge capacity is remembered
    marked = [n.name for n in sim.nodes() if n.annotations.get(MARK) == "drained"]
    assert len(marked) == 1 and marked[0] in first.drained
    second = _runner(sim, clock, specs, _fast(instance_groups=["nodes"]), journal)
    summary = second.run()
    assert summary.groups[0].resumed == 1
    assert not set(first.drained) & set(second.drained)
    assert len(first.drained) + len(second.drained) == 4
    assert all(not i.needs_update for g in sim.groups() for i in g.instances if i.alive)
    assert not [n for n in sim.nodes() if n.unschedulable or MARK in n.annotations]
    assert sim.groups()[-1].desired == 4 and sim.groups()[-1].max_size == 4
    assert journal.data == {}
    assert sim.min_ready["web"] >= 2


def test_validation_failure_stops_unless_told_to_continue() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.new_version("nodes")

    def failing() -> ValidationResult:
        result = _check(sim, specs)
        from pykops.ops.validate import ValidationError

        result.failures.append(ValidationError("Pod", "kube-system/dns", "pod is not ready", "nodes"))
        return result

    with pytest.raises(RollingUpdateError, match="did not validate before rolling nodes"):
        RollingUpdate(
            sim, sim, specs, _fast(validation_timeout=60), check=failing, clock=clock, sleep=clock.sleep
        ).run()
    assert sim.terminations == []
    lenient = _fast(validation_timeout=60, fail_on_validate_error=False)
    summary = RollingUpdate(sim, sim, specs, lenient, check=failing, clock=clock, sleep=clock.sleep).run()
    assert summary.replaced == 2 and summary.groups[0].warnings


def test_failures_of_other_groups_do_not_block_a_group() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.new_version("nodes")

    def other_group_broken() -> ValidationResult:
        result = _check(sim, specs)
        from pykops.ops.validate import ValidationError

        result.failures.append(ValidationError("Node", "x", "not ready", "control-plane-a"))
        return result

    summary = RollingUpdate(
        sim,
        sim,
        specs,
        _fast(validation_timeout=60),
        check=other_group_broken,
        clock=clock,
        sleep=clock.sleep,
    ).run()
    assert summary.replaced == 2


def test_cloudonly_terminates_without_draining() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.add_workload("web", replicas=2, min_available=2)
    sim.new_version("nodes")
    run = RollingUpdate(sim, None, specs, _fast(cloud_only=True), clock=clock, sleep=clock.sleep)
    summary = run.run()
    assert summary.replaced == 2 and run.drained == [] and sim.evictions == 0


def test_interactive_no_stops_before_anything_changes() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.new_version("nodes")
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    with pytest.raises(RollingUpdateError, match="stopped at your request"):
        _runner(sim, clock, specs, _fast(), confirm=no).run()
    assert len(asked) == 1 and sim.terminations == []


def test_taint_applied_while_draining() -> None:
    clock, sim, specs = _setup(nodes=1, cps=1)
    sim.new_version("nodes")
    seen: list[list[str]] = []

    def watch(p: Progress) -> None:
        if p.step.startswith("terminating") and p.node:
            seen.append([t["key"] for t in sim.node_taints(p.node)])

    _runner(sim, clock, specs, _fast(), on_progress=watch).run()
    assert seen == [[TAINT_KEY]]


def test_nodes_running_another_kubelet_version_need_an_update() -> None:
    from pykops.ops.instances import mark_version_skew

    cloud = [_cloud("nodes", ["2", "2", "2"])]
    nodes = [
        NodeInfo("a", "node", True, "i-nodes-0", "nodes", kubelet_version="v1.34.2"),
        NodeInfo("b", "node", True, "i-nodes-1", "nodes", kubelet_version="v1.35.0"),
    ]  # i-nodes-2 has not joined: nothing to compare
    assert mark_version_skew(cloud, nodes, "1.35.0") == 1
    assert [i.needs_update for i in cloud[0].instances] == [True, False, False]
    assert mark_version_skew(cloud, nodes, None) == 0


def test_version_skew_is_judged_per_instance_group() -> None:
    """After `update --instance-group-roles control-plane`, the nodes' groups still bootstrap the old version:
    their nodes need no update yet."""
    from pykops.ops.instances import mark_version_skew

    cloud = [_cloud("control-plane-a", ["2"]), _cloud("nodes", ["2"])]
    nodes = [
        NodeInfo(
            "cp", "control-plane", True, "i-control-plane-a-0", "control-plane-a", kubelet_version="v1.34.2"
        ),
        NodeInfo("n", "node", True, "i-nodes-0", "nodes", kubelet_version="v1.34.2"),
    ]
    assert mark_version_skew(cloud, nodes, {"control-plane-a": "1.35.0", "nodes": "1.34.2"}) == 1
    assert [g.instances[0].needs_update for g in cloud] == [True, False]
    assert mark_version_skew(cloud, nodes, {}) == 0  # no NodeupConfig found: the launch templates decide


def test_delete_instance_with_surge_launches_the_replacement_first() -> None:
    clock, sim, specs = _setup(nodes=2, cps=1)
    sim.add_workload("web", replicas=3, min_available=2)
    victim = sim.groups()[-1].instances[0].id
    seen: list[tuple[str, int]] = []

    def watch(p: Progress) -> None:
        seen.append((p.step, len([n for n in sim.nodes() if n.group == "nodes"])))

    report = _runner(sim, clock, specs, _fast(), on_progress=watch).replace_instances(
        "nodes", [victim], surge=True
    )
    assert report.replaced == 1
    alive = [i.id for i in sim.groups()[-1].instances if i.alive]
    assert victim not in alive and len(alive) == 2 and sim.groups()[-1].desired == 2
    assert next(n for step, n in seen if step == "cordoning and draining") == 3  # the replacement was Ready
    assert sim.min_ready["web"] == 2
    with pytest.raises(RollingUpdateError, match="not running"):
        _runner(sim, clock, specs, _fast()).replace_instances("nodes", [victim], surge=False)


def test_no_control_plane_instance_is_replaced_while_another_is_not_ready() -> None:
    clock, sim, specs = _setup(nodes=1, cps=3)
    sim.new_version("control-plane-a")
    other = next(n.name for n in sim.nodes() if n.group == "control-plane-b")

    def b_not_ready() -> ValidationResult:
        result = _check(sim, specs)
        from pykops.ops.validate import ValidationError

        result.failures.append(ValidationError("Node", other, "not ready", "control-plane-b"))
        return result

    with pytest.raises(RollingUpdateError, match="did not validate before rolling control-plane-a"):
        RollingUpdate(
            sim, sim, specs, _fast(validation_timeout=30), check=b_not_ready, clock=clock, sleep=clock.sleep
        ).run()
    assert sim.terminations == []


def test_a_control_plane_node_lost_during_a_drain_stops_the_next_termination() -> None:
    """Validation passed, then control-plane-b's node goes away while control-plane-a drains: terminating
    a's instance too would leave 1 of 3 etcd members, so the run stops (or, told to go on, warns)."""
    clock, sim, specs = _setup(nodes=1, cps=3)
    sim.new_version("control-plane-a")
    other = next(n.name for n in sim.nodes() if n.group == "control-plane-b")
    steps: list[str] = []

    def lose_b(p: Progress) -> None:
        steps.append(p.step)
        if p.group == "control-plane-a" and p.step.startswith("cordoning"):
            sim.delete_node(other)

    with pytest.raises(
        RollingUpdateError, match=r"not terminating i-\S+ of control-plane-a: 1 of the other 2"
    ):
        _runner(sim, clock, specs, _fast(validation_timeout=30), on_progress=lose_b).run()
    assert sim.terminations == []
    assert any(s.startswith("waiting before terminating: 1 of the other 2") for s in steps)

    lenient = _fast(validation_timeout=30, fail_on_validate_error=False)
    summary = _runner(sim, clock, specs, lenient).run()
    assert len(sim.terminations) == 1 and any(
        "went on anyway" in w for g in summary.groups for w in g.warnings
    )


def test_ctrl_c_during_parallel_drains_stops_them_at_their_next_retry() -> None:
    """Two nodes drain at once and a PodDisruptionBudget blocks both; Ctrl-C must not wait out the drain
    timeout (here 300 s): the drains stop at their next retry and the nodes stay marked for the next run."""
    import signal
    import threading
    import time

    sim = SimulatedCluster(time.monotonic, boot=0.01, pod_start=0.01)
    specs = [sim.add_group("control-plane-a", "ControlPlane", 1), sim.add_group("nodes", "Node", 2)]
    sim.add_workload("web", replicas=2, min_available=2)  # no eviction is ever allowed
    sim.new_version("nodes")
    settings = _fast(
        max_surge=2, instance_groups=["nodes"], drain_timeout=300, drain_retry=0.05, poll=0.01,
        validation_interval=0.01, post_drain_delay=0, validate_count=1,
    )  # fmt: skip
    run = RollingUpdate(sim, sim, specs, settings, check=lambda: _check(sim, specs), parallel=True)
    draining = threading.Event()
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    finished = threading.Event()

    def press_ctrl_c() -> None:
        # only while the run is still draining: a stray SIGINT later would stop the whole test session
        if draining.wait(30) and not finished.wait(0.3):
            signal.pthread_kill(main_thread, signal.SIGINT)

    run.on_progress = lambda p: draining.set() if p.step == "cordoning and draining" else None
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run.run()
    finally:
        finished.set()
    assert time.monotonic() - started < 30  # not the 300 s drain timeout
    assert not [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    marked = [n for n in sim.nodes() if n.annotations.get(MARK) == "draining"]
    assert len(marked) == 2 and all(n.unschedulable for n in marked) and sim.terminations == []
