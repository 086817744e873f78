"""The AWS behaviours restored by the fixes of ``moto_fixes_ec2``, ``moto_fixes_elbv2``, ``moto_fixes_iam``.

Same discipline as ``tests/test_aws_emulator.py``: each test shows the AWS behaviour over HTTP (boto3) on the
session emulator (all fixes); its "..._without_fix" twin shows what plain moto (the ``plain_moto`` fixture of
``conftest.py``: no fixes) does instead. When a twin fails, moto has fixed the behaviour and the fix can be
retired.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from pykops.sandbox.aws_emulator import FIX_NAMES, AwsEmulator
from pykops.sandbox.moto_fixes_ec2 import EC2_FIXES
from pykops.sandbox.moto_fixes_elbv2 import ELBV2_FIXES
from pykops.sandbox.moto_fixes_iam import IAM_FIXES

REGION = "eu-west-1"


def _aws(emulator: AwsEmulator, service: str) -> Any:
    """A client for ``service`` with no retries (a 500 must show at once)."""
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=emulator.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = err.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


def _is_http_500(err: pytest.ExceptionInfo[Exception]) -> bool:
    return "500" in str(err.value) or "Internal Server Error" in str(err.value)


def _subnet(ec2: Any, zone: str = "a") -> str:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone=f"{REGION}{zone}")
    return str(subnet["Subnet"]["SubnetId"])


def _tag_spec(resource_type: str, **tags: str) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def test_the_fixes_are_registered() -> None:
    names = [fix.name for fix in (*EC2_FIXES, *ELBV2_FIXES, *IAM_FIXES)]
    assert len(set(names)) == len(names)
    assert FIX_NAMES[-len(names) :] == tuple(names)
    assert all(fix.aws_behaviour and fix.apply.__doc__ for fix in (*EC2_FIXES, *ELBV2_FIXES, *IAM_FIXES))


# ec2-dhcp-options-tags

DHCP_CONFIG = [{"Key": "domain-name", "Values": ["x.internal"]}]


def test_dhcp_options_are_tagged(aws_emulator: AwsEmulator) -> None:
    """AWS: CreateDhcpOptions applies the dhcp-options tags of TagSpecifications; tag filters find the set."""
    ec2 = _aws(aws_emulator, "ec2")
    key = _unique("team")
    options = ec2.create_dhcp_options(
        DhcpConfigurations=DHCP_CONFIG, TagSpecifications=_tag_spec("dhcp-options", **{key: "ops"})
    )["DhcpOptions"]
    assert options["Tags"] == [{"Key": key, "Value": "ops"}]
    options_id = options["DhcpOptionsId"]
    for filters in (
        [{"Name": f"tag:{key}", "Values": ["ops"]}],
        [{"Name": "tag-key", "Values": [key]}],
    ):
        found = ec2.describe_dhcp_options(Filters=filters)["DhcpOptions"]
        assert [o["DhcpOptionsId"] for o in found] == [options_id]
        assert found[0]["Tags"] == [{"Key": key, "Value": "ops"}]
    assert ec2.describe_dhcp_options(Filters=[{"Name": f"tag:{key}", "Values": ["dev"]}])["DhcpOptions"] == []


def test_dhcp_options_are_tagged_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    key = _unique("team")
    options_id = ec2.create_dhcp_options(
        DhcpConfigurations=DHCP_CONFIG, TagSpecifications=_tag_spec("dhcp-options", **{key: "ops"})
    )["DhcpOptions"]["DhcpOptionsId"]
    assert ec2.describe_dhcp_options(Filters=[{"Name": "tag-key", "Values": [key]}])["DhcpOptions"] == []
    (options,) = ec2.describe_dhcp_options(DhcpOptionsIds=[options_id])["DhcpOptions"]
    assert not options.get("Tags")  # plain moto: the tags are dropped


# ec2-dhcp-options-release


def _dhcp_options(ec2: Any) -> str:
    return str(ec2.create_dhcp_options(DhcpConfigurations=DHCP_CONFIG)["DhcpOptions"]["DhcpOptionsId"])


def _vpc(ec2: Any) -> str:
    return str(ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"])


def _exists(ec2: Any, options_id: str) -> bool:
    try:
        ec2.describe_dhcp_options(DhcpOptionsIds=[options_id])
    except ClientError as err:
        assert err.response["Error"]["Code"] == "InvalidDhcpOptionID.NotFound"
        return False
    return True


def _delete_refused(ec2: Any, options_id: str) -> None:
    with pytest.raises(ClientError) as err:
        ec2.delete_dhcp_options(DhcpOptionsId=options_id)
    assert _error(err) == (400, "DependencyViolation")


def test_dhcp_options_replaced_set_can_be_deleted(aws_emulator: AwsEmulator) -> None:
    """AWS: a set is in use while a VPC uses it; associating another set (or "default") releases it."""
    ec2 = _aws(aws_emulator, "ec2")
    vpc, first, second = _vpc(ec2), _dhcp_options(ec2), _dhcp_options(ec2)
    ec2.associate_dhcp_options(DhcpOptionsId=first, VpcId=vpc)
    _delete_refused(ec2, first)
    ec2.associate_dhcp_options(DhcpOptionsId=second, VpcId=vpc)
    ec2.delete_dhcp_options(DhcpOptionsId=first)
    assert not _exists(ec2, first)
    _delete_refused(ec2, second)
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=vpc)
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["DhcpOptionsId"] == "default"
    ec2.delete_dhcp_options(DhcpOptionsId=second)
    assert not _exists(ec2, second)


def test_dhcp_options_shared_by_two_vpcs_and_deleted_vpcs(aws_emulator: AwsEmulator) -> None:
    """AWS: a set serves any number of VPCs; deleting a VPC leaves its set (unused from then on)."""
    ec2 = _aws(aws_emulator, "ec2")
    one, two, shared = _vpc(ec2), _vpc(ec2), _dhcp_options(ec2)
    ec2.associate_dhcp_options(DhcpOptionsId=shared, VpcId=one)
    ec2.associate_dhcp_options(DhcpOptionsId=shared, VpcId=two)
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=two)
    _delete_refused(ec2, shared)  # still used by the first VPC
    ec2.delete_vpc(VpcId=one)
    assert _exists(ec2, shared)
    ec2.delete_dhcp_options(DhcpOptionsId=shared)
    assert not _exists(ec2, shared)


def test_dhcp_options_replaced_set_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    vpc, first, second = _vpc(ec2), _dhcp_options(ec2), _dhcp_options(ec2)
    ec2.associate_dhcp_options(DhcpOptionsId=first, VpcId=vpc)
    ec2.associate_dhcp_options(DhcpOptionsId=second, VpcId=vpc)
    _delete_refused(ec2, first)  # plain moto: the set the VPC left is still "assigned"
    ec2.delete_vpc(VpcId=vpc)
    assert not _exists(ec2, second)  # plain moto: DeleteVpc deleted the VPC's set


# ec2-delete-key-pair-by-id


def test_delete_key_pair_by_id(aws_emulator: AwsEmulator) -> None:
    """AWS: DeleteKeyPair(KeyPairId=...) deletes that key pair (and only that one)."""
    ec2 = _aws(aws_emulator, "ec2")
    name, other = _unique("key"), _unique("key")
    key_id = ec2.create_key_pair(KeyName=name)["KeyPairId"]
    ec2.create_key_pair(KeyName=other)
    assert ec2.delete_key_pair(KeyPairId=key_id)["Return"] is True
    with pytest.raises(ClientError) as err:
        ec2.describe_key_pairs(KeyNames=[name])
    assert _error(err) == (400, "InvalidKeyPair.NotFound")
    assert [k["KeyName"] for k in ec2.describe_key_pairs(KeyNames=[other])["KeyPairs"]] == [other]
    assert ec2.delete_key_pair(KeyPairId=key_id)["Return"] is True  # gone already: still fine
    ec2.delete_key_pair(KeyName=other)  # by name, as before
    assert ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [other]}])["KeyPairs"] == []


def test_delete_key_pair_by_id_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    name = _unique("key")
    key_id = ec2.create_key_pair(KeyName=name)["KeyPairId"]
    ec2.delete_key_pair(KeyPairId=key_id)
    assert [k["KeyPairId"] for k in ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"]] == [key_id]


# ec2-launch-template-current-tags

TEMPLATE_DATA = {"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}


def _launch_template(ec2: Any, **tags: str) -> str:
    kwargs: dict[str, Any] = {"LaunchTemplateName": _unique("lt"), "LaunchTemplateData": TEMPLATE_DATA}
    if tags:
        kwargs["TagSpecifications"] = _tag_spec("launch-template", **tags)
    return str(ec2.create_launch_template(**kwargs)["LaunchTemplate"]["LaunchTemplateId"])


def _template_tags(ec2: Any, template_id: str) -> dict[str, str]:
    (template,) = ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"]
    return {t["Key"]: t["Value"] for t in template.get("Tags", [])}


def test_launch_template_reports_its_current_tags(aws_emulator: AwsEmulator) -> None:
    """AWS: DescribeLaunchTemplates reports the tags as they are now (CreateTags/DeleteTags included)."""
    ec2 = _aws(aws_emulator, "ec2")
    template = _launch_template(ec2, team="ops")
    ec2.create_tags(Resources=[template], Tags=[{"Key": "stage", "Value": "prod"}])
    assert _template_tags(ec2, template) == {"team": "ops", "stage": "prod"}
    ec2.delete_tags(Resources=[template], Tags=[{"Key": "team"}])
    assert _template_tags(ec2, template) == {"stage": "prod"}


def test_launch_template_reports_its_current_tags_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    template = _launch_template(ec2, team="ops")
    ec2.create_tags(Resources=[template], Tags=[{"Key": "stage", "Value": "prod"}])
    assert _template_tags(ec2, template) == {"team": "ops"}  # plain moto: the tags of the create
    found = ec2.describe_launch_templates(Filters=[{"Name": "tag:stage", "Values": ["prod"]}])[
        "LaunchTemplates"
    ]
    assert template in [t["LaunchTemplateId"] for t in found]  # ... although the filter sees the new tag


# ec2-nat-gateway-tag-filters


def _nat_gateway(ec2: Any, subnet: str, token: str | None = None, **tags: str) -> dict[str, Any]:
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    kwargs: dict[str, Any] = {"SubnetId": subnet, "AllocationId": allocation}
    if tags:
        kwargs["TagSpecifications"] = _tag_spec("natgateway", **tags)
    if token:
        kwargs["ClientToken"] = token
    nat: dict[str, Any] = ec2.create_nat_gateway(**kwargs)["NatGateway"]
    return nat


def _nat_ids(ec2: Any, *filters: dict[str, Any]) -> set[str]:
    return {n["NatGatewayId"] for n in ec2.describe_nat_gateways(Filter=list(filters))["NatGateways"]}


def test_nat_gateways_filtered_by_tag(aws_emulator: AwsEmulator) -> None:
    """AWS: DescribeNatGateways applies the tag:<key>, tag-key and tag-value filters."""
    ec2 = _aws(aws_emulator, "ec2")
    subnet = _subnet(ec2)
    key, value = _unique("cluster"), _unique("owned")
    mine = _nat_gateway(ec2, subnet, **{key: value})["NatGatewayId"]
    _nat_gateway(ec2, subnet, other="x")
    in_subnet = {"Name": "subnet-id", "Values": [subnet]}
    assert len(_nat_ids(ec2, in_subnet)) == 2
    assert _nat_ids(ec2, {"Name": "tag-key", "Values": [key]}) == {mine}
    assert _nat_ids(ec2, {"Name": f"tag:{key}", "Values": [value]}) == {mine}
    assert _nat_ids(ec2, {"Name": "tag-value", "Values": [value]}) == {mine}
    assert _nat_ids(ec2, in_subnet, {"Name": f"tag:{key}", "Values": ["other"]}) == set()


def test_nat_gateways_filtered_by_tag_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    subnet = _subnet(ec2)
    key = _unique("cluster")
    _nat_gateway(ec2, subnet, **{key: "owned"})
    _nat_gateway(ec2, subnet, other="x")
    in_subnet = {"Name": "subnet-id", "Values": [subnet]}
    assert len(_nat_ids(ec2, in_subnet, {"Name": "tag-key", "Values": [key]})) == 2  # the filter is ignored


# ec2-client-token-idempotency


def test_create_nat_gateway_is_idempotent(aws_emulator: AwsEmulator) -> None:
    """AWS: a repeated CreateNatGateway (same ClientToken, same parameters) returns the first gateway."""
    ec2 = _aws(aws_emulator, "ec2")
    subnet = _subnet(ec2)
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    token = _unique("token")
    kwargs = {"SubnetId": subnet, "AllocationId": allocation, "ClientToken": token}
    first = ec2.create_nat_gateway(**kwargs)["NatGateway"]["NatGatewayId"]
    assert ec2.create_nat_gateway(**kwargs)["NatGateway"]["NatGatewayId"] == first
    assert _nat_ids(ec2, {"Name": "subnet-id", "Values": [subnet]}) == {first}
    ec2.delete_nat_gateway(NatGatewayId=first)
    again = ec2.create_nat_gateway(**kwargs)["NatGateway"]  # still the first one, deleted by now
    assert (again["NatGatewayId"], again["State"]) == (first, "deleted")
    with pytest.raises(ClientError) as err:
        ec2.create_nat_gateway(**{**kwargs, "ConnectivityType": "private"})
    assert _error(err) == (400, "IdempotentParameterMismatch")
    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    other = ec2.create_nat_gateway(**{**kwargs, "AllocationId": allocation, "ClientToken": _unique("token")})
    assert other["NatGateway"]["NatGatewayId"] != first


def test_create_launch_template_is_idempotent(aws_emulator: AwsEmulator) -> None:
    """AWS: a repeated CreateLaunchTemplate (same ClientToken, same parameters) returns the first template."""
    ec2 = _aws(aws_emulator, "ec2")
    token = _unique("token")
    kwargs = {"LaunchTemplateName": _unique("lt"), "LaunchTemplateData": TEMPLATE_DATA, "ClientToken": token}
    first = ec2.create_launch_template(**kwargs)["LaunchTemplate"]
    second = ec2.create_launch_template(**kwargs)["LaunchTemplate"]
    assert (second["LaunchTemplateId"], second["LatestVersionNumber"]) == (first["LaunchTemplateId"], 1)
    with pytest.raises(ClientError) as err:
        ec2.create_launch_template(**{**kwargs, "LaunchTemplateData": {**TEMPLATE_DATA, "KeyName": "k"}})
    assert _error(err) == (400, "IdempotentParameterMismatch")
    with pytest.raises(ClientError) as err:  # without a token (or with another one): the name is taken
        ec2.create_launch_template(LaunchTemplateName=kwargs["LaunchTemplateName"], LaunchTemplateData={})
    assert _error(err)[1] == "InvalidLaunchTemplateName.AlreadyExistsException"


def _volumes(ec2: Any, key: str) -> list[str]:
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag-key", "Values": [key]}])["Volumes"]
    return [v["VolumeId"] for v in volumes]


def test_create_volume_is_idempotent(aws_emulator: AwsEmulator) -> None:
    """AWS: a repeated CreateVolume (same ClientToken, same parameters) returns the first volume."""
    ec2 = _aws(aws_emulator, "ec2")
    key = _unique("volume")
    kwargs = {
        "AvailabilityZone": f"{REGION}a",
        "Size": 10,
        "TagSpecifications": _tag_spec("volume", **{key: "1"}),
        "ClientToken": _unique("token"),
    }
    first = ec2.create_volume(**kwargs)["VolumeId"]
    assert ec2.create_volume(**kwargs)["VolumeId"] == first
    assert _volumes(ec2, key) == [first]
    with pytest.raises(ClientError) as err:
        ec2.create_volume(**{**kwargs, "Size": 20})
    assert _error(err) == (400, "IdempotentParameterMismatch")


def test_client_tokens_are_per_account(aws_emulator: AwsEmulator) -> None:
    """The same token in another region is another request (tokens are per account and region)."""
    ec2 = _aws(aws_emulator, "ec2")
    other_region = boto3.session.Session().client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=aws_emulator.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    token = _unique("token")
    here = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, ClientToken=token)["VolumeId"]
    there = other_region.create_volume(AvailabilityZone="us-east-1a", Size=1, ClientToken=token)["VolumeId"]
    assert here != there


def test_client_tokens_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    subnet = _subnet(ec2)
    token = _unique("token")
    nat = {"SubnetId": subnet, "ConnectivityType": "private", "ClientToken": token}
    assert len({ec2.create_nat_gateway(**nat)["NatGateway"]["NatGatewayId"] for _ in range(2)}) == 2
    volume = {"AvailabilityZone": f"{REGION}a", "Size": 1, "ClientToken": token}
    assert len({ec2.create_volume(**volume)["VolumeId"] for _ in range(2)}) == 2
    template = {
        "LaunchTemplateName": _unique("lt"),
        "LaunchTemplateData": TEMPLATE_DATA,
        "ClientToken": token,
    }
    ec2.create_launch_template(**template)
    with pytest.raises(ClientError) as err:
        ec2.create_launch_template(**template)
    assert _error(err)[1] == "InvalidLaunchTemplateName.AlreadyExistsException"


# ec2-delete-unknown-nat-gateway


def test_delete_unknown_nat_gateway(aws_emulator: AwsEmulator) -> None:
    """AWS: DeleteNatGateway of an id that does not exist answers 400 NatGatewayNotFound."""
    ec2 = _aws(aws_emulator, "ec2")
    with pytest.raises(ClientError) as err:
        ec2.delete_nat_gateway(NatGatewayId="nat-0123456789abcdef0")
    assert _error(err) == (400, "NatGatewayNotFound")


def test_delete_unknown_nat_gateway_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    with pytest.raises((ClientError, ResponseParserError)) as err:
        ec2.delete_nat_gateway(NatGatewayId="nat-0123456789abcdef0")
    assert _is_http_500(err)


# ec2-attach-volume-checks


def _instance_and_volume(ec2: Any, volume_zone: str = "a") -> tuple[str, str]:
    subnet = _subnet(ec2)
    reply = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)
    (instance,) = reply["Instances"]
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}{volume_zone}", Size=1)["VolumeId"]
    return str(instance["InstanceId"]), str(volume)


def test_attach_volume_to_a_terminated_instance(aws_emulator: AwsEmulator) -> None:
    """AWS: a terminated instance takes no volume (IncorrectState); the volume stays available, deletable."""
    ec2 = _aws(aws_emulator, "ec2")
    instance, volume = _instance_and_volume(ec2)
    ec2.terminate_instances(InstanceIds=[instance])
    with pytest.raises(ClientError) as err:
        ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/xvdbb")
    assert _error(err) == (400, "IncorrectState")
    ec2.delete_volume(VolumeId=volume)


def test_attach_volume_in_use_or_in_another_zone(aws_emulator: AwsEmulator) -> None:
    """AWS: a volume attached elsewhere is VolumeInUse; one in another zone is InvalidVolume.ZoneMismatch."""
    ec2 = _aws(aws_emulator, "ec2")
    first, volume = _instance_and_volume(ec2)
    second, elsewhere = _instance_and_volume(ec2, volume_zone="b")
    ec2.attach_volume(VolumeId=volume, InstanceId=first, Device="/dev/xvdbb")
    with pytest.raises(ClientError) as err:
        ec2.attach_volume(VolumeId=volume, InstanceId=second, Device="/dev/xvdbb")
    assert _error(err) == (400, "VolumeInUse")
    with pytest.raises(ClientError) as err:
        ec2.attach_volume(VolumeId=elsewhere, InstanceId=second, Device="/dev/xvdbb")
    assert _error(err) == (400, "InvalidVolume.ZoneMismatch")
    ec2.terminate_instances(InstanceIds=[first])  # detaches: the volume can go
    ec2.delete_volume(VolumeId=volume)


def test_attach_volume_checks_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    instance, volume = _instance_and_volume(ec2)
    ec2.terminate_instances(InstanceIds=[instance])
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/xvdbb")  # accepted
    with pytest.raises(ClientError) as err:
        ec2.delete_volume(VolumeId=volume)  # and the volume is stuck to a terminated instance
    assert _error(err)[1] == "VolumeInUse"


# ec2-security-group-protocol-without-ports


def _group(ec2: Any) -> tuple[str, str]:
    vpc = _vpc(ec2)
    group = ec2.create_security_group(GroupName=_unique("sg"), Description="test", VpcId=vpc)["GroupId"]
    return vpc, str(group)


def test_security_group_rule_for_a_protocol_without_ports(aws_emulator: AwsEmulator) -> None:
    """AWS: protocol 4 (IP-in-IP) without FromPort/ToPort is accepted; the rule allows all ports."""
    ec2 = _aws(aws_emulator, "ec2")
    _vpc_id, group = _group(ec2)
    ingress = {"IpProtocol": "4", "UserIdGroupPairs": [{"GroupId": group}]}
    egress = {"IpProtocol": "4", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[ingress])
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=[egress])
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])[
        "SecurityGroupRules"
    ]
    ipip = sorted((r["IsEgress"], r["FromPort"], r["ToPort"]) for r in rules if r["IpProtocol"] == "4")
    assert ipip == [(False, -1, -1), (True, -1, -1)]
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert [p["IpProtocol"] for p in described["IpPermissions"]] == ["4"]
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[ingress])
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[egress])
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    assert described["IpPermissions"] == []
    assert all(p["IpProtocol"] != "4" for p in described["IpPermissionsEgress"])


def test_security_group_rule_for_a_protocol_without_ports_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    _vpc_id, group = _group(ec2)
    with pytest.raises((ClientError, ResponseParserError)) as err:
        ec2.authorize_security_group_ingress(
            GroupId=group, IpPermissions=[{"IpProtocol": "4", "UserIdGroupPairs": [{"GroupId": group}]}]
        )
    assert _is_http_500(err)


# ec2-launch-template-pagination


def _pages(call: Any, key: str, **kwargs: Any) -> list[list[Any]]:
    pages, token = [], None
    while True:
        response = call(**kwargs, **({"NextToken": token} if token else {}))
        pages.append(response[key])
        token = response.get("NextToken")
        if not token:
            return pages


def test_launch_templates_paginate(aws_emulator: AwsEmulator) -> None:
    """AWS: DescribeLaunchTemplates/-Versions answer pages of MaxResults items, a NextToken until the end."""
    ec2 = _aws(aws_emulator, "ec2")
    key = _unique("batch")
    templates = [_launch_template(ec2, **{key: str(n)}) for n in range(7)]
    by_tag = [{"Name": "tag-key", "Values": [key]}]
    pages = _pages(ec2.describe_launch_templates, "LaunchTemplates", Filters=by_tag, MaxResults=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [t["LaunchTemplateId"] for page in pages for t in page] == templates
    paginator = ec2.get_paginator("describe_launch_templates")
    found = [
        t["LaunchTemplateId"]
        for p in paginator.paginate(Filters=by_tag, MaxResults=2)
        for t in p["LaunchTemplates"]
    ]
    assert found == templates

    for n in range(2, 6):
        ec2.create_launch_template_version(
            LaunchTemplateId=templates[0], LaunchTemplateData={**TEMPLATE_DATA, "KeyName": f"k{n}"}
        )
    pages = _pages(
        ec2.describe_launch_template_versions,
        "LaunchTemplateVersions",
        LaunchTemplateId=templates[0],
        MaxResults=2,
    )
    assert [[v["VersionNumber"] for v in page] for page in pages] == [[1, 2], [3, 4], [5]]
    pages = _pages(
        ec2.describe_launch_template_versions,
        "LaunchTemplateVersions",
        LaunchTemplateId=templates[0],
        MinVersion="2",
        MaxResults=3,
    )
    assert [[v["VersionNumber"] for v in page] for page in pages] == [[2, 3, 4], [5]]
    # Every template's default version, which is how pykops reads them all at once.
    defaults = _pages(
        ec2.describe_launch_template_versions, "LaunchTemplateVersions", Versions=["$Default"], MaxResults=4
    )
    assert {v["LaunchTemplateId"] for page in defaults for v in page} >= set(templates)
    assert all(len(page) <= 4 for page in defaults)
    with pytest.raises(ClientError) as err:
        ec2.describe_launch_templates(NextToken="not-a-token")
    assert _error(err) == (400, "InvalidPaginationToken")


def test_launch_templates_paginate_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto, "ec2")
    key = _unique("batch")
    for n in range(4):
        _launch_template(ec2, **{key: str(n)})
    response = ec2.describe_launch_templates(Filters=[{"Name": "tag-key", "Values": [key]}], MaxResults=3)
    assert len(response["LaunchTemplates"]) == 3
    assert "NextToken" not in response  # plain moto: the fourth template is silently left out


# elbv2-load-balancer-arn-type


def _network_load_balancer(emulator: AwsEmulator) -> tuple[Any, str, str]:
    """(elbv2 client, network load balancer ARN, its TCP listener's ARN)."""
    ec2, elbv2 = _aws(emulator, "ec2"), _aws(emulator, "elbv2")
    subnet = _subnet(ec2)
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    name = _unique("nlb")
    lb = elbv2.create_load_balancer(Name=name, Subnets=[subnet], Type="network", Scheme="internal")
    lb_arn = lb["LoadBalancers"][0]["LoadBalancerArn"]
    group = elbv2.create_target_group(Name=_unique("tg"), Protocol="TCP", Port=443, VpcId=vpc)
    group_arn = group["TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn,
        Protocol="TCP",
        Port=443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group_arn}],
    )
    return elbv2, lb_arn, listener["Listeners"][0]["ListenerArn"]


def test_network_load_balancer_arn(aws_emulator: AwsEmulator) -> None:
    """AWS: a network load balancer's ARN has loadbalancer/net/, its listeners' listener/net/."""
    elbv2, lb_arn, listener_arn = _network_load_balancer(aws_emulator)
    assert ":loadbalancer/net/" in lb_arn
    assert ":listener/net/" in listener_arn
    (lb,) = elbv2.describe_load_balancers(LoadBalancerArns=[lb_arn])["LoadBalancers"]
    assert lb["Type"] == "network"
    assert [li["ListenerArn"] for li in elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]] == [
        listener_arn
    ]
    elbv2.delete_listener(ListenerArn=listener_arn)
    elbv2.delete_load_balancer(LoadBalancerArn=lb_arn)
    ec2 = _aws(aws_emulator, "ec2")
    application = elbv2.create_load_balancer(
        Name=_unique("alb"), Subnets=[_subnet(ec2, "a"), _subnet(ec2, "b")]
    )
    assert ":loadbalancer/app/" in application["LoadBalancers"][0]["LoadBalancerArn"]


def test_network_load_balancer_arn_without_fix(plain_moto: AwsEmulator) -> None:
    _elbv2, lb_arn, listener_arn = _network_load_balancer(plain_moto)
    assert ":loadbalancer/app/" in lb_arn
    assert ":listener/app/" in listener_arn


# iam-remove-role-not-in-profile

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _profile_with_role(iam: Any) -> tuple[str, str]:
    role, profile = _unique("role"), _unique("profile")
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST)
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
    return profile, role


def test_remove_role_not_in_instance_profile(aws_emulator: AwsEmulator) -> None:
    """AWS: removing a role that is not (or no longer) in the profile answers 404 NoSuchEntity."""
    iam = _aws(aws_emulator, "iam")
    profile, role = _profile_with_role(iam)
    iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    assert iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"] == []
    with pytest.raises(ClientError) as err:
        iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    assert _error(err) == (404, "NoSuchEntity")


def test_remove_role_not_in_instance_profile_without_fix(plain_moto: AwsEmulator) -> None:
    iam = _aws(plain_moto, "iam")
    profile, role = _profile_with_role(iam)
    iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    with pytest.raises((ClientError, ResponseParserError)) as err:
        iam.remove_role_from_instance_profile(InstanceProfileName=profile, RoleName=role)
    assert _is_http_500(err)


def _classic_elb(emulator: AwsEmulator, scheme: str) -> str:
    elb = _aws(emulator, "elb")
    name = _unique("clb")[:32]
    elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[
            {"Protocol": "TCP", "LoadBalancerPort": 80, "InstanceProtocol": "TCP", "InstancePort": 80}
        ],
        AvailabilityZones=[f"{REGION}a"],
        Scheme=scheme,
    )
    (described,) = elb.describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"]
    return str(described["DNSName"])


def test_classic_elb_dns_name_names_its_region(aws_emulator: AwsEmulator) -> None:
    public = _classic_elb(aws_emulator, "internet-facing")
    assert public.endswith(f".{REGION}.elb.amazonaws.com") and "-" in public.split(".")[0]
    assert _classic_elb(aws_emulator, "internal").startswith("internal-")


def test_classic_elb_dns_name_without_fix(plain_moto: AwsEmulator) -> None:
    assert _classic_elb(plain_moto, "internet-facing").endswith(".us-east-1.elb.amazonaws.com")
