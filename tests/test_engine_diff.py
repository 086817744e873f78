"""plan_changes: desired vs actual, with fake kinds (no AWS)."""

from __future__ import annotations

import pytest

from pykops.engine.diff import (
    PlanError,
    Unknown,
    compare_props,
    contains_unknown,
    plan_changes,
    resolve,
    values_equal,
)
from pykops.engine.graph import GraphError
from pykops.engine.types import Actual, FieldChange, Ref, Resource
from pykops.errors import PykopsError
from test_engine_fakes import FakeCloud, converge, keys, make_kinds, network, network_kinds

KINDS = make_kinds(
    "VPC",
    "Subnet",
    "RouteTable",
    "InternetGateway",
    "LaunchTemplate",
    "AutoScalingGroup",
    "SecurityGroup",
    "SecurityGroupRule",
    VPC={"immutable": {"cidr_block"}, "replaceable": True},
    Subnet={"immutable": {"cidr_block", "availability_zone", "vpc"}, "replaceable": False},
    SecurityGroupRule={"immutable": {"group", "protocol", "cidr"}, "replaceable": True},
    LaunchTemplate={"immutable": {"root_volume.device_name"}, "update_attrs": {"version"}},
    AutoScalingGroup={"unordered": {"subnets"}},
)


def vpc(props: dict[str, object] | None = None, name: str = "c") -> Resource:
    return Resource("VPC", name, props if props is not None else {"cidr_block": "10.0.0.0/16"})


def test_unknown_and_resolve() -> None:
    unknown = Unknown(Ref("VPC", "x"))
    assert str(unknown) == "(known after apply: VPC/x)"
    assert (
        str(Unknown(Ref("LaunchTemplate", "n", "version"))) == "(known after apply: LaunchTemplate/n.version)"
    )
    value = {"a": [Ref("VPC", "x"), ("b", Ref("VPC", "y", "arn"))], "n": 1}
    resolved = resolve(value, lambda r: f"{r.name}-{r.attr}")
    assert resolved == {"a": ["x-id", ["b", "y-arn"]], "n": 1}
    assert not contains_unknown(resolved)
    assert contains_unknown({"a": [1, {"b": unknown}]})


def test_values_equal_is_strict_about_bools_and_shapes() -> None:
    assert values_equal([1, 2], (1, 2))
    assert values_equal(8, 8.0)
    assert not values_equal(True, 1)
    assert not values_equal(0, False)
    assert not values_equal({"a": 1}, {"a": 1, "b": 2})
    assert not values_equal("1", 1)
    assert not values_equal(None, [])
    assert not values_equal(Unknown(Ref("A", "a")), Unknown(Ref("A", "a")))


def test_create_when_not_found_in_dependency_order() -> None:
    desired = [Resource("Subnet", "a.c", {"vpc": Ref("VPC", "c")}), vpc()]
    changes = plan_changes(desired, [], KINDS)
    assert keys(changes) == [("create", "VPC", "c"), ("create", "Subnet", "a.c")]
    assert changes[0].desired is desired[1] and changes[0].actual is None and changes[0].fields == []


def test_no_change_when_equal_and_only_desired_keys_compared() -> None:
    actual = [Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16", "extra": "ignored"})]
    assert plan_changes([vpc()], actual, KINDS) == []


def test_update_with_field_changes_sorted_by_path() -> None:
    desired = [vpc({"cidr_block": "10.0.0.0/16", "enable_dns_support": True, "enable_dns_hostnames": True})]
    actual = [
        Actual(
            "VPC",
            "c",
            {"id": "vpc-1"},
            {"cidr_block": "10.0.0.0/16", "enable_dns_support": 1, "enable_dns_hostnames": False},
        )
    ]
    [change] = plan_changes(desired, actual, KINDS)
    assert (change.action, change.actual, change.desired) == ("update", actual[0], desired[0])
    assert change.fields == [
        FieldChange("enable_dns_hostnames", False, True),
        FieldChange("enable_dns_support", 1, True),  # 1 is not True
    ]


def test_nested_dicts_compare_per_leaf_and_only_desired_sub_keys() -> None:
    desired = [
        Resource(
            "LaunchTemplate",
            "n",
            {
                "root_volume": {"device_name": "/dev/xvda", "size": 64, "encrypted": True},
                "meta": {"a": {"b": 2}},
            },
        )
    ]
    actual_props = {
        "root_volume": {"device_name": "/dev/xvda", "size": 32, "encrypted": True, "iops": 3000},
        "meta": {"a": {"b": 1, "c": 9}},
    }
    [change] = plan_changes(desired, [Actual("LaunchTemplate", "n", {"id": "lt-1"}, actual_props)], KINDS)
    assert change.action == "update"
    assert change.fields == [FieldChange("meta.a.b", 1, 2), FieldChange("root_volume.size", 32, 64)]


def test_nested_immutable_path_forces_replacement() -> None:
    desired = [Resource("LaunchTemplate", "n", {"root_volume": {"device_name": "/dev/sda1", "size": 64}})]
    actual = [
        Actual(
            "LaunchTemplate", "n", {"id": "lt-1"}, {"root_volume": {"device_name": "/dev/xvda", "size": 64}}
        )
    ]
    [change] = plan_changes(desired, actual, KINDS)
    assert change.action == "replace"
    assert change.fields == [FieldChange("root_volume.device_name", "/dev/xvda", "/dev/sda1")]


def test_dict_replacing_a_scalar_is_one_change() -> None:
    assert compare_props({"a": None}, {"a": {"b": 1}}) == [FieldChange("a", None, {"b": 1})]
    assert compare_props({}, {"a": {"b": 1}}) == [FieldChange("a", None, {"b": 1})]


def test_tags_compared_restricted_to_desired_keys() -> None:
    desired = [
        vpc({"cidr_block": "10.0.0.0/16", "tags": {"Name": "c", "KubernetesCluster": "c", "team": "x"}})
    ]
    actual = [
        Actual(
            "VPC",
            "c",
            {"id": "vpc-1"},
            {
                "cidr_block": "10.0.0.0/16",
                "tags": {"Name": "c", "KubernetesCluster": "old", "aws:added": "1"},
            },
        )
    ]
    [change] = plan_changes(desired, actual, KINDS)
    assert change.fields == [
        FieldChange("tags.KubernetesCluster", "old", "c"),
        FieldChange("tags.team", None, "x"),
    ]
    actual[0].props["tags"] |= {"KubernetesCluster": "c", "team": "x"}
    assert plan_changes(desired, actual, KINDS) == []


def test_unordered_lists_are_a_per_kind_attribute() -> None:
    subnets = [Actual("Subnet", n, {"id": f"subnet-{n}"}, {}) for n in ("a", "b")]
    desired = [
        Resource("Subnet", "a"),
        Resource("Subnet", "b"),
        Resource("AutoScalingGroup", "g", {"subnets": [Ref("Subnet", "a"), Ref("Subnet", "b")]}),
        Resource("RouteTable", "r", {"subnets": [Ref("Subnet", "a"), Ref("Subnet", "b")]}),
    ]
    reversed_ids = {"subnets": ["subnet-b", "subnet-a"]}
    actual = [*subnets, Actual("AutoScalingGroup", "g", {"id": "g"}, reversed_ids)]
    actual.append(Actual("RouteTable", "r", {"id": "rtb-1"}, dict(reversed_ids)))
    # Same ids in another order: no change for the ASG (unordered), a change for the route table (ordered).
    assert keys(plan_changes(desired, actual, KINDS)) == [("update", "RouteTable", "r")]
    actual[2].props["subnets"] = ["subnet-b"]
    changes = plan_changes(desired, actual, KINDS)
    assert keys(changes) == [("update", "RouteTable", "r"), ("update", "AutoScalingGroup", "g")]
    assert changes[1].fields == [FieldChange("subnets", ["subnet-b"], ["subnet-a", "subnet-b"])]
    actual[2].props["subnets"] = ["subnet-b", "subnet-b"]
    assert keys(plan_changes(desired, actual, KINDS))[1] == ("update", "AutoScalingGroup", "g")


def test_replace_when_immutable_and_replaceable() -> None:
    desired = [
        Resource("SecurityGroupRule", "r", {"protocol": "tcp", "cidr": "0.0.0.0/0", "description": "x"})
    ]
    actual = [Actual("SecurityGroupRule", "r", {"id": "sgr-1"}, {"protocol": "udp", "cidr": "0.0.0.0/0"})]
    [change] = plan_changes(desired, actual, KINDS)
    assert change.action == "replace"
    assert change.actual is actual[0]
    assert change.fields == [FieldChange("description", None, "x"), FieldChange("protocol", "udp", "tcp")]


def test_refuse_immutable_change_naming_resource_and_field() -> None:
    desired = [
        Resource("Subnet", "a.c", {"cidr_block": "10.0.1.0/24", "availability_zone": "eu-west-1b"}),
        Resource("Subnet", "b.c", {"cidr_block": "10.0.9.0/24", "availability_zone": "eu-west-1a"}),
    ]
    actual = [
        Actual(
            "Subnet",
            "a.c",
            {"id": "subnet-1"},
            {"cidr_block": "10.0.1.0/24", "availability_zone": "eu-west-1a"},
        ),
        Actual(
            "Subnet",
            "b.c",
            {"id": "subnet-2"},
            {"cidr_block": "10.0.2.0/24", "availability_zone": "eu-west-1a"},
        ),
    ]
    with pytest.raises(PlanError) as info:
        plan_changes(desired, actual, KINDS)
    assert isinstance(info.value, PykopsError)
    assert info.value.message == (
        "Subnet/a.c: availability_zone cannot change (eu-west-1a → eu-west-1b); "
        "Subnet/b.c: cidr_block cannot change (10.0.2.0/24 → 10.0.9.0/24)"
    )
    assert str(info.value).startswith(info.value.message + "; ")  # then the hint


def test_delete_orphans_referrers_first() -> None:
    actual = [
        Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16"}),
        Actual("VPC", "old", {"id": "vpc-2"}, {"cidr_block": "10.1.0.0/16"}),
        Actual("Subnet", "x", {"id": "subnet-1"}, {"vpc": "vpc-2"}),
        Actual("RouteTable", "x", {"id": "rtb-1"}, {"vpc": "vpc-2", "subnet": "subnet-1"}),
        Actual("SecurityGroupRule", "nobody", {"id": "sgr-1"}, {}),
    ]
    changes = plan_changes([vpc()], actual, KINDS)
    assert keys(changes) == [
        ("delete", "SecurityGroupRule", "nobody"),
        ("delete", "RouteTable", "x"),
        ("delete", "Subnet", "x"),
        ("delete", "VPC", "old"),
    ]
    assert all(c.desired is None and c.actual is not None for c in changes)


def shared_world() -> tuple[list[Resource], list[Actual]]:
    desired = [
        Resource("VPC", "c", {"id": "vpc-123", "tags": {"kubernetes.io/cluster/c": "shared"}}, shared=True),
        Resource("Subnet", "a.c", {"vpc": Ref("VPC", "c"), "cidr_block": "10.0.1.0/24"}),
        Resource("RouteTable", "c", {"vpc": Ref("VPC", "c")}),
    ]
    actual = [
        # found by id, under the owner's name, with other props and tags: never touched
        Actual("VPC", "their-vpc", {"id": "vpc-123"}, {"id": "vpc-123", "tags": {"Name": "their-vpc"}}),
        Actual("Subnet", "a.c", {"id": "subnet-1"}, {"vpc": "vpc-123", "cidr_block": "10.0.1.0/24"}),
    ]
    return desired, actual


def test_shared_resources_are_never_touched_and_refs_resolve_to_them() -> None:
    desired, actual = shared_world()
    changes = plan_changes(desired, actual, KINDS)
    # Only the ownership tag the model asks for is added; the owner's tags and props are left alone.
    assert keys(changes) == [("update", "VPC", "c"), ("create", "RouteTable", "c")]
    assert [(f.path, f.old, f.new) for f in changes[0].fields] == [
        ("tags.kubernetes.io/cluster/c", None, "shared")
    ]
    # Found under the desired name too; already tagged: nothing to do.
    actual[0] = Actual(
        "VPC", "c", {"id": "vpc-123"}, {"id": "vpc-123", "tags": {"kubernetes.io/cluster/c": "shared"}}
    )
    assert keys(plan_changes(desired, actual, KINDS)) == [("create", "RouteTable", "c")]
    # By name, when the shared resource has no id prop.
    desired[0] = Resource("VPC", "c", {"cidr_block": "changed"}, shared=True)
    assert keys(plan_changes(desired, actual, KINDS)) == [("create", "RouteTable", "c")]


def test_missing_shared_resource_is_an_error() -> None:
    desired, actual = shared_world()
    with pytest.raises(PlanError, match=r"^shared VPC vpc-123 not found; check the ids"):
        plan_changes(desired, actual[1:], KINDS)
    desired[0] = Resource("VPC", "c", {}, shared=True)
    with pytest.raises(PlanError, match=r"^shared VPC c not found"):
        plan_changes(desired, actual[1:], KINDS)


def test_refs_to_created_resources_are_known_after_apply() -> None:
    # The VPC is new: the existing route table must move to it, the value is not known yet.
    desired = [vpc(), Resource("RouteTable", "r", {"vpc": Ref("VPC", "c"), "name": "r"})]
    actual = [Actual("RouteTable", "r", {"id": "rtb-1"}, {"vpc": "vpc-old", "name": "r"})]
    changes = plan_changes(desired, actual, KINDS)
    assert keys(changes) == [("create", "VPC", "c"), ("update", "RouteTable", "r")]
    assert changes[1].fields == [FieldChange("vpc", "vpc-old", Unknown(Ref("VPC", "c")))]


def test_replacement_forces_dependents_and_chains() -> None:
    desired = [
        vpc({"cidr_block": "10.9.0.0/16"}),
        Resource("SecurityGroup", "g", {"vpc": Ref("VPC", "c")}),
        Resource("SecurityGroupRule", "g/in", {"group": Ref("SecurityGroup", "g"), "protocol": "tcp"}),
        Resource("InternetGateway", "c", {"vpc": Ref("VPC", "c")}),
        Resource("RouteTable", "c", {"gw": Ref("InternetGateway", "c"), "vpc": Ref("VPC", "c")}),
    ]
    actual = [
        Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16"}),
        Actual("SecurityGroup", "g", {"id": "sg-1"}, {"vpc": "vpc-1"}),
        Actual("SecurityGroupRule", "g/in", {"id": "sgr-1"}, {"group": "sg-1", "protocol": "tcp"}),
        Actual("InternetGateway", "c", {"id": "igw-1"}, {"vpc": "vpc-1"}),
        Actual("RouteTable", "c", {"id": "rtb-1"}, {"gw": "igw-1", "vpc": "vpc-1"}),
    ]
    changes = plan_changes(desired, actual, KINDS)
    assert keys(changes) == [
        ("replace", "VPC", "c"),
        ("update", "InternetGateway", "c"),
        ("update", "RouteTable", "c"),  # its gateway is only updated: the gw id is known
        ("update", "SecurityGroup", "g"),  # updated in place: its id is known, its rules stay
    ]
    assert changes[2].fields == [FieldChange("vpc", "vpc-1", Unknown(Ref("VPC", "c")))]
    # A replaced group would replace its rules (group is immutable, rules are replaceable).
    group_kinds = {**KINDS, **make_kinds("SecurityGroup", SecurityGroup={"immutable": {"vpc"}})}
    changes = plan_changes(desired, actual, group_kinds)
    assert keys(changes)[3:] == [("replace", "SecurityGroup", "g"), ("replace", "SecurityGroupRule", "g/in")]
    assert changes[4].fields == [FieldChange("group", "sg-1", Unknown(Ref("SecurityGroup", "g")))]


def test_replacement_refused_when_a_dependent_cannot_move() -> None:
    desired = [vpc({"cidr_block": "10.9.0.0/16"}), Resource("Subnet", "a.c", {"vpc": Ref("VPC", "c")})]
    actual = [
        Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16"}),
        Actual("Subnet", "a.c", {"id": "subnet-1"}, {"vpc": "vpc-1"}),
    ]
    with pytest.raises(
        PlanError, match=r"^Subnet/a.c: vpc cannot change \(vpc-1 → \(known after apply: VPC/c\)\)"
    ):
        plan_changes(desired, actual, KINDS)


def test_update_attrs_become_unknown_when_their_resource_is_updated() -> None:
    desired = [
        Resource("LaunchTemplate", "n", {"instance_type": "t3.large"}),
        Resource(
            "AutoScalingGroup",
            "n",
            {"launch_template": Ref("LaunchTemplate", "n"), "version": Ref("LaunchTemplate", "n", "version")},
        ),
    ]
    actual = [
        Actual("LaunchTemplate", "n", {"id": "lt-1", "version": 3}, {"instance_type": "t3.medium"}),
        Actual("AutoScalingGroup", "n", {"id": "n"}, {"launch_template": "lt-1", "version": 3}),
    ]
    changes = plan_changes(desired, actual, KINDS)
    assert keys(changes) == [("update", "LaunchTemplate", "n"), ("update", "AutoScalingGroup", "n")]
    assert changes[1].fields == [FieldChange("version", 3, Unknown(Ref("LaunchTemplate", "n", "version")))]
    actual[0].props["instance_type"] = "t3.large"
    assert plan_changes(desired, actual, KINDS) == []


def test_externally_referenced_actual_resources_are_kept() -> None:
    desired = [Resource("Subnet", "a", {"vpc": Ref("VPC", "theirs")})]
    actual = [
        Actual("VPC", "theirs", {"id": "vpc-9"}, {}),
        Actual("Subnet", "a", {"id": "s"}, {"vpc": "vpc-9"}),
    ]
    assert plan_changes(desired, actual, KINDS) == []
    with pytest.raises(GraphError, match="Subnet/a references VPC/theirs"):
        plan_changes(desired, actual[1:], KINDS)


def test_reference_to_a_missing_attribute_is_an_error() -> None:
    desired = [vpc(), Resource("Subnet", "a", {"vpc": Ref("VPC", "c", "ipv6")})]
    actual = [Actual("VPC", "c", {"id": "vpc-1"}, {"cidr_block": "10.0.0.0/16"})]
    with pytest.raises(PlanError, match=r"Subnet/a references VPC/c.ipv6, but the VPC found .*'ipv6'"):
        plan_changes(desired, actual, KINDS)


def test_unknown_kind_and_duplicate_actual_are_errors() -> None:
    with pytest.raises(PlanError, match="no implementation for resource kind 'Nope'"):
        plan_changes([Resource("Nope", "x")], [], KINDS)
    twins = [Actual("VPC", "c", {"id": "vpc-1"}), Actual("VPC", "c", {"id": "vpc-2"})]
    with pytest.raises(PlanError, match=r"same name: VPC/c \(vpc-1, vpc-2\)"):
        plan_changes([vpc()], twins, KINDS)


def test_converged_fake_cloud_plans_nothing_then_plans_precise_changes() -> None:
    cloud, kinds, desired = FakeCloud(), network_kinds(), network()
    converge(cloud, desired, kinds)
    desired[5].props["instance_type"] = "t3.large"
    del desired[3]  # the route table
    changes = plan_changes(desired, cloud.actual(), kinds)
    assert keys(changes) == [
        ("update", "LaunchTemplate", "nodes.c"),
        ("update", "AutoScalingGroup", "nodes.c"),
        ("delete", "RouteTable", "c"),
    ]


def test_actual_marked_shared_by_its_kind_is_never_deleted() -> None:
    actual = [
        Actual("VPC", "theirs", {"id": "vpc-9", "shared": True}, {}),
        Actual("Subnet", "x", {"id": "subnet-9"}, {"vpc": "vpc-9"}),
    ]
    assert keys(plan_changes([], actual, KINDS)) == [("delete", "Subnet", "x")]
