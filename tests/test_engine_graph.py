"""Dependency graph: ordering, dangling references, cycles, actual references and delete order."""

from __future__ import annotations

import pytest

from pykops.engine.graph import (
    GraphError,
    actual_references,
    build_graph,
    delete_order,
    find_cycle,
    kind_rank,
    topological_order,
)
from pykops.engine.types import Actual, Ref, Resource
from pykops.errors import PykopsError


def test_chain_orders_dependencies_first() -> None:
    # Declared backwards, kinds out of KIND_ORDER: references decide.
    desired = [
        Resource("Zeta", "c", {"b": Ref("Zeta", "b")}),
        Resource("Zeta", "b", {"a": Ref("Zeta", "a")}),
        Resource("Zeta", "a"),
    ]
    assert build_graph(desired).order() == [("Zeta", "a"), ("Zeta", "b"), ("Zeta", "c")]


def test_diamond_and_stable_tie_break_by_kind_order_then_name() -> None:
    desired = [
        Resource("AutoScalingGroup", "top", {"x": [Ref("Subnet", "right"), Ref("SecurityGroup", "left")]}),
        Resource("SecurityGroup", "left", {"vpc": Ref("VPC", "base")}),
        Resource("Subnet", "right", {"vpc": Ref("VPC", "base")}),
        Resource("VPC", "base"),
        Resource("Subnet", "a-free"),
        Resource("Unknown", "z"),
        Resource("Another", "z"),
    ]
    graph = build_graph(desired)
    assert graph.order() == [
        ("VPC", "base"),
        ("Subnet", "a-free"),
        ("Subnet", "right"),
        ("SecurityGroup", "left"),
        ("AutoScalingGroup", "top"),
        ("Another", "z"),  # unknown kinds last, alphabetically
        ("Unknown", "z"),
    ]
    assert graph.deps[("AutoScalingGroup", "top")] == (("Subnet", "right"), ("SecurityGroup", "left"))
    assert graph.dependents[("VPC", "base")] == (("Subnet", "right"), ("SecurityGroup", "left"))
    assert kind_rank("VPC") < kind_rank("Subnet") < kind_rank("Unknown") == kind_rank("Another")


def test_depends_on_is_an_edge() -> None:
    desired = [
        Resource("NatGateway", "n", depends_on=(Ref("Route", "r"),)),
        Resource("Route", "r", {"gw": Ref("InternetGateway", "i")}),
        Resource("InternetGateway", "i"),
    ]
    assert build_graph(desired).order() == [("InternetGateway", "i"), ("Route", "r"), ("NatGateway", "n")]


def test_cycle_is_named() -> None:
    desired = [
        Resource("VPC", "a", {"x": Ref("Subnet", "b")}),
        Resource("Subnet", "b", {"vpc": Ref("VPC", "a")}),
        Resource("RouteTable", "free"),
    ]
    with pytest.raises(GraphError) as info:
        build_graph(desired)
    assert str(info.value) == "dependency cycle: VPC/a -> Subnet/b -> VPC/a (each references the next)"
    assert isinstance(info.value, PykopsError)


def test_longer_cycle_starts_at_its_first_resource_and_skips_the_tail() -> None:
    desired = [
        Resource("Listener", "tail", {"x": Ref("Subnet", "s")}),  # depends on the cycle, not part of it
        Resource("Subnet", "s", {"x": Ref("RouteTable", "r")}),
        Resource("RouteTable", "r", {"x": Ref("SecurityGroup", "g")}),
        Resource("SecurityGroup", "g", {"x": Ref("Subnet", "s")}),
    ]
    with pytest.raises(GraphError, match=r"cycle: Subnet/s -> RouteTable/r -> SecurityGroup/g -> Subnet/s "):
        build_graph(desired)


def test_self_reference_is_a_cycle() -> None:
    with pytest.raises(GraphError, match=r"cycle: VPC/a -> VPC/a "):
        build_graph([Resource("VPC", "a", {"me": Ref("VPC", "a", "arn")})])


def test_find_cycle_none() -> None:
    assert find_cycle({("A", "a"): [("A", "b")], ("A", "b"): []}) == []
    assert topological_order({("A", "a"): [("A", "b"), ("X", "not-a-node")], ("A", "b"): []}) == [
        ("A", "b"),
        ("A", "a"),
    ]


def test_dangling_reference_is_refused_unless_it_exists_in_the_cloud() -> None:
    desired = [
        Resource("Subnet", "s", {"vpc": Ref("VPC", "elsewhere")}),
        Resource("Route", "r", {"gw": Ref("InternetGateway", "nope")}),
    ]
    with pytest.raises(GraphError) as info:
        build_graph(desired)
    assert str(info.value) == (
        "references to resources that are neither desired nor found in the cloud: "
        "Subnet/s references VPC/elsewhere; Route/r references InternetGateway/nope"
    )
    cloud = [Actual("VPC", "elsewhere", {"id": "vpc-1"}), Actual("InternetGateway", "nope", {"id": "igw-1"})]
    graph = build_graph(desired, cloud)
    assert graph.external == {
        ("Subnet", "s"): (("VPC", "elsewhere"),),
        ("Route", "r"): (("InternetGateway", "nope"),),
    }
    assert graph.external_keys() == {("VPC", "elsewhere"), ("InternetGateway", "nope")}
    assert graph.deps == {("Subnet", "s"): (), ("Route", "r"): ()}
    # keys work too
    assert (
        build_graph(desired, [("VPC", "elsewhere"), ("InternetGateway", "nope")]).external == graph.external
    )


def test_duplicates_are_refused() -> None:
    with pytest.raises(GraphError, match=r"duplicate desired resources: VPC/a"):
        build_graph([Resource("VPC", "a"), Resource("VPC", "a"), Resource("Subnet", "a")])


def test_actual_references_map_ids_and_arns_back_ignoring_tags() -> None:
    actual = [
        Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16", "tags": {"Name": "c"}}),
        Actual("Subnet", "a", {"id": "subnet-1"}, {"vpc": "vpc-1", "tags": {"Other": "sg-1"}}),
        Actual("SecurityGroup", "sg", {"id": "sg-1", "arn": "arn:sg"}, {"vpc": "vpc-1"}),
        Actual("Listener", "l", {"id": "arn:l"}, {"groups": ["arn:sg"], "nested": {"subnet": "subnet-1"}}),
        Actual("LaunchTemplate", "lt", {"id": "lt-1"}, {"instance_tags": {"x": "vpc-1"}}),
        # IAM-like: the id is the name, shared by several resources; the link goes to each.
        Actual("IAMRole", "m", {"id": "m"}, {"tags": {"Name": "m"}}),
        Actual("IAMInstanceProfile", "m", {"id": "m"}, {"tags": {"Name": "m"}}),
        Actual("IAMRolePolicy", "m", {"id": "m-policy"}, {"role": "m"}),
    ]
    refs = actual_references(actual)
    assert refs[("VPC", "c")] == frozenset()
    assert refs[("Subnet", "a")] == {("VPC", "c")}
    assert refs[("SecurityGroup", "sg")] == {("VPC", "c")}
    assert refs[("Listener", "l")] == {("SecurityGroup", "sg"), ("Subnet", "a")}
    assert refs[("LaunchTemplate", "lt")] == frozenset()
    assert refs[("IAMRole", "m")] == frozenset()
    assert refs[("IAMRolePolicy", "m")] == {("IAMRole", "m"), ("IAMInstanceProfile", "m")}


def test_delete_order_is_referrers_first() -> None:
    refs = {
        ("VPC", "v"): frozenset(),
        ("Subnet", "a"): frozenset({("VPC", "v")}),
        ("Subnet", "b"): frozenset({("VPC", "v")}),
        ("AutoScalingGroup", "g"): frozenset({("Subnet", "a"), ("Subnet", "b")}),
    }
    assert delete_order(refs, refs) == [
        ("AutoScalingGroup", "g"),
        ("Subnet", "a"),
        ("Subnet", "b"),
        ("VPC", "v"),
    ]
    # Without references: reverse kind order. A reference against kind order wins.
    assert delete_order([("VPC", "v"), ("Subnet", "s")], {}) == [("Subnet", "s"), ("VPC", "v")]
    assert delete_order([("VPC", "v"), ("Subnet", "s")], {("VPC", "v"): {("Subnet", "s")}}) == [
        ("VPC", "v"),
        ("Subnet", "s"),
    ]


def test_delete_order_tolerates_cycles() -> None:
    refs = {("Subnet", "a"): {("VPC", "v")}, ("VPC", "v"): {("Subnet", "a")}, ("RouteTable", "r"): set()}
    assert delete_order(refs, refs) == [("RouteTable", "r"), ("Subnet", "a"), ("VPC", "v")]
