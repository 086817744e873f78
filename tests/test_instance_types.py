"""The EC2 instance type table and the size warnings built on it."""

from __future__ import annotations

import dataclasses

import pytest

from pykops.api.instance_types import (
    CONTROL_PLANE_MIN_MEMORY_GIB,
    DEFAULT_BASTION_TYPES,
    DEFAULT_NODE_TYPES,
    Arch,
    InstanceType,
    all_types,
    control_plane_size_warning,
    lookup,
    node_size_warning,
    suggest,
)

REQUIRED_FAMILIES = {
    "t2": ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"],
    "t3": ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"],
    "t3a": ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"],
    "t4g": ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"],
    "m5": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "metal"],
    "m5a": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge"],
    "m6i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "32xlarge",
        "metal",
    ],
    "m6a": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "32xlarge",
        "48xlarge",
        "metal",
    ],
    "m6g": ["medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
    "m7i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "48xlarge",
        "metal-24xl",
        "metal-48xl",
    ],
    "m7g": ["medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
    "c5": ["large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge", "24xlarge", "metal"],
    "c6i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "32xlarge",
        "metal",
    ],
    "c6a": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "32xlarge",
        "48xlarge",
        "metal",
    ],
    "c6g": ["medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
    "c7i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "48xlarge",
        "metal-24xl",
        "metal-48xl",
    ],
    "c7g": ["medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
    "r5": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "metal"],
    "r6i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "32xlarge",
        "metal",
    ],
    "r6g": ["medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
    "r7i": [
        "large",
        "xlarge",
        "2xlarge",
        "4xlarge",
        "8xlarge",
        "12xlarge",
        "16xlarge",
        "24xlarge",
        "48xlarge",
        "metal-24xl",
        "metal-48xl",
    ],
    "i3": ["large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge", "metal"],
    "g4dn": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal"],
}


@pytest.mark.parametrize("family", sorted(REQUIRED_FAMILIES))
def test_families_complete(family: str) -> None:
    table = all_types()
    missing = [f"{family}.{size}" for size in REQUIRED_FAMILIES[family] if f"{family}.{size}" not in table]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "vcpu", "memory", "arch", "burstable"),
    [
        ("t2.nano", 1, 0.5, "x86_64", True),
        ("t2.micro", 1, 1.0, "x86_64", True),
        ("t2.small", 1, 2.0, "x86_64", True),
        ("t2.medium", 2, 4.0, "x86_64", True),
        ("t3.nano", 2, 0.5, "x86_64", True),
        ("t3.medium", 2, 4.0, "x86_64", True),
        ("t3a.2xlarge", 8, 32.0, "x86_64", True),
        ("t4g.micro", 2, 1.0, "arm64", True),
        ("t4g.medium", 2, 4.0, "arm64", True),
        ("m5.large", 2, 8.0, "x86_64", False),
        ("m5.24xlarge", 96, 384.0, "x86_64", False),
        ("m6g.medium", 1, 4.0, "arm64", False),
        ("m6i.32xlarge", 128, 512.0, "x86_64", False),
        ("m7i.metal-48xl", 192, 768.0, "x86_64", False),
        ("m7g.16xlarge", 64, 256.0, "arm64", False),
        ("c5.large", 2, 4.0, "x86_64", False),
        ("c5.9xlarge", 36, 72.0, "x86_64", False),
        ("c6a.48xlarge", 192, 384.0, "x86_64", False),
        ("c6g.medium", 1, 2.0, "arm64", False),
        ("c7g.xlarge", 4, 8.0, "arm64", False),
        ("r5.large", 2, 16.0, "x86_64", False),
        ("r6g.metal", 64, 512.0, "arm64", False),
        ("r7i.48xlarge", 192, 1536.0, "x86_64", False),
        ("i3.large", 2, 15.25, "x86_64", False),
        ("i3.metal", 72, 512.0, "x86_64", False),
        ("g4dn.xlarge", 4, 16.0, "x86_64", False),
        ("g4dn.12xlarge", 48, 192.0, "x86_64", False),
        ("m3.medium", 1, 3.75, "x86_64", False),
        ("c4.large", 2, 3.75, "x86_64", False),
    ],
)
def test_lookup_numbers(name: str, vcpu: int, memory: float, arch: Arch, burstable: bool) -> None:
    assert lookup(name) == InstanceType(
        name=name, vcpu=vcpu, memory_gib=memory, arch=arch, burstable=burstable
    )


def test_lookup_normalizes_and_misses() -> None:
    assert lookup(" T3.Medium ") == lookup("t3.medium")
    assert lookup("t3.medium") is not None
    assert lookup("t3.mediumm") is None
    assert lookup("") is None
    assert lookup("m99.large") is None


def test_instance_type_is_frozen_and_describes_itself() -> None:
    t2 = lookup("t2.micro")
    assert t2 is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        t2.vcpu = 4  # type: ignore[misc]
    assert t2.family == "t2"
    assert t2.describe() == "t2.micro (1 vCPU, 1 GiB memory)"
    m3 = lookup("m3.medium")
    assert m3 is not None and m3.describe() == "m3.medium (1 vCPU, 3.75 GiB memory)"


def test_all_types_is_a_copy() -> None:
    table = all_types()
    assert len(table) >= 200
    table.pop("t2.micro")
    assert "t2.micro" in all_types()
    assert all(name == t.name for name, t in all_types().items())


def test_table_invariants() -> None:
    for t in all_types().values():
        assert t.vcpu >= 1
        assert t.memory_gib > 0
        assert t.arch in ("x86_64", "arm64")
        assert t.burstable == t.family.startswith("t"), t.name
        # Graviton families (the "g" suffix) are arm64; g4dn is an NVIDIA GPU family on Intel.
        assert (t.arch == "arm64") == (t.family in {"t4g", "m6g", "m7g", "c6g", "c7g", "r6g"}), t.name


def test_kops_default_types_are_known() -> None:
    for name in DEFAULT_NODE_TYPES + DEFAULT_BASTION_TYPES:
        assert lookup(name) is not None, name


# ---------------------------------------------------------------------------------------------------------
# suggest


def test_suggest_typo() -> None:
    assert "t2.small" in suggest("t2.smal")
    assert suggest("t2.smal")[0] == "t2.small"
    assert suggest("t3.meduim")[0] == "t3.medium"
    assert suggest("m5.larg")[0] == "m5.large"
    assert "c5.xlarge" in suggest("c5.xlarg")


def test_suggest_limits_and_nonsense() -> None:
    assert len(suggest("t3.small")) <= 3
    assert len(suggest("t3.small", limit=5)) == 5
    assert suggest("") == []
    assert suggest("zzzzzzzzzzzzzz") == []


# ---------------------------------------------------------------------------------------------------------
# warnings


@pytest.mark.parametrize("name", ["t2.micro", "t2.nano", "t3.micro", "t3a.nano", "t4g.micro"])
def test_control_plane_too_small(name: str) -> None:
    warning = control_plane_size_warning(name)
    assert warning is not None
    assert warning.startswith(f"instance type {name} (")
    assert "too small for the control plane" in warning
    assert "2 GiB" in warning


def test_control_plane_warning_text() -> None:
    assert control_plane_size_warning("t2.micro") == (
        "instance type t2.micro (1 vCPU, 1 GiB memory) is too small for the control plane: it needs at least "
        "2 GiB of memory for etcd and the API server; use t3.medium or larger"
    )


@pytest.mark.parametrize("name", ["t2.small", "t3.small", "t3.medium", "m3.medium", "c5.large", "m6g.medium"])
def test_control_plane_big_enough(name: str) -> None:
    info = lookup(name)
    assert info is not None and info.memory_gib >= CONTROL_PLANE_MIN_MEMORY_GIB
    assert control_plane_size_warning(name) is None


@pytest.mark.parametrize("name", ["t2.nano", "t3.nano", "t3a.nano", "t4g.nano"])
def test_node_too_small(name: str) -> None:
    warning = node_size_warning(name)
    assert warning is not None
    assert "too small for a node" in warning
    assert "1 GiB" in warning


@pytest.mark.parametrize("name", ["t2.micro", "t3.micro", "t2.medium", "m5.large"])
def test_node_big_enough(name: str) -> None:
    assert node_size_warning(name) is None


def test_unknown_types_do_not_warn() -> None:
    assert control_plane_size_warning("x9.huge") is None
    assert node_size_warning("x9.huge") is None
