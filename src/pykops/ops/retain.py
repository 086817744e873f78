"""Volumes ``delete cluster`` keeps: the EBS volumes behind PersistentVolumes whose reclaim policy is Retain.

kops deletes every volume tagged for the cluster, data included. pykops keeps the data a user asked to keep:
a volume is *retained* when a PersistentVolume with ``persistentVolumeReclaimPolicy: Retain`` points at it
(EBS CSI ``volumeHandle`` or the in-tree ``awsElasticBlockStore.volumeID``; asked through the cluster's API)
or when it carries the tag ``pykops.io/reclaim-policy=Retain`` (``pykops create volume`` sets it, so the
answer does not depend on the API being up at delete time). ``delete cluster`` lists those volumes apart,
removes the cluster's ownership tags from them (so nothing of the cluster's finds them again) and leaves them,
unless ``--delete-retained-volumes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RECLAIM_TAG = "pykops.io/reclaim-policy"
EBS_CSI_DRIVER = "ebs.csi.aws.com"
ETCD_TAG = "k8s.io/etcd/"  # the etcd volumes' tag prefix (k8s.io/etcd/main, k8s.io/etcd/events)


@dataclass
class Retained:
    """The retained volumes: id → why (the PV's name or the tag), and a warning if the API was not asked."""

    volumes: dict[str, str] = field(default_factory=dict)
    warning: str | None = None


def volume_id_of(pv: Mapping[str, Any]) -> str | None:
    """The EBS volume id a PersistentVolume (a dict as the API returns it) points at, if any (pure)."""
    spec = pv.get("spec") or {}
    csi = spec.get("csi") or {}
    if csi.get("driver") == EBS_CSI_DRIVER and csi.get("volumeHandle"):
        return str(csi["volumeHandle"])
    in_tree = (spec.get("awsElasticBlockStore") or {}).get("volumeID")
    if in_tree:
        return str(in_tree).rsplit("/", 1)[-1]  # aws://eu-west-1a/vol-0abc → vol-0abc
    return None


def retained_from_pvs(pvs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Volume id → ``PersistentVolume <name>`` for the PVs with reclaim policy Retain (pure)."""
    out: dict[str, str] = {}
    for pv in pvs:
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Retain":
            continue
        volume = volume_id_of(pv)
        if volume:
            out[volume] = f"PersistentVolume {(pv.get('metadata') or {}).get('name', '?')}"
    return out


def retained_from_tags(volumes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Volume id → ``tag ...`` for EC2 volumes (DescribeVolumes entries) tagged Retain (pure)."""
    out: dict[str, str] = {}
    for volume in volumes:
        tags = {t.get("Key"): t.get("Value") for t in volume.get("Tags") or []}
        if tags.get(RECLAIM_TAG) == "Retain":
            out[str(volume["VolumeId"])] = f"tag {RECLAIM_TAG}=Retain"
    return out


def list_pvs(api: Any) -> list[dict[str, Any]]:
    """Every PersistentVolume, as plain dicts."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    items = core.list_persistent_volume(_request_timeout=(5, 20)).items
    return [api.sanitize_for_serialization(pv) for pv in items]


def find_retained(
    cluster: str, cloud: Any, *, kubeconfig: str | None = None, api: Any | None = None
) -> Retained:
    """The retained volumes of ``cluster``: its tagged EC2 volumes marked Retain by tag or by a PV."""
    from pykops.cloud.aws.compute import is_owned, paginate

    volumes = [
        v
        for v in paginate(cloud.ec2, "describe_volumes", "Volumes", Filters=cloud.cluster_filter())
        if is_owned(cloud.tag_dict(v.get("Tags")), cluster)
    ]
    result = Retained(retained_from_tags(volumes))
    # etcd's own volumes never back a PersistentVolume: with no other volume there is nothing to ask the API.
    volumes = [
        v for v in volumes if not any(str(t.get("Key", "")).startswith(ETCD_TAG) for t in v.get("Tags") or [])
    ]
    if not volumes:
        return result
    try:
        if api is None:
            from pykops.ops.kubeclient import load_api_client

            api = load_api_client(cluster, kubeconfig)
        by_pv = retained_from_pvs(list_pvs(api))
    except Exception as exc:  # no kubeconfig, API down, forbidden: keep going with the tags alone
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.warning = (
            f"could not list the cluster's PersistentVolumes ({first}); only volumes tagged "
            f"{RECLAIM_TAG}=Retain are kept"
        )
        return result
    ours = {str(v["VolumeId"]) for v in volumes}
    result.volumes.update({vid: why for vid, why in by_pv.items() if vid in ours})
    return result


def release(cluster: str, cloud: Any, volume_ids: Iterable[str]) -> None:
    """Remove the cluster's ownership tags from the retained volumes, so that nothing deletes them."""
    from pykops.cloud.aws.cloud import TAG_CLUSTER, cluster_owned_tag

    ids = sorted(volume_ids)
    if ids:
        cloud.ec2.delete_tags(Resources=ids, Tags=[{"Key": TAG_CLUSTER}, {"Key": cluster_owned_tag(cluster)}])
