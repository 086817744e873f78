"""Volumes kept by ``delete cluster``: PersistentVolumes with reclaim policy Retain, or the Retain tag."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from pykops.cloud.aws.cloud import AwsCloud
from pykops.ops.retain import RECLAIM_TAG, find_retained, release, retained_from_pvs, volume_id_of


def _pv(name: str, policy: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"persistentVolumeReclaimPolicy": policy, **spec}}


def test_volume_id_of_csi_and_in_tree() -> None:
    assert (
        volume_id_of(_pv("a", "Retain", csi={"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}))
        == "vol-1"
    )
    assert (
        volume_id_of(_pv("b", "Retain", awsElasticBlockStore={"volumeID": "aws://eu-west-1a/vol-2"}))
        == "vol-2"
    )
    assert volume_id_of(_pv("c", "Retain", csi={"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"})) is None
    assert volume_id_of(_pv("d", "Retain", hostPath={"path": "/data"})) is None


def test_only_retain_policies_count() -> None:
    pvs = [
        _pv("keep", "Retain", csi={"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}),
        _pv("gone", "Delete", csi={"driver": "ebs.csi.aws.com", "volumeHandle": "vol-2"}),
    ]
    assert retained_from_pvs(pvs) == {"vol-1": "PersistentVolume keep"}


CLUSTER = "retain.k8s.local"


def _volume(ec2: Any, tags: dict[str, str]) -> str:
    all_tags = {"KubernetesCluster": CLUSTER, f"kubernetes.io/cluster/{CLUSTER}": "owned", **tags}
    vol = ec2.create_volume(
        AvailabilityZone="eu-west-1a",
        Size=1,
        Encrypted=True,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
        ],
    )
    return str(vol["VolumeId"])


def test_tagged_volume_is_retained_and_released(
    aws_env: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # no API to ask: the tag alone decides
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    keep = _volume(ec2, {RECLAIM_TAG: "Retain"})
    other = _volume(ec2, {})
    etcd = _volume(ec2, {"k8s.io/etcd/main": "a/a,b,c"})
    cloud = AwsCloud(CLUSTER, "eu-west-1")
    found = find_retained(CLUSTER, cloud)
    assert found.volumes == {keep: f"tag {RECLAIM_TAG}=Retain"}
    assert found.warning is not None and "PersistentVolumes" in found.warning  # `other` could be a PV's
    release(CLUSTER, cloud, found.volumes)
    tags = {t["Key"] for t in ec2.describe_volumes(VolumeIds=[keep])["Volumes"][0].get("Tags", [])}
    assert "KubernetesCluster" not in tags and f"kubernetes.io/cluster/{CLUSTER}" not in tags
    assert RECLAIM_TAG in tags
    # released: no longer found as the cluster's; the others still are
    again = find_retained(CLUSTER, cloud)
    assert again.volumes == {}
    ids = {v["VolumeId"] for v in ec2.describe_volumes(Filters=cloud.cluster_filter())["Volumes"]}
    assert {other, etcd} <= ids and keep not in ids
    ec2.delete_volume(VolumeId=keep)
    ec2.delete_volume(VolumeId=other)
    ec2.delete_volume(VolumeId=etcd)


def test_only_etcd_volumes_means_no_api_question(
    aws_env: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    etcd = _volume(ec2, {"k8s.io/etcd/events": "a/a,b,c"})
    found = find_retained(CLUSTER, AwsCloud(CLUSTER, "eu-west-1"))
    assert found.volumes == {} and found.warning is None
    ec2.delete_volume(VolumeId=etcd)
