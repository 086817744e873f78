"""The stable release channel: versions, support window, images and upgrade steps."""

from __future__ import annotations

import pytest

from pykops.api import channel as channels
from pykops.api.channel import (
    IMAGE_OWNER_ALIASES,
    Channel,
    VersionRange,
    check_supported,
    default_image,
    format_version,
    known_channels,
    load_channel,
    next_upgrade,
    normalize_arch,
    parse_version,
    recommended_version,
    resolve_image_owner,
)
from pykops.errors import SpecError

UBUNTU_AMD64 = "099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250610"
UBUNTU_ARM64 = "099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20250610"


# ---------------------------------------------------------------------------------------------------------
# parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.34.2", (1, 34, 2)),
        ("v1.34.2", (1, 34, 2)),
        ("v1.8.4", (1, 8, 4)),
        ("0.0.0", (0, 0, 0)),
        ("1.36.10", (1, 36, 10)),
        (" 1.33.5\n", (1, 33, 5)),
    ],
)
def test_parse_version_valid(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.34",
        "v1.34",
        "1.34.",
        "1.34.x",
        "1.34.2.1",
        "1.34.2-rc.1",
        "1.34.2+build",
        "V1.34.2",
        "vv1.34.2",
        "1.034.2",
        "01.34.2",
        "1. 34.2",
        "latest",
        "stable",
        "-1.34.2",
        "1.34.2 1.35.0",
        "\uff11.34.2",  # a full-width digit one
    ],
)
def test_parse_version_invalid(text: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_version(text)
    assert str(err.value) == f"invalid Kubernetes version {text!r}: expected MAJOR.MINOR.PATCH such as 1.34.2"


def test_format_version_round_trip() -> None:
    assert format_version(parse_version("v1.35.0")) == "1.35.0"


def test_version_range() -> None:
    r = VersionRange.parse(">=1.27.0 <1.32.0")
    assert r.contains((1, 27, 0))
    assert r.contains((1, 31, 99))
    assert not r.contains((1, 32, 0))
    assert not r.contains((1, 26, 15))
    assert VersionRange.parse("1.32.1").contains((1, 32, 1))
    assert not VersionRange.parse("1.32.1").contains((1, 32, 2))
    with pytest.raises(SpecError):
        VersionRange.parse(">=1.27")
    with pytest.raises(SpecError):
        VersionRange.parse("")


# ---------------------------------------------------------------------------------------------------------
# load_channel


def test_load_stable() -> None:
    ch = load_channel()
    assert isinstance(ch, Channel)
    assert ch.name == "stable"
    assert ch.minimum_minor == (1, 32)
    assert ch.maximum_minor == (1, 36)
    assert ch.supported_minors() == [(1, 32), (1, 33), (1, 34), (1, 35), (1, 36)]
    assert ch.default_kubernetes_version == "1.34.2"
    assert load_channel("stable") is ch  # cached


def test_known_channels() -> None:
    assert known_channels() == ["stable"]


@pytest.mark.parametrize("name", ["beta", "Stable", "", "../stable", "channel-stable"])
def test_unknown_channel(name: str) -> None:
    with pytest.raises(SpecError) as err:
        load_channel(name)
    assert str(err.value) == f"unknown channel {name!r}: known channels are stable"


# ---------------------------------------------------------------------------------------------------------
# recommended_version / check_supported


def test_recommended_versions() -> None:
    assert recommended_version() == "1.34.2"
    assert recommended_version((1, 32)) == "1.32.9"
    assert recommended_version((1, 33)) == "1.33.5"
    assert recommended_version((1, 34)) == "1.34.2"
    assert recommended_version((1, 35)) == "1.35.0"
    assert recommended_version((1, 36)) == "1.36.0"
    assert load_channel().recommended_version() == "1.34.2"


@pytest.mark.parametrize("minor", [(1, 31), (1, 37), (2, 0), (1, 8)])
def test_recommended_version_unknown_minor(minor: tuple[int, int]) -> None:
    with pytest.raises(SpecError, match=r"pykops supports 1\.32 to 1\.36"):
        recommended_version(minor)


def test_default_is_newest_minor_but_the_latest_two() -> None:
    ch = load_channel()
    default_minor = parse_version(ch.default_kubernetes_version)[:2]
    assert default_minor == (ch.maximum_minor[0], ch.maximum_minor[1] - 2)
    assert ch.default_kubernetes_version == ch.recommended_version(default_minor)


@pytest.mark.parametrize("version", ["1.32.0", "v1.32.0", "1.34.2", "1.36.0", "1.36.7", (1, 33, 1)])
def test_check_supported_ok(version: str | tuple[int, int, int]) -> None:
    check_supported(version)


def test_check_supported_tutorial_version() -> None:
    with pytest.raises(SpecError) as err:
        check_supported("v1.8.4")
    assert str(err.value) == (
        "Kubernetes version 1.8.4 is not supported: pykops supports 1.32 to 1.36 (recommended 1.34.2); "
        "pass --kubernetes-version 1.34.2 or omit it"
    )
    assert err.value.hint == "pass --kubernetes-version 1.34.2 or omit it"


@pytest.mark.parametrize("version", ["1.31.14", "1.37.0", "2.32.0", "0.34.0"])
def test_check_supported_out_of_window(version: str) -> None:
    with pytest.raises(
        SpecError, match=rf"^Kubernetes version {version} is not supported: pykops supports 1\.32"
    ):
        check_supported(version)


def test_check_supported_bad_string() -> None:
    with pytest.raises(SpecError, match=r"expected MAJOR\.MINOR\.PATCH"):
        check_supported("1.34")


# ---------------------------------------------------------------------------------------------------------
# images


@pytest.mark.parametrize("arch", ["amd64", "x86_64", "X86_64"])
def test_default_image_amd64(arch: str) -> None:
    assert default_image("1.34.2", arch) == UBUNTU_AMD64


@pytest.mark.parametrize("arch", ["arm64", "aarch64"])
def test_default_image_arm64(arch: str) -> None:
    assert default_image("v1.36.0", arch) == UBUNTU_ARM64


def test_default_image_every_supported_minor() -> None:
    ch = load_channel()
    for minor in ch.supported_minors():
        assert ch.default_image(ch.recommended_version(minor), "x86_64") == UBUNTU_AMD64


def test_default_image_errors() -> None:
    with pytest.raises(SpecError, match="unknown CPU architecture 'sparc'"):
        default_image("1.34.2", "sparc")
    with pytest.raises(SpecError, match=r"no amd64 image for Kubernetes 1\.20\.0"):
        default_image("1.20.0", "amd64")


def test_image_shape() -> None:
    image = load_channel().find_image("1.34.2", "amd64")
    assert image is not None
    assert image.owner == "099720109477"
    assert image.ami_name == "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250610"


def test_image_families() -> None:
    ch = load_channel()
    ubuntu = ch.image_family("ubuntu-24.04")
    assert ubuntu.default
    assert ubuntu.owner == "099720109477"
    assert ubuntu.name_pattern("x86_64") == "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
    assert ubuntu.name_pattern("arm64") == "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-*"
    al2023 = ch.image_family("al2023")
    assert not al2023.default
    assert al2023.owner == "137112412989"
    assert al2023.owner_alias == "amazon"
    assert al2023.name_pattern("amd64") == "al2023-ami-2023.*-kernel-6.1-x86_64"
    assert al2023.name_pattern("aarch64") == "al2023-ami-2023.*-kernel-6.1-arm64"
    assert [f.name for f in ch.image_families if f.default] == ["ubuntu-24.04"]
    with pytest.raises(SpecError, match=r"known families are ubuntu-24\.04, al2023"):
        ch.image_family("centos")


def test_is_channel_image() -> None:
    ch = load_channel()
    assert ch.is_channel_image(UBUNTU_AMD64)
    assert ch.is_channel_image(
        "099720109477/ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20240101"
    )
    assert not ch.is_channel_image("ami-0123456789abcdef0")
    assert not ch.is_channel_image("137112412989/al2023-ami-2023.6.20250115.0-kernel-6.1-x86_64")
    assert not ch.is_channel_image("")


def test_owner_aliases() -> None:
    assert resolve_image_owner("ubuntu") == "099720109477"
    assert resolve_image_owner("amazon") == "137112412989"
    assert resolve_image_owner("123456789012") == "123456789012"
    assert IMAGE_OWNER_ALIASES["flatcar"] == "075585003325"


def test_normalize_arch() -> None:
    assert normalize_arch("x86_64") == "amd64"
    assert normalize_arch("arm64") == "arm64"
    with pytest.raises(SpecError):
        normalize_arch("i386")


# ---------------------------------------------------------------------------------------------------------
# next_upgrade


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("1.32.0", "1.32.9"),  # patch first
        ("1.32.8", "1.32.9"),
        ("1.32.9", "1.33.5"),  # then the next minor's recommended version
        ("v1.33.5", "1.34.2"),
        ("1.34.0", "1.34.2"),
        ("1.34.2", "1.35.0"),
        ("1.35.0", "1.36.0"),
        ("1.36.0", None),  # newest supported: nothing to do
        ("1.36.4", None),  # newer patch than the channel knows: never a downgrade
        ("1.37.1", None),  # newer than pykops supports: never a downgrade
        ("1.34.9", "1.35.0"),  # already past the recommended patch: go to the next minor
        ("1.31.14", "1.32.9"),  # one minor below the window: step into it
        ((1, 33, 0), "1.33.5"),
    ],
)
def test_next_upgrade(current: str | tuple[int, int, int], expected: str | None) -> None:
    assert next_upgrade(current) == expected


def test_next_upgrade_walks_every_minor() -> None:
    path = []
    version: str | None = "1.32.0"
    while version is not None:
        path.append(version)
        version = next_upgrade(version)
    assert path == ["1.32.0", "1.32.9", "1.33.5", "1.34.2", "1.35.0", "1.36.0"]


def test_next_upgrade_too_old() -> None:
    with pytest.raises(SpecError, match=r"1\.8\.4 is too old to upgrade") as err:
        next_upgrade("v1.8.4")
    assert err.value.hint == "upgrade the cluster to 1.31 by other means first"


def test_next_upgrade_bad_version() -> None:
    with pytest.raises(SpecError, match="invalid Kubernetes version"):
        next_upgrade("1.34")


def test_module_helpers_accept_a_channel() -> None:
    ch = load_channel()
    assert channels.recommended_version(channel=ch) == "1.34.2"
    assert channels.next_upgrade("1.33.0", channel=ch) == "1.33.5"
    assert channels.default_image("1.33.0", "arm64", channel=ch) == UBUNTU_ARM64
    channels.check_supported("1.33.0", channel=ch)
