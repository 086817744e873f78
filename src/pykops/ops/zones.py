"""Availability zones of a region (the tutorial's ``aws ec2 describe-availability-zones`` and ``ZONES``)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pykops.errors import PykopsError, UsageError


@dataclass(frozen=True)
class Zone:
    name: str
    state: str
    zone_id: str
    region: str


def default_region(region: str | None = None) -> str:
    """``region``, else boto3's configured region (``AWS_REGION``, ``AWS_DEFAULT_REGION``, profile)."""
    found = region or boto3.session.Session().region_name
    if not found:
        raise UsageError("no AWS region: pass --region or set AWS_REGION, e.g. export AWS_REGION=eu-west-1")
    return str(found)


def list_zones(region: str) -> list[Zone]:
    """The region's available availability zones (not Local Zones or Wavelength Zones), sorted by name."""
    ec2 = boto3.session.Session().client("ec2", region_name=region)
    try:
        resp = ec2.describe_availability_zones(
            Filters=[
                {"Name": "state", "Values": ["available"]},
                {"Name": "zone-type", "Values": ["availability-zone"]},
            ]
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PykopsError(f"cannot list the availability zones of {region} ({code}): {exc}") from None
    except BotoCoreError as exc:
        raise PykopsError(f"cannot reach AWS in {region}: {exc}") from None
    zones = [
        Zone(str(z["ZoneName"]), str(z["State"]), str(z.get("ZoneId", "")), str(z.get("RegionName", region)))
        for z in resp["AvailabilityZones"]
        # The filters already select these; checked again so that a lax endpoint cannot widen the list.
        if z.get("ZoneType", "availability-zone") == "availability-zone" and z.get("State") == "available"
    ]
    return sorted(zones, key=lambda z: z.name)
