"""The network kinds of a cluster on AWS: VPC, DHCP options, gateways, subnets, routing, security groups.

Each class implements :class:`pykops.engine.types.Kind` for one kind of ``docs/resources.md``. ``find`` costs
a constant number of EC2 calls (one tag-filtered, paginated describe per kind, plus one describe by id for the
shared resources of ``desired``), and returns props with the same keys as the model (references as ids).

Ownership: a resource belongs to the cluster when it carries ``kubernetes.io/cluster/<cluster>``; the value
``shared`` marks a resource that exists outside the cluster (a shared VPC or subnet): it is found by the id
the model gives, only ever tagged, and never deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from pykops.cloud.aws.cloud import classify, cluster_owned_tag, error_code
from pykops.engine.types import Actual, FieldChange, Kind, Ref, Resource
from pykops.errors import PykopsError
from pykops.model.names import canonical_protocol, has_ports, rule_name

# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------

# Error codes (besides ``*.NotFound`` / ``*NotFound``) that mean "the thing to delete is already gone".
_GONE_CODES = frozenset({"Gateway.NotAttached", "InvalidPermission.NotFound"})


def _raise(exc: BaseException) -> NoReturn:
    mapped = classify(exc)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _call(method: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Call a boto3 method; failures are mapped by :func:`classify` (retryable, user-facing, or as is)."""
    try:
        return method(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        _raise(exc)


def _is_gone(exc: BaseException) -> bool:
    code = error_code(exc)
    return code.endswith("NotFound") or code in _GONE_CODES


def _call_unless_gone(method: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Like :func:`_call`, but a resource that no longer exists is success (returns None)."""
    try:
        return method(**kwargs)
    except ClientError as exc:
        if _is_gone(exc):
            return None
        _raise(exc)
    except BotoCoreError as exc:
        _raise(exc)


def _describe(cloud: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a describe call, following pagination when the operation has it."""
    client = cloud.ec2
    items: list[dict[str, Any]] = []
    try:
        if client.can_paginate(operation):
            for page in client.get_paginator(operation).paginate(**kwargs):
                items.extend(page.get(key, []))
        else:
            items.extend(getattr(client, operation)(**kwargs).get(key, []))
    except (ClientError, BotoCoreError) as exc:
        _raise(exc)
    return items


def _tags(cloud: Any, item: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = cloud.tag_dict(item.get("Tags"))
    return tags


def _shared_ids(desired: list[Resource]) -> dict[str, str]:
    """id → logical name of the shared resources in ``desired``."""
    return {str(r.props["id"]): r.name for r in desired if r.shared and r.props.get("id")}


def _select(
    cloud: Any, items: list[dict[str, Any]], id_key: str, shared: dict[str, str]
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(logical name, item, is_shared) for the items that belong to the cluster.

    Shared resources are those of ``shared`` (found by id). Other items need the cluster tag with a value
    other than ``shared`` (a resource tagged shared but no longer in the model is not ours to manage);
    their logical name is the ``Name`` tag (the id when there is none).
    """
    owned_key = cluster_owned_tag(cloud.cluster_name)
    seen: set[str] = set()
    for item in items:
        rid = str(item[id_key])
        if rid in seen:
            continue
        seen.add(rid)
        tags = _tags(cloud, item)
        if rid in shared:
            yield shared[rid], item, True
        elif owned_key in tags and tags[owned_key] != "shared":
            yield tags.get("Name") or rid, item, False


def _attrs(rid: str, shared: bool, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"id": rid, **extra}
    if shared:
        attrs["shared"] = True
    return attrs


def _is_shared(cloud: Any, actual: Actual) -> bool:
    if actual.attrs.get("shared"):
        return True
    tags = actual.props.get("tags") or {}
    return bool(tags.get(cluster_owned_tag(cloud.cluster_name)) == "shared")


def _desired_tags(cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, str]:
    """The tags to create with: the cluster's (so the resource is always discoverable), then the model's."""
    tags: dict[str, str] = cloud.cluster_tags(desired.name, shared=desired.shared)
    tags.update({k: str(v) for k, v in (props.get("tags") or {}).items() if v is not None})
    return tags


def _tag_spec(
    cloud: Any, resource_type: str, desired: Resource, props: dict[str, Any]
) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = cloud.tag_specifications(resource_type, _desired_tags(cloud, desired, props))
    return spec


def _update_tags(
    cloud: Any, rid: str, actual: Actual, props: dict[str, Any], *, shared: bool = False
) -> None:
    """Set the desired tags whose value differs; remove the desired keys set to None (never on shared)."""
    if "tags" not in props:
        return
    current: dict[str, str] = actual.props.get("tags") or {}
    wanted: dict[str, Any] = props.get("tags") or {}
    to_set = {k: str(v) for k, v in wanted.items() if v is not None and current.get(k) != str(v)}
    to_delete = [k for k, v in wanted.items() if v is None and k in current]
    if to_set:
        _call(cloud.ec2.create_tags, Resources=[rid], Tags=cloud.tag_list(to_set))
    if to_delete and not shared:
        _call(cloud.ec2.delete_tags, Resources=[rid], Tags=[{"Key": k} for k in sorted(to_delete)])


def _root(change: FieldChange) -> str:
    return change.path.replace("[", ".").split(".", 1)[0]


def _changed(changes: list[FieldChange]) -> set[str]:
    return {_root(c) for c in changes}


def _refuse_shared_change(kind: str, actual: Actual, changes: list[FieldChange]) -> None:
    other = sorted(_changed(changes) - {"tags"})
    if other:
        raise PykopsError(
            f"{kind} {actual.name} ({actual.id}) is shared: pykops only tags it, "
            f"it cannot change {', '.join(other)}"
        )


def _refuse_shared_delete(kind: str, actual: Actual) -> NoReturn:
    raise PykopsError(f"{kind} {actual.name} ({actual.id}) is shared: pykops never deletes it")


# ---------------------------------------------------------------------------------------------------------
# Security group rule names (shared with the model builder)
# ---------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------
# Kinds
# ---------------------------------------------------------------------------------------------------------


class _NetworkKind:
    kind: ClassVar[str]
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = True
    unordered: ClassVar[frozenset[str]] = frozenset()

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        shared = _is_shared(cloud, actual)
        if shared:
            _refuse_shared_change(self.kind, actual, changes)
        _update_tags(cloud, actual.id, actual, props, shared=shared)
        return dict(actual.attrs)


class VPC(_NetworkKind):
    kind = "VPC"
    immutable = frozenset({"id", "cidr_block"})
    replaceable = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        shared = _shared_ids(desired)
        items = _describe(cloud, "describe_vpcs", "Vpcs", Filters=cloud.cluster_filter())
        if shared:
            items += _describe(
                cloud, "describe_vpcs", "Vpcs", Filters=[{"Name": "vpc-id", "Values": sorted(shared)}]
            )
        # DNS attributes are not in DescribeVpcs: read them only for the VPCs the model sets them on
        # (one VPC per cluster, so this stays constant).
        dns_names = {
            r.name for r in desired if "enable_dns_support" in r.props or "enable_dns_hostnames" in r.props
        }
        found = []
        for name, vpc, is_shared in _select(cloud, items, "VpcId", shared):
            props: dict[str, Any] = {
                "id": vpc["VpcId"],
                "cidr_block": vpc.get("CidrBlock"),
                "tags": _tags(cloud, vpc),
            }
            if name in dns_names:
                props["enable_dns_support"] = self._attribute(cloud, vpc["VpcId"], "enableDnsSupport")
                props["enable_dns_hostnames"] = self._attribute(cloud, vpc["VpcId"], "enableDnsHostnames")
            found.append(Actual(self.kind, name, _attrs(vpc["VpcId"], is_shared), props))
        return found

    @staticmethod
    def _attribute(cloud: Any, vpc_id: str, attribute: str) -> bool:
        response = _call(cloud.ec2.describe_vpc_attribute, VpcId=vpc_id, Attribute=attribute)
        key = attribute[0].upper() + attribute[1:]
        return bool(response.get(key, {}).get("Value", False))

    @staticmethod
    def _set_dns(cloud: Any, vpc_id: str, props: dict[str, Any], keys: set[str]) -> None:
        # One attribute per ModifyVpcAttribute call; support before hostnames (hostnames need support).
        if "enable_dns_support" in keys and props.get("enable_dns_support") is not None:
            value = bool(props["enable_dns_support"])
            _call(cloud.ec2.modify_vpc_attribute, VpcId=vpc_id, EnableDnsSupport={"Value": value})
        if "enable_dns_hostnames" in keys and props.get("enable_dns_hostnames") is not None:
            value = bool(props["enable_dns_hostnames"])
            _call(cloud.ec2.modify_vpc_attribute, VpcId=vpc_id, EnableDnsHostnames={"Value": value})

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        if desired.shared:
            raise PykopsError(
                f"shared VPC {props.get('id')} ({desired.name}) was not found: pykops does not create it"
            )
        response = _call(
            cloud.ec2.create_vpc,
            CidrBlock=props["cidr_block"],
            TagSpecifications=_tag_spec(cloud, "vpc", desired, props),
        )
        vpc_id = str(response["Vpc"]["VpcId"])
        self._set_dns(cloud, vpc_id, props, {"enable_dns_support", "enable_dns_hostnames"})
        return {"id": vpc_id}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        attrs = super().update(cloud, actual, props, changes)
        if not _is_shared(cloud, actual):
            self._set_dns(cloud, actual.id, props, _changed(changes))
        return attrs

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        _call_unless_gone(cloud.ec2.delete_vpc, VpcId=actual.id)


class DHCPOptions(_NetworkKind):
    kind = "DHCPOptions"
    immutable = frozenset({"domain_name", "domain_name_servers"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_dhcp_options", "DhcpOptions", Filters=cloud.cluster_filter())
        found = []
        for name, item, is_shared in _select(cloud, items, "DhcpOptionsId", {}):
            config = {
                c["Key"]: [str(v.get("Value")) for v in c.get("Values", [])]
                for c in item.get("DhcpConfigurations", [])
            }
            props = {
                "domain_name": " ".join(config.get("domain-name", [])) or None,
                "domain_name_servers": config.get("domain-name-servers", []),
                "tags": _tags(cloud, item),
            }
            found.append(Actual(self.kind, name, _attrs(item["DhcpOptionsId"], is_shared), props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        config: list[dict[str, Any]] = []
        if props.get("domain_name"):
            config.append({"Key": "domain-name", "Values": [str(props["domain_name"])]})
        if props.get("domain_name_servers"):
            config.append(
                {"Key": "domain-name-servers", "Values": [str(s) for s in props["domain_name_servers"]]}
            )
        response = _call(
            cloud.ec2.create_dhcp_options,
            DhcpConfigurations=config,
            TagSpecifications=_tag_spec(cloud, "dhcp-options", desired, props),
        )
        return {"id": str(response["DhcpOptions"]["DhcpOptionsId"])}

    def delete(self, cloud: Any, actual: Actual) -> None:
        _call_unless_gone(cloud.ec2.delete_dhcp_options, DhcpOptionsId=actual.id)


class VPCDHCPOptionsAssociation(_NetworkKind):
    """A VPC's DHCP options set. Found from the cluster's own VPCs (never a shared one); id = the VPC id."""

    kind = "VPCDHCPOptionsAssociation"
    immutable = frozenset({"vpc"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_vpcs", "Vpcs", Filters=cloud.cluster_filter())
        found = []
        for name, vpc, _shared in _select(cloud, items, "VpcId", {}):
            options = vpc.get("DhcpOptionsId")
            if options and options != "default":
                props = {"vpc": vpc["VpcId"], "dhcp_options": options}
                found.append(Actual(self.kind, name, {"id": vpc["VpcId"]}, props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        _call(cloud.ec2.associate_dhcp_options, DhcpOptionsId=props["dhcp_options"], VpcId=props["vpc"])
        return {"id": str(props["vpc"])}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        if "dhcp_options" in _changed(changes):
            _call(cloud.ec2.associate_dhcp_options, DhcpOptionsId=props["dhcp_options"], VpcId=actual.id)
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        # Disassociating = going back to the default options set.
        _call_unless_gone(cloud.ec2.associate_dhcp_options, DhcpOptionsId="default", VpcId=actual.id)


class InternetGateway(_NetworkKind):
    kind = "InternetGateway"
    immutable = frozenset()
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(
            cloud, "describe_internet_gateways", "InternetGateways", Filters=cloud.cluster_filter()
        )
        found = []
        for name, igw, is_shared in _select(cloud, items, "InternetGatewayId", {}):
            vpcs = [
                a["VpcId"] for a in igw.get("Attachments", []) if a.get("State") in ("available", "attached")
            ]
            props = {"vpc": vpcs[0] if vpcs else None, "tags": _tags(cloud, igw)}
            found.append(Actual(self.kind, name, _attrs(igw["InternetGatewayId"], is_shared), props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        response = _call(
            cloud.ec2.create_internet_gateway,
            TagSpecifications=_tag_spec(cloud, "internet-gateway", desired, props),
        )
        igw_id = str(response["InternetGateway"]["InternetGatewayId"])
        if props.get("vpc"):
            _call(cloud.ec2.attach_internet_gateway, InternetGatewayId=igw_id, VpcId=props["vpc"])
        return {"id": igw_id}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        attrs = super().update(cloud, actual, props, changes)
        if "vpc" in _changed(changes) and actual.props.get("vpc") != props.get("vpc"):
            if actual.props.get("vpc"):
                _call_unless_gone(
                    cloud.ec2.detach_internet_gateway, InternetGatewayId=actual.id, VpcId=actual.props["vpc"]
                )
            if props.get("vpc"):
                _call(cloud.ec2.attach_internet_gateway, InternetGatewayId=actual.id, VpcId=props["vpc"])
        return attrs

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        if actual.props.get("vpc"):
            try:
                cloud.ec2.detach_internet_gateway(InternetGatewayId=actual.id, VpcId=actual.props["vpc"])
            except ClientError as exc:
                if error_code(exc) == "InvalidInternetGatewayID.NotFound":
                    return
                if not _is_gone(exc):
                    _raise(exc)
            except BotoCoreError as exc:
                _raise(exc)
        _call_unless_gone(cloud.ec2.delete_internet_gateway, InternetGatewayId=actual.id)


class Subnet(_NetworkKind):
    kind = "Subnet"
    immutable = frozenset({"id", "vpc", "cidr_block", "availability_zone"})
    replaceable = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        shared = _shared_ids(desired)
        items = _describe(cloud, "describe_subnets", "Subnets", Filters=cloud.cluster_filter())
        if shared:
            by_id = [{"Name": "subnet-id", "Values": sorted(shared)}]
            items += _describe(cloud, "describe_subnets", "Subnets", Filters=by_id)
        found = []
        for name, subnet, is_shared in _select(cloud, items, "SubnetId", shared):
            props = {
                "id": subnet["SubnetId"],
                "vpc": subnet.get("VpcId"),
                "cidr_block": subnet.get("CidrBlock"),
                "availability_zone": subnet.get("AvailabilityZone"),
                "tags": _tags(cloud, subnet),
            }
            found.append(Actual(self.kind, name, _attrs(subnet["SubnetId"], is_shared), props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        if desired.shared:
            raise PykopsError(
                f"shared subnet {props.get('id')} ({desired.name}) was not found: pykops does not create it"
            )
        response = _call(
            cloud.ec2.create_subnet,
            VpcId=props["vpc"],
            CidrBlock=props["cidr_block"],
            AvailabilityZone=props["availability_zone"],
            TagSpecifications=_tag_spec(cloud, "subnet", desired, props),
        )
        return {"id": str(response["Subnet"]["SubnetId"])}

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        _call_unless_gone(cloud.ec2.delete_subnet, SubnetId=actual.id)


class RouteTable(_NetworkKind):
    kind = "RouteTable"
    immutable = frozenset({"vpc"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_route_tables", "RouteTables", Filters=cloud.cluster_filter())
        found = []
        for name, table, is_shared in _select(cloud, items, "RouteTableId", {}):
            props = {"vpc": table.get("VpcId"), "tags": _tags(cloud, table)}
            found.append(Actual(self.kind, name, _attrs(table["RouteTableId"], is_shared), props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        response = _call(
            cloud.ec2.create_route_table,
            VpcId=props["vpc"],
            TagSpecifications=_tag_spec(cloud, "route-table", desired, props),
        )
        return {"id": str(response["RouteTable"]["RouteTableId"])}

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        _call_unless_gone(cloud.ec2.delete_route_table, RouteTableId=actual.id)


def _destination_args(destination: str) -> dict[str, str]:
    if ":" in destination:
        return {"DestinationIpv6CidrBlock": destination}
    return {"DestinationCidrBlock": destination}


def _target_args(props: dict[str, Any]) -> dict[str, str]:
    if props.get("nat_gateway"):
        return {"NatGatewayId": str(props["nat_gateway"])}
    if props.get("internet_gateway"):
        return {"GatewayId": str(props["internet_gateway"])}
    raise PykopsError(f"a route needs an internet_gateway or a nat_gateway target, got {sorted(props)}")


class Route(_NetworkKind):
    """A route of a cluster route table to an internet or NAT gateway; ``<route table name>/<destination>``.

    Routes to other targets (peering, transit gateways...) that users add to the cluster's tables are left
    alone: they are not reported.
    """

    kind = "Route"
    immutable = frozenset({"route_table", "destination_cidr_block"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_route_tables", "RouteTables", Filters=cloud.cluster_filter())
        found = []
        for table_name, table, _shared in _select(cloud, items, "RouteTableId", {}):
            for route in table.get("Routes", []):
                if route.get("Origin") != "CreateRoute":
                    continue
                destination = route.get("DestinationCidrBlock") or route.get("DestinationIpv6CidrBlock")
                gateway = str(route.get("GatewayId") or "")
                nat = route.get("NatGatewayId")
                if not destination or not (nat or gateway.startswith("igw-")):
                    continue
                props = {
                    "route_table": table["RouteTableId"],
                    "destination_cidr_block": destination,
                    "internet_gateway": gateway or None,
                    "nat_gateway": nat,
                }
                rid = f"{table['RouteTableId']}/{destination}"
                found.append(Actual(self.kind, f"{table_name}/{destination}", {"id": rid}, props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        destination = str(props["destination_cidr_block"])
        _call(
            cloud.ec2.create_route,
            RouteTableId=props["route_table"],
            **_destination_args(destination),
            **_target_args(props),
        )
        return {"id": f"{props['route_table']}/{destination}"}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        if _changed(changes) & {"internet_gateway", "nat_gateway"}:
            _call(
                cloud.ec2.replace_route,
                RouteTableId=actual.props["route_table"],
                **_destination_args(str(actual.props["destination_cidr_block"])),
                **_target_args(props),
            )
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        _call_unless_gone(
            cloud.ec2.delete_route,
            RouteTableId=actual.props["route_table"],
            **_destination_args(str(actual.props["destination_cidr_block"])),
        )


class RouteTableAssociation(_NetworkKind):
    """A subnet's association with a cluster route table; named after the subnet (its ``Name`` tag)."""

    kind = "RouteTableAssociation"
    immutable = frozenset({"subnet"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_route_tables", "RouteTables", Filters=cloud.cluster_filter())
        associations = [
            (table["RouteTableId"], assoc)
            for _name, table, _shared in _select(cloud, items, "RouteTableId", {})
            for assoc in table.get("Associations", [])
            if assoc.get("SubnetId")
            and not assoc.get("Main")
            and assoc.get("AssociationState", {}).get("State", "associated") in ("associated", "associating")
        ]
        if not associations:
            return []
        subnet_ids = sorted({a["SubnetId"] for _t, a in associations})
        subnets = _describe(
            cloud, "describe_subnets", "Subnets", Filters=[{"Name": "subnet-id", "Values": subnet_ids}]
        )
        names = {s["SubnetId"]: _tags(cloud, s).get("Name") or s["SubnetId"] for s in subnets}
        found = []
        for table_id, assoc in associations:
            subnet_id = assoc["SubnetId"]
            props = {"route_table": table_id, "subnet": subnet_id}
            found.append(
                Actual(
                    self.kind,
                    names.get(subnet_id, subnet_id),
                    {"id": assoc["RouteTableAssociationId"]},
                    props,
                )
            )
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        response = _call(
            cloud.ec2.associate_route_table, RouteTableId=props["route_table"], SubnetId=props["subnet"]
        )
        return {"id": str(response["AssociationId"])}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        if "route_table" in _changed(changes):
            response = _call(
                cloud.ec2.replace_route_table_association,
                AssociationId=actual.id,
                RouteTableId=props["route_table"],
            )
            return {**actual.attrs, "id": str(response["NewAssociationId"])}
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        _call_unless_gone(cloud.ec2.disassociate_route_table, AssociationId=actual.id)


class ElasticIP(_NetworkKind):
    kind = "ElasticIP"
    immutable = frozenset()
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_addresses", "Addresses", Filters=cloud.cluster_filter())
        found = []
        for name, address, is_shared in _select(cloud, items, "AllocationId", {}):
            attrs = _attrs(address["AllocationId"], is_shared, public_ip=address.get("PublicIp"))
            found.append(Actual(self.kind, name, attrs, {"tags": _tags(cloud, address)}))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        response = _call(
            cloud.ec2.allocate_address,
            Domain="vpc",
            TagSpecifications=_tag_spec(cloud, "elastic-ip", desired, props),
        )
        return {"id": str(response["AllocationId"]), "public_ip": response.get("PublicIp")}

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        _call_unless_gone(cloud.ec2.release_address, AllocationId=actual.id)


class NatGateway(_NetworkKind):
    """A public NAT gateway. Creation is idempotent (a ClientToken derived from the cluster, the name and the
    props) and waits until the gateway is ``available``; deletion waits until it is ``deleted``."""

    kind = "NatGateway"
    immutable = frozenset({"subnet", "allocation"})
    replaceable = True

    # Polling (seconds): first wait, cap of the exponential backoff, overall limit.
    poll_initial: ClassVar[float] = 2.0
    poll_max: ClassVar[float] = 15.0
    timeout: ClassVar[float] = 900.0

    _LIVE_STATES = ("pending", "available")

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        filters = [*cloud.cluster_filter(), {"Name": "state", "Values": list(self._LIVE_STATES)}]
        items = _describe(cloud, "describe_nat_gateways", "NatGateways", Filter=filters)
        found = []
        for name, nat, is_shared in _select(cloud, items, "NatGatewayId", {}):
            allocations = [
                a["AllocationId"] for a in nat.get("NatGatewayAddresses", []) if a.get("AllocationId")
            ]
            props = {
                "subnet": nat.get("SubnetId"),
                "allocation": allocations[0] if allocations else None,
                "tags": _tags(cloud, nat),
            }
            found.append(Actual(self.kind, name, _attrs(nat["NatGatewayId"], is_shared), props))
        return found

    @staticmethod
    def client_token(cluster: str, name: str, subnet: str, allocation: str, salt: str = "") -> str:
        """The idempotency token of a create: a retry of the same create never makes a second gateway."""
        digest = hashlib.sha256("\0".join((cluster, name, subnet, allocation, salt)).encode()).hexdigest()
        return f"pykops-{digest[:40]}"

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        subnet, allocation = str(props["subnet"]), str(props["allocation"])
        salt = ""
        for _attempt in range(5):
            token = self.client_token(cloud.cluster_name, desired.name, subnet, allocation, salt)
            response = _call(
                cloud.ec2.create_nat_gateway,
                SubnetId=subnet,
                AllocationId=allocation,
                ClientToken=token,
                TagSpecifications=_tag_spec(cloud, "natgateway", desired, props),
            )
            nat = response["NatGateway"]
            if nat.get("State") not in ("deleting", "deleted"):
                break
            # The token was used by a gateway that has since been deleted (the same create done earlier):
            # derive the next token from it, deterministically, so this path is also retry-safe.
            salt = str(nat["NatGatewayId"])
        else:
            raise PykopsError(f"NAT gateway {desired.name}: every create returned a deleted gateway ({salt})")
        nat_id = str(nat["NatGatewayId"])
        self._wait(cloud, nat_id, "available", nat.get("State"))
        return {"id": nat_id}

    def delete(self, cloud: Any, actual: Actual) -> None:
        response = _call_unless_gone(cloud.ec2.delete_nat_gateway, NatGatewayId=actual.id)
        if response is not None:
            self._wait(cloud, actual.id, "deleted", None)

    def _wait(self, cloud: Any, nat_id: str, target: str, state: str | None) -> None:
        delay, deadline = self.poll_initial, time.monotonic() + self.timeout
        while True:
            if state == target:
                return
            if state == "failed" and target == "available":
                raise PykopsError(f"NAT gateway {nat_id} failed: {self._failure(cloud, nat_id)}")
            if time.monotonic() > deadline:
                raise PykopsError(
                    f"NAT gateway {nat_id} is still {state} after {self.timeout:.0f}s (waiting for {target})"
                )
            if state is not None:
                time.sleep(delay)
                delay = min(delay * 2, self.poll_max)
            try:
                gateways = cloud.ec2.describe_nat_gateways(NatGatewayIds=[nat_id]).get("NatGateways", [])
            except ClientError as exc:
                if not _is_gone(exc):
                    _raise(exc)
                if target == "deleted":
                    return
                gateways = []  # a new gateway may not be visible yet (eventual consistency): poll again
            except BotoCoreError as exc:
                _raise(exc)
            if not gateways and target == "deleted":
                return
            state = str(gateways[0].get("State")) if gateways else "pending"

    @staticmethod
    def _failure(cloud: Any, nat_id: str) -> str:
        gateways = _call(cloud.ec2.describe_nat_gateways, NatGatewayIds=[nat_id]).get("NatGateways", [])
        if not gateways:
            return "unknown reason"
        return f"{gateways[0].get('FailureCode', '')} {gateways[0].get('FailureMessage', '')}".strip()


class SecurityGroup(_NetworkKind):
    """A security group named after its logical name. AWS' default allow-all egress is removed on create."""

    kind = "SecurityGroup"
    immutable = frozenset({"vpc", "description"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        items = _describe(cloud, "describe_security_groups", "SecurityGroups", Filters=cloud.cluster_filter())
        found = []
        for name, group, is_shared in _select(cloud, items, "GroupId", {}):
            props = {
                "vpc": group.get("VpcId"),
                "description": group.get("Description"),
                "tags": _tags(cloud, group),
            }
            logical = _tags(cloud, group).get("Name") or str(group.get("GroupName") or name)
            found.append(Actual(self.kind, logical, _attrs(group["GroupId"], is_shared), props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        try:
            response = cloud.ec2.create_security_group(
                GroupName=desired.name,
                Description=props.get("description") or desired.name,
                VpcId=props["vpc"],
                TagSpecifications=_tag_spec(cloud, "security-group", desired, props),
            )
            group_id = str(response["GroupId"])
        except ClientError as exc:
            if error_code(exc) != "InvalidGroup.Duplicate":
                _raise(exc)
            group_id = self._adopt(cloud, desired.name, str(props["vpc"]), exc)
        except BotoCoreError as exc:
            _raise(exc)
        # The model emits every egress rule itself: remove the allow-all rules AWS adds to a new group.
        rules = _describe(
            cloud,
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": [group_id]}],
        )
        default = sorted(
            r["SecurityGroupRuleId"]
            for r in rules
            if r.get("IsEgress")
            and str(r.get("IpProtocol")) == "-1"
            and (r.get("CidrIpv4") == "0.0.0.0/0" or r.get("CidrIpv6") == "::/0")
        )
        if default:
            _call_unless_gone(
                cloud.ec2.revoke_security_group_egress, GroupId=group_id, SecurityGroupRuleIds=default
            )
        return {"id": group_id}

    @staticmethod
    def _adopt(cloud: Any, name: str, vpc: str, exc: ClientError) -> str:
        """The group a previous attempt of this create made (its answer lost), if it is the cluster's."""
        filters = [{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [name]}]
        owned_key = cluster_owned_tag(cloud.cluster_name)
        for group in _describe(cloud, "describe_security_groups", "SecurityGroups", Filters=filters):
            if _tags(cloud, group).get(owned_key) == "owned":
                return str(group["GroupId"])
        raise PykopsError(
            f"a security group named {name} already exists in {vpc} and is not tagged {owned_key}=owned",
            hint="delete or rename it, or tag it for the cluster",
        ) from exc

    def delete(self, cloud: Any, actual: Actual) -> None:
        if _is_shared(cloud, actual):
            _refuse_shared_delete(self.kind, actual)
        _call_unless_gone(cloud.ec2.delete_security_group, GroupId=actual.id)


def _ref_name(value: Any) -> str | None:
    if isinstance(value, Ref):
        return value.name
    return None


def _desired_rule_key(resource: Resource) -> str | None:
    """The canonical :func:`rule_name` of a desired rule (its group and source group given as Refs)."""
    props = resource.props
    group = _ref_name(props.get("group"))
    source = props.get("cidr") or _ref_name(props.get("source_group"))
    if group is None or not source or "direction" not in props or "protocol" not in props:
        return None
    return rule_name(
        group,
        props["direction"],
        props["protocol"],
        props.get("from_port"),
        props.get("to_port"),
        str(source),
    )


class SecurityGroupRule(_NetworkKind):
    """One rule of a cluster security group, found by content (see :func:`rule_name`)."""

    kind = "SecurityGroupRule"
    immutable = frozenset({"group", "direction", "protocol", "from_port", "to_port", "cidr", "source_group"})
    replaceable = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        groups = _describe(
            cloud, "describe_security_groups", "SecurityGroups", Filters=cloud.cluster_filter()
        )
        names = {g["GroupId"]: _tags(cloud, g).get("Name") or str(g.get("GroupName")) for g in groups}
        owned = {g["GroupId"]: name for name, g, _shared in _select(cloud, groups, "GroupId", {})}
        if not owned:
            return []
        rules = _describe(
            cloud,
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": sorted(owned)}],
        )
        wanted = {key: r for r in desired if (key := _desired_rule_key(r)) is not None}
        found = []
        for rule in rules:
            group_id = rule.get("GroupId")
            if group_id not in owned:
                continue
            key, props = self._describe_rule(rule, names.get(group_id) or owned[group_id], names)
            match = wanted.get(key)
            if match is not None:
                # Same content (the key is canonical): use the model's name and spelling ("6" = "tcp", ports
                # of a protocol without ports, CIDR formatting) so that the diff sees no change.
                for prop in ("protocol", "from_port", "to_port", "cidr"):
                    if prop in match.props:
                        props[prop] = match.props[prop]
            name = match.name if match is not None else key
            found.append(Actual(self.kind, name, {"id": rule["SecurityGroupRuleId"]}, props))
        return found

    @staticmethod
    def _describe_rule(
        rule: dict[str, Any], group_name: str, names: dict[str, str]
    ) -> tuple[str, dict[str, Any]]:
        direction = "egress" if rule.get("IsEgress") else "ingress"
        protocol = canonical_protocol(rule.get("IpProtocol", "-1"))
        from_port, to_port = rule.get("FromPort", -1), rule.get("ToPort", -1)
        cidr = rule.get("CidrIpv4") or rule.get("CidrIpv6")
        source_group = (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
        prefix_list = rule.get("PrefixListId")
        source = (
            cidr or (names.get(source_group, source_group) if source_group else None) or prefix_list or "?"
        )
        props: dict[str, Any] = {
            "group": rule.get("GroupId"),
            "direction": direction,
            "protocol": protocol,
            "from_port": from_port,
            "to_port": to_port,
            "cidr": cidr,
            "source_group": source_group,
        }
        if prefix_list:
            props["prefix_list"] = prefix_list
        return rule_name(group_name, direction, protocol, from_port, to_port, str(source)), props

    @staticmethod
    def _permission(props: dict[str, Any]) -> dict[str, Any]:
        protocol = canonical_protocol(props["protocol"])
        permission: dict[str, Any] = {"IpProtocol": protocol}
        if has_ports(protocol):
            permission["FromPort"] = int(props["from_port"] if props.get("from_port") is not None else -1)
            permission["ToPort"] = int(props["to_port"] if props.get("to_port") is not None else -1)
        if props.get("source_group"):
            permission["UserIdGroupPairs"] = [{"GroupId": str(props["source_group"])}]
        elif ":" in str(props.get("cidr") or ""):
            permission["Ipv6Ranges"] = [{"CidrIpv6": str(props["cidr"])}]
        elif props.get("cidr"):
            permission["IpRanges"] = [{"CidrIp": str(props["cidr"])}]
        else:
            raise PykopsError(f"security group rule needs a cidr or a source_group, got {sorted(props)}")
        return permission

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        egress = props["direction"] == "egress"
        authorize = (
            cloud.ec2.authorize_security_group_egress
            if egress
            else cloud.ec2.authorize_security_group_ingress
        )
        tags = cloud.cluster_tags(desired.name)
        try:
            response = authorize(
                GroupId=props["group"],
                IpPermissions=[self._permission(props)],
                TagSpecifications=cloud.tag_specifications("security-group-rule", tags),
            )
        except ClientError as exc:
            if error_code(exc) != "InvalidPermission.Duplicate":
                _raise(exc)
            return {"id": self._existing(cloud, props)}
        except BotoCoreError as exc:
            _raise(exc)
        rules = response.get("SecurityGroupRules") or []
        if not rules:
            return {"id": self._existing(cloud, props)}
        return {"id": str(rules[0]["SecurityGroupRuleId"])}

    def _existing(self, cloud: Any, props: dict[str, Any]) -> str:
        """The id of the rule that already has this content (a retried create, or AWS' default egress)."""
        group = str(props["group"])
        rules = _describe(
            cloud,
            "describe_security_group_rules",
            "SecurityGroupRules",
            Filters=[{"Name": "group-id", "Values": [group]}],
        )
        want = rule_name(
            group,
            props["direction"],
            props["protocol"],
            props.get("from_port"),
            props.get("to_port"),
            str(props.get("source_group") or props.get("cidr")),
        )
        for rule in rules:
            source_group = (rule.get("ReferencedGroupInfo") or {}).get("GroupId")
            name, _props = self._describe_rule(
                rule, group, {source_group: source_group} if source_group else {}
            )
            if name == want:
                return str(rule["SecurityGroupRuleId"])
        raise PykopsError(
            f"security group {group}: AWS reports the rule {want} as a duplicate but does not list it"
        )

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        return dict(actual.attrs)  # every prop is immutable: changes are replacements

    def delete(self, cloud: Any, actual: Actual) -> None:
        group = actual.props.get("group")
        revoke = (
            cloud.ec2.revoke_security_group_egress
            if actual.props.get("direction") == "egress"
            else cloud.ec2.revoke_security_group_ingress
        )
        _call_unless_gone(revoke, GroupId=group, SecurityGroupRuleIds=[actual.id])


NETWORK_KINDS: list[Kind] = [
    VPC(),
    DHCPOptions(),
    VPCDHCPOptionsAssociation(),
    InternetGateway(),
    Subnet(),
    RouteTable(),
    Route(),
    RouteTableAssociation(),
    ElasticIP(),
    NatGateway(),
    SecurityGroup(),
    SecurityGroupRule(),
]
