"""apply: scheduling order, deletes, replacements, retries, partial failure, parallelism and events."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pykops.engine.diff import plan_changes
from pykops.engine.executor import Event, RetriesExhausted, RetryPolicy, apply
from pykops.engine.graph import GraphError, actual_references
from pykops.engine.types import Actual, ApplyError, Change, Ref, Resource, RetryableError
from test_engine_fakes import (
    FakeCloud,
    Recorder,
    converge,
    keys,
    make_kinds,
    network,
    network_kinds,
)

ZETA = make_kinds("Zeta")


def zeta(name: str, *refs: str, **props: Any) -> Resource:
    return Resource("Zeta", name, {**props, **{f"ref_{r}": Ref("Zeta", r) for r in refs}})


def run(
    cloud: FakeCloud, desired: list[Resource], kinds: Any = ZETA, **kw: Any
) -> tuple[list[Change], list[Event], Any]:
    events: list[Event] = []
    changes, result = converge(cloud, desired, kinds, on_event=events.append, **kw)
    return changes, events, result


# --- ordering -----------------------------------------------------------------------------------------------


def test_chain_runs_in_order_even_with_parallelism() -> None:
    cloud = FakeCloud(latency=0.01)
    run(cloud, [zeta("c", "b"), zeta("b", "a"), zeta("a")], parallelism=8)
    assert cloud.calls == [("create", "Zeta", "a"), ("create", "Zeta", "b"), ("create", "Zeta", "c")]
    assert cloud.before(("create", "Zeta", "a"), ("create", "Zeta", "b"))
    assert cloud.before(("create", "Zeta", "b"), ("create", "Zeta", "c"))
    assert cloud.high_water == 1


def test_diamond_runs_the_middle_concurrently() -> None:
    cloud = FakeCloud(latency=0.03)
    _, _, result = run(
        cloud, [zeta("top", "left", "right"), zeta("left", "base"), zeta("right", "base"), zeta("base")]
    )
    assert cloud.high_water == 2
    for middle in ("left", "right"):
        assert cloud.before(("create", "Zeta", "base"), ("create", "Zeta", middle))
        assert cloud.before(("create", "Zeta", middle), ("create", "Zeta", "top"))
    top = cloud.get("Zeta", "top")
    assert top.props == {
        "ref_left": result.attrs[("Zeta", "left")]["id"],
        "ref_right": result.attrs[("Zeta", "right")]["id"],
    }


def test_ready_queue_is_not_waves() -> None:
    # slow -> after_slow; fast -> after_fast: after_fast must not wait for slow.
    cloud = FakeCloud()
    cloud.latency = 0.0
    kinds = make_kinds("Zeta")
    slow = zeta("slow")
    desired = [slow, zeta("after_slow", "slow"), zeta("fast"), zeta("after_fast", "fast")]
    original = cloud.call

    def call(op: str, kind: str, name: str, body: Any) -> Any:
        if name == "slow":
            time.sleep(0.1)
        return original(op, kind, name, body)

    cloud.call = call  # type: ignore[method-assign]
    run(cloud, desired, kinds)
    assert cloud.index("end", "create", "Zeta", "after_fast") < cloud.index("end", "create", "Zeta", "slow")


def test_depends_on_orders_without_a_prop() -> None:
    cloud = FakeCloud(latency=0.01)
    run(cloud, [Resource("Zeta", "second", depends_on=(Ref("Zeta", "first"),)), zeta("first")])
    assert cloud.before(("create", "Zeta", "first"), ("create", "Zeta", "second"))


def test_refs_resolve_at_execution_time() -> None:
    cloud, kinds = FakeCloud(), network_kinds()
    _, result = converge(cloud, network(), kinds)
    subnets = [result.attrs[("Subnet", f"{z}.c")]["id"] for z in "ab"]
    assert cloud.get("AutoScalingGroup", "nodes.c").props["subnets"] == subnets
    assert cloud.get("Subnet", "a.c").props["vpc"] == result.attrs[("VPC", "c")]["id"]
    # An update of the template makes a new version; the group is moved to it, with the new value.
    desired = network()
    desired[5].props["instance_type"] = "t3.large"
    changes, result = converge(cloud, desired, kinds)
    assert keys(changes) == [
        ("update", "LaunchTemplate", "nodes.c"),
        ("update", "AutoScalingGroup", "nodes.c"),
    ]
    assert result.attrs[("LaunchTemplate", "nodes.c")]["version"] == 2
    assert cloud.get("AutoScalingGroup", "nodes.c").props["launch_template_version"] == 2
    assert cloud.calls[-2:] == [
        ("update", "LaunchTemplate", "nodes.c"),
        ("update", "AutoScalingGroup", "nodes.c"),
    ]
    assert plan_changes(desired, cloud.actual(), kinds) == []


def test_deletes_run_in_reverse_dependency_order() -> None:
    cloud, kinds = FakeCloud(latency=0.005), network_kinds()
    converge(cloud, network(), kinds)
    before = cloud.actual()
    changes, events, result = run(cloud, [], kinds)
    assert {c.action for c in changes} == {"delete"} and len(changes) == 7
    assert cloud.resources == {}
    for owner, targets in actual_references(before).items():
        for target in targets:
            assert cloud.before(("delete", *owner), ("delete", *target)), (owner, target)
    assert result.attrs == {}
    assert [e.status for e in events].count("done") == 7


def test_delete_waits_for_referrers_moving_away() -> None:
    # The group moves from subnet "old" to "new"; "old" is deleted only after the group's update.
    kinds = make_kinds("Subnet", "AutoScalingGroup")
    cloud = FakeCloud(latency=0.01)
    old = cloud.add("Subnet", "old")
    cloud.add("AutoScalingGroup", "g", {"subnets": [old.id]})
    desired = [
        Resource("Subnet", "new"),
        Resource("AutoScalingGroup", "g", {"subnets": [Ref("Subnet", "new")]}),
    ]
    changes, _, _ = run(cloud, desired, kinds)
    assert keys(changes) == [
        ("create", "Subnet", "new"),
        ("update", "AutoScalingGroup", "g"),
        ("delete", "Subnet", "old"),
    ]
    assert cloud.before(("update", "AutoScalingGroup", "g"), ("delete", "Subnet", "old"))
    assert cloud.before(("create", "Subnet", "new"), ("update", "AutoScalingGroup", "g"))


# --- replacements -------------------------------------------------------------------------------------------


def replace_world(delete_first: bool) -> tuple[FakeCloud, dict[str, Any], list[Resource]]:
    kinds = make_kinds(
        "VPC",
        "RouteTable",
        VPC={"immutable": {"cidr_block"}, "replace_delete_first": delete_first},
    )
    cloud = FakeCloud(latency=0.005)
    vpc = cloud.add("VPC", "c", {"cidr_block": "10.0.0.0/16"})
    cloud.add("RouteTable", "r", {"vpc": vpc.id})
    desired = [
        Resource("VPC", "c", {"cidr_block": "10.1.0.0/16"}),
        Resource("RouteTable", "r", {"vpc": Ref("VPC", "c")}),
    ]
    return cloud, kinds, desired


def test_replace_delete_first_is_the_default() -> None:
    cloud, kinds, desired = replace_world(True)
    changes, events, result = run(cloud, desired, kinds)
    assert keys(changes) == [("replace", "VPC", "c"), ("update", "RouteTable", "r")]
    assert cloud.calls == [("delete", "VPC", "c"), ("create", "VPC", "c"), ("update", "RouteTable", "r")]
    new_id = result.attrs[("VPC", "c")]["id"]
    assert cloud.get("RouteTable", "r").props["vpc"] == new_id
    assert [(e.status, e.key, e.phase) for e in events if e.kind == "VPC"] == [
        ("started", ("VPC", "c"), "delete"),
        ("started", ("VPC", "c"), "create"),
        ("done", ("VPC", "c"), "create"),
    ]


def test_replace_create_first_moves_dependents_before_deleting() -> None:
    cloud, kinds, desired = replace_world(False)
    old_id = cloud.get("VPC", "c").id
    _, _, result = run(cloud, desired, kinds)
    assert cloud.calls == [("create", "VPC", "c"), ("update", "RouteTable", "r"), ("delete", "VPC", "c")]
    assert old_id not in cloud.resources
    assert cloud.get("RouteTable", "r").props["vpc"] == result.attrs[("VPC", "c")]["id"] != old_id
    assert plan_changes(desired, cloud.actual(), kinds) == []


# --- retries ------------------------------------------------------------------------------------------------


def test_retryable_error_succeeds_after_attempts_with_backoff() -> None:
    cloud, clock = FakeCloud(), Recorder()
    cloud.fail("create", "Zeta", "a", *(RetryableError("throttled", code="Throttling") for _ in range(3)))
    _, events, result = run(cloud, [zeta("a")], retry=clock.policy())
    assert clock.sleeps == [0.2, 0.4, 0.8]
    assert cloud.calls == [("create", "Zeta", "a")] * 4
    retrying = [e for e in events if e.status == "retrying"]
    assert [(e.attempt, e.delay) for e in retrying] == [(1, 0.2), (2, 0.4), (3, 0.8)]
    assert str(retrying[0]) == "Zeta/a: create retrying after attempt 1 (throttled), next in 0.2s"
    assert isinstance(retrying[0].error, RetryableError)
    assert events[-1].status == "done" and events[-1].elapsed == pytest.approx(1.4)
    assert str(events[-1]) == "Zeta/a: create done in 1.4s"
    assert result.elapsed == pytest.approx(1.4)


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(jitter=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 10)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5, 5])
    low = RetryPolicy(jitter=lambda: 0.0)
    assert [low.delay(n) for n in (1, 2, 8)] == pytest.approx([0.1, 0.2, 2.5])
    assert all(0.1 <= RetryPolicy().delay(1) <= 0.2 for _ in range(50))


def test_gives_up_after_the_attempt_bound() -> None:
    cloud, clock = FakeCloud(), Recorder()
    cloud.fail("create", "Zeta", "a", *(RetryableError(f"busy {i}") for i in range(20)))
    with pytest.raises(ApplyError) as info:
        run(cloud, [zeta("a")], retry=clock.policy())
    assert len(cloud.calls) == 10
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5, 5])
    [(_, err)] = info.value.failed
    assert isinstance(err, RetriesExhausted) and isinstance(err.last, RetryableError)
    assert str(err) == "busy 9 (gave up after 10 attempts in 26.2s)"
    assert str(info.value) == (
        "apply failed: 1 of 1 changes failed "
        "(create Zeta/a: busy 9 (gave up after 10 attempts in 26.2s)); 0 done"
    )


def test_gives_up_when_the_next_sleep_passes_the_time_bound() -> None:
    cloud, clock = FakeCloud(), Recorder()
    cloud.fail("create", "Zeta", "a", *(RetryableError("busy") for _ in range(20)))
    with pytest.raises(ApplyError, match=r"gave up after 3 attempts in 0.6s"):
        run(cloud, [zeta("a")], retry=clock.policy(timeout=1.0))
    assert clock.sleeps == [0.2, 0.4]


def test_other_errors_are_not_retried() -> None:
    cloud, clock = FakeCloud(), Recorder()
    cloud.fail("create", "Zeta", "a", RuntimeError("InvalidParameter: nope\n  details"))
    with pytest.raises(ApplyError, match=r"\(create Zeta/a: InvalidParameter: nope details\)"):
        run(cloud, [zeta("a")], retry=clock.policy())
    assert clock.sleeps == [] and len(cloud.calls) == 1


# --- partial failure ----------------------------------------------------------------------------------------


def test_partial_failure_finishes_independent_work_and_never_starts_dependents() -> None:
    cloud = FakeCloud(latency=0.01)
    cloud.fail("create", "Zeta", "a", ValueError("boom"))
    desired = [zeta("a"), zeta("b", "a"), zeta("c", "b"), zeta("d"), zeta("e", "d")]
    events: list[Event] = []
    with pytest.raises(ApplyError) as info:
        converge(cloud, desired, ZETA, on_event=events.append)
    err = info.value
    assert str(err) == (
        "apply failed: 1 of 5 changes failed (create Zeta/a: boom); "
        "2 not started as they depend on a failure (Zeta/b, Zeta/c); 2 done"
    )
    assert [(c.key, type(e).__name__) for c, e in err.failed] == [(("Zeta", "a"), "ValueError")]
    assert sorted(c.name for c in err.done) == ["d", "e"]
    assert sorted(name for _, _, name in cloud.calls) == ["a", "d", "e"]
    assert {(e.status, e.name) for e in events if e.status in ("failed", "skipped")} == {
        ("failed", "a"),
        ("skipped", "b"),
        ("skipped", "c"),
    }
    assert str(next(e for e in events if e.status == "failed")) == "Zeta/a: create failed: boom"


def test_failed_delete_keeps_what_it_references() -> None:
    kinds = network_kinds()
    cloud = FakeCloud()
    converge(cloud, network(), kinds)
    cloud.fail("delete", "Subnet", "a.c", ValueError("in use"))
    with pytest.raises(ApplyError) as info:
        converge(cloud, [], kinds)
    assert [c.key for c, _ in info.value.failed] == [("Subnet", "a.c")]
    assert "VPC/c" in str(info.value)  # not started: it is referenced by the subnet that stayed
    assert {a.key for a in cloud.actual()} == {("VPC", "c"), ("Subnet", "a.c")}


def test_resolution_failure_is_a_change_failure() -> None:
    cloud = FakeCloud()
    a = cloud.add("Zeta", "a")
    desired = [zeta("a"), Resource("Zeta", "b", {"x": Ref("Zeta", "a", "missing")})]
    changes = [Change("create", "Zeta", "b", desired=desired[1])]
    with pytest.raises(
        ApplyError, match=r"Zeta/b references Zeta/a.missing, which has no attribute 'missing'"
    ):
        apply(changes, ZETA, cloud, desired=desired, actual=[a])


def test_a_create_must_return_an_id() -> None:
    class NoId(make_kinds("Zeta")["Zeta"].__class__):  # type: ignore[misc]
        def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
            return {"arn": "x"}

    desired = [zeta("a")]
    with pytest.raises(ApplyError, match=r"Zeta.create returned no id for Zeta/a"):
        apply(plan_changes(desired, [], ZETA), {"Zeta": NoId()}, FakeCloud(), desired=desired, actual=[])


# --- parallelism --------------------------------------------------------------------------------------------


def test_independent_creates_run_concurrently() -> None:
    cloud = FakeCloud(latency=0.05)
    desired = [zeta(f"r{i}") for i in range(10)]
    start = time.monotonic()
    _, _, result = run(cloud, desired, parallelism=10)
    wall = time.monotonic() - start
    assert cloud.high_water == 10
    assert wall < 0.3, wall  # 10 x 0.05 s in sequence would be 0.5 s
    assert len(result.done) == 10


def test_parallelism_bounds_concurrency_and_wall_time_follows_the_critical_path() -> None:
    cloud = FakeCloud(latency=0.05)
    desired = [zeta(f"r{i}") for i in range(9)]
    run(cloud, desired, parallelism=3)
    assert cloud.high_water == 3

    cloud = FakeCloud(latency=0.05)
    chain = [zeta("c0"), zeta("c1", "c0"), zeta("c2", "c1")]
    start = time.monotonic()
    run(cloud, chain + [zeta(f"r{i}") for i in range(12)], parallelism=16)
    wall = time.monotonic() - start
    assert 0.15 <= wall < 0.45, wall  # the 3-step chain, not 15 steps


# --- events and results -------------------------------------------------------------------------------------


def test_events_and_result_attrs() -> None:
    cloud, clock = FakeCloud(), Recorder()
    shared = cloud.add("Zeta", "theirs", id="z-shared")
    kept = cloud.add("Zeta", "kept", {"n": 1})
    gone = cloud.add("Zeta", "gone")
    desired = [
        Resource("Zeta", "mine", {"id": "z-shared"}, shared=True),
        zeta("kept", n=1),
        zeta("new", "mine", "kept"),
    ]
    seen: list[Event] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        raise RuntimeError("a broken progress display never breaks an apply")

    changes = plan_changes(desired, cloud.actual(), ZETA)
    assert keys(changes) == [("create", "Zeta", "new"), ("delete", "Zeta", "gone")]
    result = apply(
        changes,
        ZETA,
        cloud,
        desired=desired,
        actual=cloud.actual(),
        parallelism=1,
        retry=clock.policy(),
        on_event=on_event,
    )
    assert [(e.status, e.action, e.name, e.phase, e.attempt, e.elapsed) for e in seen] == [
        ("started", "create", "new", "create", 1, 0.0),
        ("done", "create", "new", "create", 1, 0.0),
        ("started", "delete", "gone", "delete", 1, 0.0),
        ("done", "delete", "gone", "delete", 1, 0.0),
    ]
    assert str(seen[0]) == "Zeta/new: create started"
    new = cloud.get("Zeta", "new")
    assert new.props == {"ref_mine": "z-shared", "ref_kept": kept.id}
    assert set(result.attrs) == {("Zeta", "theirs"), ("Zeta", "mine"), ("Zeta", "kept"), ("Zeta", "new")}
    assert result.attrs[("Zeta", "mine")] == shared.attrs
    assert result.attrs[("Zeta", "new")] == new.attrs
    assert gone.id not in cloud.resources
    assert sorted(c.name for c in result.done) == ["gone", "new"]


def test_serial_apply_follows_the_plan_order() -> None:
    cloud = FakeCloud()
    kinds = network_kinds()
    changes, _ = converge(cloud, network(), kinds, parallelism=1)
    assert cloud.calls == [("create", c.kind, c.name) for c in changes]


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="parallelism"):
        apply([], ZETA, FakeCloud(), desired=[], actual=[], parallelism=0)
    twice = [Change("create", "Zeta", "a", desired=zeta("a"))] * 2
    with pytest.raises(ValueError, match="two changes for Zeta/a"):
        apply(twice, ZETA, FakeCloud(), desired=[], actual=[])
    with pytest.raises(ValueError, match="without its actual"):
        apply([Change("delete", "Zeta", "a")], ZETA, FakeCloud(), desired=[], actual=[])
    assert apply([], ZETA, FakeCloud(), desired=[], actual=[]).done == []


def test_update_with_nothing_left_to_change_is_a_no_op() -> None:
    cloud = FakeCloud()
    a = cloud.add("Zeta", "a", {"n": 1})
    change = Change(
        "update", "Zeta", "a", desired=zeta("a", n=1), actual=Actual("Zeta", "a", dict(a.attrs), {"n": 1})
    )
    result = apply([change], ZETA, cloud, desired=[zeta("a", n=1)], actual=[a])
    assert cloud.calls == [] and result.attrs[("Zeta", "a")] == a.attrs


def test_an_error_can_lower_the_attempt_bound() -> None:
    def suspect() -> RetryableError:
        return RetryableError("InvalidParameterValue: not yet visible?", max_attempts=3)

    cloud, clock = FakeCloud(), Recorder()
    cloud.fail("create", "Zeta", "a", *(suspect() for _ in range(5)))
    with pytest.raises(ApplyError, match=r"gave up after 3 attempts"):
        run(cloud, [zeta("a")], retry=clock.policy())
    assert clock.sleeps == [0.2, 0.4]


def test_a_cycle_in_the_changes_is_refused_before_anything_runs() -> None:
    a, b = zeta("a", "b"), zeta("b", "a")
    changes = [Change("create", "Zeta", "a", desired=a), Change("create", "Zeta", "b", desired=b)]
    cloud = FakeCloud()
    with pytest.raises(GraphError, match=r"dependency cycle: Zeta/a -> Zeta/b -> Zeta/a"):
        apply(changes, ZETA, cloud, desired=[a, b], actual=[])
    assert cloud.calls == []


def test_suspect_aws_errors_are_retried_fewer_times() -> None:
    """An error that is usually eventual consistency but may be a real mistake gives up sooner."""
    from botocore.exceptions import ClientError

    from pykops.cloud.aws.cloud import classify

    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "x"}}, "CreateThing")

    suspect = classify(client_error("InvalidParameterValue"))
    assert isinstance(suspect, RetryableError) and suspect.max_attempts == 4
    throttled = classify(client_error("Throttling"))
    assert isinstance(throttled, RetryableError) and throttled.max_attempts is None
    assert not isinstance(classify(client_error("InvalidAMIID.Malformed")), RetryableError)
