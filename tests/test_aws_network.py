"""The network kinds (cloud/aws/network.py) against the AWS emulator over HTTP.

Each test starts from an empty emulator (``aws_env.reset()``). Resources are created the way the engine
does it: ``create(cloud, desired, props)`` with the Refs of ``desired.props`` resolved to ids in ``props``;
``find`` gets the desired resources (Refs unresolved) and its result is compared the way the engine compares
(only the desired keys, tags restricted to the desired keys).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from pykops.cloud.aws.cloud import AwsCloud, cluster_owned_tag
from pykops.cloud.aws.network import (
    NETWORK_KINDS,
    VPC,
    DHCPOptions,
    ElasticIP,
    InternetGateway,
    NatGateway,
    Route,
    RouteTable,
    RouteTableAssociation,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    VPCDHCPOptionsAssociation,
    canonical_protocol,
    rule_name,
)
from pykops.engine.diff import compare_props
from pykops.engine.types import Actual, FieldChange, Kind, Ref, Resource, RetryableError
from pykops.errors import PykopsError
from pykops.sandbox.aws_emulator import AwsEmulator

REGION = "eu-west-1"
ZONE = "eu-west-1a"


# --- helpers ------------------------------------------------------------------------------------------------


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session for the module (loading service models per session is what makes clients slow)."""
    return boto3.session.Session(region_name=REGION)


def new_cloud(cluster: str) -> AwsCloud:
    return AwsCloud(cluster, REGION, session=_session())


def ec2_client() -> Any:
    """A plain EC2 client (outside pykops: what a user or another tool does)."""
    return _session().client("ec2", region_name=REGION)


@pytest.fixture
def cluster(aws_env: AwsEmulator) -> str:
    aws_env.reset()
    return f"net-{uuid.uuid4().hex[:8]}.k8s.local"


@pytest.fixture
def cloud(cluster: str) -> AwsCloud:
    return new_cloud(cluster)


def tags(
    cloud: AwsCloud, name: str, extra: dict[str, str] | None = None, *, shared: bool = False
) -> dict[str, str]:
    """The tags the model puts on a resource (kops tags + a cloud label)."""
    return {"team": "platform", **cloud.cluster_tags(name, extra, shared=shared)}


def by_name(actual: list[Actual]) -> dict[str, Actual]:
    names = [a.name for a in actual]
    assert len(names) == len(set(names)), f"duplicate names: {sorted(names)}"
    return {a.name: a for a in actual}


def diff(kind: Kind, actual: Actual, props: dict[str, Any]) -> list[FieldChange]:
    """What the engine would change (only desired keys; tags restricted to the desired keys)."""
    return compare_props(actual.props, props, unordered=getattr(kind, "unordered", frozenset()))


def found(kind: Kind, cloud: AwsCloud, desired: list[Resource], name: str) -> Actual:
    matches = [a for a in kind.find(cloud, desired) if a.name == name]
    assert len(matches) == 1, f"{kind.kind}/{name}: {matches}"
    return matches[0]


def find_calls(kind: Kind, cloud: AwsCloud, desired: list[Resource] | None = None) -> int:
    cloud.calls.reset()
    kind.find(cloud, desired or [])
    return cloud.calls.total


def make(kind: Kind, cloud: AwsCloud, name: str, desired_props: dict[str, Any], props: dict[str, Any]) -> str:
    """create() as the engine calls it; returns the id."""
    attrs = kind.create(cloud, Resource(kind.kind, name, desired_props), props)
    return str(attrs["id"])


def make_dhcp(cloud: AwsCloud, name: str, props: dict[str, Any]) -> str:
    """DHCPOptions.create, then the tags its TagSpecifications asked for when the emulator dropped them.

    moto gap: CreateDhcpOptions ignores TagSpecifications (AWS applies them; see
    test_dhcp_options_create_is_tagged). Done here, in the test, so the kind keeps the real AWS behaviour.
    """
    options_id = make(DHCPOptions(), cloud, name, props, props)
    ec2 = ec2_client()
    options = ec2.describe_dhcp_options(DhcpOptionsIds=[options_id])["DhcpOptions"][0]
    if not options.get("Tags"):
        ec2.create_tags(
            Resources=[options_id], Tags=cloud.tag_list({**cloud.cluster_tags(name), **props["tags"]})
        )
    return options_id


class Net:
    """A small cluster network built through the kinds: VPC, IGW, public subnet, route table."""

    def __init__(self, cloud: AwsCloud, cidr: str = "10.0.0.0/16") -> None:
        self.cloud = cloud
        c = cloud.cluster_name
        self.name = c
        vpc_props = {
            "cidr_block": cidr,
            "enable_dns_support": True,
            "enable_dns_hostnames": True,
            "tags": tags(cloud, c),
        }
        self.vpc_desired = Resource("VPC", c, vpc_props)
        self.vpc = str(VPC().create(cloud, self.vpc_desired, vpc_props)["id"])
        self.subnet_cidr_prefix = cidr.split(".")[0] + "." + cidr.split(".")[1]

    def subnet(self, short: str, third_octet: int, zone: str = ZONE, subnet_type: str = "Public") -> str:
        desired, props = self.subnet_desired(short, third_octet, zone, subnet_type)
        return str(Subnet().create(self.cloud, desired, props)["id"])

    def subnet_desired(
        self, short: str, third_octet: int, zone: str = ZONE, subnet_type: str = "Public"
    ) -> tuple[Resource, dict[str, Any]]:
        name = f"{short}.{self.name}"
        role = (
            {"kubernetes.io/role/elb": "1"}
            if subnet_type != "Private"
            else {"kubernetes.io/role/internal-elb": "1"}
        )
        desired_props = {
            "vpc": Ref("VPC", self.name),
            "cidr_block": f"{self.subnet_cidr_prefix}.{third_octet}.0/24",
            "availability_zone": zone,
            "tags": tags(self.cloud, name, {"SubnetType": subnet_type, **role}),
        }
        return Resource("Subnet", name, desired_props), {**desired_props, "vpc": self.vpc}

    def group(self, role: str) -> tuple[Resource, str]:
        name = f"{role}.{self.name}"
        desired_props = {
            "vpc": Ref("VPC", self.name),
            "description": f"{role} of {self.name}",
            "tags": tags(self.cloud, name),
        }
        desired = Resource("SecurityGroup", name, desired_props)
        return desired, str(
            SecurityGroup().create(self.cloud, desired, {**desired_props, "vpc": self.vpc})["id"]
        )


def rule(
    group: str,
    direction: str,
    protocol: str,
    from_port: int,
    to_port: int,
    *,
    cidr: str | None = None,
    source_group: str | None = None,
) -> Resource:
    """A desired rule as the model builds it (group and source group as Refs)."""
    props: dict[str, Any] = {
        "group": Ref("SecurityGroup", group),
        "direction": direction,
        "protocol": protocol,
        "from_port": from_port,
        "to_port": to_port,
    }
    if cidr is not None:
        props["cidr"] = cidr
        source = cidr
    else:
        props["source_group"] = Ref("SecurityGroup", str(source_group))
        source = str(source_group)
    return Resource(
        "SecurityGroupRule", rule_name(group, direction, protocol, from_port, to_port, source), props
    )


def resolved(resource: Resource, ids: dict[str, str]) -> dict[str, Any]:
    """resource.props with Refs to SecurityGroups/VPCs replaced by the ids in ``ids`` (by logical name)."""
    return {k: ids[v.name] if isinstance(v, Ref) else v for k, v in resource.props.items()}


# --- VPC ----------------------------------------------------------------------------------------------------


def test_vpc_create_find_update_delete(cloud: AwsCloud) -> None:
    kind = VPC()
    net = Net(cloud)
    desired = net.vpc_desired
    actual = found(kind, cloud, [desired], desired.name)
    assert actual.attrs["id"] == net.vpc and actual.attrs["id"].startswith("vpc-")
    assert diff(kind, actual, desired.props) == []
    assert actual.props["enable_dns_support"] is True and actual.props["enable_dns_hostnames"] is True

    # Tags: only desired keys that differ are written; DNS hostnames can be switched off in place.
    new_props = {
        **desired.props,
        "enable_dns_hostnames": False,
        "tags": {**desired.props["tags"], "team": "net"},
    }
    changes = diff(kind, actual, new_props)
    assert {c.path for c in changes} == {"enable_dns_hostnames", "tags.team"}
    cloud.calls.reset()
    kind.update(cloud, actual, new_props, changes)
    assert cloud.calls.mutating() == {"ec2:CreateTags": 1, "ec2:ModifyVpcAttribute": 1}
    actual = found(kind, cloud, [Resource("VPC", desired.name, new_props)], desired.name)
    assert diff(kind, actual, new_props) == []

    kind.delete(cloud, actual)
    assert kind.find(cloud, [desired]) == []
    kind.delete(cloud, actual)  # already gone


def test_vpc_delete_with_dependents_is_retryable(cloud: AwsCloud) -> None:
    net = Net(cloud)
    net.subnet("a", 1)
    actual = found(VPC(), cloud, [net.vpc_desired], net.name)
    with pytest.raises(RetryableError) as err:
        VPC().delete(cloud, actual)
    assert err.value.code == "DependencyViolation"


def test_shared_vpc_found_by_id_tagged_never_deleted_nor_created(cloud: AwsCloud) -> None:
    ec2 = ec2_client()
    vpc_id = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]  # not tagged for the cluster
    desired = Resource("VPC", cloud.cluster_name, {"id": vpc_id}, shared=True)
    kind = VPC()

    cloud.calls.reset()
    actual = found(kind, cloud, [desired], desired.name)
    assert cloud.calls.total == 2  # the tag-filtered describe + one describe by id
    assert actual.id == vpc_id and actual.attrs["shared"] is True
    assert diff(kind, actual, desired.props) == []

    shared_tag = {cluster_owned_tag(cloud.cluster_name): "shared"}
    props = {"id": vpc_id, "tags": shared_tag}
    kind.update(cloud, actual, props, diff(kind, actual, props))
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    assert cloud.tag_dict(vpc.get("Tags")) == shared_tag

    # Still found once (by id, although the tag filter now matches it too), still shared.
    actual = found(kind, cloud, [desired], desired.name)
    assert actual.attrs["shared"] is True
    with pytest.raises(PykopsError, match="shared"):
        kind.delete(cloud, actual)
    with pytest.raises(PykopsError, match="shared"):
        kind.update(
            cloud, actual, {"id": vpc_id, "cidr_block": "10.0.0.0/16"}, [FieldChange("cidr_block", "a", "b")]
        )
    with pytest.raises(PykopsError, match="not found"):
        kind.create(cloud, desired, desired.props)
    assert ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]

    # Tagged shared for the cluster but not in the model (any more): not the cluster's, not reported.
    assert kind.find(cloud, []) == []


# --- DHCP options and their association ---------------------------------------------------------------------


def test_dhcp_options_and_association(cloud: AwsCloud) -> None:
    net = Net(cloud)
    c = cloud.cluster_name
    opts_kind, assoc_kind = DHCPOptions(), VPCDHCPOptionsAssociation()
    opts_props: dict[str, Any] = {
        "domain_name": f"{REGION}.compute.internal",
        "domain_name_servers": ["AmazonProvidedDNS"],
        "tags": tags(cloud, c),
    }
    opts_desired = Resource("DHCPOptions", c, opts_props)
    opts_id = make_dhcp(cloud, c, opts_props)
    actual = found(opts_kind, cloud, [opts_desired], c)
    assert actual.id == opts_id and diff(opts_kind, actual, opts_props) == []
    assert opts_kind.immutable == {"domain_name", "domain_name_servers"} and opts_kind.replaceable

    assert assoc_kind.find(cloud, []) == []  # the VPC uses the default options
    assoc_desired = Resource(
        "VPCDHCPOptionsAssociation", c, {"vpc": Ref("VPC", c), "dhcp_options": Ref("DHCPOptions", c)}
    )
    assoc_props = {"vpc": net.vpc, "dhcp_options": opts_id}
    assert assoc_kind.create(cloud, assoc_desired, assoc_props) == {"id": net.vpc}
    assoc = found(assoc_kind, cloud, [assoc_desired], c)
    assert assoc.id == net.vpc and diff(assoc_kind, assoc, assoc_props) == []

    # Tags update on the options.
    new_opts = {**opts_props, "tags": {**opts_props["tags"], "team": "net"}}
    opts_kind.update(cloud, actual, new_opts, diff(opts_kind, actual, new_opts))
    assert diff(opts_kind, found(opts_kind, cloud, [opts_desired], c), new_opts) == []

    # Delete: back to the default options; then the options can go. Twice is fine.
    assoc_kind.delete(cloud, assoc)
    assert assoc_kind.find(cloud, [assoc_desired]) == []
    assoc_kind.delete(cloud, assoc)
    opts_kind.delete(cloud, actual)
    assert opts_kind.find(cloud, [opts_desired]) == []
    opts_kind.delete(cloud, actual)


def _switch_dhcp_options(cloud: AwsCloud) -> tuple[Actual, str]:
    """A VPC associated with options set A, then switched to set B by an association update."""
    net = Net(cloud)
    c = cloud.cluster_name
    props = {
        "domain_name": "a.internal",
        "domain_name_servers": ["AmazonProvidedDNS"],
        "tags": tags(cloud, c),
    }
    first = make_dhcp(cloud, c, props)
    second = make_dhcp(cloud, f"b.{c}", {**props, "domain_name": "b.internal", "tags": tags(cloud, f"b.{c}")})
    kind = VPCDHCPOptionsAssociation()
    kind.create(cloud, Resource(kind.kind, c), {"vpc": net.vpc, "dhcp_options": first})
    assoc = found(kind, cloud, [], c)
    new_props = {"vpc": net.vpc, "dhcp_options": second}
    assert kind.update(cloud, assoc, new_props, diff(kind, assoc, new_props)) == {"id": net.vpc}
    assert found(kind, cloud, [], c).props == new_props
    return found(DHCPOptions(), cloud, [], c), second


def test_dhcp_options_association_update_switches_the_set(cloud: AwsCloud) -> None:
    old, _second = _switch_dhcp_options(cloud)
    assert old.props["domain_name"] == "a.internal"


def test_dhcp_options_replaced_set_can_be_deleted(cloud: AwsCloud) -> None:
    old, _second = _switch_dhcp_options(cloud)
    DHCPOptions().delete(cloud, old)


def test_dhcp_options_create_is_tagged(cloud: AwsCloud) -> None:
    c = cloud.cluster_name
    props = {
        "domain_name": "x.internal",
        "domain_name_servers": ["AmazonProvidedDNS"],
        "tags": tags(cloud, c),
    }
    options_id = make(DHCPOptions(), cloud, c, props, props)
    assert [a.id for a in DHCPOptions().find(cloud, [])] == [options_id]


# --- internet gateway ---------------------------------------------------------------------------------------


def test_internet_gateway_create_reattach_delete(cloud: AwsCloud) -> None:
    net = Net(cloud)
    kind = InternetGateway()
    c = cloud.cluster_name
    desired_props: dict[str, Any] = {"vpc": Ref("VPC", c), "tags": tags(cloud, c)}
    desired = Resource("InternetGateway", c, desired_props)
    props = {**desired_props, "vpc": net.vpc}
    igw = make(kind, cloud, c, desired_props, props)
    actual = found(kind, cloud, [desired], c)
    assert actual.id == igw and igw.startswith("igw-") and diff(kind, actual, props) == []

    # Moved to another VPC (detach + attach) and re-tagged.
    other = VPC().create(cloud, Resource("VPC", f"other.{c}"), {"cidr_block": "10.9.0.0/16"})["id"]
    new_props = {"vpc": other, "tags": {**props["tags"], "team": "net"}}
    kind.update(cloud, actual, new_props, diff(kind, actual, new_props))
    actual = found(kind, cloud, [desired], c)
    assert diff(kind, actual, new_props) == []

    kind.delete(cloud, actual)
    assert kind.find(cloud, [desired]) == []
    kind.delete(cloud, actual)


def test_internet_gateway_left_detached_is_found_and_attached_by_update(cloud: AwsCloud) -> None:
    net = Net(cloud)
    kind = InternetGateway()
    c = cloud.cluster_name
    # A create that stopped after CreateInternetGateway: tagged, so found, with no VPC.
    make(kind, cloud, c, {}, {"vpc": None, "tags": tags(cloud, c)})
    actual = found(kind, cloud, [], c)
    assert actual.props["vpc"] is None
    props = {"vpc": net.vpc}
    kind.update(cloud, actual, props, diff(kind, actual, props))
    assert found(kind, cloud, [], c).props["vpc"] == net.vpc


# --- subnets ------------------------------------------------------------------------------------------------


def test_subnet_create_find_update_delete(cloud: AwsCloud) -> None:
    net = Net(cloud)
    kind = Subnet()
    desired, props = net.subnet_desired("eu-west-1a", 32, subnet_type="Private")
    subnet_id = make(kind, cloud, desired.name, desired.props, props)
    actual = found(kind, cloud, [desired], desired.name)
    assert actual.id == subnet_id and diff(kind, actual, props) == []
    assert not kind.replaceable and {"cidr_block", "availability_zone"} <= kind.immutable

    new_props = {**props, "tags": {**props["tags"], "team": "net", "SubnetType": "Private"}}
    kind.update(cloud, actual, new_props, diff(kind, actual, new_props))
    actual = found(kind, cloud, [desired], desired.name)
    assert diff(kind, actual, new_props) == []
    assert actual.props["tags"]["team"] == "net"

    kind.delete(cloud, actual)
    assert kind.find(cloud, [desired]) == []
    kind.delete(cloud, actual)


def test_shared_subnet_found_by_id_and_never_deleted(cloud: AwsCloud) -> None:
    ec2 = ec2_client()
    vpc_id = ec2.create_vpc(CidrBlock="172.21.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="172.21.1.0/24", AvailabilityZone=ZONE)["Subnet"][
        "SubnetId"
    ]
    name = f"{ZONE}.{cloud.cluster_name}"
    desired = Resource("Subnet", name, {"id": subnet_id}, shared=True)
    kind = Subnet()
    actual = found(kind, cloud, [desired], name)
    assert actual.attrs == {"id": subnet_id, "shared": True}
    assert actual.props["vpc"] == vpc_id and actual.props["cidr_block"] == "172.21.1.0/24"

    shared_tag = {cluster_owned_tag(cloud.cluster_name): "shared"}
    kind.update(cloud, actual, {"id": subnet_id, "tags": shared_tag}, [FieldChange("tags", None, shared_tag)])
    actual = found(kind, cloud, [desired], name)
    assert actual.props["tags"] == shared_tag
    with pytest.raises(PykopsError, match="shared"):
        kind.delete(cloud, actual)
    with pytest.raises(PykopsError, match="not found"):
        kind.create(cloud, desired, desired.props)
    assert ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]


def test_subnet_delete_refuses_a_resource_tagged_shared(cloud: AwsCloud) -> None:
    actual = Actual(
        "Subnet", "x", {"id": "subnet-0123"}, {"tags": {cluster_owned_tag(cloud.cluster_name): "shared"}}
    )
    with pytest.raises(PykopsError, match="never deletes"):
        Subnet().delete(cloud, actual)
    cloud.calls.reset()
    with pytest.raises(PykopsError):
        VPC().delete(cloud, Actual("VPC", "x", {"id": "vpc-0123", "shared": True}, {}))
    assert cloud.calls.total == 0


# --- routing ------------------------------------------------------------------------------------------------


def test_route_table_route_and_association(cloud: AwsCloud) -> None:
    net = Net(cloud)
    c = cloud.cluster_name
    subnet_desired, subnet_props = net.subnet_desired("utility-eu-west-1a", 1, subnet_type="Utility")
    subnet_id = Subnet().create(cloud, subnet_desired, subnet_props)["id"]
    igw = InternetGateway().create(
        cloud, Resource("InternetGateway", c), {"vpc": net.vpc, "tags": tags(cloud, c)}
    )["id"]

    table_kind, route_kind, assoc_kind = RouteTable(), Route(), RouteTableAssociation()
    table_props: dict[str, Any] = {
        "vpc": Ref("VPC", c),
        "tags": tags(cloud, c, {"kubernetes.io/kops/role": "public"}),
    }
    table_desired = Resource("RouteTable", c, table_props)
    table_id = make(table_kind, cloud, c, table_props, {**table_props, "vpc": net.vpc})
    table = found(table_kind, cloud, [table_desired], c)
    assert table.id == table_id and diff(table_kind, table, {**table_props, "vpc": net.vpc}) == []

    route_desired = Resource(
        "Route",
        f"{c}/0.0.0.0/0",
        {
            "route_table": Ref("RouteTable", c),
            "destination_cidr_block": "0.0.0.0/0",
            "internet_gateway": Ref("InternetGateway", c),
        },
    )
    route_props = {"route_table": table_id, "destination_cidr_block": "0.0.0.0/0", "internet_gateway": igw}
    make(route_kind, cloud, route_desired.name, route_desired.props, route_props)
    routes = route_kind.find(cloud, [route_desired])
    assert [r.name for r in routes] == [route_desired.name]  # the local route is not reported
    assert diff(route_kind, routes[0], route_props) == []

    assoc_desired = Resource(
        "RouteTableAssociation",
        subnet_desired.name,
        {"route_table": Ref("RouteTable", c), "subnet": Ref("Subnet", subnet_desired.name)},
    )
    assoc_props = {"route_table": table_id, "subnet": subnet_id}
    assoc_id = make(assoc_kind, cloud, subnet_desired.name, assoc_desired.props, assoc_props)
    assoc = found(assoc_kind, cloud, [assoc_desired], subnet_desired.name)
    assert (
        assoc.id == assoc_id
        and assoc_id.startswith("rtbassoc-")
        and diff(assoc_kind, assoc, assoc_props) == []
    )

    # Tags of the table; the association moves to another table in place.
    new_table_props = {**table_props, "vpc": net.vpc, "tags": {**table_props["tags"], "team": "net"}}
    table_kind.update(cloud, table, new_table_props, diff(table_kind, table, new_table_props))
    assert diff(table_kind, found(table_kind, cloud, [table_desired], c), new_table_props) == []
    other_table = make(
        table_kind,
        cloud,
        f"private-{ZONE}.{c}",
        {},
        {"vpc": net.vpc, "tags": tags(cloud, f"private-{ZONE}.{c}")},
    )
    moved = {"route_table": other_table, "subnet": subnet_id}
    new_attrs = assoc_kind.update(cloud, assoc, moved, diff(assoc_kind, assoc, moved))
    assoc = found(assoc_kind, cloud, [assoc_desired], subnet_desired.name)
    assert assoc.id == new_attrs["id"] and assoc.props == moved

    # Delete in the engine's order: association and route, then the table; twice is fine.
    for kind, actual in ((assoc_kind, assoc), (route_kind, routes[0]), (table_kind, table)):
        kind.delete(cloud, actual)
        assert [a for a in kind.find(cloud, []) if a.id == actual.id] == []
        kind.delete(cloud, actual)


def test_private_route_to_nat_gateway_and_nat_lifecycle(cloud: AwsCloud) -> None:
    net = Net(cloud)
    c = cloud.cluster_name
    utility_desired, utility_props = net.subnet_desired(f"utility-{ZONE}", 1, subnet_type="Utility")
    utility = Subnet().create(cloud, utility_desired, utility_props)["id"]
    InternetGateway().create(cloud, Resource("InternetGateway", c), {"vpc": net.vpc, "tags": tags(cloud, c)})
    zone_name = f"{ZONE}.{c}"

    eip_kind, nat_kind = ElasticIP(), NatGateway()
    eip_props = {"tags": tags(cloud, zone_name)}
    eip_attrs = eip_kind.create(cloud, Resource("ElasticIP", zone_name, eip_props), eip_props)
    eip = found(eip_kind, cloud, [], zone_name)
    assert eip.attrs["id"] == eip_attrs["id"] and eip.attrs["public_ip"] == eip_attrs["public_ip"]
    assert eip.attrs["public_ip"] and diff(eip_kind, eip, eip_props) == []

    nat_desired_props = {
        "subnet": Ref("Subnet", utility_desired.name),
        "allocation": Ref("ElasticIP", zone_name),
        "tags": tags(cloud, zone_name),
    }
    nat_desired = Resource("NatGateway", zone_name, nat_desired_props)
    nat_props = {**nat_desired_props, "subnet": utility, "allocation": eip.id}
    nat_id = make(nat_kind, cloud, zone_name, nat_desired_props, nat_props)
    nat = found(nat_kind, cloud, [nat_desired], zone_name)
    assert nat.id == nat_id and nat_id.startswith("nat-") and diff(nat_kind, nat, nat_props) == []

    table_name = f"private-{ZONE}.{c}"
    table = make(RouteTable(), cloud, table_name, {}, {"vpc": net.vpc, "tags": tags(cloud, table_name)})
    route_props = {"route_table": table, "destination_cidr_block": "0.0.0.0/0", "nat_gateway": nat_id}
    make(Route(), cloud, f"{table_name}/0.0.0.0/0", {}, route_props)
    route = found(Route(), cloud, [], f"{table_name}/0.0.0.0/0")
    assert diff(Route(), route, route_props) == []

    # Tags update on the NAT gateway and the EIP.
    new_nat = {**nat_props, "tags": {**nat_props["tags"], "team": "net"}}
    nat_kind.update(cloud, nat, new_nat, diff(nat_kind, nat, new_nat))
    assert diff(nat_kind, found(nat_kind, cloud, [nat_desired], zone_name), new_nat) == []
    new_eip = {"tags": {**eip_props["tags"], "team": "net"}}
    eip_kind.update(cloud, eip, new_eip, diff(eip_kind, eip, new_eip))
    assert diff(eip_kind, found(eip_kind, cloud, [], zone_name), new_eip) == []

    # Delete: route, NAT (waits until deleted; a deleted gateway is no longer reported), EIP.
    Route().delete(cloud, route)
    nat_kind.delete(cloud, nat)
    assert nat_kind.find(cloud, [nat_desired]) == []
    nat_kind.delete(cloud, nat)
    eip_kind.delete(cloud, eip)
    assert eip_kind.find(cloud, []) == []
    eip_kind.delete(cloud, eip)


def test_nat_gateway_delete_of_unknown_gateway_is_fine(cloud: AwsCloud) -> None:
    impatient = new_cloud(cloud.cluster_name)
    impatient._config = Config(retries={"max_attempts": 1, "mode": "standard"})  # moto answers 500
    NatGateway().delete(impatient, Actual("NatGateway", "x", {"id": "nat-0123456789abcdef0"}, {}))


class _SlowNatClient:
    """An EC2 client whose NAT gateway goes through ``states`` (one per describe); records the calls."""

    def __init__(self, create_state: str, states: list[str]) -> None:
        self.create_state, self.states = create_state, list(states)
        self.calls: list[str] = []

    def create_nat_gateway(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(f"create {kwargs['ClientToken']}")
        return {"NatGateway": {"NatGatewayId": "nat-1", "State": self.create_state}}

    def delete_nat_gateway(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("delete")
        return {"NatGatewayId": kwargs["NatGatewayId"]}

    def describe_nat_gateways(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("describe")
        state = self.states.pop(0)
        return {"NatGateways": [{"NatGatewayId": "nat-1", "State": state, "FailureMessage": "no capacity"}]}


class _FakeCloud:
    def __init__(self, ec2: _SlowNatClient) -> None:
        self.ec2, self.cluster_name = ec2, "c.k8s.local"

    def cluster_tags(self, name: str, shared: bool = False) -> dict[str, str]:
        return {"Name": name}

    def tag_specifications(self, resource_type: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


@pytest.fixture
def fast_nat(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []
    monkeypatch.setattr("pykops.cloud.aws.network.time.sleep", sleeps.append)
    return sleeps


def test_nat_gateway_create_waits_for_available_with_backoff(fast_nat: list[float]) -> None:
    client = _SlowNatClient("pending", ["pending", "pending", "pending", "pending", "available"])
    props = {"subnet": "subnet-1", "allocation": "eipalloc-1"}
    attrs = NatGateway().create(_FakeCloud(client), Resource("NatGateway", "a.c.k8s.local"), props)
    assert attrs == {"id": "nat-1"}
    assert client.calls[1:] == ["describe"] * 5
    assert fast_nat == [2.0, 4.0, 8.0, 15.0, 15.0]


def test_nat_gateway_create_failed_is_an_error(fast_nat: list[float]) -> None:
    client = _SlowNatClient("pending", ["failed", "failed"])
    props = {"subnet": "subnet-1", "allocation": "eipalloc-1"}
    with pytest.raises(PykopsError, match="failed: no capacity"):
        NatGateway().create(_FakeCloud(client), Resource("NatGateway", "a.c.k8s.local"), props)


def test_nat_gateway_token_of_a_deleted_gateway_is_not_reused(
    fast_nat: list[float],
) -> None:
    client = _SlowNatClient("deleted", [])
    props = {"subnet": "subnet-1", "allocation": "eipalloc-1"}
    with pytest.raises(PykopsError, match="deleted gateway"):
        NatGateway().create(_FakeCloud(client), Resource("NatGateway", "a.c.k8s.local"), props)
    tokens = [call.split()[1] for call in client.calls]
    assert len(tokens) == 5 and len(set(tokens)) == 2  # the first token, then the one salted with nat-1


def test_nat_gateway_delete_waits_for_deleted(fast_nat: list[float]) -> None:
    client = _SlowNatClient("", ["deleting", "deleting", "deleted"])
    NatGateway().delete(_FakeCloud(client), Actual("NatGateway", "a", {"id": "nat-1"}, {}))
    assert client.calls == ["delete", "describe", "describe", "describe"]
    assert fast_nat == [2.0, 4.0]


def test_nat_gateway_client_token_is_deterministic() -> None:
    token = NatGateway.client_token("c.k8s.local", "eu-west-1a.c.k8s.local", "subnet-1", "eipalloc-1")
    assert token == NatGateway.client_token("c.k8s.local", "eu-west-1a.c.k8s.local", "subnet-1", "eipalloc-1")
    assert len(token) <= 64 and token.isascii()
    others = {
        NatGateway.client_token("d.k8s.local", "eu-west-1a.c.k8s.local", "subnet-1", "eipalloc-1"),
        NatGateway.client_token("c.k8s.local", "eu-west-1b.c.k8s.local", "subnet-1", "eipalloc-1"),
        NatGateway.client_token("c.k8s.local", "eu-west-1a.c.k8s.local", "subnet-2", "eipalloc-1"),
        NatGateway.client_token("c.k8s.local", "eu-west-1a.c.k8s.local", "subnet-1", "eipalloc-1", "nat-old"),
    }
    assert token not in others and len(others) == 4


def test_nat_gateway_create_retried_does_not_duplicate(cloud: AwsCloud) -> None:
    net = Net(cloud)
    subnet = net.subnet(f"utility-{ZONE}", 1, subnet_type="Utility")
    name = f"{ZONE}.{cloud.cluster_name}"
    eip = make(ElasticIP(), cloud, name, {}, {"tags": tags(cloud, name)})
    props = {"subnet": subnet, "allocation": eip, "tags": tags(cloud, name)}
    first = make(NatGateway(), cloud, name, {}, props)
    second = make(NatGateway(), cloud, name, {}, props)  # e.g. the engine retried after a lost response
    assert first == second


# --- security groups and rules ------------------------------------------------------------------------------


def test_security_group_create_removes_default_egress(cloud: AwsCloud) -> None:
    net = Net(cloud)
    kind = SecurityGroup()
    desired, group_id = net.group("masters")
    ec2 = ec2_client()
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["GroupName"] == desired.name
    assert group.get("IpPermissionsEgress", []) == []
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])
    assert [r for r in rules["SecurityGroupRules"] if r["IsEgress"]] == []

    actual = found(kind, cloud, [desired], desired.name)
    props = {**desired.props, "vpc": net.vpc}
    assert actual.id == group_id and diff(kind, actual, props) == []
    assert {"vpc", "description"} <= kind.immutable and kind.replaceable

    new_props = {**props, "tags": {**props["tags"], "team": "net"}}
    kind.update(cloud, actual, new_props, diff(kind, actual, new_props))
    assert diff(kind, found(kind, cloud, [desired], desired.name), new_props) == []

    kind.delete(cloud, actual)
    assert kind.find(cloud, [desired]) == []
    kind.delete(cloud, actual)


def test_security_group_create_retried_adopts_the_clusters_group(cloud: AwsCloud) -> None:
    net = Net(cloud)
    desired, group_id = net.group("nodes")
    # The engine retries a create whose answer was lost: the cluster's group is adopted, not duplicated.
    again = SecurityGroup().create(cloud, desired, {**desired.props, "vpc": net.vpc})
    assert again == {"id": group_id}
    # A group of that name that is not the cluster's is an error that says so.
    ec2 = ec2_client()
    ec2.create_security_group(GroupName=f"bastion.{net.name}", Description="byo", VpcId=net.vpc)
    props = {"vpc": net.vpc, "description": "bastion", "tags": tags(cloud, f"bastion.{net.name}")}
    with pytest.raises(PykopsError, match="already exists"):
        SecurityGroup().create(cloud, Resource("SecurityGroup", f"bastion.{net.name}", props), props)


def _model_rules(c: str) -> list[Resource]:
    masters, nodes, api = f"masters.{c}", f"nodes.{c}", f"api-elb.{c}"
    return [
        rule(masters, "ingress", "tcp", 443, 443, source_group=api),
        rule(masters, "ingress", "-1", 0, 0, source_group=masters),
        rule(nodes, "ingress", "-1", 0, 0, source_group=masters),
        rule(masters, "ingress", "tcp", 2382, 4000, source_group=nodes),
        rule(masters, "ingress", "udp", 1, 65535, source_group=nodes),
        rule(api, "ingress", "tcp", 443, 443, cidr="0.0.0.0/0"),
        rule(api, "ingress", "icmp", 3, 4, cidr="0.0.0.0/0"),  # path-MTU: fragmentation needed
        rule(api, "ingress", "tcp", 443, 443, cidr="::/0"),
        rule(nodes, "ingress", "tcp", 22, 22, cidr="203.0.113.0/24"),
        rule(nodes, "egress", "-1", 0, 0, cidr="0.0.0.0/0"),
        rule(nodes, "egress", "-1", 0, 0, cidr="::/0"),
    ]


def test_security_group_rules_create_find_delete(cloud: AwsCloud) -> None:
    net = Net(cloud)
    c = cloud.cluster_name
    ids = {net.name: net.vpc}
    groups = [net.group(role) for role in ("masters", "nodes", "api-elb")]
    ids.update({desired.name: group_id for desired, group_id in groups})
    kind = SecurityGroupRule()
    desired = _model_rules(c)
    created = {}
    for r in desired:
        created[r.name] = make(kind, cloud, r.name, r.props, resolved(r, ids))
        assert created[r.name].startswith("sgr-")

    actual = by_name(kind.find(cloud, desired))
    assert set(actual) == {r.name for r in desired}
    for r in desired:
        assert actual[r.name].id == created[r.name]
        assert diff(kind, actual[r.name], resolved(r, ids)) == [], r.name

    # Deleting one (revoke by rule id); again is fine; the others stay.
    gone = actual[desired[0].name]
    kind.delete(cloud, gone)
    kind.delete(cloud, gone)
    assert set(by_name(kind.find(cloud, desired))) == {r.name for r in desired[1:]}

    # A rule the model does not have is reported under its canonical content name (and would be deleted).
    extra = rule(f"nodes.{c}", "ingress", "tcp", 8080, 8080, cidr="10.1.0.0/16")
    make(kind, cloud, "x", extra.props, resolved(extra, ids))
    assert extra.name in by_name(kind.find(cloud, desired))


def test_security_group_rule_protocol_spellings_match(cloud: AwsCloud) -> None:
    """The model may write "6" or "58" or 0-0 ports for "-1": the found rule has the model's spelling."""
    net = Net(cloud)
    desired_group, group_id = net.group("api-elb")
    ids = {desired_group.name: group_id}
    kind = SecurityGroupRule()
    desired = [
        rule(desired_group.name, "ingress", "6", 443, 443, cidr="10.0.0.0/8"),
        rule(desired_group.name, "ingress", "58", 2, 0, cidr="2001:db8::/32"),  # ICMPv6 packet too big
        rule(desired_group.name, "egress", "-1", -1, -1, cidr="0.0.0.0/0"),
    ]
    for r in desired:
        make(kind, cloud, r.name, r.props, resolved(r, ids))
    actual = by_name(kind.find(cloud, desired))
    assert set(actual) == {r.name for r in desired}
    for r in desired:
        assert diff(kind, actual[r.name], resolved(r, ids)) == [], r.name


def test_security_group_rule_protocol_number(cloud: AwsCloud) -> None:
    net = Net(cloud)
    group, group_id = net.group("masters")
    r = rule(group.name, "ingress", "4", 0, 0, source_group=group.name)
    kind = SecurityGroupRule()
    impatient = new_cloud(cloud.cluster_name)
    impatient._config = Config(
        retries={"max_attempts": 1, "mode": "standard"}
    )  # moto answers 500: no retries
    make(kind, impatient, r.name, r.props, resolved(r, {group.name: group_id}))
    actual = found(kind, cloud, [r], r.name)
    assert diff(kind, actual, resolved(r, {group.name: group_id})) == []


def test_security_group_rules_match_whatever_names_the_model_gives(cloud: AwsCloud) -> None:
    """Matching is by canonical content: a model that writes names its own way still finds its rules."""
    net = Net(cloud)
    group, group_id = net.group("nodes")
    kind = SecurityGroupRule()
    desired = []
    for direction, protocol, low, high, cidr in (
        ("egress", "-1", 0, 0, "0.0.0.0/0"),
        ("ingress", "tcp", 22, 22, "::/0"),
    ):
        props = {
            "group": Ref("SecurityGroup", group.name),
            "direction": direction,
            "protocol": protocol,
            "from_port": low,
            "to_port": high,
            "cidr": cidr,
        }
        r = Resource(kind.kind, f"{group.name}/{direction}/{protocol}/{low}-{high}/{cidr}", props)
        make(kind, cloud, r.name, r.props, resolved(r, {group.name: group_id}))
        desired.append(r)
    actual = by_name(kind.find(cloud, desired))
    assert set(actual) == {
        f"nodes.{net.name}/egress/-1/0-0/0.0.0.0/0",
        f"nodes.{net.name}/ingress/tcp/22-22/::/0",
    }
    for r in desired:
        assert diff(kind, actual[r.name], resolved(r, {group.name: group_id})) == []
    # Without desired rules, the same rules are reported under rule_name().
    assert set(by_name(kind.find(cloud, []))) == {
        f"nodes.{net.name}/egress/-1/all/0.0.0.0/0",
        f"nodes.{net.name}/ingress/tcp/22-22/::/0",
    }


def test_security_group_rule_duplicate_create_returns_the_existing_rule(cloud: AwsCloud) -> None:
    net = Net(cloud)
    group, group_id = net.group("nodes")
    r = rule(group.name, "ingress", "tcp", 22, 22, cidr="203.0.113.0/24")
    first = make(SecurityGroupRule(), cloud, r.name, r.props, resolved(r, {group.name: group_id}))
    second = make(SecurityGroupRule(), cloud, r.name, r.props, resolved(r, {group.name: group_id}))
    assert first == second


def test_rule_name_is_content_derived_and_stable() -> None:
    name = rule_name("api-elb.c", "ingress", "icmp", 3, 4, "0.0.0.0/0")
    assert name == "api-elb.c/ingress/icmp/3-4/0.0.0.0/0"
    assert rule_name("m.c", "ingress", "tcp", 443, 443, "n.c") == "m.c/ingress/tcp/443-443/n.c"
    assert rule_name("m.c", "ingress", "6", 443, 443, "n.c") == rule_name(
        "m.c", "ingress", "tcp", 443, 443, "n.c"
    )
    # Ports mean nothing for "-1" or protocol numbers without ports: any spelling gives one name.
    assert (
        rule_name("n.c", "egress", "-1", 0, 0, "::/0")
        == rule_name("n.c", "egress", "-1", -1, -1, "::/0")
        == rule_name("n.c", "egress", "all", None, None, "::/0")
        == "n.c/egress/-1/all/::/0"
    )
    assert rule_name("m.c", "ingress", "4", 0, 0, "n.c") == "m.c/ingress/4/all/n.c"
    # CIDRs are written canonically.
    assert rule_name("a.c", "ingress", "tcp", 1, 2, "2001:DB8:0::/32") == "a.c/ingress/tcp/1-2/2001:db8::/32"
    assert canonical_protocol("58") == "icmpv6" and canonical_protocol(17) == "udp"


# --- find: constant calls, isolation ------------------------------------------------------------------------


def _build(cloud: AwsCloud, count: int, cidr: str = "10.0.0.0/16") -> None:
    """``count`` subnets (associated with one route table), groups and rules, plus one of everything else."""
    net = Net(cloud, cidr)
    c = cloud.cluster_name
    opts = make_dhcp(
        cloud,
        c,
        {"domain_name": "x.internal", "domain_name_servers": ["AmazonProvidedDNS"], "tags": tags(cloud, c)},
    )
    VPCDHCPOptionsAssociation().create(
        cloud, Resource("VPCDHCPOptionsAssociation", c), {"vpc": net.vpc, "dhcp_options": opts}
    )
    igw = make(InternetGateway(), cloud, c, {}, {"vpc": net.vpc, "tags": tags(cloud, c)})
    table = make(RouteTable(), cloud, c, {}, {"vpc": net.vpc, "tags": tags(cloud, c)})
    make(
        Route(),
        cloud,
        f"{c}/0.0.0.0/0",
        {},
        {"route_table": table, "destination_cidr_block": "0.0.0.0/0", "internet_gateway": igw},
    )
    subnets = []
    for i in range(count):
        subnet = net.subnet(f"s{i}", i + 1)
        subnets.append(subnet)
        make(RouteTableAssociation(), cloud, f"s{i}.{c}", {}, {"route_table": table, "subnet": subnet})
    eip = make(ElasticIP(), cloud, f"{ZONE}.{c}", {}, {"tags": tags(cloud, f"{ZONE}.{c}")})
    make(
        NatGateway(),
        cloud,
        f"{ZONE}.{c}",
        {},
        {"subnet": subnets[0], "allocation": eip, "tags": tags(cloud, f"{ZONE}.{c}")},
    )
    for i in range(count):
        _desired, group_id = net.group(f"g{i}")
        for port in (22, 443):
            r = rule(f"g{i}.{c}", "ingress", "tcp", port, port, cidr="0.0.0.0/0")
            make(SecurityGroupRule(), cloud, r.name, r.props, {**r.props, "group": group_id})


def test_find_costs_a_constant_number_of_calls(aws_env: AwsEmulator) -> None:
    aws_env.reset()
    small, large = new_cloud("small.k8s.local"), new_cloud("large.k8s.local")
    _build(small, 1, "10.1.0.0/16")
    _build(large, 5, "10.2.0.0/16")
    for kind in NETWORK_KINDS:
        assert len(kind.find(large, [])) >= len(kind.find(small, [])) >= 1, kind.kind
        assert find_calls(kind, small) == find_calls(kind, large), kind.kind
    counts = {kind.kind: find_calls(kind, large) for kind in NETWORK_KINDS}
    assert counts == {
        "VPC": 1,
        "DHCPOptions": 1,
        "VPCDHCPOptionsAssociation": 1,
        "InternetGateway": 1,
        "Subnet": 1,
        "RouteTable": 1,
        "Route": 1,
        "RouteTableAssociation": 2,
        "ElasticIP": 1,
        "NatGateway": 1,
        "SecurityGroup": 1,
        "SecurityGroupRule": 2,
    }
    assert sum(len(kind.find(large, [])) for kind in NETWORK_KINDS) > sum(
        len(kind.find(small, [])) for kind in NETWORK_KINDS
    )
    # The VPC's DNS attributes are read only for the desired VPC that sets them: 2 more calls.
    vpc = Resource("VPC", large.cluster_name, {"enable_dns_support": True, "enable_dns_hostnames": True})
    assert find_calls(VPC(), large, [vpc]) == 3


def test_find_returns_only_this_clusters_resources(aws_env: AwsEmulator) -> None:
    aws_env.reset()
    mine, theirs = new_cloud("mine.k8s.local"), new_cloud("theirs.k8s.local")
    _build(mine, 1, "10.1.0.0/16")
    _build(theirs, 2, "10.2.0.0/16")
    # Untagged resources (not pykops') are not reported either.
    ec2 = ec2_client()
    vpc = ec2.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    ec2.create_security_group(GroupName="byo", Description="not ours", VpcId=vpc)
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.3.1.0/24", AvailabilityZone=ZONE)
    for kind in NETWORK_KINDS:
        names = [a.name for a in kind.find(mine, [])]
        assert names, kind.kind
        assert all("mine.k8s.local" in n and "theirs" not in n for n in names), (kind.kind, names)
        theirs_names = [a.name for a in kind.find(theirs, [])]
        assert theirs_names and all("theirs.k8s.local" in n for n in theirs_names), (kind.kind, theirs_names)


def test_emulator_filters_nat_gateways_by_tag(aws_env: AwsEmulator) -> None:
    """Plain boto3. The kinds also check the cluster tag of what they read, so they are not affected."""
    aws_env.reset()
    _build(new_cloud("mine.k8s.local"), 1, "10.1.0.0/16")
    _build(new_cloud("theirs.k8s.local"), 1, "10.2.0.0/16")
    ec2 = ec2_client()
    mine = ec2.describe_nat_gateways(Filter=new_cloud("mine.k8s.local").cluster_filter())["NatGateways"]
    assert len(mine) == 1


def test_network_kinds_export() -> None:
    assert [k.kind for k in NETWORK_KINDS] == [
        "VPC",
        "DHCPOptions",
        "VPCDHCPOptionsAssociation",
        "InternetGateway",
        "Subnet",
        "RouteTable",
        "Route",
        "RouteTableAssociation",
        "ElasticIP",
        "NatGateway",
        "SecurityGroup",
        "SecurityGroupRule",
    ]
    for kind in NETWORK_KINDS:
        assert isinstance(kind.immutable, frozenset) and isinstance(kind.replaceable, bool)
