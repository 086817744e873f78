"""Network builder: VPC, DHCP options, internet gateway, subnets, route tables, NAT (pure)."""

from __future__ import annotations

from pykops.api.models import ClusterSubnet
from pykops.engine.types import Ref, Resource
from pykops.model.context import ModelContext

DEFAULT_ROUTE = "0.0.0.0/0"


def subnet_name(ctx: ModelContext, subnet: ClusterSubnet) -> str:
    return f"{subnet.name}.{ctx.name}"


def subnet_ref(ctx: ModelContext, subnet_logical: str) -> Ref:
    """A reference to the Subnet resource of a spec subnet name."""
    return Ref("Subnet", f"{subnet_logical}.{ctx.name}")


def build_network(ctx: ModelContext) -> list[Resource]:
    spec = ctx.cluster.spec
    name = ctx.name
    out: list[Resource] = []
    vpc = Ref("VPC", name)
    if spec.network_id:
        out.append(Resource("VPC", name, {"id": spec.network_id}, shared=True))
    else:
        out.append(
            Resource(
                "VPC",
                name,
                {
                    "cidr_block": spec.network_cidr,
                    "enable_dns_support": True,
                    "enable_dns_hostnames": True,
                    "tags": ctx.tags(name),
                },
            )
        )
        domain = "ec2.internal" if ctx.region == "us-east-1" else f"{ctx.region}.compute.internal"
        out.append(
            Resource(
                "DHCPOptions",
                name,
                {"domain_name": domain, "domain_name_servers": ["AmazonProvidedDNS"], "tags": ctx.tags(name)},
            )
        )
        out.append(
            Resource(
                "VPCDHCPOptionsAssociation", name, {"vpc": vpc, "dhcp_options": Ref("DHCPOptions", name)}
            )
        )

    subnets = spec.subnets or []
    # In a shared VPC the owner's internet gateway and route tables are used, never changed.
    owns_routing = not spec.network_id
    if owns_routing:
        out.append(Resource("InternetGateway", name, {"vpc": vpc, "tags": ctx.tags(name)}))
        out.append(
            Resource(
                "RouteTable",
                name,
                {"vpc": vpc, "tags": ctx.tags(name, {"kubernetes.io/kops/role": "public"})},
            )
        )
        out.append(
            Resource(
                "Route",
                f"{name}/{DEFAULT_ROUTE}",
                {
                    "route_table": Ref("RouteTable", name),
                    "destination_cidr_block": DEFAULT_ROUTE,
                    "internet_gateway": Ref("InternetGateway", name),
                },
            )
        )

    utility_by_zone = {s.zone: s for s in subnets if s.type == "Utility"}
    for subnet in subnets:
        logical = subnet_name(ctx, subnet)
        role_tag = (
            {"kubernetes.io/role/internal-elb": "1"}
            if subnet.type == "Private"
            else {"kubernetes.io/role/elb": "1"}
        )
        if subnet.id:
            out.append(
                Resource(
                    "Subnet",
                    logical,
                    {"id": subnet.id, "tags": {f"kubernetes.io/cluster/{ctx.name}": "shared"}},
                    shared=True,
                )
            )
            continue
        out.append(
            Resource(
                "Subnet",
                logical,
                {
                    "vpc": vpc,
                    "cidr_block": subnet.cidr,
                    "availability_zone": subnet.zone,
                    "tags": ctx.tags(logical, {"SubnetType": subnet.type or "Public", **role_tag}),
                },
            )
        )
        if subnet.type == "Private":
            zone = subnet.zone or ""
            table = f"private-{zone}.{name}"
            utility = utility_by_zone.get(subnet.zone)
            if utility is None:  # validation guarantees a utility subnet per private zone
                raise ValueError(f"no utility subnet in {zone} for the NAT gateway of {subnet.name}")
            nat = f"{zone}.{name}"
            out.append(Resource("ElasticIP", nat, {"tags": ctx.tags(nat)}))
            out.append(
                Resource(
                    "NatGateway",
                    nat,
                    {
                        "subnet": Ref("Subnet", subnet_name(ctx, utility)),
                        "allocation": Ref("ElasticIP", nat),
                        "tags": ctx.tags(nat),
                    },
                    depends_on=(Ref("Route", f"{name}/{DEFAULT_ROUTE}"),),
                )
            )
            out.append(
                Resource(
                    "RouteTable",
                    table,
                    {"vpc": vpc, "tags": ctx.tags(table, {"kubernetes.io/kops/role": f"private-{zone}"})},
                )
            )
            out.append(
                Resource(
                    "Route",
                    f"{table}/{DEFAULT_ROUTE}",
                    {
                        "route_table": Ref("RouteTable", table),
                        "destination_cidr_block": DEFAULT_ROUTE,
                        "nat_gateway": Ref("NatGateway", nat),
                    },
                )
            )
            out.append(
                Resource(
                    "RouteTableAssociation",
                    logical,
                    {"route_table": Ref("RouteTable", table), "subnet": Ref("Subnet", logical)},
                )
            )
        elif owns_routing:
            out.append(
                Resource(
                    "RouteTableAssociation",
                    logical,
                    {"route_table": Ref("RouteTable", name), "subnet": Ref("Subnet", logical)},
                )
            )
    return out
