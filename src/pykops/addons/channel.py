"""The bootstrap channel: kops' ``Addons`` document listing each add-on's version and manifest.

``update cluster`` writes, under the cluster's prefix in the state store::

    addons/bootstrap-channel.yaml          kind: Addons, spec.addons[]: name, version, selector, manifest,
                                           manifestHash, kubernetesVersion (kops' field names)
    addons/<name>/<version>.yaml           the rendered manifest (multi-document YAML)

The applier reads them back (:func:`read_channel`), checks each manifest against its hash, and applies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from pykops.addons.render import LABEL_NAME, AddonError, RenderedAddon, render_addons
from pykops.api.models import Cluster
from pykops.state.store import StateStore

ADDONS_DIR = "addons"
CHANNEL_FILE = f"{ADDONS_DIR}/bootstrap-channel.yaml"
CHANNEL_NAME = "bootstrap"


@dataclass(frozen=True)
class ChannelAddon:
    name: str
    version: str
    manifest: str  # relative to addons/
    manifest_hash: str
    kubernetes_version: str
    selector: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "selector": dict(self.selector),
            "manifest": self.manifest,
            "manifestHash": self.manifest_hash,
            "kubernetesVersion": self.kubernetes_version,
        }


@dataclass(frozen=True)
class AddonsChannel:
    addons: tuple[ChannelAddon, ...]
    name: str = CHANNEL_NAME

    def to_yaml(self) -> bytes:
        doc = {
            "kind": "Addons",
            "metadata": {"name": self.name},
            "spec": {"addons": [a.to_dict() for a in self.addons]},
        }
        return yaml.safe_dump(doc, sort_keys=False).encode()

    @classmethod
    def from_yaml(cls, data: bytes, where: str = CHANNEL_FILE) -> AddonsChannel:
        try:
            doc = yaml.safe_load(data)
            if not isinstance(doc, dict) or doc.get("kind") != "Addons":
                raise ValueError("not an Addons document")
            addons = tuple(
                ChannelAddon(
                    name=str(a["name"]),
                    version=str(a["version"]),
                    manifest=str(a["manifest"]),
                    manifest_hash=str(a.get("manifestHash") or ""),
                    kubernetes_version=str(a.get("kubernetesVersion") or ""),
                    selector={str(k): str(v) for k, v in (a.get("selector") or {}).items()},
                )
                for a in (doc.get("spec") or {}).get("addons") or []
            )
        except (yaml.YAMLError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AddonError(f"{where} is not a valid add-ons channel: {exc}") from None
        return cls(addons=addons, name=str((doc.get("metadata") or {}).get("name") or CHANNEL_NAME))

    def get(self, name: str) -> ChannelAddon | None:
        return next((a for a in self.addons if a.name == name), None)


def build_channel(rendered: list[RenderedAddon]) -> AddonsChannel:
    return AddonsChannel(
        tuple(
            ChannelAddon(
                name=r.name,
                version=r.version,
                manifest=r.manifest_path,
                manifest_hash=r.manifest_hash,
                kubernetes_version=r.kubernetes_version,
                selector={LABEL_NAME: r.name},
            )
            for r in rendered
        )
    )


def addon_files(cluster: Cluster) -> dict[str, bytes]:
    """The channel and manifests for a completed cluster, keyed relative to the cluster's prefix."""
    rendered = render_addons(cluster)
    files = {f"{ADDONS_DIR}/{r.manifest_path}": r.manifest for r in rendered}
    files[CHANNEL_FILE] = build_channel(rendered).to_yaml()
    return files


def write_addons(store: StateStore, cluster: Cluster) -> AddonsChannel:
    """Write the rendered add-ons and the channel; remove manifests no longer in it. Returns the channel."""
    prefix = f"{cluster.name}/"
    files = addon_files(cluster)
    for key, data in files.items():
        if key == CHANNEL_FILE:
            continue
        found = store.read(prefix + key)
        if found is None or found.data != data:
            store.put(prefix + key, data)
    # The channel last: a reader never sees a channel naming a manifest not yet written.
    store.put(prefix + CHANNEL_FILE, files[CHANNEL_FILE])
    for key in store.list(f"{prefix}{ADDONS_DIR}/"):
        if key.removeprefix(prefix) not in files:
            store.delete(key)
    return AddonsChannel.from_yaml(files[CHANNEL_FILE])


def read_channel(store: StateStore, cluster_name: str) -> tuple[AddonsChannel, dict[str, bytes]]:
    """The stored channel and its manifests (keyed by the channel's manifest paths), hashes checked."""
    found = store.read(f"{cluster_name}/{CHANNEL_FILE}")
    if found is None:
        raise AddonError(
            f"no add-ons channel for cluster {cluster_name} in the state store "
            f"({cluster_name}/{CHANNEL_FILE}); run 'pykops update cluster --yes' first"
        )
    channel = AddonsChannel.from_yaml(found.data)
    manifests: dict[str, bytes] = {}
    for a in channel.addons:
        key = f"{cluster_name}/{ADDONS_DIR}/{a.manifest}"
        m = store.read(key)
        if m is None:
            raise AddonError(f"add-on {a.name}: manifest {key} is missing from the state store")
        if a.manifest_hash and hashlib.sha256(m.data).hexdigest() != a.manifest_hash:
            raise AddonError(
                f"add-on {a.name}: manifest {key} does not match its manifestHash in the channel"
            )
        manifests[a.manifest] = m.data
    return channel, manifests
