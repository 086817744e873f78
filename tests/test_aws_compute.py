"""The IAM, compute and load balancer kinds and image resolution, over HTTP against the AWS emulator.

Each kind is driven the way the engine drives it: ``create`` with resolved props, ``find`` (whose props must
equal the desired ones, tags restricted to the desired keys), ``update`` with the changed fields, ``delete``.
``find`` must cost the same number of calls for 1 instance group as for 5, and never return another cluster's
resources. The network the kinds need (VPC, subnets, security group, AMI) is made directly with boto3.

Tests marked ``xfail(strict=True)`` show an AWS behaviour the emulator (moto 5.2.5) gets wrong; each reason
names the call, what moto does and what AWS does. They start passing when the emulator gains the fix.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.config import Config

from pykops.cloud.aws.cloud import AwsCloud
from pykops.cloud.aws.compute import COMPUTE_KINDS, AutoScalingGroup, EBSVolume, LaunchTemplate, SSHKey
from pykops.cloud.aws.iam import IAM_KINDS, IAMInstanceProfile, IAMInstanceProfileRole, IAMRole, IAMRolePolicy
from pykops.cloud.aws.images import resolve_images
from pykops.cloud.aws.loadbalancer import LB_KINDS, Listener, NetworkLoadBalancer, TargetGroup, elb_name
from pykops.engine.diff import compare_props
from pykops.engine.types import Actual, FieldChange, Kind, Resource, RetryableError
from pykops.errors import PykopsError, SpecError
from pykops.sandbox.aws_emulator import AwsEmulator

CLUSTER = "c1.example.com"
# Ends with ".c1.example.com": a name-suffix match alone would take its resources for CLUSTER's.
OTHER = "other.c1.example.com"
ACCOUNT = "123456789012"  # moto's account
PUBLIC_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC1xMCpL5zYNC1WZzoHsgFDoU1RkQPOAvptM9rLxIcaqOM4Kyo/I18g9j7XJpDa"
    "0kvzCKUkhwmMC+heCUw+39iWCo7bzuC8ELz5e7u3PlySa1HeV1vwdOFSyzl48b32y4X7pzSmsKLz3NSiqeYzARDQbaXWo/nuf6dD"
    "2+4airIi/9bDIHt1O1gLDFzXrUgc5iOiyfDHG9A4cJN4Cfv2vmuRe+DeHvXgKbygtBazSUalYHQALcJ7RCQpA+YFgGr9/yGkxpDl"
    "9ieIjbdzpyFJCYSC0aelPGru+Qh0retQt7TfvVYRQvYbWXlA3UBgFKIRDce/Eulk8fsTHEfUbyiXIpnnVBpLZspL1REnoUpdU2CE"
    "yEAXNEV3GkqU2Azg3KjygqLYflL80Fb3hyDJd8a6j6P/mAzfURNWgW8opSVY+ejfcI+TaxwYpsnl+HW4pEQjMpisAom40huxryNl"
    "Dn3hEgN7jBKLS/KNClF+gfGXsFkZ+yOO211iUxOcO2+j4W8ZPgs= admin@example.com"
)
KEY_NAME = f"kubernetes.{CLUSTER}-4a:95:74:3a:8a:fa:bf:93:32:3e:25:63:0a:d9:7f:80"
ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def cloud(aws_env: AwsEmulator) -> AwsCloud:
    aws_env.reset()
    return AwsCloud(CLUSTER, aws_env.region)


@pytest.fixture
def other(aws_env: AwsEmulator, cloud: AwsCloud) -> AwsCloud:
    """Another cluster in the same account and region."""
    return AwsCloud(OTHER, aws_env.region)


@dataclass
class Net:
    vpc: str
    subnets: list[str]
    sg: str
    ami: str


def _net(cloud: AwsCloud) -> Net:
    ec2 = cloud.ec2
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{cloud.region}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    sg = ec2.create_security_group(GroupName=f"nodes.{CLUSTER}", Description="nodes", VpcId=vpc)["GroupId"]
    return Net(vpc, sorted(subnets), sg, _ami(cloud, "pykops/test-image", "/dev/sda1"))


def _ami(cloud: AwsCloud, name: str, root: str) -> str:
    image = cloud.ec2.register_image(
        Name=name,
        RootDeviceName=root,
        Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeSize": 8}}],
    )
    return str(image["ImageId"])


def _tags(cloud: AwsCloud, name: str, **extra: str) -> dict[str, str]:
    return cloud.cluster_tags(name, extra)


def _create(kind: Kind, cloud: AwsCloud, resource: Resource) -> dict[str, Any]:
    return kind.create(cloud, resource, resource.props)


def _found(kind: Kind, cloud: AwsCloud, desired: list[Resource]) -> dict[str, Actual]:
    actuals = kind.find(cloud, desired)
    by_name = {a.name: a for a in actuals}
    assert len(by_name) == len(actuals), "find returned two resources with one logical name"
    return by_name


def _find_one(kind: Kind, cloud: AwsCloud, resource: Resource) -> Actual:
    found = _found(kind, cloud, [resource])
    assert list(found) == [resource.name]
    return found[resource.name]


def _update(kind: Kind, cloud: AwsCloud, actual: Actual, resource: Resource) -> dict[str, Any]:
    """Update as the engine does: the changed top-level fields, then the kind's update; counts the calls."""
    changes = [
        FieldChange(key, actual.props.get(key), value)
        for key, value in resource.props.items()
        if actual.props.get(key) != value
    ]
    assert changes, "nothing to update"
    cloud.calls.reset()
    return kind.update(cloud, actual, resource.props, changes)


def _find_calls(kind: Kind, cloud: AwsCloud, desired: list[Resource]) -> Counter[str]:
    cloud.calls.reset()
    kind.find(cloud, desired)
    return Counter(cloud.calls.counts)


def _no_retries(cloud: AwsCloud) -> AwsCloud:
    """Fail fast on the emulator's HTTP 500s (botocore would retry them with backoff for a minute)."""
    cloud._config = Config(retries={"max_attempts": 1, "mode": "standard"})
    cloud._clients.clear()
    return cloud


def test_kind_lists_export_every_kind() -> None:
    names = [k.kind for k in [*IAM_KINDS, *COMPUTE_KINDS, *LB_KINDS]]
    assert names == [
        "IAMRole",
        "IAMRolePolicy",
        "IAMInstanceProfile",
        "IAMInstanceProfileRole",
        "SSHKey",
        "LaunchTemplate",
        "AutoScalingGroup",
        "EBSVolume",
        "NetworkLoadBalancer",
        "TargetGroup",
        "Listener",
    ]
    for kind in [*IAM_KINDS, *COMPUTE_KINDS, *LB_KINDS]:
        assert isinstance(kind.immutable, frozenset) and isinstance(kind.replaceable, bool)


# --- IAM ----------------------------------------------------------------------------------------------------


def _policy(*actions: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }


def _iam(cloud: AwsCloud, role: str) -> dict[str, Resource]:
    name = f"{role}.{cloud.cluster_name}"
    tags = {"KubernetesCluster": cloud.cluster_name, f"kubernetes.io/cluster/{cloud.cluster_name}": "owned"}
    return {
        "IAMRole": Resource("IAMRole", name, {"assume_role_policy": ASSUME_ROLE, "tags": tags}),
        "IAMRolePolicy": Resource(
            "IAMRolePolicy", name, {"role": name, "policy_document": _policy("ec2:DescribeInstances")}
        ),
        "IAMInstanceProfile": Resource("IAMInstanceProfile", name, {"tags": tags}),
        "IAMInstanceProfileRole": Resource(
            "IAMInstanceProfileRole", name, {"instance_profile": name, "role": name}
        ),
    }


def _create_iam(cloud: AwsCloud, role: str) -> dict[str, Resource]:
    resources = _iam(cloud, role)
    for kind in IAM_KINDS:
        _create(kind, cloud, resources[kind.kind])
    return resources


def test_iam_lifecycle(cloud: AwsCloud) -> None:
    desired = _iam(cloud, "nodes")
    name = f"nodes.{CLUSTER}"
    role_attrs = _create(IAMRole(), cloud, desired["IAMRole"])
    assert role_attrs == {"id": name, "name": name, "arn": f"arn:aws:iam::{ACCOUNT}:role/{name}"}
    assert _create(IAMRolePolicy(), cloud, desired["IAMRolePolicy"]) == {"id": name}
    profile_attrs = _create(IAMInstanceProfile(), cloud, desired["IAMInstanceProfile"])
    assert profile_attrs["arn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/{name}"
    _create(IAMInstanceProfileRole(), cloud, desired["IAMInstanceProfileRole"])

    for kind in IAM_KINDS:
        actual = _find_one(kind, cloud, desired[kind.kind])
        assert actual.props == desired[kind.kind].props, kind.kind
    assert _find_one(IAMRole(), cloud, desired["IAMRole"]).attrs == role_attrs
    assert _find_one(IAMInstanceProfile(), cloud, desired["IAMInstanceProfile"]).attrs == profile_attrs

    # update: inline policy, trust policy and a new tag
    policy = Resource("IAMRolePolicy", name, {"role": name, "policy_document": _policy("ec2:*", "elbv2:*")})
    _update(IAMRolePolicy(), cloud, _find_one(IAMRolePolicy(), cloud, policy), policy)
    assert cloud.calls.mutating() == {"iam:PutRolePolicy": 1}
    assert _find_one(IAMRolePolicy(), cloud, policy).props == policy.props

    trust = {**ASSUME_ROLE, "Statement": [{**ASSUME_ROLE["Statement"][0], "Sid": "ec2"}]}
    role = Resource(
        "IAMRole",
        name,
        {"assume_role_policy": trust, "tags": {**desired["IAMRole"].props["tags"], "team": "k8s"}},
    )
    _update(IAMRole(), cloud, _find_one(IAMRole(), cloud, role), role)
    assert cloud.calls.mutating() == {"iam:UpdateAssumeRolePolicy": 1, "iam:TagRole": 1}
    assert _find_one(IAMRole(), cloud, role).props == role.props

    # delete in the engine's order; a second delete finds nothing to do (IAMInstanceProfileRole: see
    # test_iam_instance_profile_role_delete_tolerates_a_removed_role)
    for kind in reversed(IAM_KINDS):  # profile-role, profile, policy, role
        actual = _find_one(kind, cloud, desired[kind.kind])
        kind.delete(cloud, actual)
        if kind.kind != "IAMInstanceProfileRole":
            kind.delete(cloud, actual)
    for kind in IAM_KINDS:
        assert kind.find(cloud, [desired[kind.kind]]) == [], kind.kind


def test_iam_instance_profile_role_delete_tolerates_a_removed_role(cloud: AwsCloud) -> None:
    _no_retries(cloud)
    desired = _create_iam(cloud, "nodes")["IAMInstanceProfileRole"]
    actual = _find_one(IAMInstanceProfileRole(), cloud, desired)
    IAMInstanceProfileRole().delete(cloud, actual)
    IAMInstanceProfileRole().delete(cloud, actual)
    assert IAMInstanceProfileRole().find(cloud, [desired]) == []


def test_iam_find_costs_the_same_for_one_or_three_roles(cloud: AwsCloud, other: AwsCloud) -> None:
    _create_iam(other, "nodes")
    masters = _create_iam(cloud, "masters")
    one = {k.kind: _find_calls(k, cloud, [masters[k.kind]]) for k in IAM_KINDS}
    everything = [masters, _create_iam(cloud, "nodes"), _create_iam(cloud, "bastions")]
    three = {k.kind: _find_calls(k, cloud, [r[k.kind] for r in everything]) for k in IAM_KINDS}
    assert one == three
    assert one == {
        "IAMRole": {"iam:GetAccountAuthorizationDetails": 1},
        "IAMRolePolicy": {"iam:GetAccountAuthorizationDetails": 1},
        "IAMInstanceProfile": {"iam:ListInstanceProfiles": 1},
        "IAMInstanceProfileRole": {"iam:ListInstanceProfiles": 1},
    }
    for kind in IAM_KINDS:
        assert sorted(_found(kind, cloud, [])) == [f"{r}.{CLUSTER}" for r in ("bastions", "masters", "nodes")]


def test_iam_find_ignores_other_clusters_and_untagged_roles(cloud: AwsCloud, other: AwsCloud) -> None:
    _create_iam(other, "nodes")  # nodes.other.c1.example.com, tagged for OTHER
    iam = cloud.iam
    untagged = f"bastions.{CLUSTER}"
    iam.create_role(RoleName=untagged, AssumeRolePolicyDocument='{"Version":"2012-10-17"}')
    iam.put_role_policy(RoleName=untagged, PolicyName=untagged, PolicyDocument=json.dumps(_policy("ec2:*")))
    iam.create_instance_profile(InstanceProfileName=untagged)
    # Tagged for CLUSTER but not named <word>.<cluster>
    iam.create_role(
        RoleName=f"masters.extra.{CLUSTER}",
        AssumeRolePolicyDocument='{"Version":"2012-10-17"}',
        Tags=[{"Key": "KubernetesCluster", "Value": CLUSTER}],
    )
    for kind in IAM_KINDS:
        assert kind.find(cloud, []) == [], kind.kind
    assert [a.name for a in IAMRole().find(other, [])] == [f"nodes.{OTHER}"]


def test_iam_create_refuses_an_existing_role_not_tagged_for_the_cluster(cloud: AwsCloud) -> None:
    desired = _iam(cloud, "nodes")
    name = f"nodes.{CLUSTER}"
    cloud.iam.create_role(RoleName=name, AssumeRolePolicyDocument='{"Version":"2012-10-17"}')
    cloud.iam.create_instance_profile(InstanceProfileName=name)
    with pytest.raises(
        PykopsError, match=r"IAM role 'nodes\.c1\.example\.com' already exists but is not tagged"
    ):
        _create(IAMRole(), cloud, desired["IAMRole"])
    with pytest.raises(
        PykopsError, match=r"instance profile .* is not tagged KubernetesCluster=c1\.example\.com"
    ):
        _create(IAMInstanceProfile(), cloud, desired["IAMInstanceProfile"])
    assert not cloud.iam.get_role(RoleName=name)["Role"].get("Tags")  # left alone


def test_iam_create_adopts_an_existing_role_tagged_for_the_cluster(cloud: AwsCloud) -> None:
    """A create retried after the first attempt went through (or raced a find) takes the role over."""
    desired = _iam(cloud, "nodes")
    name = f"nodes.{CLUSTER}"
    cloud.iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}',
        Tags=[{"Key": "KubernetesCluster", "Value": CLUSTER}],
    )
    attrs = _create(IAMRole(), cloud, desired["IAMRole"])
    assert attrs["arn"].endswith(f":role/{name}")
    assert _find_one(IAMRole(), cloud, desired["IAMRole"]).props == desired["IAMRole"].props


# --- SSHKey -------------------------------------------------------------------------------------------------


def _ssh_key(cloud: AwsCloud, name: str = KEY_NAME) -> Resource:
    return Resource("SSHKey", name, {"public_key": PUBLIC_KEY, "tags": _tags(cloud, name)})


def test_ssh_key_lifecycle(cloud: AwsCloud, other: AwsCloud) -> None:
    _create(SSHKey(), other, _ssh_key(other, f"kubernetes.{OTHER}-aa"))
    cloud.ec2.import_key_pair(KeyName="someone-elses", PublicKeyMaterial=PUBLIC_KEY.encode())
    desired = _ssh_key(cloud)
    attrs = _create(SSHKey(), cloud, desired)
    assert attrs["id"].startswith("key-") and attrs["name"] == KEY_NAME
    actual = _find_one(SSHKey(), cloud, desired)
    assert actual.props == desired.props
    assert actual.attrs == attrs

    retagged = Resource(
        "SSHKey", KEY_NAME, {**desired.props, "tags": {**desired.props["tags"], "team": "k8s"}}
    )
    _update(SSHKey(), cloud, actual, retagged)
    assert cloud.calls.mutating() == {"ec2:CreateTags": 1}
    assert _find_one(SSHKey(), cloud, retagged).props == retagged.props

    cloud.calls.reset()
    SSHKey().delete(cloud, actual)
    SSHKey().delete(cloud, actual)  # already gone: no error
    assert cloud.calls.mutating() == {"ec2:DeleteKeyPair": 2}
    assert [a.name for a in SSHKey().find(other, [])] == [f"kubernetes.{OTHER}-aa"]


def test_ssh_key_delete(cloud: AwsCloud) -> None:
    desired = _ssh_key(cloud)
    _create(SSHKey(), cloud, desired)
    SSHKey().delete(cloud, _find_one(SSHKey(), cloud, desired))
    assert SSHKey().find(cloud, [desired]) == []


def test_ssh_key_same_key_with_another_comment_is_equal(cloud: AwsCloud) -> None:
    desired = _ssh_key(cloud)
    _create(SSHKey(), cloud, desired)
    without_comment = Resource(
        "SSHKey", KEY_NAME, {**desired.props, "public_key": PUBLIC_KEY.rsplit(" ", 1)[0]}
    )
    assert _find_one(SSHKey(), cloud, without_comment).props == without_comment.props


# --- LaunchTemplate -----------------------------------------------------------------------------------------


def _launch_template(cloud: AwsCloud, net: Net, ig: str = "nodes", **changes: Any) -> Resource:
    name = f"{ig}.{cloud.cluster_name}"
    props: dict[str, Any] = {
        "image_id": net.ami,
        "instance_type": "t3.medium",
        "key_name": None,
        "security_groups": [net.sg],
        "iam_instance_profile": f"arn:aws:iam::{ACCOUNT}:instance-profile/nodes.{cloud.cluster_name}",
        "user_data": "#!/bin/bash\necho 'hello from nodeup'\n",
        "root_volume": {
            "device_name": "/dev/sda1",
            "size": 64,
            "type": "gp3",
            "encrypted": True,
            "iops": 3000,
            "throughput": 125,
        },
        "metadata_options": {
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
            "http_endpoint": "enabled",
        },
        "associate_public_ip": True,
        "instance_tags": _tags(cloud, name, **{"kops.k8s.io/instancegroup": ig}),
        "tags": _tags(cloud, name),
    }
    props.update(changes)
    return Resource("LaunchTemplate", name, props)


def _template_data(cloud: AwsCloud, template_id: str, version: str = "$Default") -> dict[str, Any]:
    answer = cloud.ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[version])
    data: dict[str, Any] = answer["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    return data


def test_launch_template_lifecycle(cloud: AwsCloud) -> None:
    net = _net(cloud)
    desired = _launch_template(cloud, net)
    attrs = _create(LaunchTemplate(), cloud, desired)
    assert attrs["id"].startswith("lt-") and attrs["name"] == desired.name and attrs["version"] == "1"
    actual = _find_one(LaunchTemplate(), cloud, desired)
    assert actual.props == desired.props
    assert actual.attrs == attrs

    data = _template_data(cloud, attrs["id"])
    assert base64.b64decode(data["UserData"]).decode() == desired.props["user_data"]
    assert data["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
    assert data["NetworkInterfaces"][0]["Groups"] == [net.sg]
    assert {s["ResourceType"] for s in data["TagSpecifications"]} >= {"instance", "volume"}

    # instance type change: version 2, based on version 1, becomes the default
    sent: list[dict[str, Any]] = []
    cloud.ec2.meta.events.register(
        "provide-client-params.ec2.CreateLaunchTemplateVersion", lambda params, **_: sent.append(dict(params))
    )
    bigger = _launch_template(cloud, net, instance_type="m5.large")
    new_attrs = _update(LaunchTemplate(), cloud, actual, bigger)
    assert new_attrs == {**attrs, "version": "2"}
    assert cloud.calls.mutating() == {"ec2:CreateLaunchTemplateVersion": 1, "ec2:ModifyLaunchTemplate": 1}
    assert sent[0]["SourceVersion"] == "1"
    assert sent[0]["LaunchTemplateData"]["InstanceType"] == "m5.large"
    actual = _find_one(LaunchTemplate(), cloud, bigger)
    assert actual.props == bigger.props
    assert actual.attrs["version"] == "2"

    # tags only: no new version
    retagged = _launch_template(
        cloud, net, instance_type="m5.large", tags={**bigger.props["tags"], "team": "k8s"}
    )
    assert _update(LaunchTemplate(), cloud, actual, retagged)["version"] == "2"
    assert cloud.calls.mutating() == {"ec2:CreateTags": 1}
    # (that find reports the new tag: test_launch_template_tags_added_later_are_found)

    LaunchTemplate().delete(cloud, actual)
    LaunchTemplate().delete(cloud, actual)
    assert LaunchTemplate().find(cloud, [desired]) == []


def test_launch_template_tags_added_later_are_found(cloud: AwsCloud) -> None:
    net = _net(cloud)
    desired = _launch_template(cloud, net)
    _create(LaunchTemplate(), cloud, desired)
    retagged = _launch_template(cloud, net, tags={**desired.props["tags"], "team": "k8s"})
    _update(LaunchTemplate(), cloud, _find_one(LaunchTemplate(), cloud, desired), retagged)
    assert _find_one(LaunchTemplate(), cloud, retagged).props == retagged.props


def test_launch_template_private_and_root_device_from_the_image(cloud: AwsCloud) -> None:
    net = _net(cloud)
    net.ami = _ami(cloud, "pykops/xvda-image", "/dev/xvda")
    root = {"device_name": None, "size": 48, "type": "gp3", "encrypted": False}
    desired = _launch_template(cloud, net, associate_public_ip=False, root_volume=root, user_data="")
    attrs = _create(LaunchTemplate(), cloud, desired)
    data = _template_data(cloud, attrs["id"])
    assert data["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    assert data["SecurityGroupIds"] == [net.sg]
    assert "NetworkInterfaces" not in data and "UserData" not in data
    assert _find_one(LaunchTemplate(), cloud, desired).props == desired.props


def test_launch_template_update_that_drops_a_field_does_not_carry_it_over(cloud: AwsCloud) -> None:
    """With SourceVersion AWS keeps every field the new data leaves out: removing the key pair or switching
    from a network interface to plain security groups must start from scratch."""
    net = _net(cloud)
    desired = _launch_template(cloud, net, key_name="admin-key")
    _create(LaunchTemplate(), cloud, desired)
    actual = _find_one(LaunchTemplate(), cloud, desired)
    sent: list[dict[str, Any]] = []
    cloud.ec2.meta.events.register(
        "provide-client-params.ec2.CreateLaunchTemplateVersion", lambda params, **_: sent.append(dict(params))
    )
    changed = _launch_template(cloud, net, key_name=None, associate_public_ip=False)
    attrs = _update(LaunchTemplate(), cloud, actual, changed)
    assert "SourceVersion" not in sent[0]
    data = _template_data(cloud, attrs["id"], attrs["version"])
    assert "KeyName" not in data and "NetworkInterfaces" not in data
    assert _find_one(LaunchTemplate(), cloud, changed).props == changed.props


def test_launch_template_find_costs_the_same_for_one_or_five_groups(cloud: AwsCloud, other: AwsCloud) -> None:
    net = _net(cloud)
    _create(LaunchTemplate(), other, _launch_template(other, net))
    groups = [
        _launch_template(cloud, net, ig) for ig in ("nodes-a", "nodes-b", "nodes-c", "nodes-d", "masters")
    ]
    _create(LaunchTemplate(), cloud, groups[0])
    one = _find_calls(LaunchTemplate(), cloud, groups[:1])
    for resource in groups[1:]:
        _create(LaunchTemplate(), cloud, resource)
    # A different default version on one of them must not cost more either.
    found = _found(LaunchTemplate(), cloud, groups)
    _update(
        LaunchTemplate(),
        cloud,
        found[groups[1].name],
        _launch_template(cloud, net, "nodes-b", instance_type="c5.large"),
    )
    five = _find_calls(LaunchTemplate(), cloud, groups)
    assert one == five == {"ec2:DescribeLaunchTemplates": 1, "ec2:DescribeLaunchTemplateVersions": 1}
    found = _found(LaunchTemplate(), cloud, groups)
    assert sorted(found) == sorted(g.name for g in groups)
    assert found[groups[1].name].attrs["version"] == "2"
    assert found[groups[1].name].props["instance_type"] == "c5.large"
    for resource in groups[2:]:
        assert found[resource.name].props == resource.props


def test_launch_template_find_follows_pages(cloud: AwsCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LaunchTemplate, "page_size", 3)
    net = _net(cloud)
    groups = [_launch_template(cloud, net, f"nodes-{i}") for i in range(7)]
    for resource in groups:
        _create(LaunchTemplate(), cloud, resource)
    found = _found(LaunchTemplate(), cloud, groups)
    assert sorted(found) == sorted(g.name for g in groups)


def test_launch_template_update_keeps_fields_outside_the_model(cloud: AwsCloud) -> None:
    net = _net(cloud)
    desired = _launch_template(cloud, net)
    attrs = _create(LaunchTemplate(), cloud, desired)
    version = cloud.ec2.create_launch_template_version(
        LaunchTemplateId=attrs["id"],
        LaunchTemplateData={**_template_data(cloud, attrs["id"]), "Monitoring": {"Enabled": True}},
    )["LaunchTemplateVersion"]["VersionNumber"]
    cloud.ec2.modify_launch_template(LaunchTemplateId=attrs["id"], DefaultVersion=str(version))
    actual = _find_one(LaunchTemplate(), cloud, desired)
    new = _update(LaunchTemplate(), cloud, actual, _launch_template(cloud, net, instance_type="m5.large"))
    data = _template_data(cloud, attrs["id"], new["version"])
    assert data["InstanceType"] == "m5.large"
    assert data.get("Monitoring") == {"Enabled": True}


def test_launch_template_create_is_idempotent(cloud: AwsCloud) -> None:
    net = _net(cloud)
    desired = _launch_template(cloud, net)
    first = _create(LaunchTemplate(), cloud, desired)
    assert _create(LaunchTemplate(), cloud, desired) == first


# --- AutoScalingGroup ---------------------------------------------------------------------------------------


def _asg(cloud: AwsCloud, net: Net, template: dict[str, Any], ig: str = "nodes", **changes: Any) -> Resource:
    name = f"{ig}.{cloud.cluster_name}"
    props: dict[str, Any] = {
        "launch_template": template["id"],
        "launch_template_version": template["version"],
        "min_size": 0,
        "max_size": 2,
        "subnets": net.subnets,
        "target_group_arns": [],
        "tags": _tags(cloud, name, **{"kops.k8s.io/instancegroup": ig, "k8s.io/role/node": "1"}),
    }
    props.update(changes)
    return Resource("AutoScalingGroup", name, props)


def _target_group(cloud: AwsCloud, net: Net, prefix: str = "tcp") -> Resource:
    name = f"{prefix}.{cloud.cluster_name}"
    return Resource(
        "TargetGroup",
        name,
        {
            "target_group_name": elb_name(prefix, cloud.cluster_name),
            "vpc": net.vpc,
            "port": 443,
            "protocol": "TCP",
            "health_check": {"protocol": "TCP", "port": "443"},
            "tags": _tags(cloud, name),
        },
    )


def test_auto_scaling_group_lifecycle(cloud: AwsCloud) -> None:
    net = _net(cloud)
    template = _create(LaunchTemplate(), cloud, _launch_template(cloud, net))
    desired = _asg(cloud, net, template)
    attrs = _create(AutoScalingGroup(), cloud, desired)
    assert attrs["id"] == attrs["name"] == desired.name
    assert attrs["arn"].startswith("arn:aws:autoscaling:") and attrs["arn"].endswith(desired.name)
    actual = _find_one(AutoScalingGroup(), cloud, desired)
    assert actual.props == desired.props
    assert actual.attrs == attrs
    # the engine compares subnets and target groups in any order
    shuffled = {**desired.props, "subnets": list(reversed(desired.props["subnets"]))}
    assert compare_props(actual.props, shuffled, unordered=AutoScalingGroup.unordered) == []
    raw = cloud.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[desired.name])[
        "AutoScalingGroups"
    ][0]
    assert all(t["PropagateAtLaunch"] for t in raw["Tags"])

    # a size change is one UpdateAutoScalingGroup
    bigger = _asg(cloud, net, template, max_size=5)
    _update(AutoScalingGroup(), cloud, actual, bigger)
    assert cloud.calls.mutating() == {"autoscaling:UpdateAutoScalingGroup": 1}
    actual = _find_one(AutoScalingGroup(), cloud, bigger)
    assert actual.props == bigger.props

    # attach a target group, then swap it for another
    tg = _create(TargetGroup(), cloud, _target_group(cloud, net))["arn"]
    attached = _asg(cloud, net, template, max_size=5, target_group_arns=[tg])
    _update(AutoScalingGroup(), cloud, actual, attached)
    assert cloud.calls.mutating() == {"autoscaling:AttachLoadBalancerTargetGroups": 1}
    actual = _find_one(AutoScalingGroup(), cloud, attached)
    assert actual.props == attached.props
    tg2 = _create(TargetGroup(), cloud, _target_group(cloud, net, "tcp2"))["arn"]
    swapped = _asg(cloud, net, template, max_size=5, target_group_arns=[tg2])
    _update(AutoScalingGroup(), cloud, actual, swapped)
    assert cloud.calls.mutating() == {
        "autoscaling:AttachLoadBalancerTargetGroups": 1,
        "autoscaling:DetachLoadBalancerTargetGroups": 1,
    }
    actual = _find_one(AutoScalingGroup(), cloud, swapped)
    assert actual.props == swapped.props

    # new template version + one subnet + a tag
    version = _update(
        LaunchTemplate(),
        cloud,
        _find_one(LaunchTemplate(), cloud, _launch_template(cloud, net)),
        _launch_template(cloud, net, instance_type="m5.large"),
    )
    assert version["version"] == "2"
    changed = _asg(
        cloud,
        net,
        version,
        max_size=5,
        target_group_arns=[tg2],
        subnets=net.subnets[:1],
        tags={**swapped.props["tags"], "team": "k8s"},
    )
    _update(AutoScalingGroup(), cloud, actual, changed)
    assert cloud.calls.mutating() == {
        "autoscaling:UpdateAutoScalingGroup": 1,
        "autoscaling:CreateOrUpdateTags": 1,
    }
    actual = _find_one(AutoScalingGroup(), cloud, changed)
    assert actual.props == changed.props

    cloud.calls.reset()
    AutoScalingGroup().delete(cloud, actual)
    assert cloud.calls.mutating() == {"autoscaling:DeleteAutoScalingGroup": 1}
    AutoScalingGroup().delete(cloud, actual)
    assert AutoScalingGroup().find(cloud, [desired]) == []


def test_auto_scaling_group_find_costs_the_same_for_one_or_five_groups(
    cloud: AwsCloud, other: AwsCloud
) -> None:
    net = _net(cloud)
    foreign = _create(LaunchTemplate(), other, _launch_template(other, net))
    _create(AutoScalingGroup(), other, _asg(other, net, foreign))
    igs = ("nodes-a", "nodes-b", "nodes-c", "nodes-d", "masters")
    groups = []
    for ig in igs:
        template = _create(LaunchTemplate(), cloud, _launch_template(cloud, net, ig))
        groups.append(_asg(cloud, net, template, ig))
    _create(AutoScalingGroup(), cloud, groups[0])
    one = _find_calls(AutoScalingGroup(), cloud, groups[:1])
    for resource in groups[1:]:
        _create(AutoScalingGroup(), cloud, resource)
    five = _find_calls(AutoScalingGroup(), cloud, groups)
    assert one == five == {"autoscaling:DescribeAutoScalingGroups": 1}
    found = _found(AutoScalingGroup(), cloud, groups)
    assert sorted(found) == sorted(g.name for g in groups)
    for resource in groups:
        assert found[resource.name].props == resource.props
    assert [a.name for a in AutoScalingGroup().find(other, [])] == [f"nodes.{OTHER}"]


def test_auto_scaling_group_delete_waits_until_the_group_is_gone(cloud: AwsCloud) -> None:
    net = _net(cloud)
    template = _create(LaunchTemplate(), cloud, _launch_template(cloud, net, user_data=None))
    desired = _asg(cloud, net, template, min_size=1, max_size=1)
    _create(AutoScalingGroup(), cloud, desired)
    AutoScalingGroup().delete(cloud, _find_one(AutoScalingGroup(), cloud, desired))
    assert (
        cloud.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[desired.name])[
            "AutoScalingGroups"
        ]
        == []
    )


def test_auto_scaling_group_launches_from_an_updated_template_version(cloud: AwsCloud) -> None:
    net = _net(cloud)
    _create(LaunchTemplate(), cloud, _launch_template(cloud, net))
    template = _update(
        LaunchTemplate(),
        cloud,
        _find_one(LaunchTemplate(), cloud, _launch_template(cloud, net)),
        _launch_template(cloud, net, instance_type="m5.large"),
    )
    desired = _asg(cloud, net, template, min_size=1, max_size=1)
    _create(AutoScalingGroup(), cloud, desired)
    assert _find_one(AutoScalingGroup(), cloud, desired).props == desired.props


def test_auto_scaling_group_spreads_instances_across_subnets(cloud: AwsCloud) -> None:
    net = _net(cloud)
    template = _create(LaunchTemplate(), cloud, _launch_template(cloud, net, user_data=None))
    _create(AutoScalingGroup(), cloud, _asg(cloud, net, template, min_size=2, max_size=2))
    reservations = cloud.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    subnets = {i["SubnetId"] for r in reservations["Reservations"] for i in r["Instances"]}
    assert subnets == set(net.subnets)


# --- EBSVolume ----------------------------------------------------------------------------------------------


def _volume(cloud: AwsCloud, member: str = "a", **changes: Any) -> Resource:
    name = f"{member}.etcd-main.{cloud.cluster_name}"
    props: dict[str, Any] = {
        "availability_zone": f"{cloud.region}{member}",
        "size": 20,
        "volume_type": "gp3",
        "encrypted": True,
        "iops": 3000,
        "throughput": 125,
        "tags": _tags(
            cloud,
            name,
            **{
                "k8s.io/etcd/main": f"{member}/a,b,c",
                "k8s.io/role/control-plane": "1",
                "k8s.io/role/master": "1",
            },
        ),
    }
    props.update(changes)
    return Resource("EBSVolume", name, props)


def test_ebs_volume_lifecycle(cloud: AwsCloud) -> None:
    desired = _volume(cloud)
    attrs = _create(EBSVolume(), cloud, desired)
    assert attrs["id"].startswith("vol-")
    actual = _find_one(EBSVolume(), cloud, desired)
    assert actual.props == desired.props
    assert actual.attrs == attrs

    bigger = _volume(cloud, size=40, tags={**desired.props["tags"], "team": "k8s"})
    _update(EBSVolume(), cloud, actual, bigger)
    assert cloud.calls.mutating() == {"ec2:ModifyVolume": 1, "ec2:CreateTags": 1}
    actual = _find_one(EBSVolume(), cloud, bigger)
    assert actual.props == bigger.props

    faster = _volume(cloud, size=40, iops=6000, throughput=250, tags=bigger.props["tags"])
    _update(EBSVolume(), cloud, actual, faster)
    assert cloud.calls.mutating() == {"ec2:ModifyVolume": 1}
    actual = _find_one(EBSVolume(), cloud, faster)
    assert actual.props == faster.props

    with pytest.raises(
        PykopsError, match=r"cannot shrink EBS volume a\.etcd-main\.c1\.example\.com .* 40 GiB to 10 GiB"
    ):
        _update(EBSVolume(), cloud, actual, _volume(cloud, size=10, iops=6000, throughput=250))
    assert cloud.calls.mutating() == {}

    EBSVolume().delete(cloud, actual)
    EBSVolume().delete(cloud, actual)
    assert EBSVolume().find(cloud, [desired]) == []


def test_ebs_volume_in_use_is_retryable(cloud: AwsCloud) -> None:
    net = _net(cloud)
    desired = _volume(cloud)
    volume = _create(EBSVolume(), cloud, desired)["id"]
    zone_a = cloud.ec2.describe_subnets(
        SubnetIds=net.subnets, Filters=[{"Name": "availability-zone", "Values": [f"{cloud.region}a"]}]
    )["Subnets"][0]["SubnetId"]  # a volume attaches only to an instance in its own zone
    instance = cloud.ec2.run_instances(ImageId=net.ami, MinCount=1, MaxCount=1, SubnetId=zone_a)["Instances"][
        0
    ]["InstanceId"]
    cloud.ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/xvdf")
    with pytest.raises(RetryableError, match="still attached") as err:
        EBSVolume().delete(cloud, _find_one(EBSVolume(), cloud, desired))
    assert err.value.code == "VolumeInUse"


def test_ebs_volume_find_costs_the_same_for_one_or_five(cloud: AwsCloud, other: AwsCloud) -> None:
    _create(EBSVolume(), other, _volume(other))
    cloud.ec2.create_volume(AvailabilityZone=f"{cloud.region}a", Size=1)  # untagged
    volumes = [_volume(cloud, m) for m in "abc"] + [
        Resource("EBSVolume", f"{m}.etcd-events.{CLUSTER}", {**_volume(cloud, m).props, "size": 10})
        for m in "ab"
    ]
    for v in volumes[3:]:
        v.props["tags"] = {**v.props["tags"], "Name": v.name}
    _create(EBSVolume(), cloud, volumes[0])
    one = _find_calls(EBSVolume(), cloud, volumes[:1])
    for v in volumes[1:]:
        _create(EBSVolume(), cloud, v)
    five = _find_calls(EBSVolume(), cloud, volumes)
    assert one == five == {"ec2:DescribeVolumes": 1}
    found = _found(EBSVolume(), cloud, volumes)
    assert sorted(found) == sorted(v.name for v in volumes)
    for v in volumes:
        assert found[v.name].props == v.props
    assert [a.name for a in EBSVolume().find(other, [])] == [f"a.etcd-main.{OTHER}"]


def test_ebs_volume_create_is_idempotent(cloud: AwsCloud) -> None:
    desired = _volume(cloud)
    assert _create(EBSVolume(), cloud, desired) == _create(EBSVolume(), cloud, desired)


# --- load balancer ------------------------------------------------------------------------------------------


def test_elb_name() -> None:
    digest = hashlib.sha256(b"c1.example.com").hexdigest()[:6]
    assert elb_name("api", "c1.example.com") == f"api-c1-example-com-{digest}"  # the hash is always there
    assert elb_name("tcp", "c1.example.com") == f"tcp-c1-example-com-{digest}"
    long_cluster = "a-very-long-cluster-name.production.example.com"
    for prefix in ("api", "tcp"):
        name = elb_name(prefix, long_cluster)
        assert len(name) == 32
        assert name.startswith(f"{prefix}-a-very-long-cluster-")
        assert name == elb_name(prefix, long_cluster)
        assert all(c.isalnum() or c == "-" for c in name) and not name.startswith("-") and "--" not in name
    # two clusters that only differ after the cut still get different names
    assert elb_name("api", long_cluster) != elb_name("api", long_cluster.replace("example", "elpmaxe"))


def _load_balancer(cloud: AwsCloud, net: Net, **changes: Any) -> Resource:
    name = f"api.{cloud.cluster_name}"
    props: dict[str, Any] = {
        "load_balancer_name": elb_name("api", cloud.cluster_name),
        "scheme": "internet-facing",
        "subnets": net.subnets,
        "security_groups": [net.sg],
        "tags": _tags(cloud, name),
    }
    props.update(changes)
    return Resource("NetworkLoadBalancer", name, props)


def _listener(cloud: AwsCloud, lb: str, tg: str) -> Resource:
    return Resource(
        "Listener",
        f"api.{cloud.cluster_name}/443",
        {"load_balancer": lb, "port": 443, "protocol": "TCP", "target_group": tg},
    )


def test_load_balancer_lifecycle(cloud: AwsCloud) -> None:
    net = _net(cloud)
    tg_desired = _target_group(cloud, net)
    tg = _create(TargetGroup(), cloud, tg_desired)
    assert tg["id"] == tg["arn"] and ":targetgroup/" in tg["arn"]
    actual_tg = _find_one(TargetGroup(), cloud, tg_desired)
    assert actual_tg.props == tg_desired.props
    assert actual_tg.attrs == tg

    lb_desired = _load_balancer(cloud, net)
    lb = _create(NetworkLoadBalancer(), cloud, lb_desired)
    assert lb["id"] == lb["arn"] and lb["dns_name"]
    actual_lb = _find_one(NetworkLoadBalancer(), cloud, lb_desired)
    assert actual_lb.props == lb_desired.props
    assert actual_lb.attrs == lb

    listener_desired = _listener(cloud, lb["arn"], tg["arn"])
    listener = _create(Listener(), cloud, listener_desired)
    actual_listener = _find_one(Listener(), cloud, listener_desired)
    assert actual_listener.props == listener_desired.props
    assert actual_listener.attrs == listener

    # updates: health check port, load balancer tags, listener to another target group
    tg_changed = Resource(
        "TargetGroup",
        tg_desired.name,
        {**tg_desired.props, "health_check": {"protocol": "TCP", "port": "traffic-port"}},
    )
    _update(TargetGroup(), cloud, actual_tg, tg_changed)
    assert cloud.calls.mutating() == {"elbv2:ModifyTargetGroup": 1}
    assert _find_one(TargetGroup(), cloud, tg_changed).props == tg_changed.props

    lb_changed = _load_balancer(cloud, net, tags={**lb_desired.props["tags"], "team": "k8s"})
    _update(NetworkLoadBalancer(), cloud, actual_lb, lb_changed)
    assert cloud.calls.mutating() == {"elbv2:AddTags": 1}
    assert _find_one(NetworkLoadBalancer(), cloud, lb_changed).props == lb_changed.props

    tg2 = _create(TargetGroup(), cloud, _target_group(cloud, net, "tcp2"))
    listener_changed = _listener(cloud, lb["arn"], tg2["arn"])
    _update(Listener(), cloud, actual_listener, listener_changed)
    assert cloud.calls.mutating() == {"elbv2:ModifyListener": 1}
    assert _find_one(Listener(), cloud, listener_changed).props == listener_changed.props

    for kind, actual in (
        (Listener(), actual_listener),
        (NetworkLoadBalancer(), actual_lb),
        (TargetGroup(), actual_tg),
    ):
        kind.delete(cloud, actual)
        kind.delete(cloud, actual)
    assert Listener().find(cloud, []) == []
    assert NetworkLoadBalancer().find(cloud, []) == []
    assert [a.name for a in TargetGroup().find(cloud, [])] == [f"tcp2.{CLUSTER}"]


def test_load_balancer_find_calls_and_other_clusters(cloud: AwsCloud, other: AwsCloud) -> None:
    net = _net(cloud)
    for owner in (other, cloud):
        tg = _create(TargetGroup(), owner, _target_group(owner, net))
        lb = _create(NetworkLoadBalancer(), owner, _load_balancer(owner, net))
        _create(Listener(), owner, _listener(owner, lb["arn"], tg["arn"]))
    cloud.elbv2.create_target_group(Name="untagged", Protocol="TCP", Port=80, VpcId=net.vpc)
    assert _find_calls(NetworkLoadBalancer(), cloud, []) == {
        "elbv2:DescribeLoadBalancers": 1,
        "elbv2:DescribeTags": 1,
    }
    assert _find_calls(TargetGroup(), cloud, []) == {
        "elbv2:DescribeTargetGroups": 1,
        "elbv2:DescribeTags": 1,
    }
    assert _find_calls(Listener(), cloud, []) == {
        "elbv2:DescribeLoadBalancers": 1,
        "elbv2:DescribeTags": 1,
        "elbv2:DescribeListeners": 1,
    }
    assert [a.name for a in NetworkLoadBalancer().find(cloud, [])] == [f"api.{CLUSTER}"]
    assert [a.name for a in TargetGroup().find(cloud, [])] == [f"tcp.{CLUSTER}"]
    assert [a.name for a in Listener().find(cloud, [])] == [f"api.{CLUSTER}/443"]
    assert [a.name for a in Listener().find(other, [])] == [f"api.{OTHER}/443"]


def test_network_load_balancer_arn(cloud: AwsCloud) -> None:
    lb = _create(NetworkLoadBalancer(), cloud, _load_balancer(cloud, _net(cloud)))
    assert ":loadbalancer/net/" in lb["arn"]


# --- images -------------------------------------------------------------------------------------------------


def test_resolve_images(cloud: AwsCloud) -> None:
    ami = _ami(cloud, "pykops/test-image-20250101", "/dev/sda1")
    _ami(cloud, "pykops/test-image-20240101", "/dev/xvda")
    cloud.calls.reset()
    by_name = f"{ACCOUNT}/pykops/test-image-20250101"
    ubuntu = "ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721"  # one of moto's public AMIs
    resolved = resolve_images(cloud, [ami, by_name, f"ubuntu/{ubuntu}", f"099720109477/{ubuntu}"])
    assert cloud.calls.counts == {"ec2:DescribeImages": 2}  # ami- ids, then all owner/name images
    assert resolved[ami].id == ami and resolved[by_name].id == ami
    assert resolved[ami].root_device_name == "/dev/sda1"
    assert resolved[f"ubuntu/{ubuntu}"] == resolved[f"099720109477/{ubuntu}"]
    assert resolved[f"ubuntu/{ubuntu}"].owner_id == "099720109477"

    cloud.calls.reset()
    names = [f"{ACCOUNT}/pykops/test-image-20240101", f"{ACCOUNT}/pykops/test-image-*", f"ubuntu/{ubuntu}"]
    resolved = resolve_images(cloud, names)
    assert cloud.calls.counts == {"ec2:DescribeImages": 1}
    assert resolved[names[0]].root_device_name == "/dev/xvda"
    assert resolved[names[1]].name in (
        "pykops/test-image-20250101",
        "pykops/test-image-20240101",
    )  # the newest


def test_resolve_images_unknown_image(cloud: AwsCloud) -> None:
    _ami(cloud, "pykops/test-image", "/dev/sda1")
    with pytest.raises(
        SpecError,
        match=r"image '099720109477/pykops/test-image' not found in region eu-west-1: check spec.image",
    ):
        resolve_images(cloud, ["099720109477/pykops/test-image"])  # right name, wrong owner
    with pytest.raises(SpecError, match="image 'ami-0123456789abcdef0' not found"):
        resolve_images(cloud, ["ami-0123456789abcdef0"])
