"""kops ``kops.k8s.io/v1alpha2`` API types: ``Cluster`` and ``InstanceGroup``.

The field names, nesting and enum spellings follow kops' v1alpha2 YAML so that kops manifests load
unchanged. Every model forbids unknown fields (the loader turns that into an error naming the field path)
and remembers which fields were set, so ``dump(load(x))`` writes back exactly what was given: this is what
makes load → dump → load an identity.

Only pure data lives here: defaults are applied by :mod:`pykops.api.populate` and rules are checked by
:mod:`pykops.api.validate`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION: Literal["kops.k8s.io/v1alpha2"] = "kops.k8s.io/v1alpha2"

IntOrString = int | str
# kops' resource.Quantity where plain numbers are usual (QPS, tolerances): "3.14", 50 or "500m".
Quantity = int | float | str


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


class EnvVar(KopsModel):
    name: str
    value: str | None = None


class ObjectMeta(KopsModel):
    name: str = ""
    creation_timestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generation: int | None = None

    @field_validator("creation_timestamp", mode="before")
    @classmethod
    def _timestamp_text(cls, value: Any) -> Any:
        # An unquoted RFC 3339 time is a YAML timestamp; keep it as the text kops writes ("...T...Z").
        if isinstance(value, datetime):
            if value.tzinfo is not None and value.utcoffset() == timedelta(0):
                return value.replace(tzinfo=None).isoformat() + "Z"
            return value.isoformat()
        return value


# ---------------------------------------------------------------------------------------------------------
# Component sections (handed to the node bootstrap). They cover the fields kops users set in practice;
# anything else is refused by name so a typo never silently does nothing.
# ---------------------------------------------------------------------------------------------------------


class LeaderElection(KopsModel):
    leader_elect: bool | None = None
    leader_elect_lease_duration: str | None = None
    leader_elect_renew_deadline_duration: str | None = None
    leader_elect_resource_lock: str | None = None
    leader_elect_resource_name: str | None = None
    leader_elect_resource_namespace: str | None = None
    leader_elect_retry_period: str | None = None


class KubeletConfig(KopsModel):
    allowed_unsafe_sysctls: list[str] | None = None
    anonymous_auth: bool | None = None
    authentication_token_webhook: bool | None = None
    authentication_token_webhook_cache_ttl: str | None = None
    authorization_mode: str | None = None
    cgroup_driver: str | None = None
    cgroup_root: str | None = None
    client_ca_file: str | None = None
    cloud_provider: str | None = None
    cluster_dns: str | None = Field(default=None, alias="clusterDNS")
    cluster_domain: str | None = None
    container_log_max_files: int | None = None
    container_log_max_size: str | None = None
    cpu_cfs_quota: bool | None = Field(default=None, alias="cpuCFSQuota")
    cpu_cfs_quota_period: str | None = Field(default=None, alias="cpuCFSQuotaPeriod")
    cpu_manager_policy: str | None = None
    enable_cadvisor_json_endpoints: bool | None = None
    enable_debugging_handlers: bool | None = None
    enforce_node_allocatable: str | None = None
    event_burst: int | None = None
    event_qps: int | None = Field(default=None, alias="eventQPS")
    event_record_qps: int | None = Field(default=None, alias="eventRecordQPS")
    eviction_hard: str | None = None
    eviction_max_pod_grace_period: int | None = None
    eviction_minimum_reclaim: str | None = None
    eviction_pressure_transition_period: str | None = None
    eviction_soft: str | None = None
    eviction_soft_grace_period: str | None = None
    fail_swap_on: bool | None = None
    feature_gates: dict[str, str] | None = None
    hostname_override: str | None = None
    housekeeping_interval: str | None = None
    image_gc_high_threshold_percent: int | None = Field(default=None, alias="imageGCHighThresholdPercent")
    image_gc_low_threshold_percent: int | None = Field(default=None, alias="imageGCLowThresholdPercent")
    image_maximum_gc_age: str | None = Field(default=None, alias="imageMaximumGCAge")
    image_minimum_gc_age: str | None = Field(default=None, alias="imageMinimumGCAge")
    image_pull_progress_deadline: str | None = None
    kernel_memcg_notification: bool | None = None
    kube_api_qps: int | None = Field(default=None, alias="kubeAPIQPS")
    kube_reserved: dict[str, str] | None = None
    kube_reserved_cgroup: str | None = None
    kubelet_cgroups: str | None = None
    log_format: str | None = None
    log_level: int | None = None
    max_parallel_image_pulls: int | None = None
    max_pods: int | None = None
    memory_swap_behavior: str | None = None
    node_labels: dict[str, str] | None = None
    node_lease_duration_seconds: int | None = None
    node_status_update_frequency: str | None = None
    non_masquerade_cidr: str | None = Field(default=None, alias="nonMasqueradeCIDR")
    pod_infra_container_image: str | None = None
    pod_manifest_path: str | None = None
    pod_pids_limit: int | None = None
    protect_kernel_defaults: bool | None = None
    read_only_port: int | None = None
    register_node: bool | None = None
    register_schedulable: bool | None = None
    registry_burst: int | None = None
    registry_pull_qps: int | None = Field(default=None, alias="registryPullQPS")
    resolv_conf: str | None = None
    root_dir: str | None = None
    rotate_certificates: bool | None = None
    runtime_cgroups: str | None = None
    runtime_request_timeout: str | None = None
    seccomp_default: bool | None = None
    serialize_image_pulls: bool | None = None
    shutdown_grace_period: str | None = None
    shutdown_grace_period_critical_pods: str | None = None
    streaming_connection_idle_timeout: str | None = None
    system_cgroups: str | None = None
    system_reserved: dict[str, str] | None = None
    system_reserved_cgroup: str | None = None
    taints: list[str] | None = None
    tls_cert_file: str | None = None
    tls_cipher_suites: list[str] | None = None
    tls_min_version: str | None = None
    tls_private_key_file: str | None = None
    topology_manager_policy: str | None = None
    volume_plugin_directory: str | None = None
    volume_stats_agg_period: str | None = None


class KubeAPIServerConfig(KopsModel):
    additional_service_account_issuers: list[str] | None = None
    admission_control_config_file: str | None = None
    advertise_address: str | None = None
    allow_privileged: bool | None = None
    anonymous_auth: bool | None = None
    api_audiences: list[str] | None = None
    append_admission_plugins: list[str] | None = None
    audit_log_format: str | None = None
    audit_log_max_age: int | None = None
    audit_log_max_backups: int | None = None
    audit_log_max_size: int | None = None
    audit_log_path: str | None = None
    audit_policy_file: str | None = None
    audit_webhook_batch_buffer_size: int | None = None
    audit_webhook_batch_max_size: int | None = None
    audit_webhook_batch_max_wait: str | None = None
    audit_webhook_batch_throttle_burst: int | None = None
    audit_webhook_batch_throttle_enable: bool | None = None
    audit_webhook_batch_throttle_qps: Quantity | None = None
    audit_webhook_config_file: str | None = None
    audit_webhook_initial_backoff: str | None = None
    audit_webhook_mode: str | None = None
    authentication_config_file: str | None = None
    authentication_token_webhook_cache_ttl: str | None = None
    authentication_token_webhook_config_file: str | None = None
    authorization_mode: str | None = None
    authorization_rbac_super_user: str | None = None
    authorization_webhook_cache_authorized_ttl: str | None = None
    authorization_webhook_cache_unauthorized_ttl: str | None = None
    authorization_webhook_config_file: str | None = None
    bind_address: str | None = None
    cloud_provider: str | None = None
    cors_allowed_origins: list[str] | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None
    default_not_ready_toleration_seconds: int | None = None
    default_unreachable_toleration_seconds: int | None = None
    disable_admission_plugins: list[str] | None = None
    enable_admission_plugins: list[str] | None = None
    enable_aggregator_routing: bool | None = None
    enable_bootstrap_token_auth: bool | None = None
    enable_contention_profiling: bool | None = None
    enable_profiling: bool | None = None
    encryption_provider_config: str | None = None
    # corev1.EnvVar: a value or a valueFrom reference, passed through as given.
    env: list[dict[str, Any]] | None = None
    event_ttl: str | None = Field(default=None, alias="eventTTL")
    feature_gates: dict[str, str] | None = None
    goaway_chance: str | None = None
    http2_max_streams_per_connection: int | None = None
    image: str | None = None
    kubelet_preferred_address_types: list[str] | None = None
    log_format: str | None = None
    log_level: int | None = None
    max_mutating_requests_inflight: int | None = None
    max_requests_inflight: int | None = None
    memory_limit: str | None = None
    memory_request: str | None = None
    min_request_timeout: int | None = None
    oidc_ca_file: str | None = Field(default=None, alias="oidcCAFile")
    oidc_client_id: str | None = Field(default=None, alias="oidcClientID")
    oidc_groups_claim: str | None = None
    oidc_groups_prefix: str | None = None
    oidc_issuer_url: str | None = Field(default=None, alias="oidcIssuerURL")
    oidc_required_claim: list[str] | None = None
    oidc_username_claim: str | None = None
    oidc_username_prefix: str | None = None
    proxy_client_cert_file: str | None = None
    proxy_client_key_file: str | None = None
    request_timeout: str | None = None
    requestheader_allowed_names: list[str] | None = None
    requestheader_client_ca_file: str | None = Field(default=None, alias="requestheaderClientCAFile")
    requestheader_extra_header_prefixes: list[str] | None = None
    requestheader_group_headers: list[str] | None = None
    requestheader_username_headers: list[str] | None = None
    runtime_config: dict[str, str] | None = None
    secure_port: int | None = None
    service_account_issuer: str | None = None
    service_account_jwks_uri: str | None = Field(default=None, alias="serviceAccountJWKSURI")
    service_account_key_file: list[str] | None = None
    service_account_signing_key_file: str | None = None
    service_cluster_ip_range: str | None = Field(default=None, alias="serviceClusterIPRange")
    service_node_port_range: str | None = None
    storage_backend: str | None = None
    strict_transport_security_directives: list[str] | None = None
    tls_cert_file: str | None = None
    tls_cipher_suites: list[str] | None = None
    tls_min_version: str | None = None
    tls_private_key_file: str | None = None
    watch_cache: bool | None = None
    watch_cache_sizes: list[str] | None = None


class KubeControllerManagerConfig(KopsModel):
    allocate_node_cidrs: bool | None = Field(default=None, alias="allocateNodeCIDRs")
    attach_detach_reconcile_sync_period: str | None = None
    authorization_always_allow_paths: list[str] | None = None
    cidr_allocator_type: str | None = Field(default=None, alias="cidrAllocatorType")
    cloud_provider: str | None = None
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    cluster_name: str | None = None
    # kops spells this one with a capital C.
    cluster_signing_duration: str | None = Field(default=None, alias="ClusterSigningDuration")
    concurrent_deployment_syncs: int | None = None
    concurrent_endpoint_syncs: int | None = None
    # kops' spelling (sic).
    concurrent_horizontal_pod_austoscaler_syncs: int | None = None
    concurrent_job_syncs: int | None = None
    concurrent_namespace_syncs: int | None = None
    concurrent_rc_syncs: int | None = None
    concurrent_replicaset_syncs: int | None = None
    concurrent_resource_quota_syncs: int | None = None
    concurrent_service_syncs: int | None = None
    concurrent_serviceaccount_token_syncs: int | None = None
    configure_cloud_routes: bool | None = None
    controllers: list[str] | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None
    disable_attach_detach_reconcile_sync: bool | None = None
    enable_contention_profiling: bool | None = None
    enable_leader_migration: bool | None = None
    enable_profiling: bool | None = None
    endpoint_slice_updates_batch_period: str | None = None
    endpoint_updates_batch_period: str | None = None
    experimental_cluster_signing_duration: str | None = None
    external_cloud_volume_plugin: str | None = None
    feature_gates: dict[str, str] | None = None
    horizontal_pod_autoscaler_sync_period: str | None = None
    horizontal_pod_autoscaler_cpu_initialization_period: str | None = None
    horizontal_pod_autoscaler_downscale_delay: str | None = None
    horizontal_pod_autoscaler_downscale_stabilization: str | None = None
    horizontal_pod_autoscaler_initial_readiness_delay: str | None = None
    horizontal_pod_autoscaler_tolerance: Quantity | None = None
    horizontal_pod_autoscaler_upscale_delay: str | None = None
    horizontal_pod_autoscaler_use_rest_clients: bool | None = None
    image: str | None = None
    kube_api_burst: int | None = Field(default=None, alias="kubeAPIBurst")
    kube_api_qps: str | None = Field(default=None, alias="kubeAPIQPS")
    leader_election: LeaderElection | None = None
    log_level: int | None = None
    log_format: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    min_resync_period: str | None = None
    node_cidr_mask_size: int | None = Field(default=None, alias="nodeCIDRMaskSize")
    node_monitor_grace_period: str | None = None
    node_monitor_period: str | None = None
    pod_eviction_timeout: str | None = None
    root_ca_file: str | None = Field(default=None, alias="rootCAFile")
    service_account_private_key_file: str | None = None
    terminated_pod_gc_threshold: int | None = Field(default=None, alias="terminatedPodGCThreshold")
    tls_cert_file: str | None = None
    tls_cipher_suites: list[str] | None = None
    tls_min_version: str | None = None
    tls_private_key_file: str | None = None
    use_service_account_credentials: bool | None = None


class KubeSchedulerConfig(KopsModel):
    authorization_always_allow_paths: list[str] | None = None
    burst: int | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None
    enable_profiling: bool | None = None
    enable_contention_profiling: bool | None = None
    feature_gates: dict[str, str] | None = None
    image: str | None = None
    kube_api_burst: int | None = Field(default=None, alias="kubeAPIBurst")
    kube_api_qps: Quantity | None = Field(default=None, alias="kubeAPIQPS")
    leader_election: LeaderElection | None = None
    log_level: int | None = None
    log_format: str | None = None
    max_persistent_volumes: int | None = None
    memory_limit: str | None = None
    memory_request: str | None = None
    qps: str | None = None
    tls_cert_file: str | None = None
    tls_private_key_file: str | None = None
    use_policy_config_map: bool | None = None


class KubeProxyConfig(KopsModel):
    bind_address: str | None = None
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    conntrack_max_per_core: int | None = None
    conntrack_min: int | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None
    enabled: bool | None = None
    feature_gates: dict[str, str] | None = None
    hostname_override: str | None = None
    image: str | None = None
    ipvs_exclude_cidrs: list[str] | None = None
    ipvs_min_sync_period: str | None = None
    ipvs_scheduler: str | None = None
    ipvs_sync_period: str | None = None
    log_level: int | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    metrics_bind_address: str | None = None
    node_port_addresses: list[str] | None = None
    proxy_mode: str | None = None


class CloudControllerManagerConfig(KopsModel):
    allocate_node_cidrs: bool | None = Field(default=None, alias="allocateNodeCIDRs")
    allow_untagged_cloud: bool | None = None
    cidr_allocator_type: str | None = Field(default=None, alias="cidrAllocatorType")
    cloud_provider: str | None = None
    cluster_cidr: str | None = Field(default=None, alias="clusterCIDR")
    cluster_name: str | None = None
    concurrent_node_syncs: int | None = None
    configure_cloud_routes: bool | None = None
    controllers: list[str] | None = None
    cpu_request: str | None = None
    enable_leader_migration: bool | None = None
    image: str | None = None
    leader_election: LeaderElection | None = None
    log_level: int | None = None
    node_status_update_frequency: str | None = None
    use_service_account_credentials: bool | None = None


class PackagesConfig(KopsModel):
    """Download overrides for a binary package (containerd, runc)."""

    hash_amd64: str | None = None
    hash_arm64: str | None = None
    url_amd64: str | None = None
    url_arm64: str | None = None


class RuncConfig(KopsModel):
    version: str | None = None
    packages: PackagesConfig | None = None


class NRIConfig(KopsModel):
    enabled: bool | None = None
    plugin_registration_timeout: str | None = None
    plugin_request_timeout: str | None = None


class ContainerdConfig(KopsModel):
    address: str | None = None
    config_additions: dict[str, str] | None = None
    config_override: str | None = None
    install_cri_ctl: bool | None = None
    install_nerd_ctl: bool | None = None
    log_level: str | None = None
    nri: NRIConfig | None = None
    packages: PackagesConfig | None = None
    registry_mirrors: dict[str, list[str]] | None = None
    root: str | None = None
    runc: RuncConfig | None = None
    sandbox_image: str | None = None
    selinux_enabled: bool | None = None
    skip_install: bool | None = None
    state: str | None = None
    version: str | None = None
    use_ecr_credentials_for_mirrors: bool | None = Field(default=None, alias="useECRCredentialsForMirrors")


# ---------------------------------------------------------------------------------------------------------
# Cluster
# ---------------------------------------------------------------------------------------------------------

SubnetType = Literal["Public", "Private", "Utility", "DualStack"]


class RouteSpec(KopsModel):
    cidr: str | None = Field(default=None, alias="cidr")
    target: str | None = None


class ClusterSubnet(KopsModel):
    name: str = ""
    zone: str | None = None
    region: str | None = None
    cidr: str | None = Field(default=None, alias="cidr")
    ipv6_cidr: str | None = Field(default=None, alias="ipv6CIDR")
    type: SubnetType | None = None
    id: str | None = None
    egress: str | None = None
    public_ip: str | None = Field(default=None, alias="publicIP")
    additional_routes: list[RouteSpec] | None = None


class DNSSpec(KopsModel):
    type: Literal["Public", "Private", "None"] | None = None


class BastionLoadBalancerSpec(KopsModel):
    additional_security_groups: list[str] | None = None
    type: Literal["Public", "Internal"] | None = None


class BastionSpec(KopsModel):
    bastion_public_name: str | None = None
    idle_timeout_seconds: int | None = None
    load_balancer: BastionLoadBalancerSpec | None = None


class TopologySpec(KopsModel):
    masters: Literal["public", "private"] | None = None
    nodes: Literal["public", "private"] | None = None
    bastion: BastionSpec | None = None
    dns: DNSSpec | None = None


class LoadBalancerSubnetSpec(KopsModel):
    name: str = ""
    private_ipv4_address: str | None = Field(default=None, alias="privateIPv4Address")
    allocation_id: str | None = Field(default=None, alias="allocationId")


class AccessLogSpec(KopsModel):
    interval: int | None = None
    bucket: str | None = None
    bucket_prefix: str | None = None


class LoadBalancerSpec(KopsModel):
    type: Literal["Public", "Internal"] | None = None
    class_: Literal["Network", "Classic"] | None = Field(default=None, alias="class")
    idle_timeout_seconds: int | None = None
    additional_security_groups: list[str] | None = None
    cross_zone_load_balancing: bool | None = None
    ssl_certificate: str | None = Field(default=None, alias="sslCertificate")
    ssl_policy: str | None = None
    security_group_override: str | None = None
    use_for_internal_api: bool | None = None
    subnets: list[LoadBalancerSubnetSpec] | None = None
    access_log: AccessLogSpec | None = None


class APISpec(KopsModel):
    dns: Empty | None = None
    load_balancer: LoadBalancerSpec | None = None
    public_name: str | None = None


class EtcdMemberSpec(KopsModel):
    name: str = ""
    instance_group: str | None = None
    volume_type: str | None = None
    volume_size: int | None = None
    volume_iops: int | None = Field(default=None, alias="volumeIops")
    volume_throughput: int | None = None
    encrypted_volume: bool | None = None
    kms_key_id: str | None = Field(default=None, alias="kmsKeyId")


class EtcdManagerSpec(KopsModel):
    backup_retention_days: int | None = None
    image: str | None = None
    log_level: int | None = None
    env: list[EnvVar] | None = None
    backup_interval: str | None = None
    discovery_poll_interval: str | None = None
    listen_metrics_urls: list[str] | None = Field(default=None, alias="listenMetricsURLs")
    listen_client_http_urls: list[str] | None = Field(default=None, alias="listenClientHTTPURLs")


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
    image: str | None = None
    enable_etcd_tls: bool | None = Field(default=None, alias="enableEtcdTLS")
    enable_tls_auth: bool | None = Field(default=None, alias="enableTLSAuth")


class CalicoSpec(KopsModel):
    encapsulation_mode: Literal["ipip", "vxlan", "none"] | None = None
    cross_subnet: bool | None = None
    mtu: int | None = Field(default=None, alias="mtu")
    bpf_enabled: bool | None = Field(default=None, alias="bpfEnabled")
    typha_replicas: int | None = None
    registry: str | None = None
    version: str | None = None
    allow_ip_forwarding: bool | None = Field(default=None, alias="allowIPForwarding")
    aws_src_dst_check: str | None = None
    bpf_external_service_mode: str | None = None
    bpf_kube_proxy_iptables_cleanup_enabled: bool | None = None
    bpf_log_level: str | None = None
    chain_insert_mode: str | None = None
    cpu_request: str | None = None
    ipip_mode: str | None = None
    ipv4_auto_detection_method: str | None = None
    ipv6_auto_detection_method: str | None = None
    iptables_backend: str | None = None
    log_severity_screen: str | None = None
    nftables_mode: str | None = None
    prometheus_metrics_enabled: bool | None = None
    prometheus_metrics_port: int | None = None
    prometheus_go_metrics_enabled: bool | None = None
    prometheus_process_metrics_enabled: bool | None = None
    typha_prometheus_metrics_enabled: bool | None = None
    typha_prometheus_metrics_port: int | None = None
    vxlan_mode: str | None = None
    wireguard_enabled: bool | None = None


class CiliumIngressSpec(KopsModel):
    enabled: bool | None = None
    enforce_https: bool | None = None
    enable_secrets_sync: bool | None = None
    load_balancer_annotation_prefixes: str | None = None
    default_load_balancer_mode: str | None = None
    shared_load_balancer_service_name: str | None = None


class CiliumGatewayAPISpec(KopsModel):
    enabled: bool | None = None
    enable_secrets_sync: bool | None = None


class CiliumSpec(KopsModel):
    version: str | None = None
    tunnel: str | None = None
    ipam: str | None = Field(default=None, alias="ipam")
    enable_node_port: bool | None = None
    enable_prometheus_metrics: bool | None = None
    hubble: dict[str, Any] | None = None
    registry: str | None = None
    cpu_request: str | None = None
    memory_request: str | None = None
    agent_pod_annotations: dict[str, str] | None = None
    operator_pod_annotations: dict[str, str] | None = None
    agent_prometheus_port: int | None = None
    metrics: list[str] | None = None
    auto_direct_node_routes: bool | None = None
    bpf_ct_global_any_max: int | None = Field(default=None, alias="bpfCTGlobalAnyMax")
    bpf_ct_global_tcp_max: int | None = Field(default=None, alias="bpfCTGlobalTCPMax")
    bpf_lb_algorithm: str | None = Field(default=None, alias="bpfLBAlgorithm")
    bpf_lb_maglev_table_size: str | None = Field(default=None, alias="bpfLBMaglevTableSize")
    bpf_lb_map_max: int | None = Field(default=None, alias="bpfLBMapMax")
    bpf_lb_sock: bool | None = Field(default=None, alias="bpfLBSock")
    bpf_nat_global_max: int | None = Field(default=None, alias="bpfNATGlobalMax")
    bpf_neigh_global_max: int | None = None
    bpf_policy_map_max: int | None = None
    preallocate_bpf_maps: bool | None = Field(default=None, alias="preallocateBPFMaps")
    cluster_name: str | None = None
    cluster_id: int | None = Field(default=None, alias="clusterID", ge=0, le=255)
    cni_exclusive: bool | None = None
    disable_masquerade: bool | None = None
    enable_bpf_masquerade: bool | None = Field(default=None, alias="enableBPFMasquerade")
    enable_encryption: bool | None = None
    encryption_type: Literal["ipsec", "wireguard"] | None = None
    node_encryption: bool | None = None
    enable_endpoint_health_checking: bool | None = None
    enable_host_firewall: bool | None = None
    enable_l7_proxy: bool | None = None
    enable_local_redirect_policy: bool | None = None
    enable_policy: str | None = None
    enable_remote_node_identity: bool | None = None
    enable_unreachable_routes: bool | None = None
    etcd_managed: bool | None = None
    identity_allocation_mode: str | None = None
    ingress: CiliumIngressSpec | None = None
    gateway_api: CiliumGatewayAPISpec | None = Field(default=None, alias="gatewayAPI")
    extra_config: dict[str, str] | None = None


class FlannelSpec(KopsModel):
    backend: str | None = None
    iptables_resync_seconds: int | None = None
    disable_tx_checksum_offloading: bool | None = None


class CanalSpec(KopsModel):
    mtu: int | None = Field(default=None, alias="mtu")
    default_endpoint_to_host_action: str | None = None
    chain_insert_mode: str | None = None
    cpu_request: str | None = None
    disable_flannel_forward_rules: bool | None = None
    disable_tx_checksum_offloading: bool | None = None
    iptables_backend: str | None = None
    log_severity_sys: str | None = None
    prometheus_go_metrics_enabled: bool | None = None
    prometheus_metrics_enabled: bool | None = None
    prometheus_metrics_port: int | None = None
    prometheus_process_metrics_enabled: bool | None = None
    typha_prometheus_metrics_enabled: bool | None = None
    typha_prometheus_metrics_port: int | None = None
    typha_replicas: int | None = None


class AmazonVPCSpec(KopsModel):
    image: str | None = None
    env: list[dict[str, str]] | None = None
    # kops' spellings of the image fields.
    image_name: str | None = None
    init_image_name: str | None = None
    network_policy_agent_image: str | None = None


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
                "cni",
            )
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


class AWSPermission(KopsModel):
    policy_arns: list[str] | None = Field(default=None, alias="policyARNs")
    inline_policy: str | None = None


class ServiceAccountExternalPermission(KopsModel):
    name: str
    namespace: str
    aws: AWSPermission | None = None


class IAMSpec(KopsModel):
    allow_container_registry: bool | None = None
    legacy: bool | None = None
    use_service_account_external_permissions: bool | None = None
    permissions_boundary: str | None = None
    service_account_external_permissions: list[ServiceAccountExternalPermission] | None = None


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
    aws_use_static_instance_list: bool | None = None
    cordon_node_before_terminating: bool | None = None
    cpu_request: str | None = None
    create_priority_expander_config: bool | None = None
    custom_priority_expander_config: dict[str, list[str]] | None = None
    emit_per_nodegroup_metrics: bool | None = None
    ignore_daemon_sets_utilization: bool | None = None
    max_node_provision_time: str | None = None
    memory_request: str | None = None
    new_pod_scale_up_delay: str | None = None
    pod_annotations: dict[str, str] | None = None
    scale_down_delay_after_add: str | None = None
    scale_down_unneeded_time: str | None = None
    scale_down_unready_time: str | None = None
    skip_nodes_with_custom_controller_pods: bool | None = None
    skip_nodes_with_system_pods: bool | None = None

    @field_validator("custom_priority_expander_config", mode="before")
    @classmethod
    def _priority_keys(cls, value: Any) -> Any:
        # The keys are priorities: YAML reads `100:` as an int, kops (Go map[string]) as the string "100".
        if isinstance(value, dict):
            return {
                str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v for k, v in value.items()
            }
        return value


class MetricsServerConfig(KopsModel):
    enabled: bool | None = None
    insecure: bool | None = None
    image: str | None = None


class NodeLocalDNSConfig(KopsModel):
    enabled: bool | None = None
    additional_config: str | None = None
    cpu_request: str | None = None
    external_core_file: str | None = None
    forward_to_kube_dns: bool | None = Field(default=None, alias="forwardToKubeDNS")
    image: str | None = None
    local_ip: str | None = Field(default=None, alias="localIP")
    memory_request: str | None = None
    pod_annotations: dict[str, str] | None = None


class KubeDNSConfig(KopsModel):
    # corev1.Affinity / corev1.Toleration, passed through as given.
    affinity: dict[str, Any] | None = None
    cache_max_concurrent: int | None = None
    cache_max_size: int | None = None
    core_dns_image: str | None = Field(default=None, alias="coreDNSImage")
    cpa_image: str | None = None
    cpu_request: str | None = None
    domain: str | None = None
    external_core_file: str | None = None
    image: str | None = None
    memory_limit: str | None = None
    memory_request: str | None = None
    node_local_dns: NodeLocalDNSConfig | None = Field(default=None, alias="nodeLocalDNS")
    pod_annotations: dict[str, str] | None = None
    provider: Literal["CoreDNS", "KubeDNS"] | None = None
    replicas: int | None = None
    server_ip: str | None = Field(default=None, alias="serverIP")
    stub_domains: dict[str, list[str]] | None = None
    tolerations: list[dict[str, Any]] | None = None
    upstream_nameservers: list[str] | None = None


class ExternalDNSConfig(KopsModel):
    disable: bool | None = None
    watch_ingress: bool | None = None
    watch_namespace: str | None = None
    provider: Literal["dns-controller", "external-dns"] | None = None
    priority_class_name: str | None = None


class EBSCSIDriverSpec(KopsModel):
    enabled: bool | None = None
    managed: bool | None = None
    version: str | None = None
    kube_api_qps: Quantity | None = Field(default=None, alias="kubeAPIQPS")
    kube_api_burst: int | None = Field(default=None, alias="kubeAPIBurst")
    host_network: bool | None = None
    volume_attach_limit: int | None = None
    pod_annotations: dict[str, str] | None = None


class CloudConfiguration(KopsModel):
    """``spec.cloudConfig``: the AWS-relevant part (other clouds' sections are refused by name)."""

    aws_ebs_csi_driver: EBSCSIDriverSpec | None = Field(default=None, alias="awsEBSCSIDriver")
    disable_security_group_ingress: bool | None = None
    elb_security_group: str | None = None
    manage_storage_classes: bool | None = None
    multizone: bool | None = None
    nlb_security_group_mode: str | None = None
    node_instance_prefix: str | None = None
    node_ip_families: list[str] | None = Field(default=None, alias="nodeIPFamilies")
    node_tags: str | None = None


class DiscoveryServiceOptions(KopsModel):
    url: str | None = None


class ServiceAccountIssuerDiscoveryConfig(KopsModel):
    discovery_store: str | None = None
    discovery_service: DiscoveryServiceOptions | None = None
    enable_aws_oidc_provider: bool | None = Field(default=None, alias="enableAWSOIDCProvider")
    additional_audiences: list[str] | None = None


class CertManagerConfig(KopsModel):
    enabled: bool | None = None
    managed: bool | None = None
    image: str | None = None
    default_issuer: str | None = None
    nameservers: list[str] | None = None
    hosted_zone_ids: list[str] | None = Field(default=None, alias="hostedZoneIDs")
    feature_gates: dict[str, bool] | None = None


#: spec.ingressController.provider values pykops installs (a pykops extension, see IngressControllerSpec).
INGRESS_PROVIDERS = ("nginx",)


class IngressControllerSpec(KopsModel):
    """``spec.ingressController``: a pykops extension to kops' v1alpha2 (kops has no such field; its
    ingress-nginx is an example add-on applied by hand). ``provider: nginx`` installs the pinned upstream
    ingress-nginx controller as the add-on ``ingress-nginx.addons.k8s.io`` behind a cloud load balancer.
    kops itself would refuse a manifest with this field."""

    provider: str | None = None


class LoadBalancerControllerSpec(KopsModel):
    enabled: bool | None = None
    version: str | None = None
    enable_waf: bool | None = Field(default=None, alias="enableWAF")
    enable_waf_v2: bool | None = Field(default=None, alias="enableWAFv2")
    enable_shield: bool | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None


class NodeTerminationHandlerSpec(KopsModel):
    enabled: bool | None = None
    delete_sqs_msg_if_node_not_found: bool | None = Field(default=None, alias="deleteSQSMsgIfNodeNotFound")
    enable_spot_interruption_draining: bool | None = None
    enable_scheduled_event_draining: bool | None = None
    enable_rebalance_monitoring: bool | None = None
    enable_rebalance_draining: bool | None = None
    enable_out_of_service_taint: bool | None = None
    enable_prometheus_metrics: bool | None = Field(default=None, alias="prometheusEnable")
    enable_sqs_termination_draining: bool | None = Field(default=None, alias="enableSQSTerminationDraining")
    exclude_from_load_balancers: bool | None = None
    managed_asg_tag: str | None = Field(default=None, alias="managedASGTag")
    pod_termination_grace_period: int | None = None
    taint_node: bool | None = None
    cpu_request: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    version: str | None = None
    webhook_template: str | None = None
    webhook_url: str | None = Field(default=None, alias="webhookURL")


class NodeProblemDetectorConfig(KopsModel):
    enabled: bool | None = None
    image: str | None = None
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None


class SnapshotControllerConfig(KopsModel):
    enabled: bool | None = None
    install_default_class: bool | None = None


class PodIdentityWebhookSpec(KopsModel):
    enabled: bool | None = None
    replicas: int | None = None


class WarmPoolSpec(KopsModel):
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    enable_lifecycle_hook: bool | None = None
    lifecycle_hook_timeout: int | None = None
    additional_images: list[str] | None = None


class HTTPProxy(KopsModel):
    host: str | None = None
    port: int | None = None


class EgressProxySpec(KopsModel):
    http_proxy: HTTPProxy | None = None
    excludes: str | None = None


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
    # pykops extension (not in kops' v1alpha2): see IngressControllerSpec.
    ingress_controller: IngressControllerSpec | None = None
    additional_policies: dict[str, str] | None = None
    external_policies: dict[str, list[str]] | None = None
    additional_sans: list[str] | None = None
    egress_proxy: EgressProxySpec | None = None
    # kops spells this one with a capital D.
    disable_subnet_tags: bool | None = Field(default=None, alias="DisableSubnetTags")
    sysctl_parameters: list[str] | None = None
    cloud_config: CloudConfiguration | None = None
    cloud_controller_manager: CloudControllerManagerConfig | None = None
    kube_dns: KubeDNSConfig | None = Field(default=None, alias="kubeDNS")
    external_dns: ExternalDNSConfig | None = None
    service_account_issuer_discovery: ServiceAccountIssuerDiscoveryConfig | None = None
    pod_identity_webhook: PodIdentityWebhookSpec | None = None
    cert_manager: CertManagerConfig | None = None
    aws_load_balancer_controller: LoadBalancerControllerSpec | None = None
    node_termination_handler: NodeTerminationHandlerSpec | None = None
    node_problem_detector: NodeProblemDetectorConfig | None = None
    snapshot_controller: SnapshotControllerConfig | None = None
    warm_pool: WarmPoolSpec | None = None


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


class UserData(KopsModel):
    name: str = ""
    type: str | None = None
    content: str | None = None


class VolumeSpec(KopsModel):
    device: str | None = None
    size: int | None = Field(default=None, ge=1)
    type: str | None = None
    iops: int | None = None
    throughput: int | None = None
    encrypted: bool | None = None
    key: str | None = None
    delete_on_termination: bool | None = None


class VolumeMountSpec(KopsModel):
    device: str | None = None
    filesystem: str | None = None
    format_options: list[str] | None = None
    mount_options: list[str] | None = None
    path: str | None = None


class IAMProfileSpec(KopsModel):
    profile: str | None = None


class ExternalLoadBalancerSpec(KopsModel):
    load_balancer_name: str | None = None
    target_group_arn: str | None = None


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
    root_volume_iops: int | None = Field(default=None, alias="rootVolumeIops")
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
    # Karpenter-managed groups are not supported: only kops' default manager is accepted.
    manager: Literal["CloudGroup"] | None = None
    autoscale: bool | None = None
    autoscale_priority: int | None = None
    root_volume_optimization: bool | None = None
    root_volume_delete_on_termination: bool | None = None
    volumes: list[VolumeSpec] | None = None
    volume_mounts: list[VolumeMountSpec] | None = None
    capacity_rebalance: bool | None = None
    instance_interruption_behavior: str | None = None
    max_instance_lifetime: str | None = None
    additional_user_data: list[UserData] | None = None
    compress_user_data: bool | None = None
    external_load_balancers: list[ExternalLoadBalancerSpec] | None = None
    iam: IAMProfileSpec | None = None
    security_group_override: str | None = None
    warm_pool: WarmPoolSpec | None = None
    containerd: ContainerdConfig | None = None


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
