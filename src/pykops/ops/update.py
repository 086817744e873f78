"""``update cluster`` and ``delete cluster``: look up facts, build, find, diff, show, apply.

This is the I/O edge around the pure core: it reads the spec and facts (images, SSH key) once, lets the
builders decide the desired resources, lets the kinds find what exists, lets the engine diff and apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pykops.addons.channel import write_addons
from pykops.api.models import Cluster, InstanceGroup
from pykops.api.populate import populate
from pykops.api.regions import region_of_zone
from pykops.api.serialize import dump_yaml
from pykops.api.validate import validate, validate_before_populate
from pykops.cloud.aws.cloud import AwsCloud
from pykops.cloud.aws.dns import find_hosted_zone
from pykops.cloud.aws.images import resolve_images
from pykops.cloud.aws.kinds import all_kinds
from pykops.engine.diff import plan_changes
from pykops.engine.executor import Event, apply
from pykops.engine.types import Actual, Change, Kind, Resource
from pykops.errors import SpecError
from pykops.model.bootstrap import igconfig_key, user_data
from pykops.model.build import build
from pykops.model.context import MANAGED_TAG, MANAGED_VALUE, ImageInfo, ModelContext
from pykops.nodeup.config import architecture_of, build_nodeup_config, ca_certificates_for
from pykops.release import ReleaseUpload, upload_release
from pykops.state.keystore import Keystore
from pykops.state.registry import COMPLETED_SPEC, ClusterRegistry
from pykops.state.sshkeys import parse_public_key


@dataclass
class ClusterPlan:
    cluster: Cluster
    groups: list[InstanceGroup]
    desired: list[Resource]
    actual: list[Actual]
    changes: list[Change]
    kinds: dict[str, Kind]
    cloud: AwsCloud
    warnings: list[str] = field(default_factory=list)
    release: ReleaseUpload | None = None  # set by apply_plan: the pykops release uploaded for the machines
    #: ``update cluster --instance-group(-roles)``: the only groups whose machines change (None: all)
    only_groups: frozenset[str] | None = None

    @property
    def needs_rolling_update(self) -> list[str]:
        """Instance groups whose launch template changes (their instances need replacing)."""
        return sorted(
            c.name for c in self.changes if c.kind == "LaunchTemplate" and c.action in ("update", "replace")
        )


def region_of(cluster: Cluster) -> str:
    zones = [s.zone for s in cluster.spec.subnets or [] if s.zone]
    if not zones:
        raise SpecError(f"cluster {cluster.name} has no subnets with zones; cannot tell its region")
    return region_of_zone(zones[0])


def load_completed(registry: ClusterRegistry, name: str) -> tuple[Cluster, list[InstanceGroup], list[str]]:
    stored = registry.get_cluster(name).obj
    groups = [s.obj for s in registry.get_groups(name)]
    validate_before_populate(stored, groups)
    config_base = f"{registry.store.url.rstrip('/')}/{name}"
    cluster, completed_groups = populate(stored, groups, config_base=config_base)
    result = validate(cluster, completed_groups)
    return cluster, completed_groups, result.warnings


def _ssh_key(registry: ClusterRegistry, name: str) -> tuple[str | None, str | None]:
    keys = registry.store.list(f"{name}/pki/ssh/public/admin/")
    if not keys:
        return None, None
    found = registry.store.read(keys[0])
    if found is None:
        return None, None
    key = parse_public_key(found.data.decode(), keys[0])
    return key.text, key.fingerprint


def find_actual(cloud: AwsCloud, kinds: dict[str, Kind], desired: list[Resource]) -> list[Actual]:
    """Every kind's find, concurrently: a constant number of AWS calls whatever the cluster's size."""
    by_kind: dict[str, list[Resource]] = {k: [] for k in kinds}
    for resource in desired:
        by_kind.setdefault(resource.kind, []).append(resource)
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(kind.find, cloud, by_kind.get(name, [])) for name, kind in kinds.items()]
        return [actual for future in futures for actual in future.result()]


def _ids(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return {i for k, v in value.items() if k != "tags" for i in _ids(v)}
    if isinstance(value, list):
        return {i for v in value for i in _ids(v)}
    return set()


def managed_only(desired: list[Resource], actual: list[Actual]) -> list[Actual]:
    """What ``update cluster`` may prune: resources pykops made, never what the cluster made itself.

    Kept: every actual resource the model names, every one carrying pykops' managed tag, and untagged
    ones (rules, routes, listeners...) unless they hang off a resource that is not kept. Dropped: tagged
    resources without the mark, such as a Service's load balancer and security group, or a
    PersistentVolume's EBS volume, which carry the cluster's tags too. ``delete cluster`` takes them all.
    """
    wanted = {r.key for r in desired}
    dropped_ids: set[str] = set()
    kept: list[Actual] = []
    untagged: list[Actual] = []
    for a in actual:
        tags = a.props.get("tags")
        if a.key in wanted or a.shared:
            kept.append(a)
        elif isinstance(tags, dict):
            if tags.get(MANAGED_TAG) == MANAGED_VALUE:
                kept.append(a)
            else:
                dropped_ids.update(str(v) for k, v in a.attrs.items() if k in ("id", "arn"))
        else:
            untagged.append(a)
    kept.extend(a for a in untagged if a.key in wanted or not (_ids(a.props) & dropped_ids))
    return kept


#: The kinds built once per instance group, named ``<group>.<cluster>``: what changes a group's machines.
GROUP_KINDS = frozenset({"LaunchTemplate", "AutoScalingGroup"})


def restrict_to_groups(changes: list[Change], cluster_name: str, selected: Collection[str]) -> list[Change]:
    """The changes left when only the ``selected`` instance groups may change (kops' ``update cluster
    --instance-group``): the other groups' launch templates and Auto Scaling groups, including those of
    groups being added or removed, wait for a full update; everything shared by all groups goes ahead."""
    suffix = f".{cluster_name}"

    def others(change: Change) -> bool:
        group = change.name.removesuffix(suffix)
        return change.kind in GROUP_KINDS and group != change.name and group not in selected

    return [c for c in changes if not others(c)]


def plan_cluster(
    registry: ClusterRegistry,
    name: str,
    *,
    cloud: AwsCloud | None = None,
    only_groups: Collection[str] | None = None,
) -> ClusterPlan:
    cluster, groups, warnings = load_completed(registry, name)
    cloud = cloud or AwsCloud(name, region_of(cluster))
    images = resolve_images(cloud, sorted({g.spec.image for g in groups if g.spec.image}))
    public_key, fingerprint = _ssh_key(registry, name)
    ctx = ModelContext(
        cluster=cluster,
        groups=groups,
        region=cloud.region,
        images={k: ImageInfo(v.id, v.root_device_name) for k, v in images.items()},
        ssh_public_key=public_key,
        ssh_fingerprint=fingerprint,
        user_data={g.name: user_data(cluster, g) for g in groups},
    )
    dns = cluster.spec.topology.dns.type if cluster.spec.topology and cluster.spec.topology.dns else "None"
    if dns in ("Public", "Private"):
        ctx.hosted_zone_id = find_hosted_zone(cloud, name, cluster.spec.dns_zone, private=dns == "Private")
    desired = build(ctx)
    kinds = all_kinds()
    actual = managed_only(desired, find_actual(cloud, kinds, desired))
    changes = plan_changes(desired, actual, kinds)
    plan = ClusterPlan(cluster, groups, desired, actual, changes, kinds, cloud, warnings)
    if only_groups is not None:
        plan.only_groups = frozenset(only_groups)
        plan.changes = restrict_to_groups(changes, name, plan.only_groups)
    return plan


def api_endpoint(plan: ClusterPlan, attrs: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The address machines reach the API at: ``api.internal.<cluster>`` with DNS, else the LB's DNS name."""
    name = plan.cluster.name
    if any(r.kind == "DNSRecord" for r in plan.desired):
        return f"api.internal.{name}"
    key = ("NetworkLoadBalancer", f"api.{name}")
    found = attrs.get(key) or next((a.attrs for a in plan.actual if a.key == key), {})
    return str(found.get("dns_name") or f"api.internal.{name}")


def write_derived_state(
    registry: ClusterRegistry, plan: ClusterPlan, attrs: dict[tuple[str, str], dict[str, Any]] | None = None
) -> None:
    """cluster-completed.spec, per-group bootstrap config (NodeupConfig) and add-ons, as kops writes them."""
    name = plan.cluster.name
    registry.store.put(f"{name}/{COMPLETED_SPEC}", dump_yaml([plan.cluster]).encode())
    endpoint = api_endpoint(plan, attrs or {})
    keystore = Keystore(registry.store, name)
    for group in plan.groups:
        if plan.only_groups is not None and group.name not in plan.only_groups:
            continue  # its machines keep bootstrapping as before until a full update
        # The CA certificates (public) travel in the config: worker nodes never read a CA keyset.
        cas = ca_certificates_for(keystore, plan.cluster, group)
        config = build_nodeup_config(plan.cluster, group, api_endpoint=endpoint, ca_certificates=cas)
        registry.store.put(igconfig_key(name, group), config.to_yaml().encode())
    # The rendered add-ons and the bootstrap channel the control plane's add-on applier reads.
    write_addons(registry.store, plan.cluster)


def apply_plan(
    registry: ClusterRegistry, plan: ClusterPlan, *, on_event: Callable[[Event], None] | None = None
) -> float:
    start = time.monotonic()
    Keystore(registry.store, plan.cluster.name).ensure_cluster_keysets(plan.cluster)
    arches = {architecture_of(g) for g in plan.groups} or {"amd64"}
    plan.release = upload_release(registry.store, plan.cluster.name, arches=arches)
    attrs: dict[tuple[str, str], dict[str, Any]] = {}
    if plan.changes:
        result = apply(
            plan.changes, plan.kinds, plan.cloud, desired=plan.desired, actual=plan.actual, on_event=on_event
        )
        attrs = result.attrs
    write_derived_state(registry, plan, attrs)
    return time.monotonic() - start


def plan_delete(name: str, region: str, *, cloud: AwsCloud | None = None) -> tuple[list[Change], ClusterPlan]:
    """Every resource tagged for the cluster, found by tags (not from the spec), as delete changes."""
    cloud = cloud or AwsCloud(name, region)
    kinds = all_kinds()
    actual = find_actual(cloud, kinds, [])
    changes = plan_changes([], actual, kinds)
    dummy = Cluster()
    dummy.metadata.name = name
    return changes, ClusterPlan(dummy, [], [], actual, changes, kinds, cloud)
