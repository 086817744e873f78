"""The model builders (pure): the tutorial's HA cluster → exactly kops' resource set."""

from __future__ import annotations

import fnmatch
from collections import Counter

import pytest

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.api.populate import populate
from pykops.engine.types import Ref, Resource
from pykops.model.bootstrap import user_data
from pykops.model.build import build
from pykops.model.context import ImageInfo, ModelContext
from pykops.model.iam import policy_document
from pykops.model.names import elb_name, ssh_key_name
from pykops.state.keystore import LEGACY_NAMES, cluster_keyset_names

NAME = "proyecto.k8s.local"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def _cluster(**kw: object) -> tuple[Cluster, list[InstanceGroup]]:
    opts = CreateClusterOptions(
        name=str(kw.pop("name", NAME)),
        zones=list(kw.pop("zones", ZONES)),  # type: ignore[call-overload]
        control_plane_count=3,
        node_count=1,
        networking="kubenet",
        config_base=f"s3://state-bucket/{kw.get('name', NAME)}",
    )
    for key, value in kw.items():
        setattr(opts, key, value)
    return populate(*new_cluster(opts))


def _ctx(cluster: Cluster, groups: list[InstanceGroup]) -> ModelContext:
    return ModelContext(
        cluster,
        groups,
        "eu-west-1",
        images={g.spec.image or "": ImageInfo("ami-0123456789abcdef0", "/dev/sda1") for g in groups},
        ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        ssh_fingerprint="0123456789abcdef0123456789abcdef",
        user_data={g.name: user_data(cluster, g) for g in groups},
    )


@pytest.fixture
def tutorial() -> dict[tuple[str, str], Resource]:
    return {r.key: r for r in build(_ctx(*_cluster()))}


def test_tutorial_resource_set(tutorial: dict[tuple[str, str], Resource]) -> None:
    counts = Counter(kind for kind, _ in tutorial)
    assert counts == {
        "VPC": 1,
        "DHCPOptions": 1,
        "VPCDHCPOptionsAssociation": 1,
        "InternetGateway": 1,
        "Subnet": 3,
        "RouteTable": 1,
        "Route": 1,
        "RouteTableAssociation": 3,
        "SecurityGroup": 3,
        "SecurityGroupRule": 22,
        "IAMRole": 2,
        "IAMRolePolicy": 2,
        "IAMInstanceProfile": 2,
        "IAMInstanceProfileRole": 2,
        "SSHKey": 1,
        "LaunchTemplate": 4,
        "AutoScalingGroup": 4,
        "NetworkLoadBalancer": 1,
        "TargetGroup": 1,
        "Listener": 1,
        "EBSVolume": 6,
    }


def test_network_attributes(tutorial: dict[tuple[str, str], Resource]) -> None:
    vpc = tutorial[("VPC", NAME)].props
    assert vpc["cidr_block"] == "172.20.0.0/16" and vpc["enable_dns_support"] and vpc["enable_dns_hostnames"]
    assert (
        vpc["tags"]["KubernetesCluster"] == NAME and vpc["tags"][f"kubernetes.io/cluster/{NAME}"] == "owned"
    )
    assert tutorial[("DHCPOptions", NAME)].props["domain_name"] == "eu-west-1.compute.internal"
    subnets = {n: r.props for (k, n), r in tutorial.items() if k == "Subnet"}
    assert {p["availability_zone"] for p in subnets.values()} == set(ZONES)
    for props in subnets.values():
        assert props["tags"]["SubnetType"] == "Public" and props["tags"]["kubernetes.io/role/elb"] == "1"
        assert props["vpc"] == Ref("VPC", NAME)
    route = tutorial[("Route", f"{NAME}/0.0.0.0/0")].props
    assert route["internet_gateway"] == Ref("InternetGateway", NAME)


def _rules(resources: dict[tuple[str, str], Resource]) -> list[dict[str, object]]:
    return [r.props for (k, _), r in resources.items() if k == "SecurityGroupRule"]


def test_nodes_cannot_reach_etcd_ports(tutorial: dict[tuple[str, str], Resource]) -> None:
    from_nodes = [
        p
        for p in _rules(tutorial)
        if p.get("source_group") == Ref("SecurityGroup", f"nodes.{NAME}")
        and p["group"] == Ref("SecurityGroup", f"masters.{NAME}")
    ]
    tcp = sorted(
        (int(str(p["from_port"])), int(str(p["to_port"]))) for p in from_nodes if p["protocol"] == "tcp"
    )
    assert tcp == [(1, 2379), (2382, 4000), (4003, 65535)]
    for port in (2380, 2381, 4001, 4002):
        assert not any(lo <= port <= hi for lo, hi in tcp)
    assert all(p["protocol"] != "-1" for p in from_nodes)  # no allow-all from nodes to the control plane


def test_api_and_ssh_rules(tutorial: dict[tuple[str, str], Resource]) -> None:
    rules = _rules(tutorial)
    api = Ref("SecurityGroup", f"api-elb.{NAME}")
    assert {
        "group": api,
        "direction": "ingress",
        "protocol": "tcp",
        "from_port": 443,
        "to_port": 443,
        "cidr": "0.0.0.0/0",
    } in rules
    assert {
        "group": api,
        "direction": "ingress",
        "protocol": "icmp",
        "from_port": 3,
        "to_port": 4,
        "cidr": "0.0.0.0/0",
    } in rules
    lb_to_cp = [p for p in rules if p.get("source_group") == api]
    assert len(lb_to_cp) == 1 and lb_to_cp[0]["from_port"] == 443
    ssh = [p for p in rules if p["from_port"] == 22]
    assert {p["cidr"] for p in ssh} == {"0.0.0.0/0", "::/0"}


def test_admin_access_changes_only_its_rules() -> None:
    before = {r.key for r in build(_ctx(*_cluster())) if r.kind == "SecurityGroupRule"}
    after = {
        r.key
        for r in build(_ctx(*_cluster(admin_access=["203.0.113.0/24"])))
        if r.kind == "SecurityGroupRule"
    }
    changed = before ^ after
    assert changed and all(
        "/443-443/" in n or "/3-4/" in n or "/2-0/" in n or "/22-22/" in n for _, n in changed
    )


def test_compute_and_volumes(tutorial: dict[tuple[str, str], Resource]) -> None:
    lt = tutorial[("LaunchTemplate", f"master-eu-west-1a.{NAME}")].props
    assert lt["metadata_options"] == {
        "http_tokens": "required",
        "http_put_response_hop_limit": 1,
        "http_endpoint": "enabled",
    }
    assert (
        lt["root_volume"]["size"] == 64
        and lt["root_volume"]["encrypted"]
        and lt["root_volume"]["type"] == "gp3"
    )
    assert tutorial[("LaunchTemplate", f"nodes.{NAME}")].props["root_volume"]["size"] == 128
    assert lt["key_name"] == Ref("SSHKey", ssh_key_name(NAME, "0123456789abcdef0123456789abcdef"), "name")
    assert lt["user_data"].startswith("#cloud-config\n")
    asg = tutorial[("AutoScalingGroup", f"master-eu-west-1a.{NAME}")].props
    assert (asg["min_size"], asg["max_size"]) == (1, 1)
    assert asg["subnets"] == [Ref("Subnet", f"eu-west-1a.{NAME}")]
    assert asg["target_group_arns"] == [Ref("TargetGroup", f"tcp.{NAME}", "arn")]
    assert asg["tags"]["k8s.io/role/control-plane"] == "1" and asg["tags"]["k8s.io/role/master"] == "1"
    assert asg["tags"]["kops.k8s.io/instancegroup"] == "master-eu-west-1a"
    nodes = tutorial[("AutoScalingGroup", f"nodes.{NAME}")].props
    assert len(nodes["subnets"]) == 3 and nodes["target_group_arns"] == []
    assert nodes["tags"]["k8s.io/cluster-autoscaler/enabled"] == "1"
    assert nodes["tags"][f"k8s.io/cluster-autoscaler/{NAME}"] == "1"
    volumes = {n: r.props for (k, n), r in tutorial.items() if k == "EBSVolume"}
    assert volumes[f"a.etcd-main.{NAME}"]["availability_zone"] == "eu-west-1a"
    assert volumes[f"c.etcd-events.{NAME}"]["availability_zone"] == "eu-west-1c"
    for props in volumes.values():
        assert props["size"] == 20 and props["volume_type"] == "gp3" and props["encrypted"] is True
    assert volumes[f"b.etcd-main.{NAME}"]["tags"]["k8s.io/etcd/main"] == "b/a,b,c"
    assert volumes[f"b.etcd-events.{NAME}"]["tags"]["k8s.io/role/control-plane"] == "1"
    lb = tutorial[("NetworkLoadBalancer", f"api.{NAME}")].props
    assert lb["scheme"] == "internet-facing" and len(lb["subnets"]) == 3
    assert len(str(lb["load_balancer_name"])) <= 32


def test_iam_least_privilege() -> None:
    cluster, groups = _cluster()
    ctx = _ctx(cluster, groups)
    cp = policy_document(ctx, "control-plane")
    for stmt in cp["Statement"]:
        mutating = [a for a in stmt["Action"] if not a.split(":")[1].startswith(("Describe", "Get", "List"))]
        if mutating and stmt["Resource"] == "*" and not any(a.startswith("ecr:") for a in mutating):
            assert "Condition" in stmt, stmt  # every mutating action on * is conditioned on the cluster tag
            assert NAME in str(stmt["Condition"])
    s3 = [s for s in cp["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
    resources = [
        r for s in s3 for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    ]
    assert all(r.startswith("arn:aws:s3:::state-bucket") for r in resources)
    assert "arn:aws:s3:::state-bucket/proyecto.k8s.local/*" in resources
    writes = [s for s in s3 if "s3:PutObject" in s["Action"]]
    assert writes and all(s["Resource"].endswith("/backups/etcd/*") for s in writes)
    node = policy_document(ctx, "node")
    node_actions = {a for s in node["Statement"] for a in s["Action"]}
    assert "ec2:AttachVolume" not in node_actions and "s3:PutObject" not in node_actions


def _readable(policy: dict[str, object], key: str) -> bool:
    """Whether the policy allows s3:GetObject on ``key`` of the state bucket (IAM wildcards: * and ?)."""
    arn = f"arn:aws:s3:::state-bucket/{key}"
    for stmt in policy["Statement"]:  # type: ignore[attr-defined]
        if "s3:GetObject" not in stmt["Action"]:
            continue
        resources = [stmt["Resource"]] if isinstance(stmt["Resource"], str) else stmt["Resource"]
        if any(fnmatch.fnmatchcase(arn, r) for r in resources):
            return True
    return False


def test_nodes_read_their_client_keysets_and_no_ca_private_key() -> None:
    cluster, groups = _cluster()
    ctx = _ctx(cluster, groups)
    node, cp = policy_document(ctx, "node"), policy_document(ctx, "control-plane")
    keysets = cluster_keyset_names(cluster)
    cas = [name for name, kind in keysets.items() if kind != "leaf"]
    assert "kubernetes-ca" in cas and "etcd-peers-ca-main" in cas and "service-account" in cas
    leaves = [name for name, kind in keysets.items() if kind == "leaf"]
    assert leaves == ["kubelet", "kube-proxy"]
    for name in [*cas, *LEGACY_NAMES.values()]:
        key = f"{NAME}/pki/private/{name}/keyset.yaml"
        assert not _readable(node, key), f"a node can read the private keyset {name}"
        assert _readable(cp, key)
    for name in leaves:
        assert _readable(node, f"{NAME}/pki/private/{name}/keyset.yaml"), name
    assert _readable(node, f"{NAME}/igconfig/node/nodes/nodeupconfig.yaml")
    assert not _readable(node, f"{NAME}/igconfig/control-plane/master-eu-west-1a/nodeupconfig.yaml")
    private = [
        r
        for stmt in node["Statement"]
        if "s3:GetObject" in stmt["Action"]
        for r in stmt["Resource"]
        if "/pki/private/" in r
    ]
    assert private == [
        f"arn:aws:s3:::state-bucket/{NAME}/pki/private/kube-proxy/*",
        f"arn:aws:s3:::state-bucket/{NAME}/pki/private/kubelet/*",
    ]


def test_private_topology_has_nat_per_zone() -> None:
    cluster, groups = _cluster(name="private.example.com", topology="private", networking="calico")
    resources = {r.key: r for r in build(_ctx(cluster, groups))}
    counts = Counter(k for k, _ in resources)
    assert counts["NatGateway"] == 3 and counts["ElasticIP"] == 3 and counts["RouteTable"] == 4
    assert counts["Subnet"] == 6
    nat = resources[("NatGateway", "eu-west-1a.private.example.com")].props
    assert nat["subnet"] == Ref("Subnet", "utility-eu-west-1a.private.example.com")
    route = resources[("Route", "private-eu-west-1a.private.example.com/0.0.0.0/0")].props
    assert route["nat_gateway"] == Ref("NatGateway", "eu-west-1a.private.example.com")
    lt = resources[("LaunchTemplate", "nodes.private.example.com")].props
    assert lt["associate_public_ip"] is False


def test_shared_vpc_is_referenced_not_owned() -> None:
    cluster, groups = _cluster(
        name="shared.k8s.local",
        zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        vpc="vpc-0123456789abcdef0",
        subnets=["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2", "subnet-0ccccccccccccccc3"],
    )
    resources = build(_ctx(cluster, groups))
    vpc = next(r for r in resources if r.kind == "VPC")
    assert vpc.shared and vpc.props == {"id": "vpc-0123456789abcdef0"}
    subnets = [r for r in resources if r.kind == "Subnet"]
    # Only the ownership tag is added to a shared subnet: its Name and other tags are the owner's.
    wanted = {f"kubernetes.io/cluster/{cluster.name}": "shared"}
    assert all(s.shared and s.props["tags"] == wanted for s in subnets)
    assert not any(r.kind in ("InternetGateway", "RouteTable", "DHCPOptions") for r in resources)


def test_elb_names_are_short_and_distinct() -> None:
    a = elb_name("api", "a-very-long-cluster-name-for-testing.example.com")
    b = elb_name("api", "a-very-long-cluster-name-for-testing.example.org")
    assert len(a) <= 32 and len(b) <= 32 and a != b
    assert elb_name("api", NAME) == elb_name("api", NAME)


@pytest.mark.parametrize(
    ("plugin", "extra"),
    [
        ("kubenet", set()),
        ("cilium", set()),
        ("flannel", set()),
        ("canal", set()),
        ("amazonvpc", set()),
        ("kindnet", set()),
        ("calico", {("4", 0, 0)}),
        ("kube-router", {("4", 0, 0)}),
    ],
)
def test_node_to_control_plane_rules_per_network_plugin(
    plugin: str, extra: set[tuple[str, int, int]]
) -> None:
    """Nodes reach the control plane on all but etcd's ports, plus IP-in-IP for the plugins using it."""
    cluster, groups = _cluster(networking=plugin)
    rules = {
        (str(p["protocol"]), int(str(p["from_port"])), int(str(p["to_port"])))
        for p in _rules({r.key: r for r in build(_ctx(cluster, groups))})
        if p.get("source_group") == Ref("SecurityGroup", f"nodes.{NAME}")
        and p["group"] == Ref("SecurityGroup", f"masters.{NAME}")
    }
    base = {("tcp", 1, 2379), ("tcp", 2382, 4000), ("tcp", 4003, 65535), ("udp", 1, 65535)}
    assert rules == base | extra
