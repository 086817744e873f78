"""Release channels: which Kubernetes versions pykops supports, recommends and upgrades to, and which image
each instance group boots by default.

A channel is a YAML file shipped as package data (``data/channel-<name>.yaml``), modelled on the files in
kubernetes/kops ``channels/`` (``channels/stable``). The parts that keep kops' shape and meaning:

* ``kubernetesVersions``: a list of ``range`` / ``recommendedVersion`` / ``requiredVersion``; the first
  entry whose range matches a version applies to it (kops ``FindKubernetesVersionSpec`` in
  ``pkg/apis/kops/channel.go``).
* ``images``: ``name`` as ``<owner account>/<AMI name>``, ``providerID``, ``architectureID``
  (``amd64``/``arm64``) and a ``kubernetesVersion`` range; the first match wins (kops ``Channel.FindImage``).
  kops defaults to Ubuntu 24.04 (Noble, gp3 root volume, owner 099720109477) for Kubernetes 1.32+.

pykops additions: the supported window of minor versions, the default version for new clusters, and
``imageFamilies`` (the default distribution and known alternates as owner + AMI name pattern).

Upgrades differ from ``kops upgrade cluster`` (``cmd/kops/upgrade_cluster.go``) on purpose: kops jumps
straight to the next minor's recommended version, pykops first moves to the latest patch of the current
minor (see :func:`next_upgrade`). Never a downgrade, never a skipped minor.

Everything here is pure: no network, no AWS calls.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Literal

import yaml

from pykops.errors import SpecError

Version = tuple[int, int, int]
Minor = tuple[int, int]
ImageArch = Literal["amd64", "arm64"]

DEFAULT_CHANNEL = "stable"

#: Well-known AMI owner aliases and their AWS account IDs (kops ``awsup.ResolveImageOwnerAlias``).
IMAGE_OWNER_ALIASES: dict[str, str] = {
    "amazon": "137112412989",
    "amazon.com": "137112412989",
    "debian": "136693071363",
    "debian11": "136693071363",
    "flatcar": "075585003325",
    "redhat": "309956199498",
    "redhat.com": "309956199498",
    "ubuntu": "099720109477",
    "rocky": "792107900819",
    "rockylinux": "792107900819",
}

_ARCH_ALIASES: dict[str, ImageArch] = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}

_VERSION_RE = re.compile(r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_MINOR_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_COMPARATOR_RE = re.compile(r"(>=|<=|>|<|=)?v?((?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*))")
_CHANNEL_FILE_RE = re.compile(r"channel-([a-z0-9][a-z0-9-]*)\.yaml")


# ---------------------------------------------------------------------------------------------------------
# Versions


def parse_version(s: str) -> Version:
    """Parse ``"1.34.2"`` or ``"v1.34.2"`` into ``(1, 34, 2)``.

    Only plain ``MAJOR.MINOR.PATCH`` is accepted (no pre-release or build suffix, no leading zeros).
    """
    text = s.strip() if isinstance(s, str) else s
    match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise SpecError(f"invalid Kubernetes version {s!r}: expected MAJOR.MINOR.PATCH such as 1.34.2")
    return int(match[1]), int(match[2]), int(match[3])


def format_version(version: Version) -> str:
    """``(1, 34, 2)`` -> ``"1.34.2"`` (no ``v`` prefix, as in kops' channel files)."""
    return f"{version[0]}.{version[1]}.{version[2]}"


def format_minor(minor: Minor) -> str:
    """``(1, 34)`` -> ``"1.34"``."""
    return f"{minor[0]}.{minor[1]}"


def _as_version(version: str | Version) -> Version:
    return version if isinstance(version, tuple) else parse_version(version)


@dataclass(frozen=True)
class VersionRange:
    """A semver-style range such as ``">=1.27.0 <1.32.0"`` (all comparators must hold)."""

    text: str
    comparators: tuple[tuple[str, Version], ...]

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        comparators: list[tuple[str, Version]] = []
        for part in text.split():
            match = _COMPARATOR_RE.fullmatch(part)
            if match is None:
                raise SpecError(f"invalid version range {text!r}: cannot parse {part!r}")
            comparators.append((match[1] or "=", parse_version(match[2])))
        if not comparators:
            raise SpecError(f"invalid version range {text!r}: it is empty")
        return cls(text=text, comparators=tuple(comparators))

    def contains(self, version: Version) -> bool:
        for op, bound in self.comparators:
            ok = {
                ">=": version >= bound,
                "<=": version <= bound,
                ">": version > bound,
                "<": version < bound,
                "=": version == bound,
            }[op]
            if not ok:
                return False
        return True


# ---------------------------------------------------------------------------------------------------------
# Channel model


@dataclass(frozen=True)
class KubernetesVersionSpec:
    """One ``kubernetesVersions`` entry: versions in ``range`` should run ``recommended_version``."""

    range: VersionRange
    recommended_version: str
    required_version: str | None


@dataclass(frozen=True)
class ChannelImage:
    """One ``images`` entry: the image for a provider, architecture and Kubernetes version range."""

    name: str
    provider_id: str
    architecture_id: ImageArch
    kubernetes_version: VersionRange | None

    @property
    def owner(self) -> str:
        """The owner part of ``name`` (``099720109477`` for the Ubuntu images)."""
        return self.name.split("/", 1)[0]

    @property
    def ami_name(self) -> str:
        """The AMI name, without the owner."""
        return self.name.split("/", 1)[1] if "/" in self.name else self.name


@dataclass(frozen=True)
class ImageFamily:
    """A known operating-system image family: an owner account plus an AMI name pattern per architecture."""

    name: str
    description: str
    default: bool
    owner: str
    owner_alias: str | None
    name_patterns: dict[str, str]

    def name_pattern(self, arch: str) -> str:
        """The AMI name pattern (with ``*`` wildcards) for ``arch`` (``amd64``/``x86_64``/``arm64``)."""
        key = normalize_arch(arch)
        pattern = self.name_patterns.get(key)
        if pattern is None:
            raise SpecError(f"image family {self.name!r} has no {key} images")
        return pattern


@dataclass(frozen=True)
class Channel:
    """A loaded release channel. Use :func:`load_channel` to get one."""

    name: str
    minimum_minor: Minor
    maximum_minor: Minor
    default_kubernetes_version: str
    kubernetes_versions: tuple[KubernetesVersionSpec, ...]
    images: tuple[ChannelImage, ...]
    image_families: tuple[ImageFamily, ...]

    def supported_range_text(self) -> str:
        """``"1.32 to 1.36"``."""
        return f"{format_minor(self.minimum_minor)} to {format_minor(self.maximum_minor)}"

    def supported_minors(self) -> list[Minor]:
        """Every supported minor version, oldest first."""
        major = self.minimum_minor[0]
        return [(major, m) for m in range(self.minimum_minor[1], self.maximum_minor[1] + 1)]

    def is_supported(self, version: str | Version) -> bool:
        """Whether ``version``'s minor is inside the supported window."""
        v = _as_version(version)
        return self.minimum_minor <= (v[0], v[1]) <= self.maximum_minor

    def find_kubernetes_version_spec(self, version: str | Version) -> KubernetesVersionSpec | None:
        """The first ``kubernetesVersions`` entry whose range matches (kops ``FindKubernetesVersionSpec``)."""
        v = _as_version(version)
        for spec in self.kubernetes_versions:
            if spec.range.contains(v):
                return spec
        return None

    def recommended_version(self, minor: Minor | None = None) -> str:
        """The latest patch release of ``minor``, or the default version for new clusters if ``None``."""
        if minor is None:
            return self.default_kubernetes_version
        spec = self.find_kubernetes_version_spec((minor[0], minor[1], 0))
        if spec is None or parse_version(spec.recommended_version)[:2] != tuple(minor):
            raise SpecError(
                f"Kubernetes {format_minor(minor)} is not in channel {self.name!r}: "
                f"pykops supports {self.supported_range_text()}"
            )
        return spec.recommended_version

    def find_image(self, kubernetes_version: str | Version, arch: str) -> ChannelImage | None:
        """The first AWS image matching the version and architecture (kops ``Channel.FindImage``)."""
        v = _as_version(kubernetes_version)
        wanted = normalize_arch(arch)
        for image in self.images:
            if image.provider_id != "aws" or image.architecture_id != wanted:
                continue
            if image.kubernetes_version is not None and not image.kubernetes_version.contains(v):
                continue
            return image
        return None

    def check_supported(self, version: str | Version) -> None:
        """Raise :class:`SpecError` unless ``version`` is a valid version inside the supported window."""
        v = _as_version(version)
        if self.is_supported(v):
            return
        recommended = self.recommended_version()
        raise SpecError(
            f"Kubernetes version {format_version(v)} is not supported: pykops supports "
            f"{self.supported_range_text()} (recommended {recommended})",
            hint=f"pass --kubernetes-version {recommended} or omit it",
        )

    def default_image(self, kubernetes_version: str | Version, arch: str) -> str:
        """The default AWS image (``<owner>/<AMI name>``) for a Kubernetes version and architecture.

        ``arch`` may be given the EC2 way (``x86_64``, ``arm64``) or the kops way (``amd64``, ``arm64``).
        """
        v = _as_version(kubernetes_version)
        image = self.find_image(v, arch)
        if image is None:
            raise SpecError(
                f"channel {self.name!r} has no {normalize_arch(arch)} image "
                f"for Kubernetes {format_version(v)}",
                hint="set spec.image on the instance group",
            )
        return image.name

    def next_upgrade(self, current: str | Version) -> str | None:
        """The next version ``upgrade cluster`` should move to from ``current``, or ``None`` if up to date.

        First the recommended patch release of the current minor; once there, the recommended version of
        the next minor (if this channel supports it). Never skips a minor and never proposes a downgrade.
        A cluster more than one minor below the supported window cannot be upgraded by pykops (that would
        skip a minor): :class:`SpecError`.
        """
        v = _as_version(current)
        minor: Minor = (v[0], v[1])
        if minor > self.maximum_minor:
            return None
        oldest_upgradable: Minor = (self.minimum_minor[0], self.minimum_minor[1] - 1)
        if minor < oldest_upgradable:
            raise SpecError(
                f"Kubernetes version {format_version(v)} is too old to upgrade: pykops supports "
                f"{self.supported_range_text()} and upgrades one minor version at a time",
                hint=f"upgrade the cluster to {format_minor(oldest_upgradable)} by other means first",
            )
        if self.is_supported(v):
            patch = parse_version(self.recommended_version(minor))
            if patch > v:
                return format_version(patch)
        following: Minor = (v[0], v[1] + 1)
        if self.minimum_minor <= following <= self.maximum_minor:
            candidate = parse_version(self.recommended_version(following))
            if candidate > v:
                return format_version(candidate)
        return None

    def image_family(self, name: str) -> ImageFamily:
        """The image family called ``name`` (``ubuntu-24.04``, ``al2023``)."""
        for family in self.image_families:
            if family.name == name:
                return family
        known = ", ".join(f.name for f in self.image_families)
        raise SpecError(f"unknown image family {name!r}: known families are {known}")

    def is_channel_image(self, image: str) -> bool:
        """Whether ``image`` is a default image from this channel (any date), so an upgrade may replace it.

        Like kops ``Channel.HasUpstreamImagePrefix``: custom images are left alone by ``upgrade cluster``.
        """
        if not image:
            return False
        for known in self.images:
            prefix = known.name.rsplit("-", 1)[0] + "-"
            if image.startswith(prefix):
                return True
        return False


def normalize_arch(arch: str) -> ImageArch:
    """Map ``x86_64``/``amd64`` to ``amd64`` and ``arm64``/``aarch64`` to ``arm64`` (kops' image naming)."""
    normalized = _ARCH_ALIASES.get(arch.strip().lower())
    if normalized is None:
        raise SpecError(f"unknown CPU architecture {arch!r}: expected amd64 (x86_64) or arm64")
    return normalized


def resolve_image_owner(owner: str) -> str:
    """The AWS account ID for a well-known owner alias (``ubuntu`` -> ``099720109477``); others unchanged."""
    return IMAGE_OWNER_ALIASES.get(owner, owner)


# ---------------------------------------------------------------------------------------------------------
# Loading


def _data_dir() -> Traversable:
    return resources.files("pykops.api").joinpath("data")


def known_channels() -> list[str]:
    """Names of the channels shipped with pykops, sorted."""
    names = []
    for entry in _data_dir().iterdir():
        match = _CHANNEL_FILE_RE.fullmatch(entry.name)
        if match is not None:
            names.append(match[1])
    return sorted(names)


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise SpecError(f"{where}: missing {key!r}")
    return mapping[key]


def _parse_minor(value: Any, where: str) -> Minor:
    match = _MINOR_RE.fullmatch(str(value).strip())
    if match is None:
        raise SpecError(f"{where}: invalid minor version {value!r}: expected MAJOR.MINOR such as 1.34")
    return int(match[1]), int(match[2])


def _parse_channel(name: str, doc: Any) -> Channel:
    where = f"channel-{name}.yaml"
    spec = _require(doc, "spec", where)
    supported = _require(spec, "supportedKubernetesVersions", f"{where}: spec")
    minimum = _parse_minor(_require(supported, "minimum", where), f"{where}: minimum")
    maximum = _parse_minor(_require(supported, "maximum", where), f"{where}: maximum")
    if minimum[0] != maximum[0] or minimum > maximum:
        bad = f"{format_minor(minimum)} to {format_minor(maximum)}"
        raise SpecError(f"{where}: supported range {bad} is invalid")

    versions: list[KubernetesVersionSpec] = []
    for raw in _require(spec, "kubernetesVersions", f"{where}: spec") or []:
        recommended = format_version(parse_version(str(_require(raw, "recommendedVersion", where))))
        required = raw.get("requiredVersion")
        versions.append(
            KubernetesVersionSpec(
                range=VersionRange.parse(str(_require(raw, "range", where))),
                recommended_version=recommended,
                required_version=None if required is None else format_version(parse_version(str(required))),
            )
        )

    images: list[ChannelImage] = []
    for raw in _require(spec, "images", f"{where}: spec") or []:
        kube_range = raw.get("kubernetesVersion")
        images.append(
            ChannelImage(
                name=str(_require(raw, "name", where)),
                provider_id=str(_require(raw, "providerID", where)),
                architecture_id=normalize_arch(str(raw.get("architectureID", "amd64"))),
                kubernetes_version=None if kube_range is None else VersionRange.parse(str(kube_range)),
            )
        )

    families: list[ImageFamily] = []
    for raw in spec.get("imageFamilies") or []:
        patterns = _require(raw, "namePatterns", where)
        if not isinstance(patterns, dict):
            raise SpecError(f"{where}: imageFamilies namePatterns must map architectures to patterns")
        alias = raw.get("ownerAlias")
        families.append(
            ImageFamily(
                name=str(_require(raw, "name", where)),
                description=str(raw.get("description", "")),
                default=bool(raw.get("default", False)),
                owner=str(_require(raw, "owner", where)),
                owner_alias=None if alias is None else str(alias),
                name_patterns={normalize_arch(str(k)): str(v) for k, v in patterns.items()},
            )
        )

    default_version = format_version(parse_version(str(_require(spec, "defaultKubernetesVersion", where))))
    channel = Channel(
        name=name,
        minimum_minor=minimum,
        maximum_minor=maximum,
        default_kubernetes_version=default_version,
        kubernetes_versions=tuple(versions),
        images=tuple(images),
        image_families=tuple(families),
    )
    # Every supported minor must have a recommended version, and the default must be one of them.
    for minor in channel.supported_minors():
        channel.recommended_version(minor)
    default = parse_version(default_version)
    if not channel.is_supported(default):
        raise SpecError(
            f"{where}: defaultKubernetesVersion {default_version} is outside {channel.supported_range_text()}"
        )
    return channel


def load_channel(name: str = DEFAULT_CHANNEL) -> Channel:
    """The channel shipped as ``data/channel-<name>.yaml``, loaded once and shared (it is immutable).

    An unknown name raises :class:`SpecError` listing the known channels.
    """
    return _load_channel(name)


@functools.cache
def _load_channel(name: str) -> Channel:
    known = known_channels()
    if name not in known:
        raise SpecError(f"unknown channel {name!r}: known channels are {', '.join(known)}")
    text = _data_dir().joinpath(f"channel-{name}.yaml").read_text(encoding="utf-8")
    return _parse_channel(name, yaml.safe_load(text))


# ---------------------------------------------------------------------------------------------------------
# Module-level helpers on the stable channel (or the one passed in)


def _channel(channel: Channel | None) -> Channel:
    return channel if channel is not None else load_channel(DEFAULT_CHANNEL)


def recommended_version(minor: Minor | None = None, *, channel: Channel | None = None) -> str:
    """The recommended (latest patch) version of ``minor``; with no minor, the default for new clusters."""
    return _channel(channel).recommended_version(minor)


def check_supported(version: str | Version, *, channel: Channel | None = None) -> None:
    """Raise :class:`SpecError` unless ``version`` is a valid version inside the supported window."""
    _channel(channel).check_supported(version)


def default_image(kubernetes_version: str | Version, arch: str, *, channel: Channel | None = None) -> str:
    """The channel's default AWS image (``<owner>/<AMI name>``) for a Kubernetes version and architecture."""
    return _channel(channel).default_image(kubernetes_version, arch)


def next_upgrade(current: str | Version, *, channel: Channel | None = None) -> str | None:
    """The version ``upgrade cluster`` should move to next; see :meth:`Channel.next_upgrade`."""
    return _channel(channel).next_upgrade(current)
