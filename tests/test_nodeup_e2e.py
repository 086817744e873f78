"""The machines of the tutorial's cluster bootstrap from what `update cluster` stored (AWS emulator).

Every instance the Auto Scaling groups launched runs the real `pykops nodeup --root DIR --instance-id ID`
with its group's config URL from the state store; each control-plane instance ends up holding the etcd
volumes of its own zone; a replaced control-plane instance takes over the same volumes.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed

REGION = "eu-west-1"
NAME = "proyecto.k8s.local"
BUCKET = "pykops-nodeup-e2e"
STATE = f"s3://{BUCKET}"


def _instances() -> dict[str, list[dict[str, str]]]:
    """Instance group name → its InService instances (id, zone)."""
    asg = boto3.client("autoscaling", region_name=REGION)
    groups = asg.describe_auto_scaling_groups(
        Filters=[{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{NAME}"]}]
    )["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"].split(".", 1)[0]: [
            {"id": i["InstanceId"], "zone": i["AvailabilityZone"]}
            for i in g["Instances"]
            if i["LifecycleState"] == "InService"
        ]
        for g in groups
    }


def _volumes_of(instance_id: str) -> dict[str, str]:
    """Volume id → Name tag of the etcd volumes attached to an instance."""
    volumes = boto3.client("ec2", region_name=REGION).describe_volumes()["Volumes"]
    out = {}
    for volume in volumes:
        tags = {t["Key"]: t["Value"] for t in volume.get("Tags", [])}
        attached = any(a["InstanceId"] == instance_id for a in volume.get("Attachments", []))
        if attached and ("k8s.io/etcd/main" in tags or "k8s.io/etcd/events" in tags):
            out[volume["VolumeId"]] = tags["Name"]
    return out


def _nodeup(capsys: pytest.CaptureFixture[str], root: Path, group: str, instance: str) -> None:
    role = "control-plane" if group.startswith("master-") else "node"
    url = f"{STATE}/{NAME}/igconfig/{role}/{group}/nodeupconfig.yaml"
    code = main(["nodeup", "--config", url, "--root", str(root / instance), "--instance-id", instance])
    out, err = capsys.readouterr()
    assert code == 0, f"nodeup {group} {instance}: {out}\n{err}"


def test_machines_bootstrap_and_a_replacement_takes_over_its_etcd_volumes(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path))
    create = [
        "--state", STATE, "create", "cluster", f"--name={NAME}",
        "--zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=3", "--node-count=1",
        "--networking=kubenet", "--yes",
    ]  # fmt: skip
    assert main(create) == 0, capsys.readouterr().err
    capsys.readouterr()
    machines = tmp_path / "machines"
    groups = _instances()
    assert sorted(groups) == ["master-eu-west-1a", "master-eu-west-1b", "master-eu-west-1c", "nodes"]
    for group, instances in groups.items():
        for instance in instances:
            _nodeup(capsys, machines, group, instance["id"])

    for zone in ("a", "b", "c"):
        (instance,) = groups[f"master-eu-west-1{zone}"]
        assert instance["zone"] == f"eu-west-1{zone}"
        attached = _volumes_of(instance["id"])
        assert sorted(attached.values()) == [f"{zone}.etcd-events.{NAME}", f"{zone}.etcd-main.{NAME}"]
        root = machines / instance["id"]
        assert (root / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()
        for volume in attached:
            assert any(root.glob(f"mnt/master-{volume}*")), f"{volume} not mounted under {root}"
    node_root = machines / groups["nodes"][0]["id"]
    assert not (node_root / "etc/kubernetes/manifests/kube-apiserver.yaml").exists()
    assert _volumes_of(groups["nodes"][0]["id"]) == {}

    # Terminate the control-plane instance of zone b: its group launches a replacement in the same zone,
    # whose nodeup takes over the same two volumes (and so the same etcd members and data).
    (old,) = groups["master-eu-west-1b"]
    before = _volumes_of(old["id"])
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[old["id"]])
    (new,) = _instances()["master-eu-west-1b"]
    assert new["id"] != old["id"] and new["zone"] == "eu-west-1b"
    _nodeup(capsys, machines, "master-eu-west-1b", new["id"])
    assert _volumes_of(new["id"]) == before
    assert _volumes_of(old["id"]) == {}

    assert main(["--state", STATE, "delete", "cluster", NAME, "--yes"]) == 0, capsys.readouterr().err


def test_stored_node_config_carries_ca_certificates_and_no_private_key(
    aws_env: AwsEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pykops.state.store import open_store

    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path))
    args = ["--state", STATE, "create", "cluster", "--name=ca.k8s.local", "--zones=eu-west-1a", "--yes"]
    assert main(args) == 0, capsys.readouterr().err
    found = open_store(STATE).read("ca.k8s.local/igconfig/node/nodes/nodeupconfig.yaml")
    assert found is not None
    text = found.data.decode()
    assert "caCertificates:" in text and "BEGIN CERTIFICATE" in text
    assert "PRIVATE KEY" not in text
    assert main(["--state", STATE, "delete", "cluster", "ca.k8s.local", "--yes"]) == 0
