"""The binaries nodeup installs, with the SHA-256 each download must have (pure lookups).

``data/assets.yaml`` lists, per component, the official download URL template and the SHA-256 of every
version and architecture kOps pins (copied from kubernetes/kops ``pkg/assets/assetdata``). A version that
is not listed gets ``sha256: None``: the URL is still known, but nodeup refuses to download it
(:func:`require_hashes`) rather than install something it cannot verify.

Overrides in the spec (``spec.containerd.packages`` / ``spec.containerd.runc.packages``: URL and hash per
architecture) win over the table, as in kOps.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from pykops.api.models import Cluster, PackagesConfig
from pykops.errors import PykopsError, SpecError

Arch = Literal["amd64", "arm64"]
ARCHES: tuple[Arch, ...] = ("amd64", "arm64")

# What nodeup installs on every Kubernetes machine, in install order.
COMPONENTS: tuple[str, ...] = ("containerd", "runc", "cni-plugins", "kubelet", "kubectl")


class AssetError(PykopsError):
    """An asset that cannot be used safely (no pinned hash, unknown version)."""


class Asset(BaseModel):
    """One download: what it is, where it comes from and the SHA-256 it must have (None: unknown)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    arch: Arch
    url: str
    sha256: str | None


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("pykops.nodeup").joinpath("data/assets.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "components" not in data:
        raise SpecError("pykops/nodeup/data/assets.yaml: expected a mapping with 'components'")
    return data


def known_versions(component: str) -> list[str]:
    """The versions of ``component`` with pinned hashes, oldest first."""
    return list(_component(component)["sha256"])


def _component(component: str) -> dict[str, Any]:
    comps: dict[str, Any] = _table()["components"]
    if component not in comps:
        raise SpecError(f"unknown nodeup asset {component!r}; known: {', '.join(sorted(comps))}")
    entry: dict[str, Any] = comps[component]
    return entry


def asset(component: str, version: str, arch: Arch) -> Asset:
    """The official download of ``component`` at ``version`` for ``arch``, with its pinned hash or None."""
    if arch not in ARCHES:
        raise SpecError(f"unsupported architecture {arch!r}; expected one of {', '.join(ARCHES)}")
    version = version.lstrip("v")
    entry = _component(component)
    hashes = entry["sha256"].get(version) or {}
    return Asset(
        name=component,
        version=version,
        arch=arch,
        url=str(entry["url"]).format(version=version, arch=arch),
        sha256=hashes.get(arch),
    )


def cni_plugins_version(kubernetes_version: str) -> str:
    """The CNI plugins release kOps pairs with a Kubernetes minor (pkg/nodemodel/wellknownassets/cni.go)."""
    parts = kubernetes_version.lstrip("v").split(".")
    minor = ".".join(parts[:2])
    by_minor: dict[str, str] = {str(k): str(v) for k, v in _table()["cniPluginsByKubernetesMinor"].items()}
    if minor in by_minor:
        return by_minor[minor]
    known = sorted(by_minor, key=lambda m: tuple(int(x) for x in m.split(".")))
    # Newer than the table: the newest pairing; older: the oldest. Either way, a known release.
    newer = tuple(int(x) for x in minor.split(".")) > tuple(int(x) for x in known[-1].split("."))
    return by_minor[known[-1] if newer else known[0]]


def _override(base: Asset, packages: PackagesConfig | None) -> Asset:
    if packages is None:
        return base
    url = packages.url_amd64 if base.arch == "amd64" else packages.url_arm64
    digest = packages.hash_amd64 if base.arch == "amd64" else packages.hash_arm64
    if url is None and digest is None:
        return base
    if url is not None:
        # A URL without a hash is unverifiable: it keeps no hash, so nodeup refuses it.
        return base.model_copy(update={"url": url, "sha256": digest})
    return base.model_copy(update={"sha256": digest})


def assets_for(cluster: Cluster, arch: Arch) -> list[Asset]:
    """Everything a Kubernetes machine of this cluster downloads, for ``arch``."""
    spec = cluster.spec
    k8s = (spec.kubernetes_version or "").lstrip("v")
    if not k8s:
        raise SpecError(
            f"cluster {cluster.name}: spec.kubernetesVersion is not set (populate the spec first)"
        )
    containerd = spec.containerd
    containerd_version = containerd.version if containerd and containerd.version else None
    runc_version = (
        containerd.runc.version if containerd and containerd.runc and containerd.runc.version else None
    )
    if containerd_version is None or runc_version is None:
        raise SpecError(
            f"cluster {cluster.name}: spec.containerd.version and spec.containerd.runc.version must be set "
            "(populate the spec first)"
        )
    out = [
        _override(asset("containerd", containerd_version, arch), containerd.packages if containerd else None),
        _override(
            asset("runc", runc_version, arch),
            containerd.runc.packages if containerd and containerd.runc else None,
        ),
        asset("cni-plugins", cni_plugins_version(k8s), arch),
        asset("kubelet", k8s, arch),
        asset("kubectl", k8s, arch),
    ]
    return out


def require_hashes(assets: list[Asset]) -> None:
    """Refuse assets without a pinned SHA-256 (nodeup never installs what it cannot verify)."""
    missing = [a for a in assets if not a.sha256]
    if missing:
        names = ", ".join(f"{a.name} {a.version} ({a.arch}, {a.url})" for a in missing)
        raise AssetError(
            f"no pinned SHA-256 for {names}; refusing to download an unverifiable binary",
            hint="use a version listed in pykops/nodeup/data/assets.yaml, or set the URL and hash in "
            "spec.containerd.packages / spec.containerd.runc.packages",
        )
