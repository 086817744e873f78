"""CIDR parsing and kops-compatible subnet CIDR assignment.

Expected values come from kubernetes/kops: ``upup/pkg/fi/cloudup/subnets_test.go`` (``Test_AssignSubnets``,
network 10.0.0.0/8) and the ``tests/integration/create_cluster/*/expected-v1alpha2.yaml`` fixtures
(network 172.20.0.0/16).
"""

from __future__ import annotations

import ipaddress

import pytest

from pykops.api.cidr import (
    SubnetRequest,
    assign_subnet_cidrs,
    contains,
    overlaps,
    parse_cidr,
    split,
)
from pykops.errors import SpecError

NET = "172.20.0.0/16"
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]


def public(n: int) -> list[tuple[str, str]]:
    return [(zone, "Public") for zone in ZONES[:n]]


def private(n: int) -> list[tuple[str, str]]:
    """What ``create cluster --topology private`` asks for: a private and a utility subnet per zone."""
    return [(zone, "Private") for zone in ZONES[:n]] + [(f"utility-{zone}", "Utility") for zone in ZONES[:n]]


# ---------------------------------------------------------------------------------------------------------
# parse_cidr / overlaps / contains


def test_parse_cidr_valid() -> None:
    assert parse_cidr("172.20.0.0/16") == ipaddress.IPv4Network("172.20.0.0/16")
    assert parse_cidr(" 10.0.0.0/8 ") == ipaddress.IPv4Network("10.0.0.0/8")
    assert parse_cidr("0.0.0.0/0") == ipaddress.IPv4Network("0.0.0.0/0")
    assert parse_cidr("1.2.3.4/32").num_addresses == 1


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x",
        "172.20.0.0",
        "172.20.0.0/33",
        "172.20.0.0/-1",
        "172.20.0.0/255.255.0.0",
        "256.1.1.1/8",
        "::/0",
        "172.20.1.0/16",
        "172.20.0.0/16/1",
        "172.20.0/16",
    ],
)
def test_parse_cidr_invalid(bad: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_cidr(bad, "spec.subnets[0].cidr")
    assert err.value.message == f"spec.subnets[0].cidr: invalid CIDR {bad!r}"


def test_parse_cidr_hints() -> None:
    with pytest.raises(SpecError) as err:
        parse_cidr("x", "spec.subnets[0].cidr")
    assert str(err.value).startswith("spec.subnets[0].cidr: invalid CIDR 'x'")
    with pytest.raises(SpecError) as err:
        parse_cidr("172.20.1.5/16", "spec.networkCIDR")
    assert err.value.hint is not None and "172.20.0.0/16" in err.value.hint
    with pytest.raises(SpecError) as err:
        parse_cidr("1.2.3.4", "spec.sshAccess[0]")
    assert err.value.hint is not None and "1.2.3.4/32" in err.value.hint


def test_overlaps_and_contains() -> None:
    assert overlaps("172.20.0.0/16", "172.20.32.0/19")
    assert overlaps("172.20.32.0/19", "172.20.0.0/16")
    assert not overlaps("172.20.0.0/19", "172.20.32.0/19")
    assert overlaps(ipaddress.IPv4Network("10.0.0.0/8"), "10.255.255.255/32")
    assert contains("172.20.0.0/16", "172.20.32.0/19")
    assert contains("172.20.0.0/16", "172.20.0.0/16")
    assert not contains("172.20.32.0/19", "172.20.0.0/16")
    assert not contains("172.20.0.0/16", "172.21.0.0/19")
    with pytest.raises(SpecError):
        overlaps("nonsense", "10.0.0.0/8")


def test_split() -> None:
    assert [str(n) for n in split(NET, 4)] == [
        "172.20.0.0/18",
        "172.20.64.0/18",
        "172.20.128.0/18",
        "172.20.192.0/18",
    ]
    assert [str(n) for n in split(NET, 1)] == [NET]
    with pytest.raises(ValueError):
        split(NET, 3)
    with pytest.raises(SpecError):
        split("10.0.0.0/31", 8)


# ---------------------------------------------------------------------------------------------------------
# assign_subnet_cidrs: the create cluster layouts (kops >= 1.28)


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        (1, ["172.20.0.0/16"]),
        (3, ["172.20.0.0/18", "172.20.64.0/18", "172.20.128.0/18"]),
        (5, ["172.20.0.0/19", "172.20.32.0/19", "172.20.64.0/19", "172.20.96.0/19", "172.20.128.0/19"]),
        (
            6,
            [
                "172.20.0.0/19",
                "172.20.32.0/19",
                "172.20.64.0/19",
                "172.20.96.0/19",
                "172.20.128.0/19",
                "172.20.160.0/19",
            ],
        ),
    ],
)
def test_public_topology(zones: int, expected: list[str]) -> None:
    assert assign_subnet_cidrs(NET, public(zones)) == dict(zip(ZONES[:zones], expected, strict=True))


def test_two_public_zones_split_in_halves() -> None:
    # kops tests/integration/create_cluster/ha_shared_zones
    assert list(assign_subnet_cidrs(NET, public(2)).values()) == ["172.20.0.0/17", "172.20.128.0/17"]


@pytest.mark.parametrize(
    ("zones", "private_cidrs", "utility_cidrs"),
    [
        (1, ["172.20.128.0/17"], ["172.20.0.0/20"]),
        (
            3,
            ["172.20.64.0/18", "172.20.128.0/18", "172.20.192.0/18"],
            ["172.20.0.0/21", "172.20.8.0/21", "172.20.16.0/21"],
        ),
        (
            5,
            ["172.20.32.0/19", "172.20.64.0/19", "172.20.96.0/19", "172.20.128.0/19", "172.20.160.0/19"],
            ["172.20.0.0/22", "172.20.4.0/22", "172.20.8.0/22", "172.20.12.0/22", "172.20.16.0/22"],
        ),
        (
            6,
            [
                "172.20.32.0/19",
                "172.20.64.0/19",
                "172.20.96.0/19",
                "172.20.128.0/19",
                "172.20.160.0/19",
                "172.20.192.0/19",
            ],
            [
                "172.20.0.0/22",
                "172.20.4.0/22",
                "172.20.8.0/22",
                "172.20.12.0/22",
                "172.20.16.0/22",
                "172.20.20.0/22",
            ],
        ),
    ],
)
def test_private_topology(zones: int, private_cidrs: list[str], utility_cidrs: list[str]) -> None:
    got = assign_subnet_cidrs(NET, private(zones))
    assert [got[z] for z in ZONES[:zones]] == private_cidrs
    assert [got[f"utility-{z}"] for z in ZONES[:zones]] == utility_cidrs
    # Every assigned subnet is inside the network and none overlap.
    nets = [parse_cidr(c) for c in got.values()]
    assert all(contains(NET, n) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_result_follows_input_order() -> None:
    got = assign_subnet_cidrs(NET, private(2))
    assert list(got) == ["us-east-1a", "us-east-1b", "utility-us-east-1a", "utility-us-east-1b"]


def test_zone_order_not_input_order() -> None:
    got = assign_subnet_cidrs(
        NET, [("us-east-1c", "Public"), ("us-east-1a", "Public"), ("us-east-1b", "Public")]
    )
    assert got == {
        "us-east-1a": "172.20.0.0/18",
        "us-east-1b": "172.20.64.0/18",
        "us-east-1c": "172.20.128.0/18",
    }


def test_explicit_zone_tuples() -> None:
    got = assign_subnet_cidrs(NET, [("z", "Public", "us-east-1a"), ("a", "Public", "us-east-1b")])
    assert got == {"z": "172.20.0.0/17", "a": "172.20.128.0/17"}


# ---------------------------------------------------------------------------------------------------------
# assign_subnet_cidrs: kops' Test_AssignSubnets (network 10.0.0.0/8)


@pytest.mark.parametrize(
    ("subnets", "expected"),
    [
        ([SubnetRequest("a", "Public", "a", cidr="10.1.0.0/16")], {}),
        ([SubnetRequest("a", "Public", "a")], {"a": "10.0.0.0/8"}),
        (
            [SubnetRequest("a", "Public", "a"), SubnetRequest("b", "Public", "b")],
            {"a": "10.0.0.0/9", "b": "10.128.0.0/9"},
        ),
        (
            [SubnetRequest("a", "Public", "b"), SubnetRequest("b", "Public", "a")],
            {"a": "10.128.0.0/9", "b": "10.0.0.0/9"},
        ),
        (
            [SubnetRequest("a", "Public", "a", cidr="10.64.0.0/11"), SubnetRequest("b", "Public", "b")],
            {"b": "10.128.0.0/9"},
        ),
        (
            [SubnetRequest("a", "Public", "a", cidr="10.0.0.0/9"), SubnetRequest("b", "Public", "b")],
            {"b": "10.128.0.0/9"},
        ),
        (
            [SubnetRequest("a", "Public", "a"), SubnetRequest("ua", "Utility", "a")],
            {"a": "10.128.0.0/9", "ua": "10.0.0.0/12"},
        ),
        ([SubnetRequest("a", "Private", "a")], {"a": "10.0.0.0/8"}),
        ([SubnetRequest("a", "Private", "a", ipv6=True)], {}),
        ([SubnetRequest("a", "DualStack", "a", ipv6=True)], {"a": "10.0.0.0/8"}),
        (
            [
                SubnetRequest("a", "Public", "a"),
                SubnetRequest("ua", "Utility", "a"),
                SubnetRequest("b", "Public", "b"),
                SubnetRequest("bp", "Private", "b"),
                SubnetRequest("ub", "Utility", "b"),
                SubnetRequest("c", "Public", "c"),
                SubnetRequest("cp", "Private", "c"),
                SubnetRequest("uc", "Utility", "c"),
            ],
            {
                "a": "10.32.0.0/11",
                "ua": "10.0.0.0/14",
                "b": "10.64.0.0/11",
                "bp": "10.96.0.0/11",
                "ub": "10.4.0.0/14",
                "c": "10.128.0.0/11",
                "cp": "10.160.0.0/11",
                "uc": "10.8.0.0/14",
            },
        ),
    ],
)
def test_kops_assign_subnets_table(subnets: list[SubnetRequest], expected: dict[str, str]) -> None:
    assert assign_subnet_cidrs("10.0.0.0/8", subnets) == expected


def test_kops_ipv6_create_cluster() -> None:
    # kops tests/integration/create_cluster/ipv6: IPv6-only private subnet, dual-stack and utility subnets.
    got = assign_subnet_cidrs(
        NET,
        [
            SubnetRequest("us-test-1a", "Private", "us-test-1a", ipv6=True),
            SubnetRequest("dualstack-us-test-1a", "DualStack", "us-test-1a", ipv6=True),
            SubnetRequest("utility-us-test-1a", "Utility", "us-test-1a", ipv6=True),
        ],
    )
    assert got == {"dualstack-us-test-1a": "172.20.64.0/18", "utility-us-test-1a": "172.20.0.0/21"}


def test_kops_complex_private_with_additional_network_cidrs() -> None:
    # kops tests/integration/create_cluster/complex-private: subnets of additional network CIDRs are
    # ignored for sizing, and same-zone utility subnets keep their input order.
    zones = ["us-test-1a", "us-test-1b", "us-test-1c"]
    extra = [
        ("us-test-1a-1", "us-test-1a", "10.1.0.0/16"),
        ("us-test-1b-2", "us-test-1b", "10.2.0.0/16"),
        ("us-test-1c-3", "us-test-1c", "10.3.0.0/16"),
        ("us-test-1a-4", "us-test-1a", "10.4.0.0/16"),
    ]
    subnets = [SubnetRequest(z, "Private", z) for z in zones]
    subnets += [SubnetRequest(name, "Private", zone, cidr=cidr) for name, zone, cidr in extra]
    subnets += [SubnetRequest(f"utility-{z}", "Utility", z) for z in zones]
    subnets += [SubnetRequest(f"utility-{name}", "Utility", zone) for name, zone, _ in extra]
    assert assign_subnet_cidrs("10.0.0.0/16", subnets) == {
        "us-test-1a": "10.0.64.0/18",
        "us-test-1b": "10.0.128.0/18",
        "us-test-1c": "10.0.192.0/18",
        "utility-us-test-1a": "10.0.0.0/21",
        "utility-us-test-1b": "10.0.24.0/21",
        "utility-us-test-1c": "10.0.40.0/21",
        "utility-us-test-1a-1": "10.0.8.0/21",
        "utility-us-test-1b-2": "10.0.32.0/21",
        "utility-us-test-1c-3": "10.0.48.0/21",
        "utility-us-test-1a-4": "10.0.16.0/21",
    }


# ---------------------------------------------------------------------------------------------------------
# already_used


def test_already_used_counts_and_reserves() -> None:
    # A fourth zone added to a three-zone public cluster takes the free quarter.
    used = ["172.20.0.0/18", "172.20.64.0/18", "172.20.128.0/18"]
    assert assign_subnet_cidrs(NET, [("us-east-1d", "Public")], used) == {"us-east-1d": "172.20.192.0/18"}


def test_already_used_outside_network_only_reserves() -> None:
    assert assign_subnet_cidrs(NET, public(1), ["10.0.0.0/24"]) == {"us-east-1a": "172.20.0.0/16"}


def test_already_used_skips_overlapping_blocks() -> None:
    got = assign_subnet_cidrs(NET, public(2), ["172.20.0.0/24"])
    # 3 subnets -> quarters; the first quarter holds the used /24.
    assert got == {"us-east-1a": "172.20.64.0/18", "us-east-1b": "172.20.128.0/18"}


def test_already_used_invalid() -> None:
    with pytest.raises(SpecError, match=r"invalid CIDR 'bogus'"):
        assign_subnet_cidrs(NET, public(1), ["bogus"])


# ---------------------------------------------------------------------------------------------------------
# legacy (pre-kops-1.28) layout, as in older kops tutorials


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        (1, ["172.20.32.0/19"]),
        (3, ["172.20.32.0/19", "172.20.64.0/19", "172.20.96.0/19"]),
        (5, ["172.20.32.0/19", "172.20.64.0/19", "172.20.96.0/19", "172.20.128.0/19", "172.20.160.0/19"]),
        (
            6,
            [
                "172.20.32.0/19",
                "172.20.64.0/19",
                "172.20.96.0/19",
                "172.20.128.0/19",
                "172.20.160.0/19",
                "172.20.192.0/19",
            ],
        ),
    ],
)
def test_legacy_public(zones: int, expected: list[str]) -> None:
    assert list(assign_subnet_cidrs(NET, public(zones), legacy=True).values()) == expected


@pytest.mark.parametrize("zones", [1, 3, 5, 6])
def test_legacy_private(zones: int) -> None:
    got = assign_subnet_cidrs(NET, private(zones), legacy=True)
    assert [got[z] for z in ZONES[:zones]] == [f"172.20.{32 * (i + 1)}.0/19" for i in range(zones)]
    assert [got[f"utility-{z}"] for z in ZONES[:zones]] == [f"172.20.{4 * i}.0/22" for i in range(zones)]


def test_legacy_limits_to_seven_zones() -> None:
    assert len(assign_subnet_cidrs(NET, [(f"z{i}", "Public") for i in range(7)], legacy=True)) == 7
    with pytest.raises(SpecError, match="too small"):
        assign_subnet_cidrs(NET, [(f"z{i}", "Public") for i in range(8)], legacy=True)


# ---------------------------------------------------------------------------------------------------------
# errors


def test_too_many_subnets() -> None:
    assert len(assign_subnet_cidrs(NET, [(f"z{i}", "Public") for i in range(8)])) == 8
    with pytest.raises(SpecError, match=r"172\.20\.0\.0/16 is too small"):
        assign_subnet_cidrs(NET, [(f"z{i}", "Public") for i in range(9)])
    # Private: 8 zones need 8 big blocks plus the utility block.
    with pytest.raises(SpecError, match="too small"):
        assign_subnet_cidrs(NET, [(f"z{i}", "Private") for i in range(8)] + [("u", "Utility")])


def test_network_too_small_for_aws() -> None:
    assert assign_subnet_cidrs("10.0.0.0/25", public(3)) == {
        "us-east-1a": "10.0.0.0/27",
        "us-east-1b": "10.0.0.32/27",
        "us-east-1c": "10.0.0.64/27",
    }
    with pytest.raises(SpecError, match="/28 or larger"):
        assign_subnet_cidrs("10.0.0.0/26", private(1))  # utility would be a /30
    with pytest.raises(SpecError, match="too small"):
        assign_subnet_cidrs("10.0.0.0/31", public(5))


def test_every_block_used() -> None:
    with pytest.raises(SpecError, match="overlaps a subnet that already exists"):
        assign_subnet_cidrs(NET, public(1), ["172.20.0.0/17", "172.20.128.0/17"])


def test_bad_inputs() -> None:
    with pytest.raises(SpecError, match=r"spec\.networkCIDR: invalid CIDR '172\.20\.0\.0'"):
        assign_subnet_cidrs("172.20.0.0", public(1))
    with pytest.raises(SpecError, match="unknown type 'Weird'"):
        assign_subnet_cidrs(NET, [("a", "Weird")])
    with pytest.raises(SpecError, match="duplicate subnet name 'a'"):
        assign_subnet_cidrs(NET, [("a", "Public"), ("a", "Utility")])
    with pytest.raises(SpecError, match=r"spec\.subnets\[0\]\.cidr: invalid CIDR"):
        assign_subnet_cidrs(NET, [SubnetRequest("a", "Public", cidr="nope"), SubnetRequest("b", "Public")])


def test_nothing_to_assign() -> None:
    assert assign_subnet_cidrs(NET, []) == {}
    assert assign_subnet_cidrs(NET, [SubnetRequest("a", "Public", cidr="172.20.0.0/16")]) == {}
