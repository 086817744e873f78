"""Defaults ("populate"): the user's spec → the completed spec (pure; never overrides a set field).

The completed spec is what the rest of pykops (model builders, nodeup) reads, and what ``update cluster``
stores as ``cluster-completed.spec``. Defaults follow kops where kops is sound: kops' network ranges,
RBAC, encrypted gp3 etcd volumes, IMDSv2 with a hop limit of 1, an external cloud provider.
"""

from __future__ import annotations

import ipaddress

from pykops.api import channel as channels
from pykops.api import instance_types
from pykops.api.models import (
    APISpec,
    AuthorizationSpec,
    Cluster,
    ContainerdConfig,
    DNSSpec,
    Empty,
    EtcdClusterSpec,
    EtcdManagerSpec,
    EtcdMemberSpec,
    IAMSpec,
    InstanceGroup,
    InstanceMetadataOptions,
    KubeAPIServerConfig,
    KubeControllerManagerConfig,
    KubeletConfig,
    KubeProxyConfig,
    KubeSchedulerConfig,
    LeaderElection,
    LoadBalancerSpec,
    NetworkingSpec,
    RuncConfig,
    TopologySpec,
)
from pykops.api.new_cluster import (
    DEFAULT_BASTION_MACHINE_TYPE,
    DEFAULT_MACHINE_TYPE,
    DEFAULT_NETWORK_CIDR,
    DEFAULT_NON_MASQUERADE_CIDR,
    GOSSIP_SUFFIX,
    OPEN_ACCESS,
)

DEFAULT_SERVICE_CLUSTER_IP_RANGE = "100.64.0.0/13"
DEFAULT_POD_CIDR = "100.96.0.0/11"
CLUSTER_DOMAIN = "cluster.local"
ETCD_VERSION = "3.5.21"
ETCD_VOLUME_TYPE = "gp3"
ETCD_VOLUME_SIZE_GB = 20
CONTAINERD_VERSION = "1.7.28"
RUNC_VERSION = "1.3.0"
ROOT_VOLUME_TYPE = "gp3"
ROOT_VOLUME_SIZE_GB = {"Master": 64, "ControlPlane": 64, "APIServer": 64, "Node": 128, "Bastion": 32}
ADMISSION_PLUGINS = [
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "NodeRestriction",
    "ResourceQuota",
]


def _first_host(cidr: str, offset: int) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + offset)


def populate_cluster(
    cluster: Cluster, groups: list[InstanceGroup], *, config_base: str | None = None
) -> Cluster:
    """The completed Cluster; ``groups`` are needed for etcd members when the spec has none."""
    c = cluster.model_copy(deep=True)
    s = c.spec
    if s.cloud_provider is None:
        s.cloud_provider = "aws"
    if s.channel is None:
        s.channel = "stable"
    if s.kubernetes_version is None:
        s.kubernetes_version = channels.load_channel(s.channel).recommended_version()
    else:
        s.kubernetes_version = s.kubernetes_version.lstrip("v")
    if s.config_base is None and config_base is not None:
        s.config_base = config_base
    if s.network_cidr is None and s.network_id is None:
        s.network_cidr = DEFAULT_NETWORK_CIDR
    if s.non_masquerade_cidr is None:
        s.non_masquerade_cidr = DEFAULT_NON_MASQUERADE_CIDR
    if s.service_cluster_ip_range is None:
        s.service_cluster_ip_range = DEFAULT_SERVICE_CLUSTER_IP_RANGE
    if s.pod_cidr is None:
        s.pod_cidr = DEFAULT_POD_CIDR
    if s.cluster_dns_domain is None:
        s.cluster_dns_domain = CLUSTER_DOMAIN
    if s.networking is None or s.networking.plugin() is None:
        s.networking = NetworkingSpec(cilium={})
    if s.authorization is None or s.authorization.mode() is None:
        s.authorization = AuthorizationSpec(rbac=Empty())
    if s.kubernetes_api_access is None:
        s.kubernetes_api_access = list(OPEN_ACCESS)
    if s.ssh_access is None:
        s.ssh_access = list(OPEN_ACCESS)
    if s.iam is None:
        s.iam = IAMSpec(allow_container_registry=True, legacy=False)

    gossip = c.name.endswith(GOSSIP_SUFFIX)
    if s.topology is None:
        s.topology = TopologySpec()
    private = any(sub.type == "Private" for sub in s.subnets or [])
    if s.topology.masters is None:
        s.topology.masters = "private" if private else "public"
    if s.topology.nodes is None:
        s.topology.nodes = "private" if private else "public"
    if s.topology.dns is None or s.topology.dns.type is None:
        s.topology.dns = DNSSpec(type="None" if gossip else "Public")
    if s.api is None:
        s.api = APISpec()
    if s.api.load_balancer is None and s.api.dns is None:
        s.api.load_balancer = LoadBalancerSpec()
    if s.api.load_balancer is not None:
        if s.api.load_balancer.type is None:
            s.api.load_balancer.type = "Public"
        if s.api.load_balancer.class_ is None:
            s.api.load_balancer.class_ = "Network"

    if s.etcd_clusters is None:
        cps = [g for g in groups if g.is_control_plane]
        s.etcd_clusters = [
            EtcdClusterSpec(
                name=name,
                etcd_members=[
                    EtcdMemberSpec(name=g.name.removeprefix("master-"), instance_group=g.name) for g in cps
                ],
            )
            for name in ("main", "events")
        ]
    for etcd in s.etcd_clusters:
        if etcd.provider is None:
            etcd.provider = "Manager"
        if etcd.version is None:
            etcd.version = ETCD_VERSION
        if etcd.manager is None:
            etcd.manager = EtcdManagerSpec(backup_retention_days=90)
        for member in etcd.etcd_members or []:
            if member.volume_type is None:
                member.volume_type = ETCD_VOLUME_TYPE
            if member.volume_size is None:
                member.volume_size = ETCD_VOLUME_SIZE_GB
            if member.encrypted_volume is None:
                member.encrypted_volume = True

    plugin = s.networking.plugin()
    auth_mode = "Node,RBAC" if s.authorization.mode() == "RBAC" else "AlwaysAllow"
    cluster_dns = _first_host(s.service_cluster_ip_range, 10)

    kubelet = s.kubelet or KubeletConfig()
    _fill(
        kubelet,
        anonymous_auth=False,
        authentication_token_webhook=True,
        authorization_mode="Webhook",
        cgroup_driver="systemd",
        cloud_provider="external",
        cluster_dns=cluster_dns,
        cluster_domain=s.cluster_dns_domain,
        non_masquerade_cidr=s.non_masquerade_cidr,
        pod_manifest_path="/etc/kubernetes/manifests",
        protect_kernel_defaults=True,
        read_only_port=0,
        rotate_certificates=True,
        shutdown_grace_period="30s",
        shutdown_grace_period_critical_pods="10s",
    )
    s.kubelet = kubelet

    api_server = s.kube_api_server or KubeAPIServerConfig()
    _fill(
        api_server,
        allow_privileged=True,
        anonymous_auth=False,
        api_audiences=["kubernetes.svc.default"],
        authorization_mode=auth_mode,
        enable_admission_plugins=list(ADMISSION_PLUGINS),
        log_level=2,
        secure_port=443,
        service_account_issuer=f"https://api.internal.{c.name}",
        service_node_port_range="30000-32767",
    )
    s.kube_api_server = api_server

    kcm = s.kube_controller_manager or KubeControllerManagerConfig()
    _fill(
        kcm,
        allocate_node_cidrs=True,
        cluster_cidr=s.pod_cidr,
        configure_cloud_routes=plugin == "kubenet",
        leader_election=LeaderElection(leader_elect=True),
        log_level=2,
        use_service_account_credentials=True,
    )
    s.kube_controller_manager = kcm

    scheduler = s.kube_scheduler or KubeSchedulerConfig()
    _fill(scheduler, leader_election=LeaderElection(leader_elect=True), log_level=2)
    s.kube_scheduler = scheduler

    proxy = s.kube_proxy or KubeProxyConfig()
    # kube-router replaces kube-proxy; every other plugin relies on it.
    _fill(proxy, enabled=plugin != "kuberouter", cluster_cidr=s.pod_cidr, proxy_mode="iptables", log_level=2)
    s.kube_proxy = proxy

    containerd = s.containerd or ContainerdConfig()
    _fill(containerd, version=CONTAINERD_VERSION, log_level="info", runc=RuncConfig(version=RUNC_VERSION))
    s.containerd = containerd
    if s.container_runtime is None:
        s.container_runtime = "containerd"
    return c


def populate_instance_group(group: InstanceGroup, cluster: Cluster) -> InstanceGroup:
    """The completed InstanceGroup, given the completed Cluster (for the Kubernetes version and subnets)."""
    g = group.model_copy(deep=True)
    s = g.spec
    if s.role is None:
        s.role = "Node"
    role = s.role
    if s.machine_type is None:
        s.machine_type = DEFAULT_BASTION_MACHINE_TYPE if role == "Bastion" else DEFAULT_MACHINE_TYPE
    if s.min_size is None and s.max_size is None:
        s.min_size = s.max_size = 2 if role == "Node" else 1
    elif s.min_size is None:
        s.min_size = s.max_size
    elif s.max_size is None:
        s.max_size = s.min_size
    if s.subnets is None:
        wanted = ("Utility",) if role == "Bastion" else ("Public", "Private")
        s.subnets = [sub.name for sub in cluster.spec.subnets or [] if sub.type in wanted]
    if s.image is None:
        info = instance_types.lookup(s.machine_type)
        arch = info.arch if info is not None else "x86_64"
        s.image = channels.load_channel(cluster.spec.channel or "stable").default_image(
            cluster.spec.kubernetes_version or channels.load_channel().recommended_version(), arch
        )
    if s.root_volume_size is None:
        s.root_volume_size = ROOT_VOLUME_SIZE_GB[role]
    if s.root_volume_type is None:
        s.root_volume_type = ROOT_VOLUME_TYPE
    if s.root_volume_encryption is None:
        s.root_volume_encryption = True
    metadata = s.instance_metadata or InstanceMetadataOptions()
    _fill(metadata, http_tokens="required", http_put_response_hop_limit=1)
    s.instance_metadata = metadata
    return g


def populate(
    cluster: Cluster, groups: list[InstanceGroup], *, config_base: str | None = None
) -> tuple[Cluster, list[InstanceGroup]]:
    completed = populate_cluster(cluster, groups, config_base=config_base)
    return completed, [populate_instance_group(g, completed) for g in groups]


def _fill(obj: object, **defaults: object) -> None:
    """Set each attribute that is unset (None); never overwrite a user's value."""
    for name, value in defaults.items():
        if getattr(obj, name) is None:
            setattr(obj, name, value)
