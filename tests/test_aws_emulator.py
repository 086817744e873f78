"""The local AWS emulator: lifecycle, and the AWS behaviours its fidelity fixes restore (over HTTP)."""

from __future__ import annotations

import base64
import collections
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from pykops.sandbox.aws_emulator import FIX_NAMES, AwsEmulator, AwsEmulatorError, main

REGION = "eu-west-1"


def _client(endpoint_url: str | None = None, region: str = REGION) -> Any:
    """An S3 client; without endpoint_url it finds the emulator through AWS_ENDPOINT_URL (aws_env)."""
    kwargs: dict[str, Any] = {"region_name": region}
    if endpoint_url is not None:
        kwargs.update(endpoint_url=endpoint_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.session.Session().client("s3", **kwargs)


def _bucket(s3: Any, region: str = REGION) -> str:
    name = f"pykops-emu-{uuid.uuid4().hex[:16]}"
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = err.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# --- lifecycle ----------------------------------------------------------------------------------------------


def test_start_env_and_stop() -> None:
    emulator = AwsEmulator().start()
    try:
        assert emulator.running
        assert emulator.endpoint_url.startswith("http://127.0.0.1:")
        env = emulator.env()
        assert env["AWS_ENDPOINT_URL"] == emulator.endpoint_url
        assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "eu-west-1"
        assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
        assert "127.0.0.1" in env["NO_PROXY"].split(",")
        assert emulator.health() == {"status": "ok", "fixes": list(FIX_NAMES)}
        s3 = _client(emulator.endpoint_url)
        assert s3.list_buckets()["Buckets"] == []
        pid = emulator._proc.pid if emulator._proc else 0
    finally:
        emulator.stop()
    assert not emulator.running
    assert not _alive(pid)
    with pytest.raises(AwsEmulatorError, match="not started"):
        _ = emulator.endpoint_url
    emulator.stop()  # idempotent


def test_context_manager_and_explicit_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with AwsEmulator().start(port=port) as emulator:
        assert emulator.endpoint_url == f"http://127.0.0.1:{port}"
        assert emulator.health()["status"] == "ok"
    assert not emulator.running


def test_start_fails_clearly_when_the_child_dies() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        emulator = AwsEmulator()
        with pytest.raises(AwsEmulatorError) as err:
            emulator.start(port=port)
    message = str(err.value)
    assert "the AWS emulator exited with code" in message
    assert "Address already in use" in message  # the child's stderr tail
    assert not emulator.running


def test_only_loopback_addresses() -> None:
    with pytest.raises(AwsEmulatorError, match="only binds a loopback address"):
        AwsEmulator(host="0.0.0.0")
    assert main(["--host", "10.1.2.3", "--port", "0"]) == 2


def test_unknown_fix_is_refused() -> None:
    with pytest.raises(AwsEmulatorError, match="unknown fidelity fix 'nope'"):
        AwsEmulator(fixes=["nope"])


def test_child_exits_when_its_parent_goes_away() -> None:
    emulator = AwsEmulator().start()
    try:
        assert emulator._proc is not None and emulator._proc.stdin is not None
        emulator._proc.stdin.close()  # what the kernel does when our process dies
        emulator._proc.wait(timeout=10)
    finally:
        emulator.stop()


def test_reset_forgets_everything() -> None:
    with AwsEmulator() as emulator:
        s3 = _client(emulator.endpoint_url)
        _bucket(s3)
        emulator.reset()
        assert s3.list_buckets()["Buckets"] == []


# --- S3 behaviour pykops relies on (plain moto already gets these right; they guard against regressions) ----


def test_create_with_if_none_match_gets_412_the_second_time(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert _error(err) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


def test_update_with_if_match(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["ETag"]
    new_etag = s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch=etag)["ETag"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=etag)
    assert _error(err) == (412, "PreconditionFailed")
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == new_etag
    with pytest.raises(ClientError) as err:  # AWS: If-Match on a missing key is 404 NoSuchKey
        s3.put_object(Bucket=bucket, Key="absent", Body=b"1", IfMatch=etag)
    assert _error(err) == (404, "NoSuchKey")


def test_delete_with_stale_if_match_gets_412(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert _error(err) == (412, "PreconditionFailed")


def test_bucket_location(aws_env: AwsEmulator) -> None:
    s3 = _client()
    us_east_1 = _bucket(_client(region="us-east-1"), "us-east-1")
    assert s3.get_bucket_location(Bucket=us_east_1)["LocationConstraint"] is None  # not "us-east-1"
    assert s3.get_bucket_location(Bucket=_bucket(s3))["LocationConstraint"] == REGION
    with pytest.raises(ClientError) as err:
        s3.get_bucket_location(Bucket="pykops-no-such-bucket-4711")
    assert _error(err) == (404, "NoSuchBucket")


# --- fidelity fixes: each test shows the AWS behaviour, and what plain moto does without the fix -----------


@pytest.fixture(scope="module")
def slow_writes_fixed() -> Iterator[AwsEmulator]:
    """All fixes, with a sleep between PutObject's precondition check and its write (fault injection)."""
    with AwsEmulator(s3_write_delay=0.2) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def slow_writes_plain_moto() -> Iterator[AwsEmulator]:
    """No fixes at all, and the same injected delay."""
    with AwsEmulator(fixes=(), s3_write_delay=0.2) as emulator:
        yield emulator


def _race_puts(endpoint_url: str, writers: int, **condition: str) -> tuple[list[str], Any, str]:
    """``writers`` clients put the same key at once with ``condition``; return outcomes, client, bucket."""
    s3 = _client(endpoint_url)
    bucket = _bucket(s3)
    if "IfMatch" in condition:
        condition = {"IfMatch": s3.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]}
    clients = [_client(endpoint_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def put(n: int) -> None:
        barrier.wait()
        try:
            clients[n].put_object(Bucket=bucket, Key="k", Body=f"writer {n}".encode(), **condition)
            outcome = f"win:{n}"
        except ClientError as err:
            outcome = str(err.response["Error"]["Code"])
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes, s3, bucket


@pytest.mark.parametrize("condition", [{"IfNoneMatch": "*"}, {"IfMatch": "<etag of base>"}])
def test_racing_conditional_writes_are_atomic(
    slow_writes_fixed: AwsEmulator, condition: dict[str, str]
) -> None:
    """AWS: of concurrent conditional PutObjects, exactly one succeeds; the others get 412 (or 409)."""
    started = time.monotonic()
    outcomes, s3, bucket = _race_puts(slow_writes_fixed.endpoint_url, 4, **condition)
    winners = [o for o in outcomes if o.startswith("win:")]
    assert len(winners) == 1, outcomes
    assert sorted(o for o in outcomes if not o.startswith("win:")) == ["PreconditionFailed"] * 3
    body = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == f"writer {winners[0][4:]}".encode()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("condition", [{"IfNoneMatch": "*"}, {"IfMatch": "<etag of base>"}])
def test_racing_conditional_writes_without_fix_can_both_succeed(
    slow_writes_plain_moto: AwsEmulator, condition: dict[str, str]
) -> None:
    """Plain moto checks the precondition and writes in two unsynchronised steps: several writers win.

    If this starts failing, moto has fixed the race and the s3-atomic-requests fix can be retired.
    """
    outcomes, _, _ = _race_puts(slow_writes_plain_moto.endpoint_url, 4, **condition)
    assert len([o for o in outcomes if o.startswith("win:")]) > 1, outcomes


def test_delete_if_match_star(aws_env: AwsEmulator) -> None:
    """AWS: DeleteObject with If-Match: * deletes an existing object; 404 NoSuchKey if there is none."""
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    assert s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert _error(err) == (404, "NoSuchKey")


def test_delete_if_match_star_without_fix(slow_writes_plain_moto: AwsEmulator) -> None:
    s3 = _client(slow_writes_plain_moto.endpoint_url)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert _error(err) == (412, "PreconditionFailed")  # plain moto treats '*' as an ETag


def _deny_objects(s3: Any, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_bucket_policy_denial_is_access_denied(aws_env: AwsEmulator) -> None:
    """AWS: a request denied by the bucket policy is 403 with error code AccessDenied."""
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    _deny_objects(s3, bucket)
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key="k"),
        lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"2"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert _error(err) == (403, "AccessDenied")


def test_bucket_policy_denial_without_fix(slow_writes_plain_moto: AwsEmulator) -> None:
    s3 = _client(slow_writes_plain_moto.endpoint_url)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    _deny_objects(s3, bucket)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k")
    assert _error(err) == (403, "403")  # plain moto: empty body, so no error code


# --- EC2, Auto Scaling and IAM fidelity fixes -------------------------------------------------------------
# Each test shows the AWS behaviour on the session emulator (all fixes); its "..._without_fix" twin shows
# what plain moto (no fixes: the plain_moto fixture of conftest.py) does instead. When a "..._without_fix"
# test fails, moto has fixed the behaviour and the fix can be retired.

ACCOUNT = "123456789012"  # moto's default account: the one the fake credentials act as


def _aws(endpoint_url: str, service: str, **credentials: str) -> Any:
    """A client for ``service`` with no retries (a 500 must show at once)."""
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=credentials.get("access_key", "testing"),
        aws_secret_access_key=credentials.get("secret_key", "testing"),
        aws_session_token=credentials.get("session_token"),
        config=Config(retries={"total_max_attempts": 1}),
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _subnets(ec2: Any, zones: str = "abc") -> list[str]:
    """A new VPC with one subnet in each of eu-west-1<zones>."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")[
            "Subnet"
        ]["SubnetId"]
        for n, zone in enumerate(zones)
    ]


def _image_id(ec2: Any) -> str:
    return "ami-12c6146b"  # one of moto's preloaded images (moto's EXAMPLE_AMI_ID)


def _template(ec2: Any, **data: Any) -> str:
    template_data = {"ImageId": _image_id(ec2), "InstanceType": "t3.micro", **data}
    response = ec2.create_launch_template(LaunchTemplateName=_unique("lt"), LaunchTemplateData=template_data)
    return str(response["LaunchTemplate"]["LaunchTemplateId"])


def _group(asg: Any, template: str, version: str, desired: int, **placement: Any) -> str:
    name = _unique("asg")
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template, "Version": version},
        MinSize=0,
        MaxSize=12,
        DesiredCapacity=desired,
        **placement,
    )
    return name


def _members(asg: Any, name: str) -> list[dict[str, Any]]:
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return list(groups[0]["Instances"])


def _instances(ec2: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def _user_data(ec2: Any, instance_id: str) -> str:
    value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(value).decode()


# ec2-launch-template-version-user-data


def test_group_launches_from_a_new_template_version_with_user_data(aws_emulator: AwsEmulator) -> None:
    """AWS: a version made by CreateLaunchTemplateVersion launches with its own user data."""
    ec2, asg = _aws(aws_emulator.endpoint_url, "ec2"), _aws(aws_emulator.endpoint_url, "autoscaling")
    template = _template(ec2, UserData=_b64("#!/bin/sh\necho v1\n"))
    ec2.create_launch_template_version(
        LaunchTemplateId=template,
        LaunchTemplateData={
            "ImageId": _image_id(ec2),
            "InstanceType": "t3.micro",
            "UserData": _b64("#!/bin/sh\necho v2\n"),
        },
    )
    version = ec2.describe_launch_template_versions(LaunchTemplateId=template, Versions=["2"])
    assert version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"] == _b64(
        "#!/bin/sh\necho v2\n"
    )
    for spec in ("2", "$Latest"):
        group = _group(asg, template, spec, 2, AvailabilityZones=[f"{REGION}a"])
        members = _members(asg, group)
        assert len(members) == 2
        assert {_user_data(ec2, m["InstanceId"]) for m in members} == {"#!/bin/sh\necho v2\n"}
    with pytest.raises(ClientError) as err:  # AWS refuses malformed base64 when the version is created
        ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={"UserData": "%%%"})
    assert _error(err) == (400, "InvalidUserData.Malformed")


def test_group_launch_from_a_new_template_version_without_fix(
    plain_moto: AwsEmulator,
) -> None:
    endpoint = plain_moto.endpoint_url
    ec2, asg = _aws(endpoint, "ec2"), _aws(endpoint, "autoscaling")
    template = _template(ec2)
    ec2.create_launch_template_version(
        LaunchTemplateId=template,
        LaunchTemplateData={
            "ImageId": _image_id(ec2),
            "InstanceType": "t3.micro",
            "UserData": _b64("echo v2"),
        },
    )
    with pytest.raises((ClientError, ResponseParserError)) as err:
        _group(asg, template, "2", 1, AvailabilityZones=[f"{REGION}a"])
    assert "500" in str(err.value) or "Internal Server Error" in str(err.value)  # moto's AssertionError


# ec2-launch-template-source-version


def test_create_template_version_from_a_source_version(aws_emulator: AwsEmulator) -> None:
    """AWS: the new version inherits the source version's data; the given data overrides it."""
    ec2 = _aws(aws_emulator.endpoint_url, "ec2")
    image = _image_id(ec2)
    template = _template(ec2, UserData=_b64("echo v1"), KeyName="ops")
    ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.small"}
    )
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template, Versions=["2"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["ImageId"] == image
    assert data["InstanceType"] == "t3.small"
    assert data["KeyName"] == "ops"
    assert data["UserData"] == _b64("echo v1")
    with pytest.raises(ClientError) as err:
        ec2.create_launch_template_version(
            LaunchTemplateId=template, SourceVersion="9", LaunchTemplateData={"InstanceType": "t3.small"}
        )
    assert _error(err)[0] == 400
    assert "VersionNotFound" in _error(err)[1]


def test_create_template_version_from_a_source_version_without_fix(
    plain_moto: AwsEmulator,
) -> None:
    ec2 = _aws(plain_moto.endpoint_url, "ec2")
    template = _template(ec2, KeyName="ops")
    ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.small"}
    )
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template, Versions=["2"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data == {"InstanceType": "t3.small"}  # plain moto: nothing inherited


# autoscaling-balance-zones


def _zones(asg: Any, name: str) -> collections.Counter[str]:
    return collections.Counter(m["AvailabilityZone"] for m in _members(asg, name))


def test_group_balances_instances_over_its_zones(aws_emulator: AwsEmulator) -> None:
    """AWS: instances spread evenly over the group's zones, in the group's subnets; scale-in keeps it even."""
    ec2, asg = _aws(aws_emulator.endpoint_url, "ec2"), _aws(aws_emulator.endpoint_url, "autoscaling")
    subnets = _subnets(ec2)
    group = _group(asg, _template(ec2), "$Latest", 6, VPCZoneIdentifier=",".join(subnets))
    assert _zones(asg, group) == {f"{REGION}a": 2, f"{REGION}b": 2, f"{REGION}c": 2}
    members = _members(asg, group)
    instances = _instances(ec2, [m["InstanceId"] for m in members])
    assert collections.Counter(i["SubnetId"] for i in instances.values()) == {s: 2 for s in subnets}
    for instance in instances.values():
        zone = instance["Placement"]["AvailabilityZone"]
        assert instance["SubnetId"] == subnets["abc".index(zone[-1])]
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=7)
    assert sorted(_zones(asg, group).values()) == [2, 2, 3]
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)
    assert _zones(asg, group) == {f"{REGION}a": 1, f"{REGION}b": 1, f"{REGION}c": 1}
    zones_only = _group(asg, _template(ec2), "$Latest", 4, AvailabilityZones=[f"{REGION}a", f"{REGION}b"])
    assert _zones(asg, zones_only) == {f"{REGION}a": 2, f"{REGION}b": 2}


def test_group_balances_instances_over_its_zones_without_fix(
    plain_moto: AwsEmulator,
) -> None:
    endpoint = plain_moto.endpoint_url
    ec2, asg = _aws(endpoint, "ec2"), _aws(endpoint, "autoscaling")
    subnets = _subnets(ec2)
    group = _group(asg, _template(ec2), "$Latest", 6, VPCZoneIdentifier=",".join(subnets))
    assert _zones(asg, group) == {f"{REGION}a": 6}  # plain moto: everything in the first subnet


# autoscaling-instance-template-version


def test_instances_report_the_template_version_they_were_launched_from(aws_emulator: AwsEmulator) -> None:
    """AWS: each instance reports (and is tagged with) the version it was launched from, not the default."""
    ec2, asg = _aws(aws_emulator.endpoint_url, "ec2"), _aws(aws_emulator.endpoint_url, "autoscaling")
    template = _template(ec2)
    group = _group(asg, template, "$Latest", 2, AvailabilityZones=[f"{REGION}a", f"{REGION}b"])
    first = {m["InstanceId"] for m in _members(asg, group)}
    ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.small"}
    )
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=3)
    members = {m["InstanceId"]: m for m in _members(asg, group)}
    (new,) = set(members) - first
    assert {i: m["LaunchTemplate"]["Version"] for i, m in members.items()} == {
        **dict.fromkeys(first, "1"),
        new: "2",
    }
    described = asg.describe_auto_scaling_instances(InstanceIds=list(members))["AutoScalingInstances"]
    assert {d["InstanceId"]: d["LaunchTemplate"]["Version"] for d in described} == {
        i: m["LaunchTemplate"]["Version"] for i, m in members.items()
    }
    instances = _instances(ec2, list(members))
    assert _tag(instances[new], "aws:ec2launchtemplate:version") == "2"
    assert instances[new]["InstanceType"] == "t3.small"
    assert {_tag(instances[i], "aws:ec2launchtemplate:version") for i in first} == {"1"}
    # Making version 2 the default changes nothing for the instances already running.
    ec2.modify_launch_template(LaunchTemplateId=template, DefaultVersion="2")
    assert {m["InstanceId"]: m["LaunchTemplate"]["Version"] for m in _members(asg, group)} == {
        **dict.fromkeys(first, "1"),
        new: "2",
    }


def test_instances_report_the_template_version_without_fix(
    plain_moto: AwsEmulator,
) -> None:
    endpoint = plain_moto.endpoint_url
    ec2, asg = _aws(endpoint, "ec2"), _aws(endpoint, "autoscaling")
    template = _template(ec2)
    group = _group(asg, template, "$Latest", 1, AvailabilityZones=[f"{REGION}a"])
    ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.small"}
    )
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=2)
    members = _members(asg, group)
    assert [m["LaunchTemplate"]["Version"] for m in members] == ["1", "1"]  # plain moto: the default version
    instances = _instances(ec2, [m["InstanceId"] for m in members])
    assert {_tag(i, "aws:ec2launchtemplate:version") for i in instances.values()} == {"1"}


# autoscaling-replace-unhealthy


def _in_service(ec2: Any, asg: Any, name: str) -> dict[str, str]:
    """The group's members: instance id -> EC2 state; each must be InService."""
    members = _members(asg, name)
    assert {m["LifecycleState"] for m in members} <= {"InService"}
    instances = _instances(ec2, [m["InstanceId"] for m in members])
    return {i: instance["State"]["Name"] for i, instance in instances.items()}


def test_group_replaces_terminated_instances(aws_emulator: AwsEmulator) -> None:
    """AWS: a group replaces an instance terminated through EC2 or through Auto Scaling (no decrement).

    Plain moto does this too (test_group_replaces_terminated_instances_without_fix): a regression guard.
    """
    _check_terminated_instances_are_replaced(aws_emulator.endpoint_url)


def test_group_replaces_terminated_instances_without_fix(plain_moto: AwsEmulator) -> None:
    _check_terminated_instances_are_replaced(plain_moto.endpoint_url)


def _check_terminated_instances_are_replaced(endpoint: str) -> None:
    ec2, asg = _aws(endpoint, "ec2"), _aws(endpoint, "autoscaling")
    group = _group(asg, _template(ec2), "$Latest", 2, AvailabilityZones=[f"{REGION}a", f"{REGION}b"])
    first, second = _in_service(ec2, asg, group)
    ec2.terminate_instances(InstanceIds=[first])
    members = _in_service(ec2, asg, group)
    assert len(members) == 2 and first not in members and second in members
    assert set(members.values()) == {"running"}
    asg.terminate_instance_in_auto_scaling_group(InstanceId=second, ShouldDecrementDesiredCapacity=False)
    members = _in_service(ec2, asg, group)
    assert len(members) == 2 and second not in members
    assert _instances(ec2, [first, second])[second]["State"]["Name"] in ("shutting-down", "terminated")


def test_group_replaces_stopped_and_unhealthy_instances(aws_emulator: AwsEmulator) -> None:
    """AWS: a stopped instance, or one set Unhealthy, is terminated and replaced by the health checks."""
    ec2, asg = _aws(aws_emulator.endpoint_url, "ec2"), _aws(aws_emulator.endpoint_url, "autoscaling")
    group = _group(asg, _template(ec2), "$Latest", 2, AvailabilityZones=[f"{REGION}a", f"{REGION}b"])
    first, second = _in_service(ec2, asg, group)
    ec2.stop_instances(InstanceIds=[first])
    members = _in_service(ec2, asg, group)  # the next request sees the health check's work
    assert len(members) == 2 and first not in members and set(members.values()) == {"running"}
    asg.set_instance_health(InstanceId=second, HealthStatus="Unhealthy")
    members = _in_service(ec2, asg, group)
    assert len(members) == 2 and second not in members and set(members.values()) == {"running"}
    assert {m["HealthStatus"] for m in _members(asg, group)} == {"Healthy"}
    old = _instances(ec2, [first, second])
    assert {old[first]["State"]["Name"], old[second]["State"]["Name"]} == {"terminated"}
    # A replacement also shows up when the next call is an EC2 one.
    (third, _) = members
    ec2.stop_instances(InstanceIds=[third])
    tagged = ec2.describe_instances(
        Filters=[
            {"Name": "tag:aws:autoscaling:groupName", "Values": [group]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )["Reservations"]
    running = {i["InstanceId"] for r in tagged for i in r["Instances"]}
    assert len(running) == 2 and third not in running


def test_group_replaces_stopped_instances_without_fix(plain_moto: AwsEmulator) -> None:
    endpoint = plain_moto.endpoint_url
    ec2, asg = _aws(endpoint, "ec2"), _aws(endpoint, "autoscaling")
    group = _group(asg, _template(ec2), "$Latest", 2, AvailabilityZones=[f"{REGION}a", f"{REGION}b"])
    first, second = _in_service(ec2, asg, group)
    ec2.stop_instances(InstanceIds=[first])
    asg.set_instance_health(InstanceId=second, HealthStatus="Unhealthy")
    # plain moto: the stopped instance stays InService, the unhealthy one stays; no replacement
    assert _in_service(ec2, asg, group) == {first: "stopped", second: "running"}


# ec2-register-image-attributes and ec2-shared-public-images


def _as_account(endpoint: str, account: str) -> Any:
    """An EC2 client acting as ``account`` (moto's STS AssumeRole switches accounts)."""
    credentials = _aws(endpoint, "sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/publisher", RoleSessionName="test"
    )["Credentials"]
    return _aws(
        endpoint,
        "ec2",
        access_key=credentials["AccessKeyId"],
        secret_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )


def _register(ec2: Any, name: str, **attributes: Any) -> str:
    return str(ec2.register_image(Name=name, **attributes)["ImageId"])


def test_register_image_keeps_its_attributes(aws_emulator: AwsEmulator) -> None:
    """AWS: RegisterImage records architecture, root device, virtualization type, boot mode and tags."""
    ec2 = _aws(aws_emulator.endpoint_url, "ec2")
    image_id = _register(
        ec2,
        _unique("image"),
        Architecture="arm64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        BootMode="uefi",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, "VolumeType": "gp3"}}],
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "team", "Value": "ops"}]}],
    )
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["OwnerId"] == ACCOUNT
    assert (image["Architecture"], image["RootDeviceName"], image["RootDeviceType"]) == (
        "arm64",
        "/dev/xvda",
        "ebs",
    )
    assert (image["VirtualizationType"], image["BootMode"]) == ("hvm", "uefi")
    assert image["Tags"] == [{"Key": "team", "Value": "ops"}]
    (bare,) = ec2.describe_images(ImageIds=[_register(ec2, _unique("image"))])["Images"]
    assert (bare["Architecture"], bare["VirtualizationType"]) == ("i386", "paravirtual")  # AWS' defaults


def test_register_image_keeps_its_attributes_without_fix(plain_moto: AwsEmulator) -> None:
    ec2 = _aws(plain_moto.endpoint_url, "ec2")
    image_id = _register(ec2, _unique("image"), Architecture="arm64", RootDeviceName="/dev/xvda")
    (image,) = ec2.describe_images(ImageIds=[image_id])["Images"]
    assert "Architecture" not in image  # plain moto forgets it
    assert image["RootDeviceName"] == "/dev/sda1"


def test_public_images_of_other_accounts_are_visible(aws_emulator: AwsEmulator) -> None:
    """AWS: another account's public image can be described and launched; so can one shared with us."""
    endpoint = aws_emulator.endpoint_url
    publisher = _as_account(endpoint, "210987654321")
    name = _unique("published")
    public = _register(publisher, name, Architecture="arm64", RootDeviceName="/dev/xvda")
    private = _register(publisher, name + "-private", Architecture="x86_64")
    shared = _register(publisher, name + "-shared", Architecture="x86_64")
    ec2 = _aws(endpoint, "ec2")
    by_name = [{"Name": "name", "Values": [name + "*"]}]
    assert ec2.describe_images(Owners=["210987654321"], Filters=by_name)["Images"] == []
    publisher.modify_image_attribute(ImageId=public, LaunchPermission={"Add": [{"Group": "all"}]})
    publisher.modify_image_attribute(ImageId=shared, LaunchPermission={"Add": [{"UserId": ACCOUNT}]})
    images = ec2.describe_images(Owners=["210987654321"], Filters=by_name)["Images"]
    assert {i["ImageId"] for i in images} == {public, shared}
    assert {i["OwnerId"] for i in images} == {"210987654321"}
    assert {i["ImageId"] for i in ec2.describe_images(Filters=by_name)["Images"]} == {public, shared}
    assert ec2.describe_images(ImageIds=[public])["Images"][0]["Architecture"] == "arm64"
    assert ec2.describe_images(Owners=["self"], Filters=by_name)["Images"] == []
    with pytest.raises(ClientError) as err:
        ec2.describe_images(ImageIds=[private])
    assert _error(err)[1] == "InvalidAMIID.NotFound"
    instance = ec2.run_instances(ImageId=public, MinCount=1, MaxCount=1, InstanceType="t4g.micro")[
        "Instances"
    ][0]
    assert (instance["ImageId"], instance["Architecture"]) == (public, "arm64")


def test_public_images_of_other_accounts_without_fix(plain_moto: AwsEmulator) -> None:
    endpoint = plain_moto.endpoint_url
    publisher = _as_account(endpoint, "210987654321")
    name = _unique("published")
    image_id = _register(publisher, name, Architecture="arm64")
    publisher.modify_image_attribute(ImageId=image_id, LaunchPermission={"Add": [{"Group": "all"}]})
    ec2 = _aws(endpoint, "ec2")
    assert (
        ec2.describe_images(Owners=["210987654321"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        == []
    )


# iam-aws-managed-policies

MANAGED_POLICIES = [
    "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    "arn:aws:iam::aws:policy/AmazonS3FullAccess",
    "arn:aws:iam::aws:policy/AmazonVPCFullAccess",
    "arn:aws:iam::aws:policy/IAMFullAccess",
]


def test_aws_managed_policies_exist(aws_emulator: AwsEmulator) -> None:
    """AWS: every account has the AWS managed policies, and roles can attach them."""
    iam = _aws(aws_emulator.endpoint_url, "iam")
    for arn in MANAGED_POLICIES:
        assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn
    role = _unique("role")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName=role, PolicyArn=MANAGED_POLICIES[0])
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert attached == [{"PolicyName": "AmazonEC2FullAccess", "PolicyArn": MANAGED_POLICIES[0]}]


def test_aws_managed_policies_without_fix(plain_moto: AwsEmulator) -> None:
    iam = _aws(plain_moto.endpoint_url, "iam")
    with pytest.raises(ClientError) as err:
        iam.get_policy(PolicyArn=MANAGED_POLICIES[0])
    assert _error(err) == (404, "NoSuchEntity")
