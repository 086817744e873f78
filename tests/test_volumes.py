"""``create volume`` against the AWS emulator: the encrypted, tagged EBS volume and its PersistentVolume."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import kubernetes_validate
import pytest
import yaml

from pykops.cli.main import main
from pykops.model.context import MANAGED_TAG
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import ensure_state_bucket

REGION = "eu-west-1"
BUCKET = "pykops-volumes-state"
STATE = f"s3://{BUCKET}"
NAME = "vols.k8s.local"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl it@pykops\n"
K8S_VERSION = "1.33"


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(["--state", STATE, *args])
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


@pytest.fixture
def cluster(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """A cluster spec in eu-west-1a/b, not applied (a volume needs only the spec and EC2)."""
    ensure_state_bucket(aws_env.endpoint_url, REGION, BUCKET)
    key = tmp_path / "k.pub"
    key.write_text(PUBKEY)
    main(["--state", STATE, "delete", "cluster", NAME, "--yes"])
    run(
        capsys,
        "create",
        "cluster",
        f"--name={NAME}",
        "--zones=eu-west-1a,eu-west-1b",
        f"--ssh-public-key={key}",
    )
    monkeypatch.setenv("KOPS_CLUSTER_NAME", NAME)
    return NAME


def cluster_volumes(name: str) -> list[dict[str, object]]:
    ec2 = boto3.client("ec2", region_name=REGION)
    tag = [{"Name": f"tag:kubernetes.io/cluster/{name}", "Values": ["owned"]}]
    return [
        v for v in ec2.describe_volumes(Filters=tag)["Volumes"] if v["State"] not in ("deleting", "deleted")
    ]


def test_volume_and_persistent_volume(cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = {v["VolumeId"] for v in cluster_volumes(cluster)}
    out, err = run(capsys, "create", "volume", "--zone", "eu-west-1b", "--size", "10", "-n", "data-0")
    (volume,) = [v for v in cluster_volumes(cluster) if v["VolumeId"] not in before]
    assert volume["Encrypted"] is True
    assert (volume["Size"], volume["VolumeType"], volume["AvailabilityZone"]) == (10, "gp3", "eu-west-1b")
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}  # type: ignore[attr-defined]
    assert tags["KubernetesCluster"] == cluster
    assert tags[f"kubernetes.io/cluster/{cluster}"] == "owned"
    assert tags["Name"] == "data-0"
    assert MANAGED_TAG not in tags  # update cluster must never prune it
    assert tags["pykops.io/reclaim-policy"] == "Retain"  # delete cluster keeps it
    assert volume["VolumeId"] in err and "encrypted" in err

    pv = yaml.safe_load(out)
    kubernetes_validate.validate(pv, K8S_VERSION, strict=True)
    assert pv["kind"] == "PersistentVolume" and pv["metadata"]["name"] == "data-0"
    spec = pv["spec"]
    assert spec["csi"] == {"driver": "ebs.csi.aws.com", "volumeHandle": volume["VolumeId"], "fsType": "ext4"}
    assert spec["capacity"] == {"storage": "10Gi"}
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["storageClassName"] == "gp3"
    (term,) = spec["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1b"]}
    ]

    # The same request again reuses the volume; -o json prints the same manifest.
    out, err = run(
        capsys, "create", "volume", "--zone", "eu-west-1b", "--size", "10", "-n", "data-0", "-o", "json"
    )
    assert json.loads(out) == pv and "Reusing" in err
    assert len(cluster_volumes(cluster)) == len(before) + 1
    # The same name with another size is refused.
    _, err = run(capsys, "create", "volume", "--zone", "eu-west-1b", "--size", "20", "-n", "data-0", expect=1)
    assert "already has a volume named data-0" in err and err.count("\n") == 1


def test_default_name_type_and_storage_class(cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["create", "volume", "--zone", "eu-west-1a", "--size", "125", "--type", "st1"]
    out, _ = run(capsys, *args, "--storage-class", "throughput")
    pv = yaml.safe_load(out)
    kubernetes_validate.validate(pv, K8S_VERSION, strict=True)
    assert pv["metadata"]["name"].startswith("pv-") and pv["spec"]["storageClassName"] == "throughput"
    (volume,) = [v for v in cluster_volumes(cluster) if v["VolumeId"] == pv["spec"]["csi"]["volumeHandle"]]
    assert volume["VolumeType"] == "st1" and volume["Encrypted"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zone", "us-east-1a", "--size", "5"], "not a zone of the cluster's region eu-west-1"),
        (["--zone", "eu-west-1", "--size", "5"], "not a zone of the cluster's region eu-west-1"),
        (["--zone", "eu-west-1c", "--size", "5"], "the cluster has no nodes there"),
        (["--zone", "eu-west-1a", "--size", "5", "--type", "gp9"], "--type gp9"),
        (["--zone", "eu-west-1a", "--size", "20000"], "1 to 16384 GiB"),
        (["--zone", "eu-west-1a", "--size", "5", "-n", "Data_0"], "PersistentVolume name"),
    ],
)
def test_bad_requests_are_refused_before_any_aws_call(
    cluster: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = cluster_volumes(cluster)
    _, err = run(capsys, "create", "volume", *args, expect=2)
    assert message in err and err.count("\n") == 1
    assert cluster_volumes(cluster) == before


def test_unknown_cluster_and_missing_name(
    aws_env: AwsEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KOPS_CLUSTER_NAME", raising=False)
    ensure_state_bucket(aws_env.endpoint_url, REGION, BUCKET)
    _, err = run(
        capsys,
        "create",
        "volume",
        "--name",
        "nope.k8s.local",
        "--zone",
        "eu-west-1a",
        "--size",
        "1",
        expect=1,
    )
    assert "nope.k8s.local" in err and err.count("\n") == 1
    _, err = run(capsys, "create", "volume", "--zone", "eu-west-1a", "--size", "1", expect=2)
    assert "no cluster name" in err
