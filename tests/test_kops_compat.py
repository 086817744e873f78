"""kops compatibility of the v1alpha2 API types.

The manifests in ``tests/data/kops/`` are written in kops' own ``kops.k8s.io/v1alpha2`` form (the YAML
that ``kops get cluster -o yaml`` / ``kops get ig -o yaml`` print and ``kops create -f`` reads). They only use
fields pykops supports, so they must load unchanged and round-trip exactly: load → dump → load gives equal
objects, and the dumped YAML decodes to the very same mappings as the original (nothing lost, nothing added,
no value retyped). Unknown fields are refused with the field's full path, at any depth.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.serialize import dump_json, dump_yaml, load_documents, to_dict
from pykops.errors import SpecError

DATA = Path(__file__).parent / "data" / "kops"
MANIFESTS = sorted(DATA.glob("*.yaml"))
NAMES = [p.name for p in MANIFESTS]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _load(path: Path) -> list[Cluster | InstanceGroup]:
    return load_documents(path.read_text(), path.name)


def _dump_docs(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def test_manifests_present() -> None:
    assert NAMES == [
        "components.yaml",
        "ha-public-kubenet.yaml",
        "private-calico-bastion.yaml",
        "shared-vpc.yaml",
    ]


# --- load, round-trip -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", MANIFESTS, ids=NAMES)
def test_manifest_loads(path: Path) -> None:
    objects = _load(path)
    docs = _docs(path)
    assert len(objects) == len(docs)
    assert isinstance(objects[0], Cluster)
    assert all(isinstance(o, InstanceGroup) for o in objects[1:])
    assert [o.name for o in objects] == [d["metadata"]["name"] for d in docs]


@pytest.mark.parametrize("path", MANIFESTS, ids=NAMES)
def test_load_dump_load_is_identity(path: Path) -> None:
    objects = _load(path)
    again = load_documents(dump_yaml(objects), "dumped.yaml")
    assert again == objects
    assert [to_dict(o) for o in again] == [to_dict(o) for o in objects]
    # Dumping the reloaded objects gives the same text: the output is stable.
    assert dump_yaml(again) == dump_yaml(objects)


@pytest.mark.parametrize("path", MANIFESTS, ids=NAMES)
def test_dump_preserves_document(path: Path) -> None:
    """The YAML pykops writes decodes to exactly the mappings of the original manifest."""
    objects = _load(path)
    assert [d for d in yaml.safe_load_all(dump_yaml(objects)) if d is not None] == _docs(path)
    assert [to_dict(o) for o in objects] == _docs(path)


@pytest.mark.parametrize("path", MANIFESTS, ids=NAMES)
def test_json_round_trip(path: Path) -> None:
    objects = _load(path)
    assert load_documents(dump_json(objects), "dumped.json") == objects


# --- typed values -----------------------------------------------------------------------------------------


def _by_name(path: str) -> dict[str, Cluster | InstanceGroup]:
    return {o.name: o for o in _load(DATA / path)}


def test_ha_public_kubenet_values() -> None:
    objs = _by_name("ha-public-kubenet.yaml")
    cluster = objs["prod.eu.example.org"]
    assert isinstance(cluster, Cluster)
    spec = cluster.spec
    assert cluster.metadata.creation_timestamp == "2025-03-14T09:26:53Z"
    assert spec.networking is not None and spec.networking.plugin() == "kubenet"
    assert [s.zone for s in spec.subnets or []] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert spec.kube_dns is not None and spec.kube_dns.provider == "CoreDNS"
    assert spec.kube_dns.node_local_dns is not None and spec.kube_dns.node_local_dns.enabled is True
    assert spec.cloud_config is not None and spec.cloud_config.aws_ebs_csi_driver is not None
    assert spec.cloud_config.aws_ebs_csi_driver.enabled is True
    assert spec.cert_manager is not None and spec.cert_manager.hosted_zone_ids == ["Z0123456789ABCDEFGHIJ"]
    main = (spec.etcd_clusters or [])[0]
    assert [m.instance_group for m in main.etcd_members or []] == [
        "control-plane-eu-west-1a",
        "control-plane-eu-west-1b",
        "control-plane-eu-west-1c",
    ]
    masters = [o for o in objs.values() if isinstance(o, InstanceGroup) and o.is_control_plane]
    assert len(masters) == 3
    nodes = objs["nodes"]
    assert isinstance(nodes, InstanceGroup)
    assert nodes.spec.autoscale is True
    assert nodes.spec.rolling_update is not None
    assert nodes.spec.rolling_update.max_surge == "25%"
    assert nodes.spec.rolling_update.max_unavailable == 0


def test_private_calico_bastion_values() -> None:
    objs = _by_name("private-calico-bastion.yaml")
    cluster = objs["internal.ops.example.net"]
    assert isinstance(cluster, Cluster)
    spec = cluster.spec
    assert spec.topology is not None and spec.topology.masters == "private"
    assert spec.topology.bastion is not None and spec.topology.bastion.load_balancer is not None
    assert spec.topology.bastion.load_balancer.type == "Public"
    assert {s.type for s in spec.subnets or []} == {"Private", "Utility"}
    assert spec.networking is not None and spec.networking.calico is not None
    assert spec.networking.calico.wireguard_enabled is True
    assert spec.api is not None and spec.api.load_balancer is not None
    assert spec.api.load_balancer.use_for_internal_api is True
    assert spec.service_account_issuer_discovery is not None
    assert spec.service_account_issuer_discovery.enable_aws_oidc_provider is True
    assert spec.node_termination_handler is not None
    assert spec.node_termination_handler.enable_prometheus_metrics is True
    assert spec.node_termination_handler.managed_asg_tag == "aws-node-termination-handler/managed"
    perms = (spec.iam.service_account_external_permissions or []) if spec.iam else []
    assert [(p.namespace, p.name) for p in perms] == [
        ("reporting", "report-reader"),
        ("jobs", "queue-worker"),
    ]
    assert perms[0].aws is not None and perms[0].aws.policy_arns == [
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
    ]
    member = (spec.etcd_clusters or [])[0].etcd_members or []
    assert member[0].volume_iops == 3000
    bastion = objs["bastions"]
    assert isinstance(bastion, InstanceGroup) and bastion.spec.role == "Bastion"


def test_shared_vpc_values() -> None:
    objs = _by_name("shared-vpc.yaml")
    cluster = objs["payments.k8s.corp.example.com"]
    assert isinstance(cluster, Cluster)
    spec = cluster.spec
    assert spec.network_id == "vpc-0c0ffee0123456789"
    assert spec.disable_subnet_tags is True
    assert all((s.id or "").startswith("subnet-") for s in spec.subnets or [])
    routes = (spec.subnets or [])[0].additional_routes or []
    assert [(r.cidr, r.target) for r in routes] == [("10.0.0.0/8", "tgw-0123456789abcdef0")]
    lb = spec.api.load_balancer if spec.api else None
    assert lb is not None
    assert [s.allocation_id for s in lb.subnets or []] == [
        "eipalloc-0a1b2c3d4e5f60001",
        "eipalloc-0a1b2c3d4e5f60002",
        "eipalloc-0a1b2c3d4e5f60003",
    ]
    assert lb.access_log is not None and lb.access_log.interval == 5
    assert spec.egress_proxy is not None and spec.egress_proxy.http_proxy is not None
    assert spec.egress_proxy.http_proxy.port == 3128
    member = (spec.etcd_clusters or [])[0].etcd_members or []
    assert (member[0].kms_key_id or "").startswith("arn:aws:kms:")
    nodes = objs["nodes"]
    assert isinstance(nodes, InstanceGroup)
    assert nodes.spec.iam is not None and nodes.spec.iam.profile is not None
    assert [lb.target_group_arn is not None for lb in nodes.spec.external_load_balancers or []] == [True]


def test_components_values() -> None:
    objs = _by_name("components.yaml")
    cluster = objs["tuned.dev.example.io"]
    assert isinstance(cluster, Cluster)
    spec = cluster.spec
    assert spec.kubelet is not None and spec.kubelet.max_parallel_image_pulls == 5
    assert spec.kubelet.kube_reserved == {"cpu": "250m", "ephemeral-storage": "1Gi", "memory": "512Mi"}
    assert spec.master_kubelet is not None and spec.master_kubelet.register_schedulable is False
    api = spec.kube_api_server
    assert api is not None
    assert api.audit_webhook_batch_throttle_qps == 10.5
    assert api.oidc_username_prefix == "oidc:"
    assert api.default_not_ready_toleration_seconds == 60
    kcm = spec.kube_controller_manager
    assert kcm is not None and kcm.horizontal_pod_autoscaler_tolerance == 0.1
    assert kcm.leader_election is not None and kcm.leader_election.leader_elect_lease_duration == "30s"
    sched = spec.kube_scheduler
    assert sched is not None and sched.kube_api_qps == 100 and sched.qps == "100"
    assert spec.kube_proxy is not None and spec.kube_proxy.conntrack_min == 262144
    assert spec.containerd is not None and spec.containerd.sandbox_image == "registry.k8s.io/pause:3.10"
    assert spec.containerd.nri is not None and spec.containerd.nri.enabled is True

    control = objs["control-plane-us-west-2a"]
    assert isinstance(control, InstanceGroup)
    assert control.spec.root_volume_iops == 4000
    group = objs["spot-workers"]
    assert isinstance(group, InstanceGroup)
    g = group.spec
    assert g.mixed_instances_policy is not None
    assert g.mixed_instances_policy.instances == ["m6g.xlarge", "m7g.xlarge", "c7g.2xlarge"]
    assert g.mixed_instances_policy.on_demand_base == 1
    assert g.taints == ["dedicated=batch:NoSchedule", "spot=true:PreferNoSchedule"]
    assert g.node_labels == {"kops.k8s.io/instancegroup": "spot-workers", "workload": "batch"}
    assert g.cloud_labels == {"k8s.io/cluster-autoscaler/enabled": "1", "team": "data"}
    assert g.rolling_update is not None and g.rolling_update.max_unavailable == "10%"
    assert g.warm_pool is not None and g.warm_pool.max_size == 4
    assert [u.name for u in g.additional_user_data or []] == ["max-map-count.sh"]
    assert [(v.device, v.size) for v in g.volumes or []] == [("/dev/sdf", 100)]


# --- unknown fields ---------------------------------------------------------------------------------------


def _inject(doc: dict[str, Any], path: list[str | int], key: str) -> None:
    node: Any = doc
    for part in path:
        node = node[part]
    node[key] = "x"


# (manifest, document index, where to inject, unknown key, expected message after "<file>: ")
UNKNOWN = [
    ("ha-public-kubenet.yaml", 0, [], "status", 'Cluster "prod.eu.example.org": status: unknown field'),
    (
        "ha-public-kubenet.yaml",
        0,
        ["metadata"],
        "uid",
        'Cluster "prod.eu.example.org": metadata.uid: unknown field',
    ),
    (
        "ha-public-kubenet.yaml",
        0,
        ["spec"],
        "kubeDns",
        'Cluster "prod.eu.example.org": spec.kubeDns: unknown field',
    ),
    (
        "ha-public-kubenet.yaml",
        0,
        ["spec", "kubeDNS", "nodeLocalDNS"],
        "localIp",
        'Cluster "prod.eu.example.org": spec.kubeDNS.nodeLocalDNS.localIp: unknown field',
    ),
    (
        "ha-public-kubenet.yaml",
        0,
        ["spec", "etcdClusters", 0, "etcdMembers", 2],
        "volumeIOPS",
        'Cluster "prod.eu.example.org": spec.etcdClusters[0].etcdMembers[2].volumeIOPS: unknown field',
    ),
    (
        "shared-vpc.yaml",
        0,
        ["spec", "subnets", 1, "additionalRoutes", 0],
        "gateway",
        'Cluster "payments.k8s.corp.example.com": spec.subnets[1].additionalRoutes[0].gateway: unknown field',
    ),
    (
        "shared-vpc.yaml",
        0,
        ["spec", "api", "loadBalancer", "subnets", 2],
        "allocationID",
        'Cluster "payments.k8s.corp.example.com": '
        "spec.api.loadBalancer.subnets[2].allocationID: unknown field",
    ),
    (
        "shared-vpc.yaml",
        0,
        ["spec", "networking", "cilium", "hubble"],
        "relay",
        # hubble is passed through as a mapping, so only its parent's unknown keys are refused.
        None,
    ),
    (
        "private-calico-bastion.yaml",
        0,
        ["spec", "networking", "calico"],
        "ipipMod",
        'Cluster "internal.ops.example.net": spec.networking.calico.ipipMod: unknown field',
    ),
    (
        "private-calico-bastion.yaml",
        0,
        ["spec", "topology", "bastion", "loadBalancer"],
        "class",
        'Cluster "internal.ops.example.net": spec.topology.bastion.loadBalancer.class: unknown field',
    ),
    (
        "private-calico-bastion.yaml",
        0,
        ["spec", "iam", "serviceAccountExternalPermissions", 1, "aws"],
        "policyArns",
        'Cluster "internal.ops.example.net": '
        "spec.iam.serviceAccountExternalPermissions[1].aws.policyArns: unknown field",
    ),
    (
        "components.yaml",
        0,
        ["spec", "kubeAPIServer"],
        "auditWebhookBatchThrottleQPS",
        'Cluster "tuned.dev.example.io": spec.kubeAPIServer.auditWebhookBatchThrottleQPS: unknown field',
    ),
    (
        "components.yaml",
        0,
        ["spec", "kubeControllerManager", "leaderElection"],
        "leaseDuration",
        'Cluster "tuned.dev.example.io": '
        "spec.kubeControllerManager.leaderElection.leaseDuration: unknown field",
    ),
    (
        "components.yaml",
        0,
        ["spec", "containerd", "nri"],
        "plugins",
        'Cluster "tuned.dev.example.io": spec.containerd.nri.plugins: unknown field',
    ),
    (
        "components.yaml",
        1,
        ["spec"],
        "rootVolumeIOPS",
        'InstanceGroup "control-plane-us-west-2a": spec.rootVolumeIOPS: unknown field',
    ),
    (
        "components.yaml",
        2,
        ["spec", "mixedInstancesPolicy"],
        "spotMaxPrice",
        'InstanceGroup "spot-workers": spec.mixedInstancesPolicy.spotMaxPrice: unknown field',
    ),
    (
        "components.yaml",
        2,
        ["spec", "volumes", 0],
        "iopss",
        'InstanceGroup "spot-workers": spec.volumes[0].iopss: unknown field',
    ),
    (
        "components.yaml",
        2,
        ["spec", "additionalUserData", 0],
        "encoding",
        'InstanceGroup "spot-workers": spec.additionalUserData[0].encoding: unknown field',
    ),
    (
        "components.yaml",
        2,
        ["spec", "kubelet"],
        "maxpods",
        'InstanceGroup "spot-workers": spec.kubelet.maxpods: unknown field',
    ),
]


@pytest.mark.parametrize(
    ("name", "index", "where", "key", "expected"),
    UNKNOWN,
    ids=[f"{u[0]}:{'.'.join(map(str, u[2]))}.{u[3]}".replace(":.", ":") for u in UNKNOWN],
)
def test_unknown_field_refused_with_path(
    name: str, index: int, where: list[str | int], key: str, expected: str | None
) -> None:
    docs = copy.deepcopy(_docs(DATA / name))
    _inject(docs[index], where, key)
    text = _dump_docs(docs)
    if expected is None:
        load_documents(text, name)  # a pass-through mapping accepts any key
        return
    with pytest.raises(SpecError) as info:
        load_documents(text, name)
    assert str(info.value) == f"{name} (document {index + 1}): {expected}"


def test_several_unknown_fields_are_counted() -> None:
    docs = copy.deepcopy(_docs(DATA / "components.yaml"))
    _inject(docs[0], ["spec", "kubelet"], "aaa")
    _inject(docs[0], ["spec", "kubeProxy"], "bbb")
    _inject(docs[0], ["spec"], "ccc")
    with pytest.raises(SpecError) as info:
        load_documents(yaml.safe_dump(docs[0]), "cluster.yaml")
    message = str(info.value)
    assert message.startswith('cluster.yaml: Cluster "tuned.dev.example.io": ')
    assert message.endswith(": unknown field (and 2 more)")


def test_karpenter_manager_refused() -> None:
    docs = copy.deepcopy(_docs(DATA / "components.yaml"))
    docs[2]["spec"]["manager"] = "Karpenter"
    with pytest.raises(SpecError) as info:
        load_documents(yaml.safe_dump(docs[2]), "ig.yaml")
    assert str(info.value) == (
        'ig.yaml: InstanceGroup "spot-workers": '
        "spec.manager: invalid value 'Karpenter': expected 'CloudGroup'"
    )
    docs[2]["spec"]["manager"] = "CloudGroup"
    (group,) = load_documents(yaml.safe_dump(docs[2]), "ig.yaml")
    assert isinstance(group, InstanceGroup) and group.spec.manager == "CloudGroup"


def test_wrong_type_refused_with_path() -> None:
    docs = copy.deepcopy(_docs(DATA / "private-calico-bastion.yaml"))
    docs[0]["spec"]["nodeTerminationHandler"]["enabled"] = "sometimes"
    with pytest.raises(SpecError) as info:
        load_documents(yaml.safe_dump(docs[0]), "c.yaml")
    assert str(info.value).startswith(
        'c.yaml: Cluster "internal.ops.example.net": spec.nodeTerminationHandler.enabled: '
        "invalid value 'sometimes'"
    )


def test_unquoted_creation_timestamp_kept_as_kops_text() -> None:
    text = (
        "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n"
        "  name: a.example.com\n  creationTimestamp: 2025-01-02T03:04:05Z\nspec: {}\n"
    )
    (cluster,) = load_documents(text, "c.yaml")
    assert cluster.metadata.creation_timestamp == "2025-01-02T03:04:05Z"
    # Written back quoted, as kops does, so it stays a string when read again.
    dumped = yaml.safe_load(dump_yaml([cluster]))
    assert dumped["metadata"]["creationTimestamp"] == "2025-01-02T03:04:05Z"
