"""The etcd volumes of a control-plane machine (what kOps' protokube / etcd-manager do for volumes).

Every etcd member has an EBS volume (``update cluster`` creates them, see docs/resources.md), tagged
``k8s.io/etcd/<main|events>=<member>/<all members>``, ``k8s.io/role/control-plane=1`` and
``kubernetes.io/cluster/<cluster>=owned``, in the zone of the member's instance group. A control-plane
machine finds the volumes of its zone and of its members, attaches them and mounts each at
``/mnt/master-<volume id>``; the etcd static pods keep their data there. So when a control-plane instance
is replaced, the new one takes over the same volumes, hence the same etcd members and data.

Like etcd-manager, a machine only takes a volume that is ``available`` (or already attached to itself).
A volume still attached to an instance that is terminated or shutting down is detached first (AWS
detaches it on its own soon after termination; detaching only hastens that); one attached to a live
instance is left alone and waited for.

:func:`plan_attachments` is the pure decision; :func:`attach_etcd_volumes` runs it against EC2 (boto3,
so ``AWS_ENDPOINT_URL`` points it at the emulator in tests) until every wanted volume is attached.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import ClientError

from pykops.errors import PykopsError
from pykops.nodeup.config import EtcdMemberRef
from pykops.nodeup.render import etcd_data_dir, etcd_member_host

ETCD_TAG_PREFIX = "k8s.io/etcd/"
CONTROL_PLANE_TAG = "k8s.io/role/control-plane"
# Device names offered to AttachVolume, as etcd-manager uses them (/dev/xvdu onwards).
DEVICES = tuple(f"/dev/xvd{letter}" for letter in "uvwxyz")
GONE_STATES = frozenset({"shutting-down", "terminated"})


class VolumeError(PykopsError):
    """The etcd volumes of this machine cannot be found or attached."""


@dataclass(frozen=True)
class EtcdVolume:
    """An etcd member's volume as EC2 describes it."""

    volume_id: str
    etcd_cluster: str
    member: str
    zone: str
    state: str  # creating, available, in-use, ...
    attached_to: str | None = None
    attachment_state: str | None = None  # attaching, attached, detaching, detached
    device: str | None = None


@dataclass(frozen=True)
class Action:
    kind: Literal["keep", "attach", "detach", "wait"]
    volume: EtcdVolume
    reason: str = ""


def parse_volume(raw: Mapping[str, Any]) -> EtcdVolume | None:
    """An EC2 ``Volume`` → EtcdVolume, or None if it carries no ``k8s.io/etcd/*`` tag."""
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags") or []}
    for key, value in sorted(tags.items()):
        if key.startswith(ETCD_TAG_PREFIX):
            attachments = [a for a in raw.get("Attachments") or [] if a.get("State") != "detached"]
            first = attachments[0] if attachments else {}
            return EtcdVolume(
                volume_id=raw["VolumeId"],
                etcd_cluster=key[len(ETCD_TAG_PREFIX) :],
                member=str(value).split("/", 1)[0],
                zone=raw.get("AvailabilityZone", ""),
                state=raw.get("State", ""),
                attached_to=first.get("InstanceId"),
                attachment_state=first.get("State"),
                device=first.get("Device"),
            )
    return None


def plan_attachments(
    volumes: Iterable[EtcdVolume],
    *,
    instance_id: str,
    zone: str,
    members: Iterable[EtcdMemberRef],
    instance_states: Mapping[str, str],
) -> dict[str, Action]:
    """What to do for each etcd cluster this machine runs a member of (pure).

    ``members`` are the group's members (from its NodeupConfig); ``instance_states`` maps the instances
    volumes are attached to onto their state (``running``, ``terminated``...; unknown means gone).
    Raises VolumeError when a member has no volume in this zone.
    """
    candidates = [v for v in volumes if v.zone == zone]
    plan: dict[str, Action] = {}
    for member in members:
        mine = [v for v in candidates if v.etcd_cluster == member.etcd_cluster and v.member == member.name]
        if not mine:
            raise VolumeError(
                f"no volume for etcd-{member.etcd_cluster} member {member.name} in {zone} "
                f"(tag {ETCD_TAG_PREFIX}{member.etcd_cluster}={member.name}/...); "
                "run pykops update cluster --yes to create it"
            )
        attached_here = [v for v in mine if v.attached_to == instance_id]
        if attached_here:
            volume = attached_here[0]
            kind: Literal["keep", "wait"] = "keep" if volume.attachment_state == "attached" else "wait"
            plan[member.etcd_cluster] = Action(kind, volume, f"attachment {volume.attachment_state}")
            continue
        available = [v for v in mine if v.state == "available"]
        if available:
            plan[member.etcd_cluster] = Action("attach", available[0], "available")
            continue
        volume = mine[0]
        owner = volume.attached_to
        owner_state = instance_states.get(owner or "", "terminated")
        if owner and owner_state in GONE_STATES and volume.attachment_state != "detaching":
            plan[member.etcd_cluster] = Action(
                "detach", volume, f"attached to {owner}, which is {owner_state}"
            )
        else:
            plan[member.etcd_cluster] = Action(
                "wait",
                volume,
                f"{volume.state}, attached to {owner} ({owner_state})" if owner else volume.state,
            )
    return plan


def describe_etcd_volumes(ec2: Any, cluster_name: str, zone: str | None = None) -> list[EtcdVolume]:
    filters = [
        {"Name": f"tag:{CONTROL_PLANE_TAG}", "Values": ["1"]},
        {"Name": f"tag:kubernetes.io/cluster/{cluster_name}", "Values": ["owned"]},
    ]
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    out: list[EtcdVolume] = []
    for page in ec2.get_paginator("describe_volumes").paginate(Filters=filters):
        for raw in page.get("Volumes", []):
            volume = parse_volume(raw)
            if volume is not None:
                out.append(volume)
    return sorted(out, key=lambda v: (v.etcd_cluster, v.member, v.volume_id))


def _instances(ec2: Any, instance_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Instances by id; ids EC2 no longer knows (long terminated) are left out."""
    from botocore.exceptions import ClientError

    ids = sorted(set(instance_ids))
    if not ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    out[instance["InstanceId"]] = instance
    except ClientError as exc:
        if "InvalidInstanceID" not in str(exc.response.get("Error", {}).get("Code", "")):
            raise
        if len(ids) > 1:
            for instance_id in ids:
                out.update(_instances(ec2, [instance_id]))
    return out


def _free_device(instance: Mapping[str, Any], taken: set[str]) -> str:
    used = {m.get("DeviceName") for m in instance.get("BlockDeviceMappings") or []} | taken
    for device in DEVICES:
        if device not in used:
            return device
    raise VolumeError(
        f"no free device name for instance {instance.get('InstanceId')} among {', '.join(DEVICES)}"
    )


def attach_etcd_volumes(
    ec2: Any,
    *,
    cluster_name: str,
    instance_id: str,
    zone: str,
    members: Iterable[EtcdMemberRef],
    timeout: float = 600.0,
    poll: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, EtcdVolume]:
    """Attach this machine's etcd volumes; returns them by etcd cluster once EC2 reports them attached."""
    members = list(members)
    if not members:
        return {}
    deadline = clock() + timeout
    requested: set[str] = set()
    wait = min(0.25, poll)  # attachments usually complete within a second or two: poll fast, then back off
    while True:
        volumes = describe_etcd_volumes(ec2, cluster_name, zone)
        owners = {v.attached_to for v in volumes if v.attached_to}
        instances = _instances(ec2, owners | {instance_id})
        states = {i: str((inst.get("State") or {}).get("Name", "")) for i, inst in instances.items()}
        plan = plan_attachments(
            volumes, instance_id=instance_id, zone=zone, members=members, instance_states=states
        )
        if all(action.kind == "keep" for action in plan.values()):
            return {name: action.volume for name, action in plan.items()}
        taken: set[str] = set()
        for name, action in sorted(plan.items()):
            volume = action.volume
            if action.kind == "attach":
                me = instances.get(instance_id)
                if me is None:
                    raise VolumeError(f"instance {instance_id} not found in EC2")
                device = _free_device(me, taken)
                taken.add(device)
                log(f"attaching {volume.volume_id} (etcd-{name} member {volume.member}) as {device}")
                try:
                    ec2.attach_volume(VolumeId=volume.volume_id, InstanceId=instance_id, Device=device)
                except ClientError as err:
                    if err.response.get("Error", {}).get("Code") != "VolumeInUse":
                        raise
                    # Another machine took it between our look and our request: look again next round.
                    log(f"{volume.volume_id} (etcd-{name}) was just attached elsewhere; looking again")
                    continue
                requested.add(volume.volume_id)
            elif action.kind == "detach":
                log(f"detaching {volume.volume_id} (etcd-{name}): {action.reason}")
                ec2.detach_volume(VolumeId=volume.volume_id, InstanceId=volume.attached_to, Force=True)
            elif action.kind == "wait":
                log(f"waiting for {volume.volume_id} (etcd-{name}): {action.reason}")
        if clock() >= deadline:
            waiting = ", ".join(
                f"etcd-{n} {a.volume.volume_id} ({a.reason})"
                for n, a in sorted(plan.items())
                if a.kind != "keep"
            )
            raise VolumeError(f"timed out after {timeout:.0f}s attaching etcd volumes: {waiting}")
        sleep(wait)
        wait = min(poll, wait * 2)


def mount_point(volume_id: str, root: Path | None = None) -> Path:
    """``/mnt/master-<volume id>``, or that path under ``root`` (refusing anything that would leave it)."""
    path = etcd_data_dir(volume_id)
    if root is None:
        return Path(path)
    base = root.resolve()
    target = (base / path.lstrip("/")).resolve()
    if "/" in volume_id or base not in target.parents:
        raise VolumeError(f"refusing to create {path} outside {base}")
    return target


def mount_etcd_volume(volume: EtcdVolume, *, root: Path | None = None, wait: float = 120.0) -> Path:
    """Mount an attached volume at ``/mnt/master-<volume id>`` (formatting it ext4 if it is blank).

    With ``root`` (``--root`` mode) nothing on the host is touched: the mount point is created under
    ``root`` and nothing is mounted.
    """
    target = mount_point(volume.volume_id, root)
    if root is not None:
        target.mkdir(parents=True, exist_ok=True)
        return target
    device = _wait_for_device(volume, wait)
    target.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target):
        return target
    blkid = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True)
    if not blkid.stdout.strip():
        subprocess.run(["mkfs.ext4", "-q", "-L", f"etcd-{volume.etcd_cluster}", device], check=True)
    subprocess.run(["mount", "-o", "defaults,noatime", device, str(target)], check=True)
    return target


def _device_candidates(volume: EtcdVolume) -> list[str]:
    """The block device an attached EBS volume shows up as (NVMe on Nitro instances, else xvd*)."""
    serial = volume.volume_id.replace("-", "")
    out = [f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}"]
    if volume.device:
        out += [volume.device, volume.device.replace("/dev/xvd", "/dev/sd")]
    return out


def _wait_for_device(volume: EtcdVolume, wait: float) -> str:
    deadline = time.monotonic() + wait
    while True:
        for candidate in _device_candidates(volume):
            if os.path.exists(candidate):
                return os.path.realpath(candidate)
        if time.monotonic() >= deadline:
            raise VolumeError(
                f"volume {volume.volume_id} is attached but no device appeared "
                f"(looked for {', '.join(_device_candidates(volume))})"
            )
        time.sleep(1.0)


def etcd_peer_addresses(ec2: Any, cluster_name: str) -> dict[str, str]:
    """Member DNS name → private IP of the instance its volume is attached to, for every etcd member.

    The etcd static pods address their peers by name (``etcd-a.internal.<cluster>``); written into
    ``/etc/hosts`` these names resolve without a DNS zone (``.k8s.local`` clusters).
    """
    volumes = [v for v in describe_etcd_volumes(ec2, cluster_name) if v.attached_to]
    instances = _instances(ec2, {v.attached_to for v in volumes if v.attached_to})
    out: dict[str, str] = {}
    for volume in volumes:
        instance = instances.get(volume.attached_to or "")
        address = (instance or {}).get("PrivateIpAddress")
        if address and (instance or {}).get("State", {}).get("Name") == "running":
            out[etcd_member_host(volume.etcd_cluster, volume.member, cluster_name)] = str(address)
    return dict(sorted(out.items()))


HOSTS_BEGIN = "# Begin host entries managed by pykops - do not edit"
HOSTS_END = "# End host entries managed by pykops"


def update_hosts(text: str, entries: Mapping[str, str]) -> str:
    """``/etc/hosts`` with pykops' block replaced by ``entries`` (name → IP); the rest is kept (pure)."""
    lines = text.splitlines()
    kept: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == HOSTS_BEGIN:
            inside = True
            continue
        if line.strip() == HOSTS_END:
            inside = False
            continue
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    block = [HOSTS_BEGIN, *(f"{ip}\t{name}" for name, ip in sorted(entries.items())), HOSTS_END]
    return "\n".join([*kept, "", *block]) + "\n" if kept else "\n".join(block) + "\n"
