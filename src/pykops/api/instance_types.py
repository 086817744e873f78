"""The EC2 instance types pykops knows about, and the size checks built on them.

The table lives in ``data/instance_types.yaml`` (package data). Its numbers are those of the EC2
``DescribeInstanceTypes`` API: default vCPUs, memory in GiB (MiB / 1024), CPU architecture and whether
the type is burstable (T family, CPU credits). The module is pure: it never calls AWS.

An instance type missing from the table is not an error by itself (AWS adds types all the time):
:func:`lookup` returns ``None`` and the size checks stay silent. Callers that want to reject typos use
:func:`suggest` to build a "did you mean" message.

kops facts used here (kubernetes/kops, ``upup/pkg/fi/cloudup/awsup/aws_cloud.go``,
``DefaultInstanceType``): for control-plane and node groups kops picks the first available of
t3.medium, c5.large, c4.large, t4g.medium (t3.medium being "the cheapest instance with 4GB of mem");
for bastions t3.micro, t2.micro, t4g.micro.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

import yaml

from pykops.errors import SpecError

Arch = Literal["x86_64", "arm64"]

#: A control-plane node runs etcd, kube-apiserver, the controller manager and the scheduler; below this
#: much memory it gets OOM-killed or swaps itself to death (the kops tutorial: "t2.micro are too small").
CONTROL_PLANE_MIN_MEMORY_GIB = 2.0
#: Below this a worker has no room left for pods once kubelet, the container runtime and the CNI run.
NODE_MIN_MEMORY_GIB = 1.0

#: kops' default candidates for control-plane and node groups, in order of preference.
DEFAULT_NODE_TYPES: tuple[str, ...] = ("t3.medium", "c5.large", "c4.large", "t4g.medium")
#: kops' default candidates for bastion groups, in order of preference.
DEFAULT_BASTION_TYPES: tuple[str, ...] = ("t3.micro", "t2.micro", "t4g.micro")

_DATA_FILE = "instance_types.yaml"
_ARCHES: tuple[str, ...] = ("x86_64", "arm64")


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type."""

    name: str
    vcpu: int
    memory_gib: float
    arch: Arch
    burstable: bool

    @property
    def family(self) -> str:
        """The part before the dot: ``m5`` for ``m5.large``."""
        return self.name.split(".", 1)[0]

    def describe(self) -> str:
        """A short human description such as ``t2.micro (1 vCPU, 1 GiB memory)``."""
        cpus = "vCPU" if self.vcpu == 1 else "vCPUs"
        return f"{self.name} ({self.vcpu} {cpus}, {_format_gib(self.memory_gib)} GiB memory)"


def _format_gib(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _parse_entry(name: str, raw: Any) -> InstanceType:
    where = f"{_DATA_FILE}: instanceTypes.{name}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with vcpu, memoryGiB, arch and burstable")
    vcpu = raw.get("vcpu")
    memory = raw.get("memoryGiB")
    arch = raw.get("arch")
    burstable = raw.get("burstable")
    if not isinstance(vcpu, int) or isinstance(vcpu, bool) or vcpu < 1:
        raise SpecError(f"{where}: vcpu must be a positive integer, got {vcpu!r}")
    if not isinstance(memory, int | float) or isinstance(memory, bool) or memory <= 0:
        raise SpecError(f"{where}: memoryGiB must be a positive number, got {memory!r}")
    if arch not in _ARCHES:
        raise SpecError(f"{where}: arch must be one of {', '.join(_ARCHES)}, got {arch!r}")
    if not isinstance(burstable, bool):
        raise SpecError(f"{where}: burstable must be true or false, got {burstable!r}")
    return InstanceType(
        name=name, vcpu=vcpu, memory_gib=float(memory), arch=cast(Arch, arch), burstable=burstable
    )


@functools.cache
def _table() -> dict[str, InstanceType]:
    text = resources.files("pykops.api").joinpath("data").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    entries = doc.get("instanceTypes") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise SpecError(f"{_DATA_FILE}: expected a top-level 'instanceTypes' mapping")
    return {str(name): _parse_entry(str(name), raw) for name, raw in entries.items()}


def all_types() -> dict[str, InstanceType]:
    """Every known instance type by name (a fresh dict; the table itself is cached and shared)."""
    return dict(_table())


def lookup(name: str) -> InstanceType | None:
    """The instance type called ``name`` (exact, case-insensitive), or ``None`` if pykops does not know it."""
    return _table().get(name.strip().lower())


def suggest(name: str, limit: int = 3) -> list[str]:
    """Known instance types close to ``name``, best first, for a "did you mean" message.

    >>> suggest("t2.smal")[0]
    't2.small'
    """
    wanted = name.strip().lower()
    if not wanted:
        return []
    return difflib.get_close_matches(wanted, list(_table()), n=limit, cutoff=0.6)


def control_plane_size_warning(name: str) -> str | None:
    """A warning if ``name`` is too small to run a control-plane node, else ``None``.

    The rule is memory only: at least :data:`CONTROL_PLANE_MIN_MEMORY_GIB` GiB. Unknown types give ``None``
    (they cannot be checked; unknown names are reported elsewhere with :func:`suggest`).
    """
    itype = lookup(name)
    if itype is None or itype.memory_gib >= CONTROL_PLANE_MIN_MEMORY_GIB:
        return None
    return (
        f"instance type {itype.describe()} is too small for the control plane: it needs at least "
        f"{_format_gib(CONTROL_PLANE_MIN_MEMORY_GIB)} GiB of memory for etcd and the API server; "
        f"use {DEFAULT_NODE_TYPES[0]} or larger"
    )


def node_size_warning(name: str) -> str | None:
    """A warning if ``name`` is too small for a worker node (under :data:`NODE_MIN_MEMORY_GIB` GiB)."""
    itype = lookup(name)
    if itype is None or itype.memory_gib >= NODE_MIN_MEMORY_GIB:
        return None
    return (
        f"instance type {itype.describe()} is too small for a node: it needs at least "
        f"{_format_gib(NODE_MIN_MEMORY_GIB)} GiB of memory to run pods; use {DEFAULT_NODE_TYPES[0]} or larger"
    )
