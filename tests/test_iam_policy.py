"""The least-privilege policy: derived from the code, covering every call pykops really makes, valid for IAM.

The static scan is checked twice: on small sources (each way the code reaches boto3), and against the
calls recorded (``CallLog``, botocore's ``before-call`` event) while a cluster is created, updated, scaled
and deleted in the AWS emulator, together with the state store's S3 calls and this issue's commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pykops.cli.main import main
from pykops.cloud.aws.cloud import AwsCloud
from pykops.ops import iam_policy
from pykops.ops.iam_policy import (
    MANAGED_POLICY_LIMIT,
    Operation,
    compact,
    policy_actions,
    policy_documents,
    scan_package,
    scan_source,
    used_operations,
)
from pykops.sandbox.aws_emulator import AwsEmulator

REGION = "eu-west-1"
NAME = "policy.k8s.local"
BUCKET = "pykops-policy-state"
STATE = f"s3://{BUCKET}"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl it@pykops\n"


# --- the scan, on small sources ---------------------------------------------------------------------------


def test_scan_finds_calls_paginators_bound_methods_and_waiters() -> None:
    source = """
import boto3
def f(cloud, retry):
    ec2 = cloud.client("ec2")
    ec2.describe_vpcs()
    for page in ec2.get_paginator("describe_instances").paginate():
        pass
    retry(cloud.ec2.create_subnet, CidrBlock="10.0.0.0/24")
    ec2.get_waiter("volume_available").wait()
    ops = [("describe_route_tables", "RouteTables")]
    cloud.elbv2.describe_target_groups()
    boto3.client("s3").list_objects_v2(Bucket="b")
    not_aws.frobnicate()
"""
    assert {(o.service, o.name) for o in scan_source(source)} == {
        ("ec2", "DescribeVpcs"),
        ("ec2", "DescribeInstances"),
        ("ec2", "CreateSubnet"),
        ("ec2", "DescribeVolumes"),  # the volume_available waiter polls DescribeVolumes
        ("ec2", "DescribeRouteTables"),
        ("elbv2", "DescribeTargetGroups"),
        ("s3", "ListObjectsV2"),
    }


def test_scan_ignores_modules_that_cannot_hold_a_client() -> None:
    # create_group is an IAM operation name, but this module never makes or receives an AWS client.
    assert scan_source("def f(registry):\n    registry.create_group('c', 'g')\n") == set()
    # A module that receives a client matches against every service pykops uses.
    found = scan_source("def f(client):\n    client.describe_tags()\n")
    assert {o.service for o in found} >= {"ec2", "autoscaling", "elbv2", "elb"}


def test_actions_use_the_services_iam_names() -> None:
    assert Operation("elbv2", "CreateLoadBalancer").action == "elasticloadbalancing:CreateLoadBalancer"
    assert Operation("elb", "DescribeLoadBalancers").action == "elasticloadbalancing:DescribeLoadBalancers"
    assert Operation("autoscaling", "UpdateAutoScalingGroup").action == "autoscaling:UpdateAutoScalingGroup"
    assert Operation("s3", "ListObjectsV2").action == "s3:ListBucket"
    assert Operation("s3", "PutBucketEncryption").action == "s3:PutEncryptionConfiguration"
    assert Operation("s3", "GetObject").action == "s3:GetObject"
    assert policy_actions([Operation("ec2", "RunInstances")]) == ["ec2:RunInstances", "iam:PassRole"]


def test_the_scan_knows_every_service_pykops_makes_clients_for() -> None:
    assert set(AwsCloud.SERVICES) <= set(iam_policy.SERVICES)


# --- the package's policy ---------------------------------------------------------------------------------


def test_policy_is_derived_from_every_module_that_calls_aws() -> None:
    modules = scan_package()
    # Each AWS layer of pykops contributes; the sandbox and the bootstrap (admin credentials) do not.
    for module in ("cloud/aws/network.py", "cloud/aws/compute.py", "cloud/aws/iam.py", "state/s3.py"):
        assert modules.get(module), module
    assert not any(m.startswith("sandbox/") or m == "ops/iam_bootstrap.py" for m in modules)
    actions = set(policy_actions())
    for op in used_operations():
        assert op.action in actions, op
    # A few the tutorial's cluster cannot run without.
    assert {
        "ec2:CreateVpc",
        "autoscaling:CreateAutoScalingGroup",
        "iam:CreateRole",
        "s3:PutObject",
    } <= actions
    assert {
        "elasticloadbalancing:CreateLoadBalancer",
        "iam:PassRole",
        "ec2:DescribeAvailabilityZones",
    } <= actions
    # Least privilege: no wildcard and nothing pykops never calls.
    assert not any("*" in a for a in actions)
    assert "iam:CreateAccessKey" not in actions and "iam:CreateUser" not in actions


def test_a_new_call_in_the_code_enters_the_policy(tmp_path: Path) -> None:
    root = tmp_path / "pykops"
    (root / "cloud").mkdir(parents=True)
    (root / "cloud" / "new.py").write_text("def f(cloud):\n    cloud.ec2.create_flow_logs()\n")
    assert {op.action for op in iam_policy.used_operations(root)} == {"ec2:CreateFlowLogs"}


def test_policy_documents_are_valid_and_under_the_managed_policy_limit() -> None:
    documents = policy_documents()
    assert all(len(compact(d)) <= MANAGED_POLICY_LIMIT for d in documents)
    assert sorted(a for d in documents for s in d["Statement"] for a in s["Action"]) == policy_actions()  # type: ignore[attr-defined]
    for document in documents:
        assert document["Version"] == "2012-10-17"
        (statement,) = document["Statement"]  # type: ignore[misc]
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
    # Splitting: a small limit gives several documents, each under it, together the same actions.
    small = policy_documents(limit=1200)
    assert len(small) > 1 and all(len(compact(d)) <= 1200 for d in small)
    assert sorted(a for d in small for s in d["Statement"] for a in s["Action"]) == policy_actions()  # type: ignore[attr-defined]


def test_print_policy_prints_that_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iam", "print-policy"]) == 0
    printed = json.loads(capsys.readouterr().out)
    documents = policy_documents()
    assert printed == (documents[0] if len(documents) == 1 else documents)
    assert main(["iam", "print-policy", "--compact"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and json.loads(out) == printed


# --- every call really made is covered --------------------------------------------------------------------


@pytest.fixture
def recorded(aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from pykops.sandbox.seed import seed

    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path))
    key = tmp_path / "policy.pub"
    key.write_text(PUBKEY)
    return key


def test_every_call_of_the_cluster_lifecycle_is_covered(
    recorded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pykops.engine.executor import apply
    from pykops.ops.update import apply_plan, plan_cluster, plan_delete
    from pykops.ops.volumes import VolumeRequest, create_volume
    from pykops.state.registry import ClusterRegistry
    from pykops.state.store import open_store

    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    create = ["--state", STATE, "create", "cluster", f"--name={NAME}", f"--zones={','.join(zones)}"]
    create += [f"--master-zones={','.join(zones)}", "--master-count=3", f"--ssh-public-key={recorded}"]
    assert main(create) == 0
    cloud = AwsCloud(NAME, REGION)
    store = open_store(STATE)
    registry = ClusterRegistry(store)
    # The state store's own client reports its calls into the same log.
    store._s3().meta.events.register("before-call", cloud._count)  # type: ignore[attr-defined]
    registry.get_cluster(NAME)

    plan = plan_cluster(registry, NAME, cloud=cloud)  # create
    apply_plan(registry, plan)
    assert main(["--state", STATE, "edit", "ig", "nodes", f"--name={NAME}", "--set", "spec.maxSize=3",
                 "--set", "spec.machineType=t3.large"]) == 0  # fmt: skip
    plan = plan_cluster(registry, NAME, cloud=cloud)  # update
    assert plan.changes
    apply_plan(registry, plan)
    create_volume(VolumeRequest(NAME, REGION, "eu-west-1a", 5, name="data-0"), zones, cloud=cloud)
    changes, delete = plan_delete(NAME, REGION, cloud=cloud)  # delete
    apply(changes, delete.kinds, cloud, desired=[], actual=delete.actual)
    capsys.readouterr()

    called = {Operation(*op.split(":", 1)) for op in cloud.calls.counts}
    services = {op.service for op in called}
    assert {"ec2", "autoscaling", "elbv2", "iam", "s3"} <= services, services
    print(f"recorded {len(called)} distinct AWS operations, {cloud.calls.total} calls")
    assert len(called) > 60
    actions = set(policy_actions())
    missing = sorted(op.action for op in called if op.action not in actions)
    assert missing == [], (
        f"the code called AWS operations the least-privilege policy does not allow: {missing}"
    )


def test_an_unparsable_or_empty_source_gives_no_policy_at_all(tmp_path: Path) -> None:
    from pykops.errors import PykopsError

    with pytest.raises(PykopsError, match="no pykops source with AWS calls"):
        used_operations(tmp_path)
    (tmp_path / "broken.py").write_text("def f(:\n")
    with pytest.raises(PykopsError, match=r"cannot parse .*broken\.py"):
        used_operations(tmp_path)
