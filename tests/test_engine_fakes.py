"""In-memory fake kinds and cloud for the engine tests (no AWS at all), and a few tests of the fakes."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pykops.engine.diff import plan_changes
from pykops.engine.executor import ApplyResult, RetryPolicy, apply
from pykops.engine.types import Actual, Change, FieldChange, Kind, Ref, Resource


class FakeCloud:
    """Resources by id, a call log, injected failures and latency, a concurrency gauge."""

    cluster_name = "c.example.com"

    def __init__(self, latency: float = 0.0) -> None:
        self.resources: dict[str, Actual] = {}
        self.calls: list[tuple[str, str, str]] = []  # (op, kind, name) in call order
        self.timeline: list[tuple[str, str, str, str]] = []  # ("start" or "end", op, kind, name)
        self.failures: dict[tuple[str, str, str], list[BaseException]] = {}
        self.latency = latency
        self.active = 0
        self.high_water = 0
        self.lock = threading.Lock()
        self.serial = 0

    def add(self, kind: str, name: str, props: dict[str, Any] | None = None, **attrs: Any) -> Actual:
        """Put a resource in the cloud (as if created earlier)."""
        with self.lock:
            self.serial += 1
            ident = attrs.pop("id", f"{kind.lower()}-{self.serial}")
        actual = Actual(kind, name, {"id": ident, "arn": f"arn:{ident}", **attrs}, dict(props or {}))
        self.resources[ident] = actual
        return actual

    def get(self, kind: str, name: str) -> Actual:
        [found] = [a for a in self.resources.values() if a.key == (kind, name)]
        return found

    def index(self, event: str, op: str, kind: str, name: str) -> int:
        """Position of an event in the timeline."""
        return self.timeline.index((event, op, kind, name))

    def before(self, first: tuple[str, str, str], then: tuple[str, str, str]) -> bool:
        """Whether the call ``first`` (op, kind, name) ended before ``then`` started."""
        return self.index("end", *first) < self.index("start", *then)

    def fail(self, op: str, kind: str, name: str, *errors: BaseException) -> None:
        """Make the next calls of ``op`` on kind/name raise ``errors`` (one per call)."""
        self.failures.setdefault((op, kind, name), []).extend(errors)

    def call(self, op: str, kind: str, name: str, body: Callable[[], Any]) -> Any:
        with self.lock:
            self.calls.append((op, kind, name))
            self.timeline.append(("start", op, kind, name))
            self.active += 1
            self.high_water = max(self.high_water, self.active)
            pending = self.failures.get((op, kind, name))
            error = pending.pop(0) if pending else None
        try:
            if self.latency:
                time.sleep(self.latency)
            if error is not None:
                raise error
            return body()
        finally:
            with self.lock:
                self.active -= 1
                self.timeline.append(("end", op, kind, name))

    def actual(self) -> list[Actual]:
        """What a find would return: snapshots, not the live records."""
        return copy.deepcopy(list(self.resources.values()))


class FakeKind:
    """A resource type kept in a FakeCloud; subclass with ``kind`` (see :func:`make_kinds`)."""

    kind: ClassVar[str] = ""
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = True
    unordered: ClassVar[frozenset[str]] = frozenset()
    update_attrs: ClassVar[frozenset[str]] = frozenset()
    replace_delete_first: ClassVar[bool] = True

    def find(self, cloud: FakeCloud, desired: list[Resource]) -> list[Actual]:
        return [a for a in cloud.actual() if a.kind == self.kind]

    def __repr__(self) -> str:
        return f"<fake kind {self.kind}>"

    def create(self, cloud: FakeCloud, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        def body() -> dict[str, Any]:
            attrs = {"version": 1} if "version" in self.update_attrs else {}
            return dict(cloud.add(self.kind, desired.name, props, **attrs).attrs)

        result: dict[str, Any] = cloud.call("create", self.kind, desired.name, body)
        return result

    def update(
        self, cloud: FakeCloud, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        def body() -> dict[str, Any]:
            current = cloud.resources[actual.id]
            current.props.update(props)
            if "version" in current.attrs:
                current.attrs["version"] += 1
            return dict(current.attrs)

        result: dict[str, Any] = cloud.call("update", self.kind, actual.name, body)
        return result

    def delete(self, cloud: FakeCloud, actual: Actual) -> None:
        cloud.call("delete", self.kind, actual.name, lambda: cloud.resources.pop(actual.id, None))


def make_kinds(*names: str, **options: dict[str, Any]) -> dict[str, Kind]:
    """Fake kinds by name; ``options[name]`` sets class attributes (``immutable=frozenset(...)``...)."""
    kinds: dict[str, Kind] = {}
    for name in {*names, *options}:
        attrs = {"kind": name, **options.get(name, {})}
        for key in ("immutable", "unordered", "update_attrs"):
            if key in attrs:
                attrs[key] = frozenset(attrs[key])
        kinds[name] = type(f"Fake{name}", (FakeKind,), attrs)()
    return kinds


STANDARD_KINDS = (
    "VPC",
    "Subnet",
    "RouteTable",
    "SecurityGroup",
    "LaunchTemplate",
    "AutoScalingGroup",
    "A",
    "B",
)


class Recorder:
    """A sleep and a clock for RetryPolicy: sleeping advances the clock and is recorded, never real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def clock(self) -> float:
        return self.now

    def policy(self, **kw: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=self.clock, jitter=lambda: 1.0, **kw)


def converge(
    cloud: FakeCloud,
    desired: list[Resource],
    kinds: dict[str, Kind],
    **kw: Any,
) -> tuple[list[Change], ApplyResult]:
    """Plan against the fake cloud and apply; return the changes and the result."""
    actual = cloud.actual()
    changes = plan_changes(desired, actual, kinds)
    return changes, apply(changes, kinds, cloud, desired=desired, actual=actual, **kw)


def network(cluster: str = "c") -> list[Resource]:
    """A small realistic set: a VPC, two subnets, a route table, a group, a template and an ASG."""
    vpc = Ref("VPC", cluster)
    return [
        Resource("VPC", cluster, {"cidr_block": "10.0.0.0/16", "tags": {"Name": cluster}}),
        Resource(
            "Subnet", f"a.{cluster}", {"vpc": vpc, "cidr_block": "10.0.1.0/24", "availability_zone": "z-a"}
        ),
        Resource(
            "Subnet", f"b.{cluster}", {"vpc": vpc, "cidr_block": "10.0.2.0/24", "availability_zone": "z-b"}
        ),
        Resource("RouteTable", cluster, {"vpc": vpc}),
        Resource("SecurityGroup", f"nodes.{cluster}", {"vpc": vpc, "description": "nodes"}),
        Resource(
            "LaunchTemplate",
            f"nodes.{cluster}",
            {"instance_type": "t3.medium", "security_groups": [Ref("SecurityGroup", f"nodes.{cluster}")]},
        ),
        Resource(
            "AutoScalingGroup",
            f"nodes.{cluster}",
            {
                "launch_template": Ref("LaunchTemplate", f"nodes.{cluster}"),
                "launch_template_version": Ref("LaunchTemplate", f"nodes.{cluster}", "version"),
                "subnets": [Ref("Subnet", f"a.{cluster}"), Ref("Subnet", f"b.{cluster}")],
                "min_size": 1,
                "max_size": 2,
            },
        ),
    ]


def network_kinds() -> dict[str, Kind]:
    return make_kinds(
        *STANDARD_KINDS,
        Subnet={"immutable": {"cidr_block", "availability_zone", "vpc"}, "replaceable": False},
        LaunchTemplate={"update_attrs": {"version"}},
        AutoScalingGroup={"unordered": {"subnets"}},
    )


def keys(changes: Iterable[Change]) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in changes]


# --- tests of the fakes themselves --------------------------------------------------------------------------


def test_converge_from_scratch_then_nothing_to_do() -> None:
    cloud, kinds, desired = FakeCloud(), network_kinds(), network()
    changes, result = converge(cloud, desired, kinds)
    assert [c.action for c in changes] == ["create"] * 7
    assert len(result.done) == 7
    asg = cloud.get("AutoScalingGroup", "nodes.c")
    assert asg.props["launch_template_version"] == 1
    assert asg.props["subnets"] == [
        result.attrs[("Subnet", "a.c")]["id"],
        result.attrs[("Subnet", "b.c")]["id"],
    ]
    assert plan_changes(desired, cloud.actual(), kinds) == []


def test_failure_injection_and_latency() -> None:
    cloud = FakeCloud()
    cloud.fail("create", "A", "x", ValueError("boom"))
    kind = make_kinds("A")["A"]
    try:
        kind.create(cloud, Resource("A", "x"), {})
    except ValueError as err:
        assert str(err) == "boom"
    assert kind.create(cloud, Resource("A", "x"), {})["id"].startswith("a-")
    assert cloud.calls == [("create", "A", "x"), ("create", "A", "x")]
