"""kops ``kops.k8s.io/v1alpha2`` API types: ``Cluster`` and ``InstanceGroup``.

The field names, nesting and enum spellings follow kops' v1alpha2 YAML so that kops manifests load
unchanged. Every model forbids unknown fields (the loader turns that into an error naming the field path)
and remembers which fields were set, so ``dump(load(x))`` writes back exactly what was given: this is what
makes load → dump → load an identity.

Only pure data lives here: defaults are applied by :mod:`pykops.api.populate` and rules are checked by
:mod:`pykops.api.validate`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

API_VERSION: Literal["kops.k8s.io/v1alpha2"] = "kops.k8s.io/v1alpha2"

IntOrString = int | str


class KopsModel(BaseModel):
    """Base for every API struct: camelCase aliases, unknown fields refused, set-field tracking."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        validate_assignment=True,
        alias_generator=lambda name: _camel(name),
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Empty(KopsModel):
    """An empty marker object such as ``rbac: {}`` or ``kubenet: {}``."""


class ObjectMeta(KopsModel):
    name: str = ""
    creation_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None


# ---------------------------------------------------------------------------------------------------------
# Component sections (handed to the node bootstrap). They cover the fields kops users set in practice;
# anything else is refused by name so a typo never silently does nothing.
# ---------------------------------------------------------------------------------------------------------


class LeaderElection(KopsModel):
    leader_elect: bool | None = None


class KubeletConfig(KopsModel):
    anonymous_auth: bool | None = None
    authentication_token_webhook: bool | None = None
    authorization_mode: str | None = None
    cgroup_driver: str | None = None
    cloud_provider: str | None = None
    cluster_dns: str | None = Field(default=None, alias="clusterDNS")
    cluster_domain: str | None = None
    cpu_cfs_quota: bool | None = Field(default=None, alias="cpuCFSQuota")
    cpu_manager_policy: str | None = None
    enforce_node_allocatable: str | None = None
    eviction_hard: str | None = None
    eviction_soft: str | None = None
    feature_gates: dict[str, str] | None = None
    hostname_override: str | None = None
    image_gc_high_threshold_percent: int | None = Field(default=None, alias="imageGCHighThresholdPercent")
    image_gc_low_threshold_percent: int | None = Field(default=None, alias="imageGCLowThresholdPercent")
    kube_reserved: dict[str, str] | None = None
    kube_reserved_cgroup: str | None = None
    log_level: int | None = None
    max_pods: int | None = None
    non_masquerade_cidr: str | None = Field(default=None, alias="nonMasqueradeCIDR")
    pod_infra_container_image: str | None = None
    pod_manifest_path: str | None = None
    pod_pids_limit: int | None = None
    protect_kernel_defaults: bool | None = None
    read_only_port: int | None = None
    registry_burst: int | None = None
    registry_pull_qps: int | None = Field(default=None, alias="registryPullQPS")
    resolv_conf: str | None = None
    rotate_certificates: bool | None = None
    serialize_image_pulls: bool | None = None
    shutdown_grace_period: str | None = None
    shutdown_grace_period_critical_pods: str | None = None
    system_reserved: dict[str, str] | None = None
    system_reserved_cgroup: str | None = None
    topology_manager_policy: str | None = None
    volume_plugin_directory: str | None = None


class KubeAPIServerConfig(KopsModel):
    allow_privileged: bool | None = None
    anonymous_auth: bool | None = None
    api_audiences: list[str] | None = None
    audit_log_max_age: int | None = None
    audit_log_max_backups: int | None = None
    audit_log_max_size: int | None = None
    audit_log_path: str | None = None
    audit_policy_file: str | None = None
    authorization_mode: str | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None
    disable_admission_plugins: list[str] | None = None
    enable_admission_plugins: list[str] | None = None
    event_ttl: str | None = Field(default=None, alias="eventTTL")
    feature_gates: dict[str, str] | None = None
    image: str | None = None
    log_level: int | None = None
    max_mutating_requests_inflight: int | None = None
    max_requests_inflight: int | None = None
    memory_limit: str | None = None
    memory_request: str | None = None
    oidc_client_id: str | None = Field(default=None, alias="oidcClientID")
    oidc_groups_claim: str | None = None
    oidc_issuer_url: str | None = Field(default=None, alias="oidcIssuerURL")
    oidc_username_claim: str | None = None
    runtime_config: dict[str, str] | None = None
    secure_port: int | None = None
    service_account_issuer: str | None = None
    service_node_port_range: str | None = None


class KubeControllerManagerConfig(KopsModel):
    allocate_node_cidrs: bool | None = Field(default=None, alias="allocateNodeCIDRs")
    cidr_allocator_type: str | None = Field(default=None, alias="cidrAllocatorType")
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    configure_cloud_routes: bool | None = None
    cpu_request: str | None = None
    enable_profiling: bool | None = None
    feature_gates: dict[str, str] | None = None
    horizontal_pod_autoscaler_sync_period: str | None = None
    image: str | None = None
    kube_api_burst: int | None = Field(default=None, alias="kubeAPIBurst")
    kube_api_qps: str | None = Field(default=None, alias="kubeAPIQPS")
    leader_election: LeaderElection | None = None
    log_level: int | None = None
    memory_request: str | None = None
    node_monitor_grace_period: str | None = None
    terminated_pod_gc_threshold: int | None = Field(default=None, alias="terminatedPodGCThreshold")
    use_service_account_credentials: bool | None = None


class KubeSchedulerConfig(KopsModel):
    burst: int | None = None
    cpu_request: str | None = None
    enable_profiling: bool | None = None
    feature_gates: dict[str, str] | None = None
    image: str | None = None
    leader_election: LeaderElection | None = None
    log_level: int | None = None
    memory_request: str | None = None
    qps: str | None = None


class KubeProxyConfig(KopsModel):
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    conntrack_max_per_core: int | None = None
    cpu_request: str | None = None
    enabled: bool | None = None
    feature_gates: dict[str, str] | None = None
    image: str | None = None
    ipvs_scheduler: str | None = None
    log_level: int | None = None
    memory_request: str | None = None
    metrics_bind_address: str | None = None
    node_port_addresses: list[str] | None = None
    proxy_mode: str | None = None


class RuncConfig(KopsModel):
    version: str | None = None


class ContainerdConfig(KopsModel):
    address: str | None = None
    config_additions: dict[str, str] | None = None
    log_level: str | None = None
    registry_mirrors: dict[str, list[str]] | None = None
    root: str | None = None
    runc: RuncConfig | None = None
    skip_install: bool | None = None
    state: str | None = None
    version: str | None = None


# ---------------------------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------------------------

SubnetType = Literal["Public", "Private", "Utility", "DualStack"]


class ClusterSubnet(KopsModel):
    name: str = ""
    zone: str | None = None
    region: str | None = None
    cidr: str | None = Field(default=None, alias="cidr")
    ipv6_cidr: str | None = Field(default=None, alias="ipv6CIDR")
    type: SubnetType | None = None
    id: str | None = None
    egress: str | None = None


class DNSSpec(KopsModel):
    type: Literal["Public", "Private", "None"] | None = None


class BastionSpec(KopsModel):
    bastion_public_name: str | None = None


class TopologySpec(KopsModel):
    masters: Literal["public", "private"] | None = None
    nodes: Literal["public", "private"] | None = None
    bastion: BastionSpec | None = None
    dns: DNSSpec | None = None


class LoadBalancerSpec(KopsModel):
    type: Literal["Public", "Internal"] | None = None
    class_: Literal["Network", "Classic"] | None = Field(default=None, alias="class")
    idle_timeout_seconds: int | None = None
    additional_security_groups: list[str] | None = None
    cross_zone_load_balancing: bool | None = None
    ssl_certificate: str | None = Field(default=None, alias="sslCertificate")


class APISpec(KopsModel):
    dns: Empty | None = None
    load_balancer: LoadBalancerSpec | None = None
    public_name: str | None = None


class EtcdMemberSpec(KopsModel):
    name: str = ""
    instance_group: str | None = None
    volume_type: str | None = None
    volume_size: int | None = None
    volume_iops: int | None = Field(default=None, alias="volumeIOPS")
    volume_throughput: int | None = None
    encrypted_volume: bool | None = None
    kms_key_id: str | None = Field(default=None, alias="kmsKeyID")


class EtcdManagerSpec(KopsModel):
    backup_retention_days: int | None = None
    image: str | None = None
    log_level: int | None = None


class EtcdBackupSpec(KopsModel):
    backup_store: str | None = None
    image: str | None = None


class EtcdClusterSpec(KopsModel):
    name: str = ""
    provider: Literal["Manager", "Legacy"] | None = None
    etcd_members: list[EtcdMemberSpec] | None = None
    version: str | None = None
    manager: EtcdManagerSpec | None = None
    backups: EtcdBackupSpec | None = None
    cpu_request: str | None = None
    memory_request: str | None = None
    heartbeat_interval: str | None = None
    leader_election_timeout: str | None = None


class CalicoSpec(KopsModel):
    encapsulation_mode: Literal["ipip", "vxlan", "none"] | None = None
    cross_subnet: bool | None = None
    mtu: int | None = Field(default=None, alias="mtu")
    bpf_enabled: bool | None = Field(default=None, alias="bpfEnabled")
    typha_replicas: int | None = None


class CiliumSpec(KopsModel):
    version: str | None = None
    tunnel: str | None = None
    ipam: str | None = Field(default=None, alias="ipam")
    enable_node_port: bool | None = None
    enable_prometheus_metrics: bool | None = None
    hubble: dict[str, Any] | None = None


class FlannelSpec(KopsModel):
    backend: str | None = None
    iptables_resync_seconds: int | None = None


class CanalSpec(KopsModel):
    mtu: int | None = Field(default=None, alias="mtu")
    default_endpoint_to_host_action: str | None = None


class AmazonVPCSpec(KopsModel):
    image: str | None = None
    env: list[dict[str, str]] | None = None


class CNISpec(KopsModel):
    uses_secondary_ip: bool | None = Field(default=None, alias="usesSecondaryIP")


# kops removed these plugins; pykops refuses them with what to use instead (see NetworkingSpec below).
REMOVED_NETWORKING: dict[str, str] = {
    "weave": "weave networking was removed from kops (Weave Net is no longer maintained)",
    "romana": "romana networking was removed from kops (Romana is no longer maintained)",
    "kopeio": "kopeio-vxlan networking was removed from kops",
    "classic": "classic networking was removed from Kubernetes and kops",
}
REMOVED_NETWORKING_FLAGS: dict[str, str] = {
    "weave": "weave",
    "romana": "romana",
    "kopeio-vxlan": "kopeio",
    "kopeio": "kopeio",
    "classic": "classic",
}
NETWORKING_ALTERNATIVES = "use cilium, calico, flannel or kubenet instead"

# The YAML key of each supported plugin, by the name used on the command line (kops' --networking values).
NETWORKING_FLAGS: dict[str, str] = {
    "kubenet": "kubenet",
    "calico": "calico",
    "cilium": "cilium",
    "flannel": "flannel",
    "canal": "canal",
    "amazonvpc": "amazonvpc",
    "amazon-vpc-routed-eni": "amazonvpc",
    "kube-router": "kuberouter",
    "kuberouter": "kuberouter",
    "kindnet": "kindnet",
    "cni": "cni",
}


class NetworkingSpec(KopsModel):
    kubenet: Empty | None = None
    calico: CalicoSpec | None = None
    cilium: CiliumSpec | None = None
    flannel: FlannelSpec | None = None
    canal: CanalSpec | None = None
    amazonvpc: AmazonVPCSpec | None = None
    kuberouter: Empty | None = None
    kindnet: Empty | None = None
    cni: CNISpec | None = None
    # Removed plugins are accepted by the parser only so that they can be refused with a useful message.
    weave: dict[str, Any] | None = None
    romana: dict[str, Any] | None = None
    kopeio: dict[str, Any] | None = None
    classic: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _refuse_removed(self) -> NetworkingSpec:
        for key, why in REMOVED_NETWORKING.items():
            if key in self.model_fields_set:
                raise ValueError(f"{why}; {NETWORKING_ALTERNATIVES}")
        chosen = self.chosen()
        if len(chosen) > 1:
            raise ValueError(f"only one network plugin may be set, found {', '.join(chosen)}")
        return self

    def chosen(self) -> list[str]:
        return [
            name
            for name in (
                "kubenet",
                "calico",
                "cilium",
                "flannel",
                "canal",
                "amazonvpc",
                "kuberouter",
                "kindnet",
            )
            + ("cni",)
            if getattr(self, name) is not None
        ]

    def plugin(self) -> str | None:
        chosen = self.chosen()
        return chosen[0] if chosen else None


class AuthorizationSpec(KopsModel):
    rbac: Empty | None = None
    always_allow: Empty | None = None

    @model_validator(mode="after")
    def _one(self) -> AuthorizationSpec:
        if self.rbac is not None and self.always_allow is not None:
            raise ValueError("only one of rbac and alwaysAllow may be set")
        return self

    def mode(self) -> str | None:
        if self.rbac is not None:
            return "RBAC"
        if self.always_allow is not None:
            return "AlwaysAllow"
        return None


class IAMSpec(KopsModel):
    allow_container_registry: bool | None = None
    legacy: bool | None = None
    use_service_account_external_permissions: bool | None = None
    permissions_boundary: str | None = None


class RollingUpdate(KopsModel):
    drain_and_terminate: bool | None = None
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None


class ClusterAutoscalerConfig(KopsModel):
    enabled: bool | None = None
    expander: str | None = None
    balance_similar_node_groups: bool | None = None
    scale_down_utilization_threshold: str | None = None
    skip_nodes_with_local_storage: bool | None = None
    image: str | None = None


class MetricsServerConfig(KopsModel):
    enabled: bool | None = None
    insecure: bool | None = None


class ConfigStoreSpec(KopsModel):
    base: str | None = None
    keypairs: str | None = None
    secrets: str | None = None


class ClusterSpec(KopsModel):
    channel: str | None = None
    config_base: str | None = None
    config_store: ConfigStoreSpec | None = None
    cloud_provider: Literal["aws"] | None = None
    kubernetes_version: str | None = None
    subnets: list[ClusterSubnet] | None = None
    master_public_name: str | None = None
    master_internal_name: str | None = None
    network_cidr: str | None = Field(default=None, alias="networkCIDR")
    additional_network_cidrs: list[str] | None = Field(default=None, alias="additionalNetworkCIDRs")
    network_id: str | None = Field(default=None, alias="networkID")
    topology: TopologySpec | None = None
    ssh_key_name: str | None = None
    kubernetes_api_access: list[str] | None = None
    ssh_access: list[str] | None = None
    node_port_access: list[str] | None = None
    dns_zone: str | None = Field(default=None, alias="dnsZone")
    cluster_dns_domain: str | None = Field(default=None, alias="clusterDNSDomain")
    service_cluster_ip_range: str | None = Field(default=None, alias="serviceClusterIPRange")
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    non_masquerade_cidr: str | None = Field(default=None, alias="nonMasqueradeCIDR")
    etcd_clusters: list[EtcdClusterSpec] | None = None
    containerd: ContainerdConfig | None = None
    container_runtime: Literal["containerd"] | None = None
    kubelet: KubeletConfig | None = None
    master_kubelet: KubeletConfig | None = None
    control_plane_kubelet: KubeletConfig | None = None
    kube_api_server: KubeAPIServerConfig | None = Field(default=None, alias="kubeAPIServer")
    kube_controller_manager: KubeControllerManagerConfig | None = None
    kube_scheduler: KubeSchedulerConfig | None = None
    kube_proxy: KubeProxyConfig | None = None
    networking: NetworkingSpec | None = None
    api: APISpec | None = None
    authorization: AuthorizationSpec | None = None
    cloud_labels: dict[str, str] | None = None
    iam: IAMSpec | None = None
    rolling_update: RollingUpdate | None = None
    cluster_autoscaler: ClusterAutoscalerConfig | None = None
    metrics_server: MetricsServerConfig | None = None
    additional_policies: dict[str, str] | None = None
    external_policies: dict[str, list[str]] | None = None


class Cluster(KopsModel):
    api_version: Literal["kops.k8s.io/v1alpha2"] = API_VERSION
    kind: Literal["Cluster"] = "Cluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ClusterSpec = Field(default_factory=ClusterSpec)

    @property
    def name(self) -> str:
        return self.metadata.name


# ---------------------------------------------------------------------------------------------------------
# InstanceGroup
# ---------------------------------------------------------------------------------------------------------

# v1alpha2 spells the control-plane role "Master"; "ControlPlane" (v1alpha3) is accepted on input.
InstanceGroupRole = Literal["Master", "ControlPlane", "Node", "Bastion", "APIServer"]
CONTROL_PLANE_ROLES = ("Master", "ControlPlane")


class InstanceMetadataOptions(KopsModel):
    http_put_response_hop_limit: int | None = None
    http_tokens: Literal["required", "optional"] | None = None


class MixedInstancesPolicySpec(KopsModel):
    instances: list[str] | None = None
    instance_requirements: dict[str, Any] | None = None
    on_demand_allocation_strategy: str | None = None
    on_demand_base: int | None = None
    on_demand_above_base: int | None = None
    spot_allocation_strategy: str | None = None
    spot_instance_pools: int | None = None


class InstanceGroupSpec(KopsModel):
    role: InstanceGroupRole | None = None
    image: str | None = None
    machine_type: str | None = None
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    subnets: list[str] | None = None
    zones: list[str] | None = None
    root_volume_size: int | None = Field(default=None, ge=1)
    root_volume_type: str | None = None
    root_volume_iops: int | None = Field(default=None, alias="rootVolumeIOPS")
    root_volume_throughput: int | None = None
    root_volume_encryption: bool | None = None
    root_volume_encryption_key: str | None = None
    node_labels: dict[str, str] | None = None
    taints: list[str] | None = None
    cloud_labels: dict[str, str] | None = None
    mixed_instances_policy: MixedInstancesPolicySpec | None = None
    instance_metadata: InstanceMetadataOptions | None = None
    rolling_update: RollingUpdate | None = None
    kubelet: KubeletConfig | None = None
    associate_public_ip: bool | None = Field(default=None, alias="associatePublicIp")
    max_price: str | None = None
    additional_security_groups: list[str] | None = None
    suspend_processes: list[str] | None = None
    detailed_instance_monitoring: bool | None = None
    instance_protection: bool | None = None
    sysctl_parameters: list[str] | None = None
    tenancy: str | None = None
    cpu_credits: str | None = None


class InstanceGroup(KopsModel):
    api_version: Literal["kops.k8s.io/v1alpha2"] = API_VERSION
    kind: Literal["InstanceGroup"] = "InstanceGroup"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InstanceGroupSpec = Field(default_factory=InstanceGroupSpec)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def is_control_plane(self) -> bool:
        return self.spec.role in CONTROL_PLANE_ROLES

    @property
    def role_label(self) -> str:
        """The role as kops prints it in tables (Master, Node, Bastion, APIServer)."""
        role = self.spec.role or "Node"
        return "ControlPlane" if role == "ControlPlane" else role


def dump_obj(obj: KopsModel) -> dict[str, Any]:
    """The YAML/JSON form of an object: camelCase keys, only the fields that were set."""
    return obj.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json")
