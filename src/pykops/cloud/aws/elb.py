"""Classic load balancers made inside the cluster (by the AWS cloud controller for ``type: LoadBalancer``
Services), found by the cluster's ownership tag so ``delete cluster`` removes them first: left behind, their
network interfaces and security groups keep the VPC from being deleted (kops' most reported delete failure).

pykops never creates classic load balancers: the model emits none, so this kind only finds and deletes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError

from pykops.cloud.aws.cloud import cluster_owned_tag, error_code
from pykops.engine.types import Actual, FieldChange, Resource
from pykops.errors import PykopsError

_TAGS_PER_CALL = 20  # DescribeTags takes at most 20 load balancer names


class ClassicLoadBalancer:
    kind: ClassVar[str] = "ClassicLoadBalancer"
    immutable: ClassVar[frozenset[str]] = frozenset()
    replaceable: ClassVar[bool] = False

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        """One paginated DescribeLoadBalancers, then DescribeTags per 20 load balancers of the region."""
        client = cloud.client("elb")
        balancers: list[dict[str, Any]] = []
        for page in client.get_paginator("describe_load_balancers").paginate():
            balancers.extend(page.get("LoadBalancerDescriptions") or [])
        by_name = {str(lb["LoadBalancerName"]): lb for lb in balancers}
        names = sorted(by_name)
        owned_tag = cluster_owned_tag(cloud.cluster_name)
        found: list[Actual] = []
        for start in range(0, len(names), _TAGS_PER_CALL):
            batch = names[start : start + _TAGS_PER_CALL]
            for description in client.describe_tags(LoadBalancerNames=batch).get("TagDescriptions") or []:
                tags = {t["Key"]: t.get("Value", "") for t in description.get("Tags") or []}
                if tags.get(owned_tag) != "owned":
                    continue
                lb = by_name[str(description["LoadBalancerName"])]
                props = {
                    "vpc": lb.get("VPCId"),
                    "subnets": sorted(lb.get("Subnets") or []),
                    "security_groups": sorted(lb.get("SecurityGroups") or []),
                    "tags": tags,
                }
                name = str(lb["LoadBalancerName"])
                found.append(Actual(self.kind, name, {"id": name, "dns_name": lb.get("DNSName")}, props))
        return found

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        raise PykopsError(f"{desired}: pykops does not create classic load balancers")

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        raise PykopsError(f"{actual.kind}/{actual.name}: pykops does not change classic load balancers")

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.client("elb").delete_load_balancer(LoadBalancerName=actual.id)
        except ClientError as exc:
            if error_code(exc) not in ("LoadBalancerNotFound", "AccessPointNotFound"):
                raise


ELB_KINDS: list[Any] = [ClassicLoadBalancer()]
