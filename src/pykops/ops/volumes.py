"""``create volume``: an encrypted EBS volume for a cluster, and the PersistentVolume that uses it.

The tutorial's "create the volumes in AWS" and "the persistent volumes in the cluster" in one step. The
volume carries the cluster's tags (``KubernetesCluster``, ``kubernetes.io/cluster/<cluster>=owned``,
``Name``), ``pykops.io/reclaim-policy=Retain`` (so ``delete cluster`` keeps it even when the cluster's
API cannot be asked), but not pykops' managed-by mark, so ``update cluster`` never prunes it (see
``pykops.ops.update.managed_only``); the manifest is for the EBS CSI driver (static provisioning) with
reclaim policy Retain and node affinity to the volume's zone.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pykops.cloud.aws.cloud import TAG_NAME, AwsCloud
from pykops.errors import PykopsError, UsageError
from pykops.ops.retain import RECLAIM_TAG

CSI_DRIVER = "ebs.csi.aws.com"
ZONE_LABEL = "topology.kubernetes.io/zone"
PV_NAME_TAG = "kubernetes.io/created-for/pv/name"  # the tag the EBS CSI driver puts on its volumes
DEFAULT_STORAGE_CLASS = "gp3"

#: EBS volume types and their size limits in GiB (AWS's EBS documentation).
VOLUME_SIZES: dict[str, tuple[int, int]] = {
    "gp3": (1, 16384),
    "gp2": (1, 16384),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class VolumeRequest:
    cluster: str
    region: str
    zone: str
    size: int
    volume_type: str = "gp3"
    name: str | None = None
    storage_class: str = DEFAULT_STORAGE_CLASS


@dataclass(frozen=True)
class CreatedVolume:
    volume_id: str
    name: str
    zone: str
    size: int
    volume_type: str
    created: bool  # False: a volume of that name already existed and is reused


def validate_request(req: VolumeRequest, cluster_zones: list[str]) -> str:
    """Check the request without calling AWS; the PersistentVolume's name (given or generated)."""
    if not req.zone.startswith(req.region) or not re.fullmatch(r"[a-z]", req.zone[len(req.region) :]):
        hint = f" (the cluster's zones: {', '.join(cluster_zones)})" if cluster_zones else ""
        raise UsageError(f"--zone {req.zone}: not a zone of the cluster's region {req.region}{hint}")
    if cluster_zones and req.zone not in cluster_zones:
        raise UsageError(
            f"--zone {req.zone}: the cluster has no nodes there, so nothing could attach the volume "
            f"(the cluster's zones: {', '.join(cluster_zones)})"
        )
    if req.volume_type not in VOLUME_SIZES:
        raise UsageError(f"--type {req.volume_type}: expected one of {', '.join(VOLUME_SIZES)}")
    low, high = VOLUME_SIZES[req.volume_type]
    if not low <= req.size <= high:
        raise UsageError(f"--size {req.size}: a {req.volume_type} volume takes {low} to {high} GiB")
    name = req.name or f"pv-{secrets.token_hex(4)}"
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise UsageError(
            f"--volume-name {name}: a PersistentVolume name is lowercase letters, digits, '-' and '.'"
        )
    return name


def _existing(cloud: AwsCloud, name: str) -> dict[str, Any] | None:
    filters = [*cloud.cluster_filter(), {"Name": f"tag:{TAG_NAME}", "Values": [name]}]
    volumes = [
        v
        for v in cloud.ec2.describe_volumes(Filters=filters)["Volumes"]
        if v.get("State") not in ("deleting", "deleted")
    ]
    return volumes[0] if volumes else None


def create_volume(
    req: VolumeRequest, cluster_zones: list[str], *, cloud: AwsCloud | None = None
) -> CreatedVolume:
    """Create the volume (or reuse the cluster's volume of that name when it matches the request)."""
    name = validate_request(req, cluster_zones)
    cloud = cloud or AwsCloud(req.cluster, req.region)
    try:
        found = _existing(cloud, name) if req.name else None
        if found is not None:
            same = (found["AvailabilityZone"], found["Size"], found["VolumeType"]) == (
                req.zone,
                req.size,
                req.volume_type,
            )
            if not same:
                raise PykopsError(
                    f"cluster {req.cluster} already has a volume named {name} ({found['VolumeId']}, "
                    f"{found['Size']} GiB {found['VolumeType']} in {found['AvailabilityZone']})",
                    hint="choose another --name",
                )
            return CreatedVolume(str(found["VolumeId"]), name, req.zone, req.size, req.volume_type, False)
        # Retain: the PV printed below keeps its data, and so does `delete cluster` (see pykops.ops.retain)
        tags = cloud.cluster_tags(name, {PV_NAME_TAG: name, RECLAIM_TAG: "Retain"})
        resp = cloud.ec2.create_volume(
            AvailabilityZone=req.zone,
            Size=req.size,
            VolumeType=req.volume_type,
            Encrypted=True,
            TagSpecifications=cloud.tag_specifications("volume", tags),
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PykopsError(f"EC2 refused to create the volume ({code}): {exc}") from None
    except BotoCoreError as exc:
        raise PykopsError(f"cannot reach AWS: {exc}") from None
    return CreatedVolume(str(resp["VolumeId"]), name, req.zone, req.size, req.volume_type, True)


def persistent_volume(volume: CreatedVolume, *, storage_class: str = DEFAULT_STORAGE_CLASS) -> dict[str, Any]:
    """The PersistentVolume manifest for an EBS volume (EBS CSI driver, static provisioning)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume.name, "labels": {ZONE_LABEL: volume.zone}},
        "spec": {
            "capacity": {"storage": f"{volume.size}Gi"},
            "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "csi": {"driver": CSI_DRIVER, "volumeHandle": volume.volume_id, "fsType": "ext4"},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [volume.zone]}]}
                    ]
                }
            },
        },
    }
