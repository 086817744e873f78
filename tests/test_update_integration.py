"""update cluster / delete cluster end to end against the AWS emulator (moto's server over HTTP).

The tutorial's HA cluster is created with ``create cluster --yes``; its resources are counted by type with
plain boto3 calls (not through pykops' kinds); a second update changes nothing and makes no mutating call;
edits give minimal plans; delete leaves nothing tagged for the cluster while another cluster survives.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pykops.cli.main import main
from pykops.ops.update import apply_plan, plan_cluster
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed
from pykops.state.registry import ClusterRegistry
from pykops.state.store import open_store

REGION = "eu-west-1"
NAME = "proyecto.k8s.local"
OTHER = "other.k8s.local"
BUCKET = "pykops-it-state"
STATE = f"s3://{BUCKET}"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl it@pykops\n"
TUTORIAL = [
    "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
    "--master-zones=eu-west-1a,eu-west-1b,eu-west-1c",
    "--master-count=3",
    "--node-count=1",
    "--node-size=t2.small",
    "--master-size=t2.small",
    "--networking=kubenet",
]


@pytest.fixture
def cloud_env(aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path))
    key = tmp_path / "proyecto.pub"
    key.write_text(PUBKEY)
    return key


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> str:
    code = main(["--state", STATE, *args])
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def forget_api(cluster: str) -> None:
    """Drop the kubectl context `create cluster --yes` wrote: with volumes besides etcd's, `delete cluster`
    asks the cluster's API which back Retain PersistentVolumes, and here (no machines) that API is a load
    balancer's name outside loopback. Without a context it says so and goes by the volumes' tags."""
    from pykops.ops.kubeconfig import remove_context

    assert remove_context(cluster)


def tagged(cluster: str) -> Counter[str]:
    """Every live resource carrying the cluster's ownership tag, by type, straight from boto3."""
    ec2 = boto3.client("ec2", region_name=REGION)
    tag = [{"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]}]
    counts: Counter[str] = Counter()
    counts["vpc"] = len(ec2.describe_vpcs(Filters=tag)["Vpcs"])
    counts["subnet"] = len(ec2.describe_subnets(Filters=tag)["Subnets"])
    counts["internet-gateway"] = len(ec2.describe_internet_gateways(Filters=tag)["InternetGateways"])
    counts["route-table"] = len(ec2.describe_route_tables(Filters=tag)["RouteTables"])
    counts["security-group"] = len(ec2.describe_security_groups(Filters=tag)["SecurityGroups"])
    counts["dhcp-options"] = len(ec2.describe_dhcp_options(Filters=tag)["DhcpOptions"])
    counts["volume"] = len(
        [v for v in ec2.describe_volumes(Filters=tag)["Volumes"] if v["State"] not in ("deleting", "deleted")]
    )
    counts["key-pair"] = len(ec2.describe_key_pairs(Filters=tag)["KeyPairs"])
    counts["launch-template"] = len(ec2.describe_launch_templates(Filters=tag)["LaunchTemplates"])
    instances = ec2.describe_instances(
        Filters=[
            *tag,
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
    )
    counts["instance"] = sum(len(r["Instances"]) for r in instances["Reservations"])
    asg = boto3.client("autoscaling", region_name=REGION)
    groups = asg.describe_auto_scaling_groups(
        Filters=[{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{cluster}"]}]
    )["AutoScalingGroups"]
    counts["autoscaling-group"] = len(groups)
    elb = boto3.client("elbv2", region_name=REGION)
    lbs = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    tgs = [tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]]

    def owned(arns: list[str]) -> int:
        if not arns:
            return 0
        descriptions = elb.describe_tags(ResourceArns=arns)["TagDescriptions"]
        return sum(
            1
            for d in descriptions
            if any(t["Key"] == f"kubernetes.io/cluster/{cluster}" for t in d.get("Tags", []))
        )

    counts["load-balancer"] = owned(lbs)
    classic = boto3.client("elb", region_name=REGION)
    names = [lb["LoadBalancerName"] for lb in classic.describe_load_balancers()["LoadBalancerDescriptions"]]
    counts["classic-load-balancer"] = sum(
        1
        for d in (classic.describe_tags(LoadBalancerNames=names)["TagDescriptions"] if names else [])
        if any(t["Key"] == f"kubernetes.io/cluster/{cluster}" for t in d.get("Tags", []))
    )
    counts["target-group"] = owned(tgs)
    iam = boto3.client("iam", region_name=REGION)
    counts["iam-role"] = len([r for r in iam.list_roles()["Roles"] if r["RoleName"].endswith(f".{cluster}")])
    counts["instance-profile"] = len(
        [
            p
            for p in iam.list_instance_profiles()["InstanceProfiles"]
            if p["InstanceProfileName"].endswith(cluster)
        ]
    )
    return +counts  # drop zero counts


def registry() -> ClusterRegistry:
    return ClusterRegistry(open_store(STATE))


def test_tutorial_cluster_lifecycle(cloud_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(
        capsys, "create", "cluster", f"--name={NAME}", *TUTORIAL, f"--ssh-public-key={cloud_env}", "--yes"
    )
    assert "Cluster is starting" in out
    kubeconfig = yaml.safe_load((cloud_env.parent / ".kube" / "config").read_text())
    assert kubeconfig["current-context"] == NAME
    server = next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == NAME)
    lbs = boto3.client("elbv2", region_name=REGION).describe_load_balancers()["LoadBalancers"]
    assert server == f"https://{lbs[0]['DNSName']}"
    assert (cloud_env.parent / ".kube" / "config").stat().st_mode & 0o777 == 0o600
    keysets = registry().store.list(f"{NAME}/pki/private/")
    assert f"{NAME}/pki/private/kubernetes-ca/keyset.yaml" in keysets
    assert tagged(NAME) == {
        "vpc": 1,
        "subnet": 3,
        "internet-gateway": 1,
        "route-table": 1,
        "security-group": 3,
        "dhcp-options": 1,
        "volume": 6,
        "key-pair": 1,
        "launch-template": 4,
        "autoscaling-group": 4,
        "instance": 4,
        "load-balancer": 1,
        "target-group": 1,
        "iam-role": 2,
        "instance-profile": 2,
    }
    ec2 = boto3.client("ec2", region_name=REGION)
    volumes = ec2.describe_volumes(
        Filters=[{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}]
    )["Volumes"]
    zones = Counter(v["AvailabilityZone"] for v in volumes)
    assert zones == {"eu-west-1a": 2, "eu-west-1b": 2, "eu-west-1c": 2}
    assert all(v["Encrypted"] and v["Size"] == 20 and v["VolumeType"] == "gp3" for v in volumes)
    subnets = ec2.describe_subnets(Filters=[{"Name": "tag:KubernetesCluster", "Values": [NAME]}])["Subnets"]
    assert sorted(s["CidrBlock"] for s in subnets) == ["172.20.0.0/18", "172.20.128.0/18", "172.20.64.0/18"]
    state = registry().store
    assert state.read(f"{NAME}/cluster-completed.spec") is not None
    assert state.read(f"{NAME}/igconfig/control-plane/master-eu-west-1a/nodeupconfig.yaml") is not None
    node_config = state.read(f"{NAME}/igconfig/node/nodes/nodeupconfig.yaml")
    assert node_config is not None and b"kind: NodeupConfig" in node_config.data

    # A second update: nothing to change, and not a single mutating AWS call.
    plan = plan_cluster(registry(), NAME)
    assert [(c.action, c.kind, c.name) for c in plan.changes] == []
    apply_plan(registry(), plan)
    assert plan.cloud.calls.mutating() == {}
    out = run(capsys, "update", "cluster", NAME)
    assert "No changes need to be applied" in out

    # Scaling the node group changes exactly that Auto Scaling group.
    run(capsys, "edit", "ig", "nodes", f"--name={NAME}", "--set", "spec.minSize=3", "--set", "spec.maxSize=3")
    out = run(capsys, "update", "cluster", NAME, expect=3)
    assert "Will modify resources:" in out and "AutoScalingGroup/nodes.proyecto.k8s.local" in out
    plan = plan_cluster(registry(), NAME)
    assert [(c.action, c.kind, c.name) for c in plan.changes] == [
        ("update", "AutoScalingGroup", f"nodes.{NAME}")
    ]
    apply_plan(registry(), plan)
    assert plan.cloud.calls.mutating() == {"autoscaling:UpdateAutoScalingGroup": 1}

    # A new machine type: a new launch-template version, and the advice to roll the group.
    run(capsys, "edit", "ig", "nodes", f"--name={NAME}", "--set", "spec.machineType=t3.large")
    out = run(capsys, "update", "cluster", NAME, "--yes")
    assert "pykops rolling-update cluster" in out and "nodes have a new launch template version" in out
    templates = ec2.describe_launch_templates(LaunchTemplateNames=[f"nodes.{NAME}"])["LaunchTemplates"]
    assert templates[0]["DefaultVersionNumber"] == 2
    assert plan_cluster(registry(), NAME).changes == []

    # Another cluster in the same region, then delete the first: the second stays intact.
    run(capsys, "create", "cluster", f"--name={OTHER}", "--zones=eu-west-1a", "--yes")
    other_before = tagged(OTHER)
    assert other_before["vpc"] == 1 and other_before["autoscaling-group"] == 2
    out = run(capsys, "delete", "cluster", NAME)
    assert "Must specify --yes" in out and "VPC" in out and "AutoScalingGroup" in out
    run(capsys, "delete", "cluster", NAME, "--yes")
    assert tagged(NAME) == {}
    contexts = yaml.safe_load((cloud_env.parent / ".kube" / "config").read_text())["contexts"] or []
    assert NAME not in [c["name"] for c in contexts]
    assert registry().store.list(f"{NAME}/") == []
    assert tagged(OTHER) == other_before
    run(capsys, "delete", "cluster", OTHER, "--yes")
    assert tagged(OTHER) == {}


def test_delete_without_spec_finds_resources_by_tags(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "create", "cluster", "--name=lost.k8s.local", "--zones=eu-west-1b", "--yes")
    assert tagged("lost.k8s.local")["vpc"] == 1
    store = registry().store
    store.delete_prefix("lost.k8s.local/")  # the spec is gone; the cloud resources are not
    run(capsys, "delete", "cluster", "lost.k8s.local", "--yes", expect=1)  # needs --region without a spec
    run(capsys, "delete", "cluster", "lost.k8s.local", "--region", REGION, "--yes")
    assert tagged("lost.k8s.local") == {}


def test_private_topology_with_bastion(cloud_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "private.k8s.local"
    run(
        capsys,
        "create",
        "cluster",
        f"--name={name}",
        "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
        "--control-plane-count=3",
        "--topology=private",
        "--networking=calico",
        "--bastion",
        "--yes",
    )
    ec2 = boto3.client("ec2", region_name=REGION)
    owned = [{"Name": f"tag:kubernetes.io/cluster/{name}", "Values": ["owned"]}]
    nats = [n for n in ec2.describe_nat_gateways(Filters=owned)["NatGateways"] if n["State"] == "available"]
    mine = [n for n in nats if any(t["Key"] == "KubernetesCluster" and t["Value"] == name for t in n["Tags"])]
    assert len(mine) == 3
    types = Counter(
        next(t["Value"] for t in s["Tags"] if t["Key"] == "SubnetType")
        for s in ec2.describe_subnets(Filters=owned)["Subnets"]
    )
    assert types == {"Private": 3, "Utility": 3}
    assert tagged(name)["autoscaling-group"] == 5  # 3 control plane, nodes, bastions
    assert plan_cluster(registry(), name).changes == []
    run(capsys, "delete", "cluster", name, "--yes")
    assert tagged(name) == {}


def test_resources_made_by_the_cluster_survive_update_and_go_with_delete(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the cloud controller and the EBS CSI driver create carries the cluster's tags: `update cluster`
    must not prune it, `delete cluster` must remove it (first, so the VPC can go)."""
    name = "apps.k8s.local"
    run(capsys, "create", "cluster", f"--name={name}", "--zones=eu-west-1a", "--yes")
    ec2 = boto3.client("ec2", region_name=REGION)
    owned = {"Key": f"kubernetes.io/cluster/{name}", "Value": "owned"}
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:KubernetesCluster", "Values": [name]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName="k8s-elb-a1b2c3",
        Description="Security group for Kubernetes ELB a1b2c3",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [owned]}],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0"
    )
    boto3.client("elb", region_name=REGION).create_load_balancer(
        LoadBalancerName="a1b2c3",
        Listeners=[
            {"Protocol": "TCP", "LoadBalancerPort": 80, "InstanceProtocol": "TCP", "InstancePort": 30080}
        ],
        Subnets=[subnet],
        SecurityGroups=[sg],
        Tags=[owned],
    )
    ec2.create_volume(
        AvailabilityZone="eu-west-1a",
        Size=5,
        VolumeType="gp3",
        Encrypted=True,
        TagSpecifications=[{"ResourceType": "volume", "Tags": [owned, {"Key": "Name", "Value": "pvc-123"}]}],
    )
    before = tagged(name)
    assert before["classic-load-balancer"] == 1 and before["security-group"] == 4 and before["volume"] == 3

    assert plan_cluster(registry(), name).changes == []  # nothing of the cluster's own is pruned
    run(capsys, "update", "cluster", name, "--yes")
    assert tagged(name) == before

    forget_api(name)
    out = run(capsys, "delete", "cluster", name)
    assert "ClassicLoadBalancer" in out and "a1b2c3" in out and "k8s-elb-a1b2c3" in out
    run(capsys, "delete", "cluster", name, "--yes")
    assert tagged(name) == {}


def test_delete_also_takes_what_a_controller_creates_while_it_runs(
    cloud_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An in-cluster controller (the EBS CSI driver here) may create a tagged resource after delete cluster
    listed what to delete; a second pass finds it, so nothing leaks and the state goes."""
    import pykops.ops.update as update_ops

    name = "race.k8s.local"
    run(capsys, "create", "cluster", f"--name={name}", "--zones=eu-west-1a", "--yes")
    owned = {"Key": f"kubernetes.io/cluster/{name}", "Value": "owned"}
    listings = 0
    plan_delete = update_ops.plan_delete

    def listing_then_a_new_volume(*args: Any, **kwargs: Any) -> Any:
        nonlocal listings
        listings += 1
        result = plan_delete(*args, **kwargs)
        if listings == 1:  # created after the first listing: not in the first pass's plan
            boto3.client("ec2", region_name=REGION).create_volume(
                AvailabilityZone="eu-west-1a",
                Size=1,
                TagSpecifications=[{"ResourceType": "volume", "Tags": [owned]}],
            )
        return result

    forget_api(name)
    monkeypatch.setattr(update_ops, "plan_delete", listing_then_a_new_volume)
    code = main(["--state", STATE, "delete", "cluster", name, "--yes"])
    _out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 cloud resources of race.k8s.local appeared or remained; deleting them too" in err
    assert tagged(name) == {}
    assert not registry().exists(name)


def test_public_dns_cluster_gets_api_records(cloud_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "k8s.example.com"
    route53 = boto3.client("route53", region_name=REGION)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="pykops-it")["HostedZone"]["Id"]
    run(capsys, "create", "cluster", f"--name={name}", "--zones=eu-west-1a", "--yes")

    def records() -> dict[str, str]:
        sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        return {
            r["Name"]: r["AliasTarget"]["DNSName"] for r in sets if r["Type"] == "A" and "AliasTarget" in r
        }

    lb = boto3.client("elbv2", region_name=REGION).describe_load_balancers()["LoadBalancers"]
    dns_name = next(b["DNSName"] for b in lb if b["LoadBalancerName"].startswith("api-k8s-example-com"))
    found = records()
    assert set(found) == {f"api.{name}.", f"api.internal.{name}."}
    assert all(target.rstrip(".").lower() == dns_name.lower() for target in found.values())
    assert plan_cluster(registry(), name).changes == []
    run(capsys, "delete", "cluster", name, "--yes")
    assert records() == {}
    assert tagged(name) == {}


def test_dns_cluster_without_hosted_zone_is_refused_before_any_change(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--state", STATE, "create", "cluster", "--name=k8s.nozone.org", "--zones=eu-west-1a"])
    capsys.readouterr()
    assert code == 0
    assert main(["--state", STATE, "update", "cluster", "k8s.nozone.org", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no public Route53 hosted zone holds k8s.nozone.org" in err
    assert tagged("k8s.nozone.org") == {}


def test_shared_vpc_and_subnets_are_used_never_changed_or_deleted(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "shared.k8s.local"
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(
        CidrBlock="10.10.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "company-vpc"}]}],
    )["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc,
            CidrBlock=f"10.10.{i}.0/24",
            AvailabilityZone=zone,
            TagSpecifications=[
                {"ResourceType": "subnet", "Tags": [{"Key": "Name", "Value": f"company-{zone}"}]}
            ],
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate(["eu-west-1a", "eu-west-1b"])
    ]
    run(
        capsys,
        "create",
        "cluster",
        f"--name={name}",
        "--zones=eu-west-1a,eu-west-1b",
        f"--vpc={vpc}",
        f"--subnets={','.join(subnets)}",
        "--control-plane-count=1",
        "--yes",
    )
    found = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    for subnet in found:
        tags = {t["Key"]: t["Value"] for t in subnet["Tags"]}
        assert tags[f"kubernetes.io/cluster/{name}"] == "shared"
        assert tags["Name"].startswith("company-")  # the owner's tags are untouched
    assert (
        ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])[
            "InternetGateways"
        ]
        == []
    )
    assert tagged(name)["autoscaling-group"] == 2 and "vpc" not in tagged(name)
    assert plan_cluster(registry(), name).changes == []
    run(capsys, "delete", "cluster", name, "--yes")
    assert tagged(name) == {}
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["VpcId"] == vpc
    assert len(ec2.describe_subnets(SubnetIds=subnets)["Subnets"]) == 2


def test_a_locked_cluster_is_neither_updated_nor_deleted(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pykops.state.lock import cluster_lock

    name = "locked.k8s.local"
    run(capsys, "create", "cluster", f"--name={name}", "--zones=eu-west-1a")
    with cluster_lock(registry().store, name, "rolling-update cluster"):
        for command in (["update", "cluster", name, "--yes"], ["delete", "cluster", name, "--yes"]):
            assert main(["--state", STATE, *command]) == 1
            err = capsys.readouterr().err
            assert f"cluster {name} is locked by" in err and "rolling-update cluster" in err
    assert tagged(name) == {} and registry().exists(name)
    run(capsys, "delete", "cluster", name, "--yes")
    assert not registry().exists(name)


def _template_versions(cluster: str) -> dict[str, int]:
    ec2 = boto3.client("ec2", region_name=REGION)
    tag = [{"Name": f"tag:kubernetes.io/cluster/{cluster}", "Values": ["owned"]}]
    return {
        t["LaunchTemplateName"].removesuffix(f".{cluster}"): t["LatestVersionNumber"]
        for t in ec2.describe_launch_templates(Filters=tag)["LaunchTemplates"]
    }


def test_update_of_chosen_instance_groups_leaves_the_others_machines_alone(
    cloud_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`update cluster --instance-group-roles control-plane` after an upgrade: the control plane's launch
    template and bootstrap configuration move, the nodes' stay (no node can boot a kubelet newer than the
    apiservers); a full update then moves them too."""
    from pykops.ops.instances import LiveCluster

    name = "partial.k8s.local"
    run(capsys, "create", "cluster", f"--name={name}", "--zones=eu-west-1a", "--yes")
    before = _template_versions(name)
    (control_plane,) = [g for g in before if g.startswith(("master", "control-plane"))]
    (nodes,) = set(before) - {control_plane}
    old = LiveCluster(registry(), name, need_api=False).applied_kubernetes_versions()
    assert set(old) == set(before) and len(set(old.values())) == 1
    # an upgrade, written to the spec (edit rather than `upgrade cluster`, which would ask the cluster's API)
    run(capsys, "edit", "cluster", name, "--set", "spec.kubernetesVersion=1.35.0")

    out = run(capsys, "update", "cluster", name, "--instance-group-roles", "control-plane", expect=3)
    assert control_plane in out and nodes not in out
    run(capsys, "update", "cluster", name, "--instance-group-roles", "control-plane", "--yes")
    after = _template_versions(name)
    assert after[control_plane] == before[control_plane] + 1 and after[nodes] == before[nodes]
    applied = LiveCluster(registry(), name, need_api=False).applied_kubernetes_versions()
    assert applied == {control_plane: "1.35.0", nodes: old[nodes]}

    run(capsys, "update", "cluster", name, "--yes")
    assert _template_versions(name)[nodes] == before[nodes] + 1
    applied = LiveCluster(registry(), name, need_api=False).applied_kubernetes_versions()
    assert applied == {control_plane: "1.35.0", nodes: "1.35.0"}

    code = main(["--state", STATE, "update", "cluster", name, "--instance-group", "nope"])
    assert code == 2 and "no instance group named 'nope'" in capsys.readouterr().err
    code = main(["--state", STATE, "update", "cluster", name, "--instance-group-roles", "worker"])
    assert code == 2 and "unknown instance group role 'worker'" in capsys.readouterr().err
