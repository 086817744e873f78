"""``create cluster``: from command-line choices to the Cluster and InstanceGroup specs (pure).

This is kops' "NewCluster": it writes the spec a user would have written by hand, with the choices
expanded (subnets and their CIDRs per zone, one control-plane group per control-plane zone, the node
group, etcd clusters with one member per control-plane group). Everything the user did not choose and
that can be derived later is left to :mod:`pykops.api.populate`, exactly as kops keeps ``config`` lean
and writes the rest to ``cluster-completed.spec``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pykops.api import channel as channels
from pykops.api.cidr import assign_subnet_cidrs, parse_cidr
from pykops.api.models import (
    INGRESS_PROVIDERS,
    NETWORKING_ALTERNATIVES,
    NETWORKING_FLAGS,
    REMOVED_NETWORKING,
    REMOVED_NETWORKING_FLAGS,
    APISpec,
    AuthorizationSpec,
    BastionSpec,
    Cluster,
    ClusterSpec,
    ClusterSubnet,
    DNSSpec,
    Empty,
    EtcdClusterSpec,
    EtcdManagerSpec,
    EtcdMemberSpec,
    IAMSpec,
    IngressControllerSpec,
    InstanceGroup,
    InstanceGroupSpec,
    KubeletConfig,
    LoadBalancerSpec,
    NetworkingSpec,
    ObjectMeta,
    TopologySpec,
)
from pykops.api.regions import region_of_zone
from pykops.errors import SpecError, UsageError

DEFAULT_NETWORK_CIDR = "172.20.0.0/16"
DEFAULT_NON_MASQUERADE_CIDR = "100.64.0.0/10"
DEFAULT_MACHINE_TYPE = "t3.medium"
DEFAULT_BASTION_MACHINE_TYPE = "t3.micro"
DEFAULT_NETWORKING = "cilium"
GOSSIP_SUFFIX = ".k8s.local"
CLUSTER_LABEL = "kops.k8s.io/cluster"
OPEN_ACCESS = ["0.0.0.0/0", "::/0"]


@dataclass
class CreateClusterOptions:
    """The flags of ``create cluster`` after parsing (names as in kops)."""

    name: str
    zones: list[str]
    control_plane_zones: list[str] = field(default_factory=list)
    control_plane_count: int | None = None
    node_count: int | None = None
    node_size: str | None = None
    control_plane_size: str | None = None
    networking: str = DEFAULT_NETWORKING
    kubernetes_version: str | None = None
    authorization: str = "RBAC"
    topology: str = "public"
    dns: str | None = None
    api_loadbalancer_type: str | None = None
    admin_access: list[str] = field(default_factory=list)
    ssh_access: list[str] = field(default_factory=list)
    network_cidr: str | None = None
    vpc: str | None = None
    subnets: list[str] = field(default_factory=list)
    utility_subnets: list[str] = field(default_factory=list)
    image: str | None = None
    cloud_labels: dict[str, str] = field(default_factory=dict)
    channel: str = "stable"
    bastion: bool = False
    config_base: str | None = None
    ssh_key_name: str | None = None
    ingress: str | None = None  # --ingress: spec.ingressController.provider (a pykops extension)


def parse_networking(value: str) -> str:
    """A ``--networking`` value → the spec key of the plugin, or a one-line error."""
    key = value.strip().lower()
    if key in REMOVED_NETWORKING_FLAGS:
        why = REMOVED_NETWORKING[REMOVED_NETWORKING_FLAGS[key]]
        raise UsageError(f"--networking {value}: {why}; {NETWORKING_ALTERNATIVES}")
    if key not in NETWORKING_FLAGS:
        supported = "kubenet, cilium, calico, flannel, canal, amazonvpc, kube-router, kindnet, cni"
        raise UsageError(f"--networking {value}: unknown network plugin; supported: {supported}")
    return NETWORKING_FLAGS[key]


def parse_key_values(value: str, flag: str) -> dict[str, str]:
    """``a=b,c=d`` → ``{"a": "b", "c": "d"}`` (kops' --cloud-labels format)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        key, sep, val = part.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {value!r}: expected key=value pairs separated by commas")
        out[key] = val
    return out


def _choice(value: str | None, flag: str, allowed: dict[str, str], default: str) -> str:
    if value is None:
        return default
    key = value.strip().lower()
    if key not in allowed:
        raise UsageError(f"{flag} {value}: expected one of {', '.join(sorted(set(allowed.values())))}")
    return allowed[key]


def _check_zones(zones: list[str], flag: str) -> str | None:
    seen: set[str] = set()
    region: str | None = None
    for zone in zones:
        if zone in seen:
            raise UsageError(f"{flag}: zone {zone} is listed twice")
        seen.add(zone)
        try:
            zone_region = region_of_zone(zone)
        except Exception as exc:
            raise UsageError(f"{flag}: {exc}") from None
        if region is not None and zone_region != region:
            raise UsageError(
                f"{flag}: zones {zones[0]} and {zone} are in different regions ({region}, {zone_region}); "
                "a cluster lives in one region"
            )
        region = zone_region
    return region


def _control_plane_layout(opts: CreateClusterOptions) -> list[tuple[str, str, str]]:
    """(instance group name, zone, etcd member name) for every control-plane group, kops style.

    One group per zone is ``master-<zone>`` with member ``<zone letter>``; several in one zone are
    ``master-<zone>-<n>`` with members ``<zone letter>-<n>``.
    """
    cp_zones = opts.control_plane_zones or []
    count = opts.control_plane_count
    if cp_zones:
        if count is None:
            count = len(cp_zones)
        elif count < len(cp_zones):
            raise UsageError(
                f"--control-plane-count {count} is less than the {len(cp_zones)} --control-plane-zones; "
                "give one zone per control-plane node or raise the count"
            )
    else:
        if count is None:
            count = 1
        # kops spreads the control plane over the first zones, one per zone while zones last.
        cp_zones = opts.zones[: min(count, len(opts.zones))]
    if count < 1:
        raise UsageError(f"--control-plane-count {count}: a cluster needs at least one control-plane node")
    per_zone: dict[str, int] = {}
    for i in range(count):
        zone = cp_zones[i % len(cp_zones)]
        per_zone[zone] = per_zone.get(zone, 0) + 1
    layout: list[tuple[str, str, str]] = []
    for zone in cp_zones:
        n = per_zone.get(zone, 0)
        if n == 1:
            layout.append((f"master-{zone}", zone, zone[-1]))
        else:
            layout.extend((f"master-{zone}-{k}", zone, f"{zone[-1]}-{k}") for k in range(1, n + 1))
    return layout


def new_cluster(opts: CreateClusterOptions) -> tuple[Cluster, list[InstanceGroup]]:
    """Build the user-facing spec for ``create cluster``; raises UsageError on contradictory flags."""
    if not opts.name:
        raise UsageError("--name is required (or set KOPS_CLUSTER_NAME), e.g. --name proyecto.k8s.local")
    if not opts.zones:
        raise UsageError("--zones is required, e.g. --zones eu-west-1a,eu-west-1b,eu-west-1c")
    _check_zones(opts.zones, "--zones")
    if opts.control_plane_zones:
        _check_zones(opts.control_plane_zones, "--control-plane-zones")
        missing = [z for z in opts.control_plane_zones if z not in opts.zones]
        if missing:
            raise UsageError(
                f"--control-plane-zones: {', '.join(missing)} not in --zones; "
                "control-plane zones must be a subset of --zones"
            )
    if opts.node_count is not None and opts.node_count < 0:
        raise UsageError(f"--node-count {opts.node_count}: must be zero or more")

    plugin = parse_networking(opts.networking)
    ingress = opts.ingress.strip().lower() if opts.ingress else None
    if ingress is not None and ingress not in INGRESS_PROVIDERS:
        raise UsageError(
            f"--ingress {opts.ingress}: unknown ingress controller; supported: {', '.join(INGRESS_PROVIDERS)}"
        )
    auth = _choice(
        opts.authorization, "--authorization", {"rbac": "RBAC", "alwaysallow": "AlwaysAllow"}, "RBAC"
    )
    topology = _choice(opts.topology, "--topology", {"public": "public", "private": "private"}, "public")
    gossip = opts.name.endswith(GOSSIP_SUFFIX)
    dns = _choice(
        opts.dns,
        "--dns",
        {"public": "Public", "private": "Private", "none": "None"},
        "None" if gossip else "Public",
    )
    if gossip and dns != "None":
        raise UsageError(
            f"--dns {opts.dns}: {opts.name} is a gossip cluster ({GOSSIP_SUFFIX}) and uses no DNS; "
            "drop --dns or choose a name in a DNS zone you own"
        )
    lb_type = _choice(
        opts.api_loadbalancer_type,
        "--api-loadbalancer-type",
        {"public": "Public", "internal": "Internal"},
        "Public",
    )
    if opts.subnets and not opts.vpc:
        raise UsageError("--subnets needs --vpc: shared subnets live in an existing VPC")
    if opts.subnets and len(opts.subnets) != len(opts.zones):
        raise UsageError(
            f"--subnets gives {len(opts.subnets)} subnet ids for {len(opts.zones)} zones; "
            "give one id per zone, in the order of --zones"
        )
    if opts.utility_subnets and topology != "private":
        raise UsageError("--utility-subnets only applies to --topology private")
    if opts.bastion and topology != "private":
        raise UsageError("--bastion needs --topology private: a bastion is the way into private subnets")

    version = opts.kubernetes_version.lstrip("v") if opts.kubernetes_version else None
    if version is None:
        version = channels.load_channel(opts.channel).recommended_version()
    else:
        channels.load_channel(opts.channel)  # an unknown channel is an error even with a version given

    # Subnets: one per zone; private topology adds a utility subnet per zone for load balancers and NAT.
    subnet_type = "Private" if topology == "private" else "Public"
    subnets = [ClusterSubnet(name=zone, zone=zone, type=subnet_type) for zone in opts.zones]
    for subnet, subnet_id in zip(subnets, opts.subnets, strict=False):
        subnet.id = subnet_id
    if topology == "private":
        utility = [ClusterSubnet(name=f"utility-{zone}", zone=zone, type="Utility") for zone in opts.zones]
        for subnet, subnet_id in zip(utility, opts.utility_subnets, strict=False):
            subnet.id = subnet_id
        subnets.extend(utility)
    if opts.network_cidr is not None:
        try:
            parse_cidr(opts.network_cidr, "--network-cidr")
        except SpecError as exc:
            raise UsageError(str(exc)) from None
    network_cidr = opts.network_cidr or (None if opts.vpc else DEFAULT_NETWORK_CIDR)
    if network_cidr is not None:
        to_assign = [(s.name, s.type or "Public") for s in subnets if s.id is None]
        if to_assign:
            carved = assign_subnet_cidrs(network_cidr, to_assign)
            for subnet in subnets:
                if subnet.name in carved:
                    subnet.cidr = carved[subnet.name]

    cp_layout = _control_plane_layout(opts)
    members = [
        EtcdMemberSpec(name=member, instance_group=ig_name, encrypted_volume=True)
        for ig_name, _zone, member in cp_layout
    ]
    etcd = [
        EtcdClusterSpec(
            name=etcd_name,
            etcd_members=[m.model_copy(deep=True) for m in members],
            manager=EtcdManagerSpec(backup_retention_days=90),
            cpu_request="200m",
            memory_request="100Mi",
        )
        for etcd_name in ("main", "events")
    ]

    spec = ClusterSpec(
        api=APISpec(load_balancer=LoadBalancerSpec(type=lb_type, class_="Network")),
        authorization=AuthorizationSpec(rbac=Empty())
        if auth == "RBAC"
        else AuthorizationSpec(always_allow=Empty()),
        channel=opts.channel,
        cloud_provider="aws",
        etcd_clusters=etcd,
        iam=IAMSpec(allow_container_registry=True, legacy=False),
        kubelet=KubeletConfig(anonymous_auth=False),
        kubernetes_api_access=list(opts.admin_access or OPEN_ACCESS),
        kubernetes_version=version,
        networking=NetworkingSpec.model_validate({plugin: {}}),
        non_masquerade_cidr=DEFAULT_NON_MASQUERADE_CIDR,
        ssh_access=list(opts.ssh_access or opts.admin_access or OPEN_ACCESS),
        subnets=subnets,
        topology=TopologySpec(dns=DNSSpec(type=dns)),
    )
    if network_cidr is not None:
        spec.network_cidr = network_cidr
    if opts.vpc:
        spec.network_id = opts.vpc
    if opts.config_base:
        spec.config_base = opts.config_base
    if opts.cloud_labels:
        spec.cloud_labels = dict(opts.cloud_labels)
    if opts.ssh_key_name:
        spec.ssh_key_name = opts.ssh_key_name
    if ingress is not None:
        spec.ingress_controller = IngressControllerSpec(provider=ingress)
    if topology == "private":
        spec.topology = TopologySpec(masters="private", nodes="private", dns=DNSSpec(type=dns))
        if opts.bastion:
            spec.topology.bastion = BastionSpec(bastion_public_name=f"bastion.{opts.name}")
    cluster = Cluster(metadata=ObjectMeta(name=opts.name), spec=spec)

    def group(name: str, spec: InstanceGroupSpec) -> InstanceGroup:
        return InstanceGroup(metadata=ObjectMeta(name=name, labels={CLUSTER_LABEL: opts.name}), spec=spec)

    node_subnets = [s.name for s in subnets if s.type in ("Public", "Private")]
    groups = [
        group(
            ig_name,
            InstanceGroupSpec(
                role="Master",
                machine_type=opts.control_plane_size or DEFAULT_MACHINE_TYPE,
                min_size=1,
                max_size=1,
                subnets=[zone],
            ),
        )
        for ig_name, zone, _member in cp_layout
    ]
    node_count = len(opts.zones) if opts.node_count is None else opts.node_count
    groups.append(
        group(
            "nodes",
            InstanceGroupSpec(
                role="Node",
                machine_type=opts.node_size or DEFAULT_MACHINE_TYPE,
                min_size=node_count,
                max_size=node_count,
                subnets=node_subnets,
            ),
        )
    )
    if opts.bastion:
        groups.append(
            group(
                "bastions",
                InstanceGroupSpec(
                    role="Bastion",
                    machine_type=DEFAULT_BASTION_MACHINE_TYPE,
                    min_size=1,
                    max_size=1,
                    subnets=[s.name for s in subnets if s.type == "Utility"],
                ),
            )
        )
    if opts.image:
        for ig in groups:
            ig.spec.image = opts.image
    return cluster, groups
