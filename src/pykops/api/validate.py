"""Validation of a (completed) cluster spec: pure, one clear line per problem.

``validate`` raises :class:`SpecError` for the first error it finds (checks run from the cheapest and most
fundamental to the most specific) and returns the warnings. Nothing is written before this has passed.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

from pykops.api import channel as channels
from pykops.api import instance_types
from pykops.api.cidr import parse_cidr
from pykops.api.models import INGRESS_PROVIDERS, Cluster, InstanceGroup
from pykops.api.new_cluster import GOSSIP_SUFFIX
from pykops.api.regions import region_of_zone
from pykops.errors import SpecError

# AWS VPC route tables hold at most 50 routes by default; kubenet needs one route per node.
KUBENET_MAX_NODES = 50
# Plugins whose pods are reached through a VPC route per node's pod CIDR (created by the cloud controller):
# the route-table limit above applies to each of them.
CLOUD_ROUTES_PLUGINS = ("kubenet", "kindnet")

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_CLUSTER_NAME_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})+$")
_IG_NAME_RE = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_TAINT_RE = re.compile(r"^[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$")
_LABEL_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VPC_ID_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET_ID_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_PERCENT_RE = re.compile(r"^\d{1,3}%$")
ROLES_HINT = "Master, ControlPlane, Node, Bastion or APIServer"
ROOT_VOLUME_TYPES = ("gp2", "gp3", "io1", "io2", "st1", "sc1", "standard")
ETCD_VOLUME_TYPES = ("gp2", "gp3", "io1", "io2")


@dataclass
class ValidationResult:
    warnings: list[str] = field(default_factory=list)


def validate_cluster_name(name: str) -> None:
    if not name:
        raise SpecError("cluster name is empty; set metadata.name or pass --name, e.g. proyecto.k8s.local")
    if len(name) > 253 or not _CLUSTER_NAME_RE.match(name):
        hint = " (use lower case)" if name.lower() != name else ""
        raise SpecError(
            f"invalid cluster name {name!r}{hint}: it must be a fully-qualified DNS name made of lower-case "
            "letters, digits, '-' and '.', e.g. proyecto.k8s.local or k8s.example.com"
        )
    if any(len(label) > 63 for label in name.split(".")):
        raise SpecError(
            f"invalid cluster name {name!r}: each dot-separated part must be at most 63 characters"
        )


# Set by `create cluster --allow-even-control-plane` so later edits of that cluster keep accepting it.
ALLOW_EVEN_ANNOTATION = "pykops.io/allow-even-control-plane"


def _quorum_message(what: str, count: int) -> str:
    tolerated = (count - 1) // 2
    example = " (with 2, losing either one stops the cluster)" if count == 2 else ""
    return (
        f"{what} is {count}, an even number: etcd commits a write only when a majority ({count // 2 + 1} of "
        f"{count}) agrees, so {count} members survive {tolerated} failure{'s' if tolerated != 1 else ''}, "
        f"no more than {count - 1} would{example}. Use {count + 1} (or {count - 1}); "
        f"to accept it anyway, create the cluster with --allow-even-control-plane or set the annotation "
        f'{ALLOW_EVEN_ANNOTATION}: "true" on the Cluster'
    )


def _check_access(values: list[str] | None, path: str) -> None:
    for i, value in enumerate(values or []):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SpecError(
                f"{path}[{i}]: invalid CIDR {value!r}; "
                "give an address range such as 203.0.113.0/24 or 0.0.0.0/0"
            ) from None


def _check_int_or_percent(value: int | str | None, path: str) -> None:
    if value is None:
        return
    if isinstance(value, int):
        if value < 0:
            raise SpecError(f"{path}: {value} must not be negative")
    elif not _PERCENT_RE.match(value) or int(value[:-1]) > 100:
        raise SpecError(
            f"{path}: invalid value {value!r}; expected a count such as 1 or a percentage such as 25%"
        )


def validate_before_populate(cluster: Cluster, groups: list[InstanceGroup] | None = None) -> None:
    """The checks defaults depend on (name, cloud, Kubernetes version, roles): run before populate."""
    validate_cluster_name(cluster.name)
    for group in groups or []:
        if group.spec.role is None:
            raise SpecError(f'InstanceGroup "{group.name}": spec.role is required ({ROLES_HINT})')
    provider = cluster.spec.cloud_provider
    if provider is not None and provider != "aws":
        raise SpecError(f"spec.cloudProvider: {provider!r} is not supported; pykops supports aws")
    if cluster.spec.kubernetes_version is not None:
        channels.check_supported(cluster.spec.kubernetes_version)


def validate(
    cluster: Cluster, groups: list[InstanceGroup], *, allow_even_control_plane: bool = False
) -> ValidationResult:
    """Check a completed spec; raise SpecError on the first error, return warnings."""
    result = ValidationResult()
    s = cluster.spec
    annotations = cluster.metadata.annotations or {}
    allow_even_control_plane = allow_even_control_plane or annotations.get(ALLOW_EVEN_ANNOTATION) == "true"
    validate_cluster_name(cluster.name)
    gossip = cluster.name.endswith(GOSSIP_SUFFIX)

    if s.cloud_provider != "aws":
        raise SpecError(f"spec.cloudProvider: {s.cloud_provider!r} is not supported; pykops supports aws")
    channels.check_supported(s.kubernetes_version or "")

    # --- network ------------------------------------------------------------------------------------
    if s.network_id is not None and not _VPC_ID_RE.match(s.network_id):
        raise SpecError(f"spec.networkID: invalid VPC id {s.network_id!r}; expected vpc- and hex digits")
    network = parse_cidr(s.network_cidr, "spec.networkCIDR") if s.network_cidr else None
    if network is not None and not network.is_private:
        result.warnings.append(f"spec.networkCIDR {s.network_cidr} is not a private (RFC 1918) range")
    extra_networks = [
        parse_cidr(cidr, f"spec.additionalNetworkCIDRs[{i}]")
        for i, cidr in enumerate(s.additional_network_cidrs or [])
    ]
    non_masq = parse_cidr(s.non_masquerade_cidr or "", "spec.nonMasqueradeCIDR")
    service_range = parse_cidr(s.service_cluster_ip_range or "", "spec.serviceClusterIPRange")
    pod_cidr = parse_cidr(s.pod_cidr or "", "spec.podCIDR")
    if network is not None and network.overlaps(non_masq):
        raise SpecError(
            f"spec.nonMasqueradeCIDR {non_masq} overlaps spec.networkCIDR {network}; "
            "pod and service addresses must not collide with the VPC"
        )
    if not service_range.subnet_of(non_masq):
        raise SpecError(
            f"spec.serviceClusterIPRange {service_range} must be inside spec.nonMasqueradeCIDR {non_masq}"
        )
    if not pod_cidr.subnet_of(non_masq):
        raise SpecError(f"spec.podCIDR {pod_cidr} must be inside spec.nonMasqueradeCIDR {non_masq}")
    if pod_cidr.overlaps(service_range):
        raise SpecError(f"spec.podCIDR {pod_cidr} overlaps spec.serviceClusterIPRange {service_range}")
    _check_access(s.kubernetes_api_access, "spec.kubernetesApiAccess")
    _check_access(s.ssh_access, "spec.sshAccess")
    _check_access(s.node_port_access, "spec.nodePortAccess")

    subnets = s.subnets or []
    if not subnets:
        raise SpecError("spec.subnets: a cluster needs at least one subnet (one per zone); pass --zones")
    names = Counter(sub.name for sub in subnets)
    for name, count in names.items():
        if not name:
            raise SpecError("spec.subnets: every subnet needs a name")
        if count > 1:
            raise SpecError(f"spec.subnets: subnet name {name!r} is used {count} times; names must be unique")
    region: str | None = None
    carved: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for i, sub in enumerate(subnets):
        path = f"spec.subnets[{i}]"
        if not sub.zone:
            raise SpecError(f"{path}.zone: subnet {sub.name!r} has no zone")
        try:
            sub_region = region_of_zone(sub.zone)
        except SpecError as exc:
            raise SpecError(f"{path}.zone: {exc}") from None
        if region is not None and sub_region != region:
            raise SpecError(
                f"{path}.zone: {sub.zone} is in {sub_region} but other subnets are in {region}; "
                "a cluster lives in one region"
            )
        region = sub_region
        if sub.type is None:
            raise SpecError(f"{path}.type: subnet {sub.name!r} needs a type (Public, Private or Utility)")
        if sub.id is not None:
            if not _SUBNET_ID_RE.match(sub.id):
                raise SpecError(f"{path}.id: invalid subnet id {sub.id!r}; expected subnet- and hex digits")
            if s.network_id is None:
                raise SpecError(f"{path}.id: shared subnet {sub.id} needs spec.networkID (the VPC it is in)")
        if sub.cidr is None:
            if sub.id is None:
                raise SpecError(
                    f"{path}.cidr: subnet {sub.name!r} needs a CIDR (or the id of a shared subnet)"
                )
            continue
        net = parse_cidr(sub.cidr, f"{path}.cidr")
        if network is not None and not any(net.subnet_of(n) for n in [network, *extra_networks]):
            raise SpecError(f"{path}.cidr: {net} is outside spec.networkCIDR {network}")
        for other_name, other in carved:
            if net.overlaps(other):
                raise SpecError(f"{path}.cidr: {net} overlaps subnet {other_name!r} ({other})")
        if net.overlaps(non_masq):
            raise SpecError(f"{path}.cidr: {net} overlaps spec.nonMasqueradeCIDR {non_masq}")
        carved.append((sub.name, net))

    subnet_by_name = {sub.name: sub for sub in subnets}
    private_topology = (s.topology is not None and s.topology.masters == "private") or any(
        sub.type == "Private" for sub in subnets
    )
    if private_topology and not any(sub.type == "Utility" for sub in subnets):
        raise SpecError(
            "spec.subnets: private topology needs Utility subnets (for load balancers and NAT gateways), "
            "one per zone"
        )

    dns_type = s.topology.dns.type if s.topology is not None and s.topology.dns is not None else None
    if gossip and dns_type in ("Public", "Private"):
        raise SpecError(
            f"spec.topology.dns.type: {cluster.name} is a gossip cluster ({GOSSIP_SUFFIX}) and cannot use "
            f"{dns_type} DNS; set it to None"
        )
    if s.api is not None and s.api.load_balancer is None and s.api.dns is not None and dns_type == "None":
        raise SpecError(
            "spec.api: a cluster without DNS reaches its API through a load balancer; set api.loadBalancer"
        )

    plugin = s.networking.plugin() if s.networking is not None else None
    if plugin is None:
        raise SpecError("spec.networking: choose a network plugin, e.g. cilium, calico or kubenet")

    # --- instance groups -------------------------------------------------------------------------------
    if not groups:
        raise SpecError(
            f"cluster {cluster.name} has no instance groups; it needs control-plane and node groups"
        )
    ig_names = Counter(g.name for g in groups)
    for name, count in ig_names.items():
        if count > 1:
            raise SpecError(f'InstanceGroup "{name}" is defined {count} times')
    for g in groups:
        where = f'InstanceGroup "{g.name}"'
        if not _IG_NAME_RE.match(g.name) or len(g.name) > 63:
            raise SpecError(
                f"invalid instance group name {g.name!r}: use lower-case letters, digits, '-' and '.' "
                "(at most 63 characters)"
            )
        gs = g.spec
        if gs.role is None:
            raise SpecError(
                f"{where}: spec.role is required (Master, ControlPlane, Node, Bastion or APIServer)"
            )
        if gs.min_size is not None and gs.max_size is not None and gs.min_size > gs.max_size:
            raise SpecError(f"{where}: spec.minSize {gs.min_size} is larger than spec.maxSize {gs.max_size}")
        machine = gs.machine_type or ""
        info = instance_types.lookup(machine)
        if info is None:
            close = instance_types.suggest(machine)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; see the EC2 instance type list"
            raise SpecError(f"{where}: spec.machineType: unknown instance type {machine!r}{hint}")
        size_warning = (
            instance_types.control_plane_size_warning(machine)
            if g.is_control_plane
            else instance_types.node_size_warning(machine)
        )
        if size_warning:
            result.warnings.append(f"{where}: {size_warning}")
        mixed = gs.mixed_instances_policy.instances if gs.mixed_instances_policy else None
        for i, mixed_type in enumerate(mixed or []):
            if instance_types.lookup(mixed_type) is None:
                raise SpecError(
                    f"{where}: spec.mixedInstancesPolicy.instances[{i}]: unknown instance type {mixed_type!r}"
                )
        if gs.role == "Bastion" and not private_topology:
            raise SpecError(
                f"{where}: a bastion needs private topology (create the cluster with --topology private)"
            )
        if not gs.subnets:
            raise SpecError(f"{where}: spec.subnets is empty; name at least one of the cluster's subnets")
        for i, name in enumerate(gs.subnets):
            if name not in subnet_by_name:
                known = ", ".join(subnet_by_name)
                raise SpecError(
                    f"{where}: spec.subnets[{i}]: no cluster subnet named {name!r} (subnets: {known})"
                )
            if gs.role != "Bastion" and subnet_by_name[name].type == "Utility":
                raise SpecError(
                    f"{where}: spec.subnets[{i}]: {name!r} is a Utility subnet, reserved for load balancers "
                    "and bastions"
                )
        if g.is_control_plane and len({subnet_by_name[n].zone for n in gs.subnets}) > 1:
            raise SpecError(
                f"{where}: a control-plane group must stay in one zone (its etcd volumes live there); "
                f"it lists subnets in several zones"
            )
        if gs.root_volume_type is not None and gs.root_volume_type not in ROOT_VOLUME_TYPES:
            raise SpecError(
                f"{where}: spec.rootVolumeType: unknown volume type {gs.root_volume_type!r}; "
                f"expected one of {', '.join(ROOT_VOLUME_TYPES)}"
            )
        for i, taint in enumerate(gs.taints or []):
            if not _TAINT_RE.match(taint):
                raise SpecError(
                    f"{where}: spec.taints[{i}]: invalid taint {taint!r}; "
                    "expected key=value:Effect with Effect "
                    "NoSchedule, PreferNoSchedule or NoExecute"
                )
        for key in gs.node_labels or {}:
            if not _LABEL_KEY_RE.match(key) or len(key.split("/")[-1]) > 63:
                raise SpecError(f"{where}: spec.nodeLabels: invalid label key {key!r}")
        md = gs.instance_metadata
        if (
            md is not None
            and md.http_put_response_hop_limit is not None
            and not (1 <= md.http_put_response_hop_limit <= 64)
        ):
            raise SpecError(
                f"{where}: spec.instanceMetadata.httpPutResponseHopLimit must be between 1 and 64"
            )
        if md is not None and md.http_tokens == "optional":
            result.warnings.append(f"{where}: IMDSv1 is allowed (httpTokens: optional); IMDSv2 is safer")
        if gs.rolling_update is not None:
            _check_int_or_percent(gs.rolling_update.max_surge, f"{where}: spec.rollingUpdate.maxSurge")
            _check_int_or_percent(
                gs.rolling_update.max_unavailable, f"{where}: spec.rollingUpdate.maxUnavailable"
            )
    if s.rolling_update is not None:
        _check_int_or_percent(s.rolling_update.max_surge, "spec.rollingUpdate.maxSurge")
        _check_int_or_percent(s.rolling_update.max_unavailable, "spec.rollingUpdate.maxUnavailable")

    control_plane = [g for g in groups if g.is_control_plane]
    if not control_plane:
        raise SpecError(f"cluster {cluster.name} has no control-plane instance group (role Master)")
    if not any(g.spec.role == "Node" for g in groups):
        result.warnings.append("the cluster has no node instance group: workloads will have nowhere to run")
    cp_zones = Counter(subnet_by_name[g.spec.subnets[0]].zone for g in control_plane if g.spec.subnets)
    node_zones = {sub.zone for sub in subnets if sub.type in ("Public", "Private")}
    crowded = [zone for zone, n in cp_zones.items() if n > 1]
    free = sorted(z for z in node_zones if z not in cp_zones and z is not None)
    if crowded and free:
        result.warnings.append(
            f"{cp_zones[crowded[0]]} control-plane nodes share zone {crowded[0]} while {', '.join(free)} "
            "have none: losing that zone loses etcd quorum; spread them one per zone"
        )

    # --- etcd ---------------------------------------------------------------------------------------
    etcd_names = [e.name for e in s.etcd_clusters or []]
    for required in ("main", "events"):
        if required not in etcd_names:
            raise SpecError(f"spec.etcdClusters: the {required!r} etcd cluster is missing")
    cp_names = {g.name for g in control_plane}
    for i, etcd in enumerate(s.etcd_clusters or []):
        path = f"spec.etcdClusters[{i}]"
        if etcd_names.count(etcd.name) > 1:
            raise SpecError(f"{path}.name: etcd cluster {etcd.name!r} is defined twice")
        members = etcd.etcd_members or []
        if not members:
            raise SpecError(f"{path}.etcdMembers: etcd cluster {etcd.name!r} has no members")
        member_names = Counter(m.name for m in members)
        for j, member in enumerate(members):
            mpath = f"{path}.etcdMembers[{j}]"
            if not member.name:
                raise SpecError(f"{mpath}.name: every etcd member needs a name")
            if member_names[member.name] > 1:
                raise SpecError(f"{mpath}.name: member name {member.name!r} is used twice in {etcd.name!r}")
            if member.instance_group not in cp_names:
                raise SpecError(
                    f"{mpath}.instanceGroup: {member.instance_group!r} is not a control-plane instance group "
                    f"(control-plane groups: {', '.join(sorted(cp_names))})"
                )
            if member.volume_type is not None and member.volume_type not in ETCD_VOLUME_TYPES:
                raise SpecError(
                    f"{mpath}.volumeType: {member.volume_type!r} is not suitable for etcd; "
                    f"use one of {', '.join(ETCD_VOLUME_TYPES)}"
                )
            if member.volume_size is not None and member.volume_size < 1:
                raise SpecError(f"{mpath}.volumeSize: must be at least 1 (GiB)")
            if member.encrypted_volume is False:
                result.warnings.append(
                    f"{mpath}: the etcd volume is not encrypted; etcd holds the cluster's secrets"
                )

    cp_nodes = sum(g.spec.max_size or 0 for g in control_plane)
    if cp_nodes % 2 == 0 and not allow_even_control_plane:
        raise SpecError(_quorum_message("the number of control-plane nodes", cp_nodes))
    for i, etcd in enumerate(s.etcd_clusters or []):
        count = len(etcd.etcd_members or [])
        if count % 2 == 0 and not allow_even_control_plane:
            what = f"spec.etcdClusters[{i}]: etcd cluster {etcd.name!r} member count"
            raise SpecError(_quorum_message(what, count))
    if cp_nodes == 1:
        result.warnings.append(
            "a single control-plane node is not highly available: if it fails the cluster cannot be managed "
            "until it is replaced; use 3 control-plane nodes in 3 zones for production"
        )

    # --- plugin-specific rules ------------------------------------------------------------------------
    if plugin == "kubenet" and private_topology:
        raise SpecError(
            "kubenet cannot be used with private topology: pod traffic between private subnets needs a "
            "CNI; choose --networking cilium or calico"
        )
    if plugin in CLOUD_ROUTES_PLUGINS:
        possible = sum(g.spec.max_size or 0 for g in groups)
        if possible > KUBENET_MAX_NODES:
            raise SpecError(
                f"{plugin} on AWS needs one VPC route per node and a route table holds at most "
                f"{KUBENET_MAX_NODES} routes, but the instance groups allow up to {possible} nodes; "
                "lower maxSize or choose --networking cilium or calico"
            )
    # populate turns kube-proxy off for kube-router, so an enabled kube-proxy here is the user's choice.
    if plugin == "kuberouter" and s.kube_proxy is not None and s.kube_proxy.enabled is True:
        raise SpecError(
            "spec.kubeProxy.enabled: kube-router replaces kube-proxy (it programs the service rules itself) "
            "and the two would fight over them; remove kubeProxy.enabled or set it to false"
        )
    ingress = s.ingress_controller.provider if s.ingress_controller is not None else None
    if s.ingress_controller is not None and ingress not in INGRESS_PROVIDERS:
        raise SpecError(
            f"spec.ingressController.provider: {ingress!r} is not supported; supported: "
            f"{', '.join(INGRESS_PROVIDERS)}"
        )
    return result


def refuse_network_change(old: Cluster | None, new: Cluster | None) -> None:
    """Refuse changing the network plugin of an existing cluster (``old`` is the stored spec, if any).

    Every running pod got its address, routes and (for overlays) tunnel from the old plugin; switching means
    two plugins fighting over the machines' CNI configuration and routes until every machine is replaced, and
    no pod can reach another meanwhile. kops refuses it too. Options that keep the plugin are untouched.
    """
    before = old.spec.networking.plugin() if old is not None and old.spec.networking else None
    after = new.spec.networking.plugin() if new is not None and new.spec.networking else None
    if before is None or after is None or before == after:
        return
    flag = "kube-router" if after == "kuberouter" else after
    raise SpecError(
        f"spec.networking: changing the network plugin of an existing cluster ({before} → {after}) is not "
        f"supported: running pods keep addresses and routes from {before} that {after} does not know, and "
        "pods could not reach each other until every machine was replaced",
        hint=f"keep spec.networking.{before}, or create a new cluster with --networking {flag} and move "
        "the workloads to it",
    )
