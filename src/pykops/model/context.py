"""What the builders need besides the spec: facts looked up before planning (by the I/O edge)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pykops.api.models import Cluster, InstanceGroup

# Marks what pykops created, so `update cluster` never prunes what the cluster itself made (load balancers
# and security groups of Services, volumes of PersistentVolumes) even though those carry the cluster's tags.
MANAGED_TAG = "pykops.io/managed-by"
MANAGED_VALUE = "pykops"


@dataclass(frozen=True)
class ImageInfo:
    id: str
    root_device_name: str = "/dev/sda1"


@dataclass
class ModelContext:
    """Inputs of the pure builders.

    ``images`` maps each instance group's ``spec.image`` to the AMI it resolved to (one DescribeImages call
    made before planning). ``ssh_public_key`` is the OpenSSH public key line and ``ssh_fingerprint`` its MD5
    hex digest (kops' key-pair naming), or None for a cluster without a managed key.
    ``user_data`` maps instance-group names to the bootstrap script of their launch template.
    """

    cluster: Cluster
    groups: list[InstanceGroup]
    region: str
    images: dict[str, ImageInfo] = field(default_factory=dict)
    ssh_public_key: str | None = None
    ssh_fingerprint: str | None = None
    user_data: dict[str, str] = field(default_factory=dict)
    hosted_zone_id: str | None = None

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    def tags(self, name: str, extra: dict[str, str] | None = None, *, shared: bool = False) -> dict[str, str]:
        """kops' tags for a resource of this cluster, plus spec.cloudLabels."""
        tags = dict(self.cluster.spec.cloud_labels or {})
        tags.update(
            {
                "KubernetesCluster": self.name,
                f"kubernetes.io/cluster/{self.name}": "shared" if shared else "owned",
                "Name": name,
            }
        )
        if not shared:
            tags[MANAGED_TAG] = MANAGED_VALUE
        tags.update(extra or {})
        return tags
