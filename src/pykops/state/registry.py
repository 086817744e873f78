"""The cluster registry: clusters and instance groups in a state store, in kops' layout.

``<cluster>/config`` holds the Cluster, ``<cluster>/instancegroup/<name>`` each InstanceGroup, both as
kops v1alpha2 YAML. Every write is conditional (create only if absent, update only if unchanged since it
was read), so two people editing one cluster can never silently overwrite each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.serialize import dump_yaml, load_one
from pykops.errors import ConflictError, NotFoundError
from pykops.state.store import StateStore

T = TypeVar("T", Cluster, InstanceGroup)

CONFIG = "config"
INSTANCE_GROUP_DIR = "instancegroup"
COMPLETED_SPEC = "cluster-completed.spec"


@dataclass(frozen=True)
class Stored(Generic[T]):
    """An object as read from the store with the version token needed to update it safely."""

    obj: T
    version: str


def config_key(cluster: str) -> str:
    return f"{cluster}/{CONFIG}"


def group_key(cluster: str, group: str) -> str:
    return f"{cluster}/{INSTANCE_GROUP_DIR}/{group}"


class ClusterRegistry:
    def __init__(self, store: StateStore) -> None:
        self.store = store

    # --- reading ------------------------------------------------------------------------------------
    def cluster_names(self) -> list[str]:
        return [name for name in self.store.list_dirs("") if self.store.read(config_key(name)) is not None]

    def exists(self, name: str) -> bool:
        return self.store.read(config_key(name)) is not None

    def get_cluster(self, name: str) -> Stored[Cluster]:
        found = self.store.read(config_key(name))
        if found is None:
            raise NotFoundError(
                f"cluster {name!r} not found in state store {self.store.url}; "
                "check --name/KOPS_CLUSTER_NAME and --state/KOPS_STATE_STORE, "
                "or list clusters with: pykops get clusters"
            )
        cluster = load_one(found.data.decode(), Cluster, f"{self.store.url}/{config_key(name)}")
        return Stored(cluster, found.version)

    def get_groups(self, cluster: str) -> list[Stored[InstanceGroup]]:
        prefix = f"{cluster}/{INSTANCE_GROUP_DIR}/"
        out: list[Stored[InstanceGroup]] = []
        for key in self.store.list(prefix):
            found = self.store.read(key)
            if found is None:  # deleted between list and read
                continue
            out.append(
                Stored(load_one(found.data.decode(), InstanceGroup, f"{self.store.url}/{key}"), found.version)
            )
        return out

    def get_group(self, cluster: str, group: str) -> Stored[InstanceGroup]:
        found = self.store.read(group_key(cluster, group))
        if found is None:
            names = ", ".join(g.obj.name for g in self.get_groups(cluster)) or "none"
            raise NotFoundError(
                f"instance group {group!r} not found in cluster {cluster} (instance groups: {names})"
            )
        return Stored(
            load_one(found.data.decode(), InstanceGroup, f"{self.store.url}/{group_key(cluster, group)}"),
            found.version,
        )

    # --- writing ------------------------------------------------------------------------------------
    def create_cluster(self, cluster: Cluster, groups: list[InstanceGroup]) -> None:
        """Create the cluster's config (the commit point: exclusive), then its instance groups."""
        try:
            self.store.create(config_key(cluster.name), dump_yaml([cluster]).encode())
        except ConflictError:
            raise ConflictError(
                f"cluster {cluster.name} already exists in state store {self.store.url}; "
                "change it with pykops edit cluster or pykops replace -f, or delete it first"
            ) from None
        for group in groups:
            self.create_group(cluster.name, group)

    def update_cluster(self, cluster: Cluster, version: str) -> str:
        return self.store.update(
            config_key(cluster.name), dump_yaml([cluster]).encode(), expected_version=version
        )

    def create_group(self, cluster: str, group: InstanceGroup) -> str:
        try:
            return self.store.create(group_key(cluster, group.name), dump_yaml([group]).encode())
        except ConflictError:
            raise ConflictError(
                f"instance group {group.name} already exists in cluster {cluster}; "
                f"change it with pykops edit ig {group.name}"
            ) from None

    def update_group(self, cluster: str, group: InstanceGroup, version: str) -> str:
        return self.store.update(
            group_key(cluster, group.name), dump_yaml([group]).encode(), expected_version=version
        )

    def delete_group(self, cluster: str, group: str, version: str | None = None) -> None:
        self.store.delete(group_key(cluster, group), expected_version=version)

    def delete_cluster(self, cluster: str) -> int:
        """Remove everything the state store holds for the cluster; returns the number of keys removed."""
        return self.store.delete_prefix(f"{cluster}/")
