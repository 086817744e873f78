"""Resolve instance-group images (kops' ``<owner>/<AMI name>`` or ``ami-...``) to AMIs.

``update cluster`` calls :func:`resolve_images` once, before the (pure) model builders run, with every image
named by the instance groups. Names are looked up with one ``DescribeImages`` call (all owners, all names);
AMI ids given directly with one more. As in kops (``awsup.ResolveImage``): the part before the first ``/``
is the owner (an account id or a well-known alias such as ``ubuntu``), the rest is the AMI name, which may
contain ``*`` wildcards; when several images match, the newest wins. A name without ``/`` is looked up
among all the images visible to the account.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from pykops.api.channel import resolve_image_owner
from pykops.errors import SpecError


@dataclass(frozen=True)
class Image:
    """A resolved AMI: what the launch templates need from it."""

    id: str
    name: str
    owner_id: str
    root_device_name: str
    architecture: str
    creation_date: str


@dataclass(frozen=True)
class _Wanted:
    spec: str
    owner: str | None  # account id or alias; None: any owner
    name: str


def _parse(spec: str) -> _Wanted | None:
    """``None`` for an ``ami-`` id; otherwise the owner and AMI name (kops' split at the first ``/``)."""
    if spec.startswith("ami-") and "/" not in spec:
        return None
    if "/" in spec:
        owner, name = spec.split("/", 1)
        return _Wanted(spec, resolve_image_owner(owner), name)
    return _Wanted(spec, None, spec)


def _image(raw: dict[str, Any]) -> Image:
    return Image(
        id=str(raw["ImageId"]),
        name=str(raw.get("Name", "")),
        owner_id=str(raw.get("OwnerId", "")),
        root_device_name=str(raw.get("RootDeviceName", "")),
        architecture=str(raw.get("Architecture", "")),
        creation_date=str(raw.get("CreationDate", "")),
    )


def _describe(cloud: Any, **kwargs: Any) -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = []
    for page in cloud.ec2.get_paginator("describe_images").paginate(**kwargs):
        images.extend(page.get("Images", []))
    return images


def _matches(wanted: _Wanted, raw: dict[str, Any]) -> bool:
    name = str(raw.get("Name", ""))
    if name != wanted.name and not ("*" in wanted.name and fnmatch.fnmatchcase(name, wanted.name)):
        return False
    if wanted.owner is None:
        return True
    if wanted.owner.isdigit():
        return str(raw.get("OwnerId", "")) == wanted.owner
    # A non-numeric owner ("self", "amazon", "aws-marketplace"): DescribeImages already restricted the owners.
    alias = raw.get("ImageOwnerAlias")
    return alias is None or alias == wanted.owner or wanted.owner == "self"


def _not_found(spec: str, region: str) -> SpecError:
    return SpecError(f"image {spec!r} not found in region {region}: check spec.image")


def resolve_images(cloud: Any, names: list[str]) -> dict[str, Image]:
    """Map each image spec in ``names`` to its :class:`Image` (``result[spec].id`` is the AMI id).

    Costs one ``DescribeImages`` call for the ``owner/name`` specs (plus one for ``ami-`` ids, plus one for
    owner-less names, when there are any). An image that does not exist raises :class:`SpecError`.
    """
    specs = sorted(set(names))
    ids = [s for s in specs if _parse(s) is None]
    wanted = [w for w in (_parse(s) for s in specs) if w is not None]
    result: dict[str, Image] = {}

    if ids:
        found = {
            str(raw["ImageId"]): raw
            for raw in _describe(cloud, Filters=[{"Name": "image-id", "Values": ids}])
        }
        for spec in ids:
            if spec not in found:
                raise _not_found(spec, cloud.region)
            result[spec] = _image(found[spec])

    owned = [w for w in wanted if w.owner is not None]
    ownerless = [w for w in wanted if w.owner is None]
    for group in (owned, ownerless):
        if not group:
            continue
        kwargs: dict[str, Any] = {"Filters": [{"Name": "name", "Values": sorted({w.name for w in group})}]}
        owners = sorted({w.owner for w in group if w.owner is not None})
        if owners:
            kwargs["Owners"] = owners
        candidates = _describe(cloud, **kwargs)
        for w in group:
            matching = [raw for raw in candidates if _matches(w, raw)]
            if not matching:
                raise _not_found(w.spec, cloud.region)
            newest = max(matching, key=lambda raw: (str(raw.get("CreationDate", "")), str(raw["ImageId"])))
            result[w.spec] = _image(newest)
    return result


def root_device_name(cloud: Any, image_id: str) -> str:
    """The root device name (``/dev/sda1``, ``/dev/xvda``) of an AMI; one ``DescribeImages`` call."""
    images = _describe(cloud, Filters=[{"Name": "image-id", "Values": [image_id]}])
    if not images or not images[0].get("RootDeviceName"):
        raise _not_found(image_id, cloud.region)
    return str(images[0]["RootDeviceName"])
