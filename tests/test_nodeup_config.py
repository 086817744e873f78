"""NodeupConfig (per instance group) and the pinned assets it lists."""

from __future__ import annotations

import re
import uuid

import pytest
import yaml

from pykops.api.models import Cluster, InstanceGroup, PackagesConfig
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.api.populate import populate
from pykops.errors import SpecError
from pykops.model import iam
from pykops.model.bootstrap import igconfig_key
from pykops.nodeup import assets
from pykops.nodeup.assets import AssetError, assets_for, require_hashes
from pykops.nodeup.config import (
    NODE_KEYSETS,
    NodeupConfig,
    build_nodeup_config,
    ca_certificates_for,
    ca_keysets_for,
    endpoint_host,
    keysets_for,
    private_keysets_to_read,
)
from pykops.pki.ca import new_ca
from pykops.state.keystore import LEAF_KEYSETS, Keystore, cluster_keyset_names
from pykops.state.memfs import reset_memfs
from pykops.state.store import open_store

CLUSTER = "proyecto.k8s.local"


def tutorial(**changes: object) -> tuple[Cluster, list[InstanceGroup]]:
    cluster, groups = new_cluster(
        CreateClusterOptions(
            name=CLUSTER,
            zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            control_plane_count=3,
            node_count=1,
            networking="kubenet",
            config_base=f"s3://bucket/{CLUSTER}",
            **changes,  # type: ignore[arg-type]
        )
    )
    return populate(cluster, groups)


def test_control_plane_config() -> None:
    cluster, groups = tutorial()
    config = build_nodeup_config(cluster, groups[1], api_endpoint="https://api.example.com:443/")
    assert config.api_version == "pykops.io/v1alpha1" and config.kind == "NodeupConfig"
    assert config.cluster_name == CLUSTER
    assert config.config_base == f"s3://bucket/{CLUSTER}"
    assert config.role == "ControlPlane"
    assert config.instance_group == "master-eu-west-1b"
    assert config.kubernetes_version == cluster.spec.kubernetes_version
    assert config.api_internal_name == f"api.internal.{CLUSTER}"
    assert config.api_public_name == f"api.{CLUSTER}"
    assert config.api_endpoint == "api.example.com"
    assert config.keysets == [
        "kubernetes-ca",
        "service-account",
        "apiserver-aggregator-ca",
        "etcd-clients-ca",
        "etcd-peers-ca-main",
        "etcd-peers-ca-events",
    ]
    assert [(m.etcd_cluster, m.name) for m in config.etcd_members] == [("main", "b"), ("events", "b")]
    assert [a.name for a in config.assets] == ["containerd", "runc", "cni-plugins", "kubelet", "kubectl"]
    assert config.cluster() == cluster
    assert config.group() == groups[1]


def test_node_config() -> None:
    cluster, groups = tutorial()
    nodes = next(g for g in groups if g.name == "nodes")
    config = build_nodeup_config(cluster, nodes, api_endpoint="api.internal.proyecto.k8s.local")
    assert config.role == "Node"
    assert config.keysets == ["kubelet", "kube-proxy"]
    assert config.ca_certificates == {}  # none given (update cluster passes them)
    assert config.etcd_members == []
    assert config.architecture == "amd64"


# --- what each role reads: a worker node never a CA's private key -----------------------------------------


def test_keysets_by_role() -> None:
    cluster, _ = tutorial()
    cas = {n for n, kind in cluster_keyset_names(cluster).items() if kind in ("ca", "rsa")}
    assert keysets_for(cluster, "Node") == ["kubelet", "kube-proxy"] == list(NODE_KEYSETS)
    assert not set(keysets_for(cluster, "Node")) & cas
    assert set(NODE_KEYSETS) == set(LEAF_KEYSETS)  # the leaf keysets update cluster creates
    assert set(NODE_KEYSETS) == set(iam.NODE_KEYSETS)  # and exactly what the node IAM role may read
    assert keysets_for(cluster, "Bastion") == []
    assert "kubernetes-ca" in keysets_for(cluster, "ControlPlane")
    assert ca_keysets_for(cluster, "Node") == ["kubernetes-ca"]
    assert ca_keysets_for(cluster, "ControlPlane") == [
        "kubernetes-ca",
        "apiserver-aggregator-ca",
        "etcd-clients-ca",
        "etcd-peers-ca-main",
        "etcd-peers-ca-events",
    ]
    assert ca_keysets_for(cluster, "Bastion") == []


def test_a_node_reads_only_its_leaf_keysets_even_from_an_older_config() -> None:
    cluster, groups = tutorial()
    nodes = next(g for g in groups if g.name == "nodes")
    config = build_nodeup_config(cluster, nodes, api_endpoint="lb")
    older = config.model_copy(update={"keysets": ["kubernetes-ca"]})  # what pykops wrote before
    assert private_keysets_to_read(config) == private_keysets_to_read(older) == ["kubelet", "kube-proxy"]
    cp = build_nodeup_config(cluster, groups[0], api_endpoint="lb")
    assert private_keysets_to_read(cp) == cp.keysets


def test_ca_certificates_for_reads_public_bundles() -> None:
    cluster, groups = tutorial()
    name = f"cfg-{uuid.uuid4().hex}"
    try:
        keystore = Keystore(open_store(f"memfs://{name}"), CLUSTER)
        keysets = keystore.ensure_cluster_keysets(cluster)
        nodes = next(g for g in groups if g.name == "nodes")
        for_nodes = ca_certificates_for(keystore, cluster, nodes)
        assert for_nodes == ca_certificates_for(keystore, cluster, "Node")
        assert for_nodes == {"kubernetes-ca": keysets["kubernetes-ca"].ca_bundle()}
        for_cp = ca_certificates_for(keystore, cluster, groups[0])
        assert list(for_cp) == ca_keysets_for(cluster, "ControlPlane")
        assert all(b"PRIVATE KEY" not in pem for pem in for_cp.values())

        config = build_nodeup_config(cluster, nodes, api_endpoint="lb", ca_certificates=for_nodes)
        assert config.ca_certificates == {"kubernetes-ca": for_nodes["kubernetes-ca"].decode()}
        text = config.to_yaml()
        assert "caCertificates:" in text and "PRIVATE KEY" not in text
        assert NodeupConfig.from_yaml(text) == config
    finally:
        reset_memfs(name)


def test_ca_certificates_hold_certificates_only() -> None:
    cluster, groups = tutorial()
    ca = new_ca("kubernetes-ca")
    with pytest.raises(SpecError, match="private key"):
        build_nodeup_config(
            cluster, groups[0], api_endpoint="lb", ca_certificates={"kubernetes-ca": ca.cert_pem + ca.key_pem}
        )
    with pytest.raises(SpecError, match="not a PEM certificate bundle"):
        build_nodeup_config(cluster, groups[0], api_endpoint="lb", ca_certificates={"kubernetes-ca": b"nope"})
    # Loading a config checks it too.
    body = yaml.safe_load(build_nodeup_config(cluster, groups[0], api_endpoint="lb").to_yaml())
    body["caCertificates"] = {"kubernetes-ca": (ca.cert_pem + ca.key_pem).decode()}
    with pytest.raises(SpecError, match=r"caCertificates.*private key"):
        NodeupConfig.from_yaml(yaml.safe_dump(body))


def test_yaml_round_trip_and_kind_check() -> None:
    cluster, groups = tutorial()
    config = build_nodeup_config(cluster, groups[0], api_endpoint="lb.example.com")
    text = config.to_yaml()
    assert text.startswith("apiVersion: pykops.io/v1alpha1\nkind: NodeupConfig\n")
    assert "PRIVATE KEY" not in text
    assert NodeupConfig.from_yaml(text) == config
    with pytest.raises(SpecError, match=r"expected apiVersion pykops\.io/v1alpha1 kind NodeupConfig"):
        NodeupConfig.from_yaml("apiVersion: v1\nkind: Pod\n")


def test_written_where_update_cluster_writes_it() -> None:
    _, groups = tutorial()
    assert (
        igconfig_key(CLUSTER, groups[0])
        == f"{CLUSTER}/igconfig/control-plane/master-eu-west-1a/nodeupconfig.yaml"
    )


def test_uncompleted_spec_is_refused() -> None:
    cluster, groups = new_cluster(CreateClusterOptions(name=CLUSTER, zones=["eu-west-1a"]))
    with pytest.raises(SpecError, match="completed spec"):
        build_nodeup_config(cluster, groups[0], api_endpoint="x")


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [("https://a.b:443/x", "a.b"), ("a.b", "a.b"), ("a.b:443", "a.b"), ("https://[::1]:443", "::1")],
)
def test_endpoint_host(endpoint: str, host: str) -> None:
    assert endpoint_host(endpoint) == host


# --- assets ----------------------------------------------------------------------------------------------

SHA = re.compile(r"^[0-9a-f]{64}$")


@pytest.mark.parametrize("version", ["1.32.9", "1.33.5", "1.34.2", "1.35.0", "1.36.0"])
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_every_supported_version_has_pinned_hashes(version: str, arch: assets.Arch) -> None:
    cluster, _ = tutorial(kubernetes_version=version)
    found = assets_for(cluster, arch)
    require_hashes(found)  # nothing unpinned for the channel's versions
    for asset in found:
        assert asset.sha256 is not None and SHA.match(asset.sha256), asset
        assert asset.arch == arch
    by_name = {a.name: a for a in found}
    assert by_name["kubelet"].url == f"https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubelet"
    assert by_name["kubectl"].url == f"https://dl.k8s.io/release/v{version}/bin/linux/{arch}/kubectl"
    assert by_name["containerd"].url == (
        f"https://github.com/containerd/containerd/releases/download/v1.7.28/containerd-1.7.28-linux-{arch}.tar.gz"
    )
    assert (
        by_name["runc"].url == f"https://github.com/opencontainers/runc/releases/download/v1.3.0/runc.{arch}"
    )
    assert by_name["cni-plugins"].url.startswith("https://github.com/containernetworking/plugins/releases/")


def test_known_hashes_match_kops_data() -> None:
    # Spot checks against kubernetes/kops pkg/assets/assetdata/{k8s-1.34,containerd-1.7,runc-1.3,cni-1.7}.yaml
    assert assets.asset("kubelet", "1.34.2", "amd64").sha256 == (
        "9c5e717b774ee9b9285ce47e7d2150c29e84837eb19a7eaa24b60b1543c9d58f"
    )
    assert assets.asset("kubectl", "1.34.2", "arm64").sha256 == (
        "95df604e914941f3172a93fa8feeb1a1a50f4011dfbe0c01e01b660afc8f9b85"
    )
    assert assets.asset("containerd", "1.7.28", "amd64").sha256 == (
        "7a8c262deb63becc877e82d23749e4f99f4a17e8e660f9b8c257ca87a5c056b6"
    )
    assert assets.asset("runc", "1.3.0", "amd64").sha256 == (
        "028986516ab5646370edce981df2d8e8a8d12188deaf837142a02097000ae2f2"
    )
    assert assets.asset("cni-plugins", "1.7.1", "amd64").sha256 == (
        "1a28a0506bfe5bcdc981caf1a49eeab7e72da8321f1119b7be85f22621013098"
    )


@pytest.mark.parametrize(
    ("k8s", "cni"), [("1.32.9", "1.6.2"), ("1.33.5", "1.6.2"), ("1.34.2", "1.7.1"), ("1.36.0", "1.9.1")]
)
def test_cni_plugins_follow_kops(k8s: str, cni: str) -> None:
    assert assets.cni_plugins_version(k8s) == cni


def test_unknown_version_has_no_hash_and_is_refused() -> None:
    unknown = assets.asset("kubelet", "1.36.99", "amd64")
    assert unknown.sha256 is None
    assert unknown.url == "https://dl.k8s.io/release/v1.36.99/bin/linux/amd64/kubelet"
    with pytest.raises(AssetError, match=r"no pinned SHA-256 for kubelet 1\.36\.99"):
        require_hashes([unknown])


def test_package_overrides() -> None:
    cluster, _ = tutorial()
    assert cluster.spec.containerd is not None
    cluster.spec.containerd.packages = PackagesConfig(
        url_amd64="https://mirror/containerd.tgz", hash_amd64="ab" * 32
    )
    found = {a.name: a for a in assets_for(cluster, "amd64")}
    assert (found["containerd"].url, found["containerd"].sha256) == (
        "https://mirror/containerd.tgz",
        "ab" * 32,
    )
    cluster.spec.containerd.packages = PackagesConfig(url_amd64="https://mirror/containerd.tgz")
    found = {a.name: a for a in assets_for(cluster, "amd64")}
    assert found["containerd"].sha256 is None  # a URL without a hash cannot be verified
    with pytest.raises(AssetError):
        require_hashes(list(found.values()))
