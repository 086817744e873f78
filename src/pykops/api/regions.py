"""The AWS regions and availability zones pykops knows without asking AWS (pure, from package data)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import yaml

from pykops.errors import SpecError

_ZONE_RE = re.compile(r"^(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d+)(?P<letter>[a-z])$")


@cache
def regions() -> dict[str, tuple[str, ...]]:
    text = resources.files("pykops.api").joinpath("data/regions.yaml").read_text(encoding="utf-8")
    raw: dict[str, list[str]] = yaml.safe_load(text)
    return {region: tuple(f"{region}{letter}" for letter in letters) for region, letters in raw.items()}


def region_of_zone(zone: str) -> str:
    """``eu-west-1a`` → ``eu-west-1``; a malformed or unknown zone raises a one-line SpecError."""
    match = _ZONE_RE.match(zone)
    if not match:
        raise SpecError(f"invalid zone {zone!r}: expected an availability zone name such as eu-west-1a")
    region = match.group("region")
    known = regions()
    if region not in known:
        raise SpecError(f"unknown zone {zone!r}: {region} is not an AWS region pykops knows")
    if zone not in known[region]:
        raise SpecError(f"unknown zone {zone!r}: region {region} has zones {', '.join(known[region])}")
    return region
