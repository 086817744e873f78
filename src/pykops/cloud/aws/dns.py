"""Route53 records for clusters with DNS: ``api.<cluster>`` and ``api.internal.<cluster>`` as aliases of the
API load balancer, in the hosted zone that holds the cluster's name.

Records carry no tags, so they are recognised by name: only ``api.<cluster>.`` and ``api.internal.<cluster>.``
A records are ever read, changed or deleted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError

from pykops.cloud.aws.cloud import error_code
from pykops.engine.types import Actual, FieldChange, Resource
from pykops.errors import SpecError

RECORD_PREFIXES = ("api", "api.internal")


def _bare(name: str) -> str:
    return name.rstrip(".").lower()


def zone_id(raw: str) -> str:
    """``/hostedzone/Z123`` → ``Z123``."""
    return raw.rsplit("/", 1)[-1]


def find_hosted_zone(cloud: Any, cluster: str, dns_zone: str | None, *, private: bool) -> str:
    """The id of the hosted zone for the cluster: ``dns_zone`` (an id or a name) or the longest parent domain.

    One ListHostedZones call (paginated). Raises SpecError when there is none.
    """
    zones: list[dict[str, Any]] = []
    for page in cloud.client("route53").get_paginator("list_hosted_zones").paginate():
        zones.extend(page.get("HostedZones") or [])
    candidates = []
    for zone in zones:
        name, ident = _bare(zone["Name"]), zone_id(zone["Id"])
        if bool(zone.get("Config", {}).get("PrivateZone")) != private:
            continue
        if dns_zone and dns_zone not in (ident, name, f"{name}."):
            continue
        if cluster == name or cluster.endswith(f".{name}"):
            candidates.append((len(name), ident))
    if not candidates:
        kind = "private" if private else "public"
        raise SpecError(
            f"no {kind} Route53 hosted zone holds {cluster}: create one for its domain (or a parent), set "
            "spec.dnsZone, or use a gossip name ending in .k8s.local (or --dns none)"
        )
    return max(candidates)[1]


class DNSRecord:
    kind: ClassVar[str] = "DNSRecord"
    immutable: ClassVar[frozenset[str]] = frozenset({"hosted_zone_id", "record_name", "type"})
    replaceable: ClassVar[bool] = True

    def find(self, cloud: Any, desired: list[Resource]) -> list[Actual]:
        """One ListResourceRecordSets per hosted zone involved (one zone per cluster)."""
        client = cloud.client("route53")
        zones = {str(r.props["hosted_zone_id"]) for r in desired}
        cluster = cloud.cluster_name
        if not desired:  # delete: the zones whose domain holds the cluster's name
            for page in client.get_paginator("list_hosted_zones").paginate():
                for zone in page.get("HostedZones") or []:
                    name = _bare(zone["Name"])
                    if cluster == name or cluster.endswith(f".{name}"):
                        zones.add(zone_id(zone["Id"]))
        wanted = {f"{prefix}.{cluster}" for prefix in RECORD_PREFIXES}
        found: list[Actual] = []
        for zone in sorted(zones):
            for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
                for record in page.get("ResourceRecordSets") or []:
                    name = _bare(record["Name"])
                    if name not in wanted or record["Type"] != "A" or "AliasTarget" not in record:
                        continue
                    target = record["AliasTarget"]
                    props = {
                        "hosted_zone_id": zone,
                        "record_name": f"{name}.",
                        "type": "A",
                        "alias_target": {
                            "dns_name": _bare(target["DNSName"]),
                            "hosted_zone_id": target["HostedZoneId"],
                        },
                    }
                    found.append(Actual(self.kind, name, {"id": f"{zone}/{name}/A"}, props))
        return found

    @staticmethod
    def _change(action: str, props: dict[str, Any]) -> dict[str, Any]:
        target = props["alias_target"]
        return {
            "Action": action,
            "ResourceRecordSet": {
                "Name": props["record_name"],
                "Type": props["type"],
                "AliasTarget": {
                    "DNSName": _bare(str(target["dns_name"])),
                    "HostedZoneId": target["hosted_zone_id"],
                    "EvaluateTargetHealth": False,
                },
            },
        }

    def create(self, cloud: Any, desired: Resource, props: dict[str, Any]) -> dict[str, Any]:
        cloud.client("route53").change_resource_record_sets(
            HostedZoneId=props["hosted_zone_id"], ChangeBatch={"Changes": [self._change("UPSERT", props)]}
        )
        return {"id": f"{props['hosted_zone_id']}/{_bare(props['record_name'])}/A"}

    def update(
        self, cloud: Any, actual: Actual, props: dict[str, Any], changes: list[FieldChange]
    ) -> dict[str, Any]:
        self.create(cloud, Resource(self.kind, actual.name, props), props)
        return dict(actual.attrs)

    def delete(self, cloud: Any, actual: Actual) -> None:
        try:
            cloud.client("route53").change_resource_record_sets(
                HostedZoneId=actual.props["hosted_zone_id"],
                ChangeBatch={"Changes": [self._change("DELETE", actual.props)]},
            )
        except ClientError as exc:
            if error_code(exc) not in ("InvalidChangeBatch", "NoSuchHostedZone"):
                raise


DNS_KINDS: list[Any] = [DNSRecord()]
