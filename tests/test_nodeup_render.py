"""nodeup's pure renderer: the tutorial's cluster rendered for each role, checked file by file."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from pykops.api.models import (
    Cluster,
    InstanceGroup,
    KubeAPIServerConfig,
    KubeControllerManagerConfig,
    KubeletConfig,
    KubeProxyConfig,
    KubeSchedulerConfig,
    LeaderElection,
)
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.api.populate import populate
from pykops.nodeup.config import NodeupConfig, build_nodeup_config
from pykops.nodeup.render import (
    API_SERVER_RENAMES,
    CONTROLLER_MANAGER_RENAMES,
    KUBELET_CONFIG_FIELDS,
    KUBELET_FLAG_FIELDS,
    KUBELET_IGNORED,
    PROXY_RENAMES,
    SCHEDULER_RENAMES,
    FileSpec,
    RenderError,
    component_flags,
    containerd_config,
    format_flags,
    kebab,
    kubelet_configuration,
    kubelet_flags,
    merge_kubelet,
    render_machine,
    toml_dumps,
)
from pykops.pki.ca import load_keypair, new_ca, new_service_account_key
from pykops.state.keystore import new_leaf_keypair

CLUSTER = "proyecto.k8s.local"
LB = "api-proyecto-k8s-local-1a2b3c-0123456789.elb.eu-west-1.amazonaws.com"
VOLUMES = {"main": "vol-0aaa000000000main", "events": "vol-0bbb0000000events"}


def tutorial(**changes: Any) -> tuple[Cluster, list[InstanceGroup]]:
    options = CreateClusterOptions(
        name=CLUSTER,
        zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
        control_plane_count=3,
        node_count=1,
        networking="kubenet",
        config_base=f"s3://bucket/{CLUSTER}",
        **changes,
    )
    cluster, groups = new_cluster(options)
    return populate(cluster, groups)


def make_pki(names: list[str]) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for name in names:
        kp = new_service_account_key(name) if name == "service-account" else new_ca(name)
        out[name] = (kp.cert_pem, kp.key_pem)
    return out


@pytest.fixture(scope="module")
def spec() -> tuple[Cluster, list[InstanceGroup]]:
    return tutorial()


@pytest.fixture(scope="module")
def pki(spec: tuple[Cluster, list[InstanceGroup]]) -> dict[str, tuple[bytes, bytes]]:
    cluster, groups = spec
    config = build_nodeup_config(cluster, groups[0], api_endpoint=LB)
    return make_pki(config.keysets)


@pytest.fixture(scope="module")
def cp_config(spec: tuple[Cluster, list[InstanceGroup]]) -> NodeupConfig:
    cluster, groups = spec
    return build_nodeup_config(cluster, groups[0], api_endpoint=LB)


def make_node_pki(ca: tuple[bytes, bytes]) -> dict[str, tuple[bytes, bytes]]:
    """A worker node's keysets: the kubelet and kube-proxy keypairs issued from ``ca``, and no CA key."""
    keypair = load_keypair(*ca)
    out = {}
    for name in ("kubelet", "kube-proxy"):
        leaf = new_leaf_keypair(name, keypair)
        out[name] = (leaf.cert_pem, leaf.key_pem)
    return out


@pytest.fixture(scope="module")
def node_pki(pki: dict[str, tuple[bytes, bytes]]) -> dict[str, tuple[bytes, bytes]]:
    return make_node_pki(pki["kubernetes-ca"])


def node_config_of(cluster: Cluster, groups: list[InstanceGroup], ca_pem: bytes | None) -> NodeupConfig:
    return build_nodeup_config(
        cluster,
        next(g for g in groups if g.name == "nodes"),
        api_endpoint=LB,
        ca_certificates={"kubernetes-ca": ca_pem} if ca_pem else None,
    )


@pytest.fixture(scope="module")
def node_config(
    spec: tuple[Cluster, list[InstanceGroup]], pki: dict[str, tuple[bytes, bytes]]
) -> NodeupConfig:
    cluster, groups = spec
    return node_config_of(cluster, groups, pki["kubernetes-ca"][0])


@pytest.fixture(scope="module")
def cp_files(cp_config: NodeupConfig, pki: dict[str, tuple[bytes, bytes]]) -> dict[str, FileSpec]:
    files = render_machine(
        cp_config,
        instance_id="i-0cp00000000000001",
        zone="eu-west-1a",
        node_name="i-0cp00000000000001",
        pki=pki,
        etcd_volumes=VOLUMES,
    )
    return {f.path: f for f in files}


@pytest.fixture(scope="module")
def node_files(node_config: NodeupConfig, node_pki: dict[str, tuple[bytes, bytes]]) -> dict[str, FileSpec]:
    assert set(node_pki) == {"kubelet", "kube-proxy"}  # no CA, no private CA key
    files = render_machine(
        node_config,
        instance_id="i-0node0000000000001",
        zone="eu-west-1b",
        node_name="ip-172-20-64-10.eu-west-1.compute.internal",
        pki=node_pki,
    )
    return {f.path: f for f in files}


def doc(files: Mapping[str, FileSpec], path: str) -> Any:
    return yaml.safe_load(files[path].content)


def args_of(files: Mapping[str, FileSpec], manifest: str) -> list[str]:
    pod = doc(files, f"/etc/kubernetes/manifests/{manifest}")
    return list(pod["spec"]["containers"][0]["args"])


def flag(args: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]


def cert(files: Mapping[str, FileSpec], path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files[path].content)


def sans(c: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return list(ext.get_values_for_type(x509.DNSName)), [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


# --- the set of files ------------------------------------------------------------------------------------

CP_MANIFESTS = {
    "etcd-main.yaml",
    "etcd-events.yaml",
    "kube-apiserver.yaml",
    "kube-controller-manager.yaml",
    "kube-scheduler.yaml",
    "kube-proxy.yaml",
}


def test_control_plane_files(cp_files: dict[str, FileSpec]) -> None:
    manifests = {p.rsplit("/", 1)[1] for p in cp_files if p.startswith("/etc/kubernetes/manifests/")}
    assert manifests == CP_MANIFESTS
    for path in [
        "/etc/containerd/config.toml",
        "/etc/systemd/system/containerd.service",
        "/etc/systemd/system/kubelet.service",
        "/var/lib/kubelet/kubelet-config.yaml",
        "/var/lib/kubelet/kubeconfig",
        "/srv/kubernetes/ca.crt",
        "/srv/kubernetes/kube-apiserver/server.crt",
        "/srv/kubernetes/kube-apiserver/service-account.pub",
        "/srv/kubernetes/kube-controller-manager/ca.key",
        "/var/lib/kube-scheduler/config.yaml",
        "/etc/kubernetes/pki/etcd-main/peer.crt",
        "/etc/kubernetes/pki/etcd-events/server.key",
        "/etc/containerd/config-cni.template",  # kubenet
    ]:
        assert path in cp_files, path
    assert all(p.startswith("/") and ".." not in p for p in cp_files)


def test_node_files_have_no_control_plane_parts(node_files: dict[str, FileSpec]) -> None:
    manifests = {p.rsplit("/", 1)[1] for p in node_files if p.startswith("/etc/kubernetes/manifests/")}
    assert manifests == {"kube-proxy.yaml"}
    assert not any(p.startswith(("/srv/kubernetes/kube-", "/etc/kubernetes/pki/")) for p in node_files)
    assert not any("etcd" in p for p in node_files)


def test_modes_private_keys_and_kubeconfigs_are_0600(cp_files: dict[str, FileSpec]) -> None:
    for path, spec in cp_files.items():
        if path.endswith(".key") or path.endswith("kubeconfig"):
            assert spec.mode == 0o600, path
            if path.endswith(".key"):
                assert b"PRIVATE KEY" in spec.content
        elif b"PRIVATE KEY" in spec.content:
            pytest.fail(f"{path} holds a private key but has mode {spec.mode:o}")
        elif path.endswith(".crt") or path.endswith(".yaml") or path.endswith(".service"):
            assert spec.mode == 0o644, path
    assert cp_files["/opt/pykops/bin/cni-iptables-setup"].mode == 0o755


def test_every_manifest_pod_is_host_network_with_priority(cp_files: dict[str, FileSpec]) -> None:
    for name in CP_MANIFESTS:
        pod = doc(cp_files, f"/etc/kubernetes/manifests/{name}")
        assert pod["spec"]["hostNetwork"] is True
        expected = "system-node-critical" if name == "kube-proxy.yaml" else "system-cluster-critical"
        assert pod["spec"]["priorityClassName"] == expected, name
        assert pod["metadata"]["namespace"] == "kube-system"
        assert not any(k.startswith("kubernetes.io/config") for k in pod["metadata"].get("annotations", {}))


# --- manifests are valid Kubernetes objects --------------------------------------------------------------


def _validate(pod: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(pod, version, strict=True)
    except kubernetes_validate.ValidationError as exc:  # the schema dump is huge: keep the message
        pytest.fail(f"{pod['metadata']['name']} invalid for {version}: {exc.message}")


@pytest.mark.parametrize("version", ["1.32.9", "1.33.5", "1.34.2", "1.35.0", "1.36.0"])
def test_manifests_valid_in_strict_mode_for_each_supported_version(
    version: str, pki: dict[str, tuple[bytes, bytes]]
) -> None:
    # kubernetes-validate 1.37 ships schemas for every supported version (1.32-1.36), so each is its own.
    cluster, groups = tutorial(kubernetes_version=version)
    config = build_nodeup_config(cluster, groups[0], api_endpoint=LB)
    files = render_machine(
        config, instance_id="i-1", zone="eu-west-1a", node_name="i-1", pki=pki, etcd_volumes=VOLUMES
    )
    manifests = [f for f in files if f.path.startswith("/etc/kubernetes/manifests/")]
    assert len(manifests) == 6
    for spec in manifests:
        pod = yaml.safe_load(spec.content)
        _validate(pod, version)
        images = [c["image"] for c in pod["spec"]["containers"]]
        if "etcd" not in spec.path:
            assert images == [f"registry.k8s.io/{pod['metadata']['name']}:v{version}"]


# --- etcd ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etcd", "pod_name", "peer", "client"),
    [("main", "etcd-server", 2380, 4001), ("events", "etcd-server-events", 2381, 4002)],
)
def test_etcd_static_pods(
    cp_files: dict[str, FileSpec], etcd: str, pod_name: str, peer: int, client: int
) -> None:
    pod = doc(cp_files, f"/etc/kubernetes/manifests/etcd-{etcd}.yaml")
    # The kubelet names the mirror pod etcd-server-<node> / etcd-server-events-<node>.
    assert pod["metadata"]["name"] == pod_name
    container = pod["spec"]["containers"][0]
    assert container["image"] == "registry.k8s.io/etcd:3.5.21-0"
    args = container["args"]
    prefix = "etcd" if etcd == "main" else "etcd-events"
    host = f"{prefix}-a.internal.{CLUSTER}"
    assert flag(args, "name") == ["a"]  # the member's name in spec.etcdClusters[].etcdMembers[]
    assert flag(args, "listen-peer-urls") == [f"https://0.0.0.0:{peer}"]
    assert flag(args, "listen-client-urls") == [f"https://0.0.0.0:{client}"]
    assert flag(args, "initial-advertise-peer-urls") == [f"https://{host}:{peer}"]
    assert flag(args, "initial-cluster") == [
        ",".join(f"{m}=https://{prefix}-{m}.internal.{CLUSTER}:{peer}" for m in "abc")
    ]
    assert flag(args, "client-cert-auth") == ["true"]
    assert flag(args, "peer-client-cert-auth") == ["true"]
    data = next(v for v in pod["spec"]["volumes"] if v["name"] == "varetcdata")
    assert data["hostPath"]["path"] == f"/mnt/master-{VOLUMES[etcd]}/data"
    assert {p["containerPort"] for p in container["ports"]} == {peer, client}


def test_etcd_needs_its_volume(cp_config: NodeupConfig, pki: dict[str, tuple[bytes, bytes]]) -> None:
    with pytest.raises(RenderError, match="no volume attached for etcd-events"):
        render_machine(
            cp_config,
            instance_id="i-1",
            zone="eu-west-1a",
            node_name="n",
            pki=pki,
            etcd_volumes={"main": "vol-1"},
        )


# --- kube-apiserver, controller manager, scheduler, proxy ------------------------------------------------


def test_apiserver_flags(cp_files: dict[str, FileSpec]) -> None:
    args = args_of(cp_files, "kube-apiserver.yaml")
    assert args == sorted(args)
    assert flag(args, "authorization-mode") == ["Node,RBAC"]
    assert flag(args, "etcd-servers") == ["https://127.0.0.1:4001"]
    assert flag(args, "etcd-servers-overrides") == ["/events#https://127.0.0.1:4002"]
    assert flag(args, "service-cluster-ip-range") == ["100.64.0.0/13"]
    assert flag(args, "secure-port") == ["443"]
    assert flag(args, "anonymous-auth") == ["false"]
    assert flag(args, "service-account-issuer") == [f"https://api.internal.{CLUSTER}"]
    assert flag(args, "service-account-key-file") == ["/srv/kubernetes/kube-apiserver/service-account.pub"]
    assert flag(args, "client-ca-file") == ["/srv/kubernetes/ca.crt"]
    assert flag(args, "tls-cert-file") == ["/srv/kubernetes/kube-apiserver/server.crt"]
    assert flag(args, "kubelet-client-certificate") == ["/srv/kubernetes/kube-apiserver/kubelet-api.crt"]
    assert flag(args, "v") == ["2"]
    plugins = flag(args, "enable-admission-plugins")[0].split(",")
    assert "NodeRestriction" in plugins and "ServiceAccount" in plugins
    # every file a flag names is rendered
    for value in [a.split("=", 1)[1] for a in args]:
        if value.startswith("/srv/") or value.startswith("/etc/"):
            assert value in cp_files, value


def test_apiserver_always_allow_and_appended_plugins(pki: dict[str, tuple[bytes, bytes]]) -> None:
    cluster, groups = tutorial(authorization="AlwaysAllow")
    cluster.spec.kube_api_server.append_admission_plugins = ["PodNodeSelector", "NodeRestriction"]  # type: ignore[union-attr]
    cluster.spec.kube_api_server.additional_service_account_issuers = ["https://old.example.com"]  # type: ignore[union-attr]
    config = build_nodeup_config(cluster, groups[0], api_endpoint=LB)
    files = {
        f.path: f
        for f in render_machine(
            config, instance_id="i-1", zone="eu-west-1a", node_name="n", pki=pki, etcd_volumes=VOLUMES
        )
    }
    args = args_of(files, "kube-apiserver.yaml")
    assert flag(args, "authorization-mode") == ["AlwaysAllow"]
    plugins = flag(args, "enable-admission-plugins")[0].split(",")
    assert plugins[-1] == "PodNodeSelector" and plugins.count("NodeRestriction") == 1
    assert flag(args, "service-account-issuer") == [
        f"https://api.internal.{CLUSTER}",
        "https://old.example.com",
    ]


def test_controller_manager_flags(cp_files: dict[str, FileSpec]) -> None:
    args = args_of(cp_files, "kube-controller-manager.yaml")
    assert flag(args, "cluster-cidr") == ["100.96.0.0/11"]
    assert flag(args, "allocate-node-cidrs") == ["true"]
    assert flag(args, "configure-cloud-routes") == ["true"]  # kubenet
    assert flag(args, "leader-elect") == ["true"]
    assert flag(args, "cluster-name") == [CLUSTER]
    assert flag(args, "cloud-provider") == ["external"]
    assert flag(args, "use-service-account-credentials") == ["true"]
    assert flag(args, "root-ca-file") == ["/srv/kubernetes/ca.crt"]
    assert flag(args, "service-account-private-key-file") == [
        "/srv/kubernetes/kube-controller-manager/service-account.key"
    ]
    assert flag(args, "cluster-signing-cert-file") == ["/srv/kubernetes/kube-controller-manager/ca.crt"]
    assert flag(args, "cluster-signing-key-file") == ["/srv/kubernetes/kube-controller-manager/ca.key"]
    kubeconfig = doc(cp_files, "/var/lib/kube-controller-manager/kubeconfig")
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1"


def test_scheduler(cp_files: dict[str, FileSpec]) -> None:
    args = args_of(cp_files, "kube-scheduler.yaml")
    assert flag(args, "leader-elect") == ["true"]
    assert flag(args, "config") == ["/var/lib/kube-scheduler/config.yaml"]
    config = doc(cp_files, "/var/lib/kube-scheduler/config.yaml")
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["clientConnection"]["kubeconfig"] == "/var/lib/kube-scheduler/kubeconfig"
    assert config["leaderElection"] == {"leaderElect": True}


def test_kube_proxy(cp_files: dict[str, FileSpec], node_files: dict[str, FileSpec]) -> None:
    args = args_of(node_files, "kube-proxy.yaml")
    assert flag(args, "cluster-cidr") == ["100.96.0.0/11"]
    assert flag(args, "proxy-mode") == ["iptables"]
    assert flag(args, "hostname-override") == ["ip-172-20-64-10.eu-west-1.compute.internal"]
    assert (
        doc(node_files, "/var/lib/kube-proxy/kubeconfig")["clusters"][0]["cluster"]["server"]
        == f"https://{LB}"
    )
    assert (
        doc(cp_files, "/var/lib/kube-proxy/kubeconfig")["clusters"][0]["cluster"]["server"]
        == "https://127.0.0.1"
    )


def test_kube_proxy_disabled(
    pki: dict[str, tuple[bytes, bytes]], node_pki: dict[str, tuple[bytes, bytes]]
) -> None:
    cluster, groups = tutorial()
    cluster.spec.kube_proxy.enabled = False  # type: ignore[union-attr]
    config = node_config_of(cluster, groups, pki["kubernetes-ca"][0])
    files = render_machine(config, instance_id="i-2", zone="eu-west-1a", node_name="n", pki=node_pki)
    assert not any("kube-proxy" in f.path for f in files)


# --- kubelet and containerd ------------------------------------------------------------------------------


def test_kubelet_configuration(cp_files: dict[str, FileSpec], node_files: dict[str, FileSpec]) -> None:
    config = doc(node_files, "/var/lib/kubelet/kubelet-config.yaml")
    assert config["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert config["kind"] == "KubeletConfiguration"
    assert config["clusterDNS"] == ["100.64.0.10"]
    assert config["clusterDomain"] == "cluster.local"
    assert config["cgroupDriver"] == "systemd"
    assert config["readOnlyPort"] == 0
    assert config["authentication"] == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/srv/kubernetes/ca.crt"},
    }
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["staticPodPath"] == "/etc/kubernetes/manifests"
    assert config["containerRuntimeEndpoint"] == "unix:///run/containerd/containerd.sock"
    assert config["providerID"] == "aws:///eu-west-1b/i-0node0000000000001"
    assert "registerWithTaints" not in config
    cp = doc(cp_files, "/var/lib/kubelet/kubelet-config.yaml")
    assert cp["registerWithTaints"] == [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    ]

    unit = node_files["/etc/systemd/system/kubelet.service"].content.decode()
    assert "--config=/var/lib/kubelet/kubelet-config.yaml" in unit
    assert "--kubeconfig=/var/lib/kubelet/kubeconfig" in unit
    assert "--cloud-provider=external" in unit
    assert "--hostname-override=ip-172-20-64-10.eu-west-1.compute.internal" in unit
    assert "--node-labels=kops.k8s.io/instancegroup=nodes" in unit
    kubeconfig = doc(node_files, "/var/lib/kubelet/kubeconfig")
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{LB}"
    assert kubeconfig["clusters"][0]["cluster"]["tls-server-name"] == f"api.internal.{CLUSTER}"
    cp_kubeconfig = doc(cp_files, "/var/lib/kubelet/kubeconfig")
    assert cp_kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1"


def test_containerd_config_and_unit(cp_files: dict[str, FileSpec]) -> None:
    config = tomllib.loads(cp_files["/etc/containerd/config.toml"].content.decode())
    assert config["version"] == 2
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.10.1"
    assert cri["cni"]["conf_template"] == "/etc/containerd/config-cni.template"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    unit = cp_files["/etc/systemd/system/containerd.service"].content.decode()
    assert "ExecStart=/usr/bin/containerd -c /etc/containerd/config.toml --log-level=info" in unit
    assert "Delegate=yes" in unit


@pytest.mark.parametrize(("version", "schema"), [("1.7.28", 2), ("2.0.5", 3), ("2.2.1", 3), ("2.3.0", 4)])
def test_containerd_config_versions(version: str, schema: int) -> None:
    tree = containerd_config(
        version,
        sandbox_image="p",
        systemd_cgroup=True,
        kubenet=False,
        additions={'plugins."io.containerd.cri.v1.images".max_concurrent_downloads': "5"}
        if schema > 2
        else {},
    )
    parsed = tomllib.loads(toml_dumps(tree))
    assert parsed["version"] == schema
    if schema == 2:
        assert parsed["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == "p"
    else:
        images = parsed["plugins"]["io.containerd.cri.v1.images"]
        assert images["pinned_images"]["sandbox"] == "p"
        assert images["max_concurrent_downloads"] == 5


# --- certificates ----------------------------------------------------------------------------------------


def _openssl_verify(tmp_path: Path, ca_pem: bytes, cert_pem: bytes) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "leaf.crt").write_bytes(cert_pem)
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "leaf.crt")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


@pytest.mark.parametrize(
    ("leaf", "ca"),
    [
        ("/srv/kubernetes/kube-apiserver/server.crt", "/srv/kubernetes/ca.crt"),
        ("/srv/kubernetes/kube-apiserver/kubelet-api.crt", "/srv/kubernetes/ca.crt"),
        ("/srv/kubernetes/kube-apiserver/etcd-client.crt", "/srv/kubernetes/kube-apiserver/etcd-ca.crt"),
        (
            "/srv/kubernetes/kube-apiserver/apiserver-aggregator.crt",
            "/srv/kubernetes/kube-apiserver/apiserver-aggregator-ca.crt",
        ),
        ("/srv/kubernetes/kubelet-server.crt", "/srv/kubernetes/ca.crt"),
        ("/srv/kubernetes/kube-scheduler/server.crt", "/srv/kubernetes/ca.crt"),
        ("/etc/kubernetes/pki/etcd-main/server.crt", "/etc/kubernetes/pki/etcd-main/ca.crt"),
        ("/etc/kubernetes/pki/etcd-main/peer.crt", "/etc/kubernetes/pki/etcd-main/peers-ca.crt"),
        ("/etc/kubernetes/pki/etcd-events/peer.crt", "/etc/kubernetes/pki/etcd-events/peers-ca.crt"),
    ],
)
def test_certificate_chains(cp_files: dict[str, FileSpec], tmp_path: Path, leaf: str, ca: str) -> None:
    _openssl_verify(tmp_path, cp_files[ca].content, cp_files[leaf].content)


def test_peer_certificates_are_not_signed_by_the_other_etcd_cluster(cp_files: dict[str, FileSpec]) -> None:
    main_ca = cert(cp_files, "/etc/kubernetes/pki/etcd-main/peers-ca.crt")
    events_peer = cert(cp_files, "/etc/kubernetes/pki/etcd-events/peer.crt")
    assert events_peer.issuer != main_ca.subject


def test_apiserver_serving_certificate(cp_files: dict[str, FileSpec]) -> None:
    c = cert(cp_files, "/srv/kubernetes/kube-apiserver/server.crt")
    dns, ips = sans(c)
    assert set(dns) >= {
        f"api.{CLUSTER}",
        f"api.internal.{CLUSTER}",
        LB,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(ips) == {"100.64.0.1", "127.0.0.1"}
    assert ipaddress.ip_address("100.64.0.1") in ipaddress.ip_network("100.64.0.0/13")
    usage = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_client_certificates_identify_their_component(cp_files: dict[str, FileSpec]) -> None:
    import base64

    kubelet = yaml.safe_load(cp_files["/var/lib/kubelet/kubeconfig"].content)
    pem = base64.b64decode(kubelet["users"][0]["user"]["client-certificate-data"])
    c = x509.load_pem_x509_certificate(pem)
    assert c.subject.rfc4514_string() == "CN=system:node:i-0cp00000000000001,O=system:nodes"
    kcm = yaml.safe_load(cp_files["/var/lib/kube-controller-manager/kubeconfig"].content)
    pem = base64.b64decode(kcm["users"][0]["user"]["client-certificate-data"])
    assert x509.load_pem_x509_certificate(pem).subject.rfc4514_string() == "CN=system:kube-controller-manager"


def test_certificate_lifetime(cp_files: dict[str, FileSpec]) -> None:
    now = datetime.now(UTC)
    for path in ("/srv/kubernetes/kube-apiserver/server.crt", "/etc/kubernetes/pki/etcd-main/peer.crt"):
        c = cert(cp_files, path)
        assert c.not_valid_before_utc <= now
        lifetime = c.not_valid_after_utc - now
        assert timedelta(days=454) < lifetime <= timedelta(days=486), path


def test_missing_keyset_is_named(cp_config: NodeupConfig, pki: dict[str, tuple[bytes, bytes]]) -> None:
    partial = {k: v for k, v in pki.items() if k != "etcd-peers-ca-events"}
    with pytest.raises(RenderError, match="keyset etcd-peers-ca-events is missing"):
        render_machine(
            cp_config, instance_id="i-1", zone="eu-west-1a", node_name="n", pki=partial, etcd_volumes=VOLUMES
        )


# --- a worker node: fetched keypairs, no CA private key -----------------------------------------------------


def _client_cert(files: Mapping[str, FileSpec], kubeconfig: str) -> bytes:
    import base64

    user = doc(files, kubeconfig)["users"][0]["user"]
    return base64.b64decode(user["client-certificate-data"])


def test_node_holds_no_ca_private_key(
    node_files: dict[str, FileSpec], pki: dict[str, tuple[bytes, bytes]]
) -> None:
    ca_key = pki["kubernetes-ca"][1]
    assert not any(ca_key.strip() in f.content for f in node_files.values())
    assert not any(p.endswith("ca.key") for p in node_files)
    # No serving certificate either: issuing one needs the CA key; the kubelet makes its own.
    assert not any("kubelet-server" in p for p in node_files)
    config = doc(node_files, "/var/lib/kubelet/kubelet-config.yaml")
    assert "tlsCertFile" not in config and "tlsPrivateKeyFile" not in config
    assert node_files["/srv/kubernetes/ca.crt"].content == pki["kubernetes-ca"][0]
    # The RBAC binding for the shared identity lives with the control plane, not on nodes.
    assert not any(p.startswith("/etc/kubernetes/addons/") for p in node_files)


@pytest.mark.parametrize(
    ("kubeconfig", "subject"),
    [
        ("/var/lib/kubelet/kubeconfig", "CN=kubelet,O=system:nodes"),
        ("/var/lib/kube-proxy/kubeconfig", "CN=system:kube-proxy"),
    ],
)
def test_node_client_certificates_are_the_fetched_ones_and_chain_to_the_ca(
    node_files: dict[str, FileSpec],
    node_pki: dict[str, tuple[bytes, bytes]],
    tmp_path: Path,
    kubeconfig: str,
    subject: str,
) -> None:
    pem = _client_cert(node_files, kubeconfig)
    assert pem in (node_pki["kubelet"][0], node_pki["kube-proxy"][0])
    c = x509.load_pem_x509_certificate(pem)
    assert c.subject.rfc4514_string() == subject
    usage = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    _openssl_verify(tmp_path, node_files["/srv/kubernetes/ca.crt"].content, pem)


def test_node_never_signs_even_when_given_a_ca_key(
    node_config: NodeupConfig,
    node_pki: dict[str, tuple[bytes, bytes]],
    pki: dict[str, tuple[bytes, bytes]],
) -> None:
    given = {**node_pki, "kubernetes-ca": pki["kubernetes-ca"]}
    files = {
        f.path: f
        for f in render_machine(node_config, instance_id="i-5", zone="eu-west-1a", node_name="n5", pki=given)
    }
    assert _client_cert(files, "/var/lib/kubelet/kubeconfig") == node_pki["kubelet"][0]
    assert not any(pki["kubernetes-ca"][1].strip() in f.content for f in files.values())
    only_ca = {"kubernetes-ca": pki["kubernetes-ca"]}
    with pytest.raises(RenderError, match="keyset kubelet is missing"):
        render_machine(node_config, instance_id="i-5", zone="eu-west-1a", node_name="n5", pki=only_ca)


def test_node_ca_certificates_from_the_config_or_given(
    spec: tuple[Cluster, list[InstanceGroup]],
    node_pki: dict[str, tuple[bytes, bytes]],
    pki: dict[str, tuple[bytes, bytes]],
) -> None:
    cluster, groups = spec
    old = node_config_of(cluster, groups, None)  # as written before caCertificates existed
    assert old.ca_certificates == {}
    with pytest.raises(RenderError, match=r"no caCertificates\.kubernetes-ca"):
        render_machine(old, instance_id="i-6", zone="eu-west-1a", node_name="n6", pki=node_pki)
    ca_pem = pki["kubernetes-ca"][0]
    files = render_machine(
        old,
        instance_id="i-6",
        zone="eu-west-1a",
        node_name="n6",
        pki=node_pki,
        ca_certificates={"kubernetes-ca": ca_pem},
    )
    assert next(f for f in files if f.path == "/srv/kubernetes/ca.crt").content == ca_pem


def test_node_refuses_a_keypair_the_trusted_ca_did_not_issue(
    node_config: NodeupConfig, node_pki: dict[str, tuple[bytes, bytes]]
) -> None:
    other = make_node_pki((lambda k: (k.cert_pem, k.key_pem))(new_ca("kubernetes-ca")))
    with pytest.raises(RenderError, match="keyset kube-proxy: its certificate is not issued by a trusted"):
        render_machine(
            node_config,
            instance_id="i-7",
            zone="eu-west-1a",
            node_name="n7",
            pki={**node_pki, "kube-proxy": other["kube-proxy"]},
        )


def test_rotated_ca_bundle_is_trusted_everywhere(
    spec: tuple[Cluster, list[InstanceGroup]],
    pki: dict[str, tuple[bytes, bytes]],
    node_pki: dict[str, tuple[bytes, bytes]],
    tmp_path: Path,
) -> None:
    """During a CA rotation the config carries both certificates; leaves of the old CA still verify."""
    cluster, groups = spec
    new = new_ca("kubernetes-ca")
    bundle = pki["kubernetes-ca"][0] + new.cert_pem
    node = node_config_of(cluster, groups, bundle)
    files = {
        f.path: f
        for f in render_machine(node, instance_id="i-8", zone="eu-west-1a", node_name="n8", pki=node_pki)
    }
    assert files["/srv/kubernetes/ca.crt"].content == bundle
    _openssl_verify(tmp_path, bundle, _client_cert(files, "/var/lib/kubelet/kubeconfig"))
    # The control plane signs with the CA it holds: added to the bundle if the config lacks it.
    cp = build_nodeup_config(
        cluster, groups[0], api_endpoint=LB, ca_certificates={"kubernetes-ca": new.cert_pem}
    )
    cp_files = {
        f.path: f
        for f in render_machine(
            cp, instance_id="i-9", zone="eu-west-1a", node_name="n9", pki=pki, etcd_volumes=VOLUMES
        )
    }
    assert cp_files["/srv/kubernetes/ca.crt"].content == new.cert_pem + pki["kubernetes-ca"][0]
    _openssl_verify(
        tmp_path,
        cp_files["/srv/kubernetes/ca.crt"].content,
        cp_files["/srv/kubernetes/kubelet-server.crt"].content,
    )


def test_control_plane_runs_the_addon_applier(cp_files: dict[str, FileSpec], tmp_path: Path) -> None:
    """A unit runs `pykops addons apply` for this cluster against the local API, the channel read from the
    state store (the parent of configBase), as system:pykops-addons in system:masters."""
    service = cp_files["/etc/systemd/system/pykops-addons.service"]
    text = service.content.decode()
    assert service.mode == 0o644
    command = text.split("ExecStart=", 1)[1].split("\nRestart=", 1)[0].replace(" \\\n  ", " ").split()
    assert command == [
        "/opt/pykops/bin/pykops",
        "--state",
        "s3://bucket",
        "addons",
        "apply",
        CLUSTER,
        "--kubeconfig",
        "/var/lib/pykops-addons/kubeconfig",
    ]
    assert "Type=simple\n" in text and "Restart=on-failure\n" in text and "After=kubelet.service\n" in text
    timer = cp_files["/etc/systemd/system/pykops-addons.timer"].content.decode()
    assert "OnUnitInactiveSec=10min\n" in timer and "WantedBy=timers.target\n" in timer
    launcher = cp_files["/opt/pykops/bin/pykops"]
    assert launcher.mode == 0o755
    assert launcher.content.startswith(b"#!/bin/sh\n")
    assert b'sys.path.insert(0, "/opt/pykops/lib")' in launcher.content and b'"$@"' in launcher.content
    # Its kubeconfig: private, the local API, a client certificate CN=system:pykops-addons,O=system:masters
    # issued by the cluster CA, and a context named after the cluster (what `addons apply` looks up).
    kubeconfig = cp_files["/var/lib/pykops-addons/kubeconfig"]
    assert kubeconfig.mode == 0o600
    config = yaml.safe_load(kubeconfig.content)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1"
    assert [c["name"] for c in config["contexts"]] == [CLUSTER]
    pem = _client_cert(cp_files, "/var/lib/pykops-addons/kubeconfig")
    subject = x509.load_pem_x509_certificate(pem).subject.rfc4514_string()
    assert subject == "CN=system:pykops-addons,O=system:masters"
    _openssl_verify(tmp_path, cp_files["/srv/kubernetes/ca.crt"].content, pem)


def test_the_applier_command_line_is_one_pykops_accepts(
    cp_files: dict[str, FileSpec], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The unit's arguments parse and its kubeconfig loads: against an empty store, pykops gets as far as
    reading the channel."""
    from pykops.cli.main import main

    text = cp_files["/etc/systemd/system/pykops-addons.service"].content.decode()
    args = text.split("ExecStart=", 1)[1].split("\nRestart=", 1)[0].replace(" \\\n  ", " ").split()[1:]
    assert args[:2] == ["--state", "s3://bucket"]
    args[1] = f"file://{tmp_path}/state"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(cp_files["/var/lib/pykops-addons/kubeconfig"].content)
    assert args[-2:] == ["--kubeconfig", "/var/lib/pykops-addons/kubeconfig"]
    args[-1] = str(kubeconfig)  # the rendered kubeconfig loads: a context named after the cluster
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"no add-ons channel for cluster {CLUSTER} in the state store" in err


def test_worker_nodes_run_no_addon_applier(node_files: dict[str, FileSpec]) -> None:
    assert not any("pykops-addons" in p for p in node_files)
    assert "/opt/pykops/bin/pykops" not in node_files


def test_nodeup_writes_no_addon_manifests(cp_files: dict[str, FileSpec]) -> None:
    """The kubelet's RBAC binding is the rbac.addons.k8s.io add-on's (tests/test_addons.py), not a file."""
    assert not any(f.startswith("/etc/kubernetes/addons/") for f in cp_files)


def test_bastion_renders_nothing(spec: tuple[Cluster, list[InstanceGroup]]) -> None:
    cluster, groups = spec
    bastion = groups[-1].model_copy(deep=True)
    bastion.metadata.name = "bastions"
    bastion.spec.role = "Bastion"
    config = build_nodeup_config(cluster, bastion, api_endpoint=LB)
    assert config.keysets == [] and config.assets == []
    assert render_machine(config, instance_id="i-3", zone="eu-west-1a", node_name="n", pki={}) == []


# --- the generic section → flags mapping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "flag_name"),
    [
        ("allocateNodeCIDRs", "allocate-node-cidrs"),
        ("clusterCIDR", "cluster-cidr"),
        ("rootCAFile", "root-ca-file"),
        ("nodeCIDRMaskSize", "node-cidr-mask-size"),
        ("ipvsExcludeCIDRs", "ipvs-exclude-cidrs"),
        ("ClusterSigningDuration", "cluster-signing-duration"),
        ("serviceClusterIPRange", "service-cluster-ip-range"),
        ("oidcIssuerURL", "oidc-issuer-url"),
        ("oidcClientID", "oidc-client-id"),
        ("http2MaxStreamsPerConnection", "http2-max-streams-per-connection"),
        ("tlsCipherSuites", "tls-cipher-suites"),
    ],
)
def test_kebab(field: str, flag_name: str) -> None:
    assert kebab(field) == flag_name


@pytest.mark.parametrize(
    ("section", "renames", "expected"),
    [
        (KubeAPIServerConfig(secure_port=443), API_SERVER_RENAMES, ["--secure-port=443"]),
        (KubeAPIServerConfig(allow_privileged=True), API_SERVER_RENAMES, ["--allow-privileged=true"]),
        (KubeAPIServerConfig(anonymous_auth=False), API_SERVER_RENAMES, ["--anonymous-auth=false"]),
        (
            KubeAPIServerConfig(enable_admission_plugins=["B", "A"]),
            API_SERVER_RENAMES,
            ["--enable-admission-plugins=B,A"],  # lists keep their order, comma-joined
        ),
        (
            KubeAPIServerConfig(runtime_config={"z/v1": "true", "a/v1": "false"}),
            API_SERVER_RENAMES,
            ["--runtime-config=a/v1=false,z/v1=true"],  # maps k=v, sorted by key
        ),
        (KubeAPIServerConfig(log_level=4, image="x", cpu_request="1"), API_SERVER_RENAMES, ["--v=4"]),
        (KubeAPIServerConfig(audit_log_max_age=3), API_SERVER_RENAMES, ["--audit-log-maxage=3"]),
        (
            KubeAPIServerConfig(oidc_required_claim=["a=b", "c=d"]),
            API_SERVER_RENAMES,
            ["--oidc-required-claim=a=b", "--oidc-required-claim=c=d"],
        ),
        (KubeAPIServerConfig(enable_profiling=False), API_SERVER_RENAMES, ["--profiling=false"]),
        (
            KubeAPIServerConfig(service_account_jwks_uri="u"),
            API_SERVER_RENAMES,
            ["--service-account-jwks-uri=u"],
        ),
        (KubeAPIServerConfig(append_admission_plugins=["X"]), API_SERVER_RENAMES, []),
        (KubeAPIServerConfig(enable_admission_plugins=[]), API_SERVER_RENAMES, []),  # empty: no flag
        (
            KubeControllerManagerConfig(
                allocate_node_cidrs=True,
                leader_election=LeaderElection(leader_elect=True, leader_elect_renew_deadline_duration="10s"),
            ),
            CONTROLLER_MANAGER_RENAMES,
            ["--allocate-node-cidrs=true", "--leader-elect-renew-deadline=10s", "--leader-elect=true"],
        ),
        (
            KubeControllerManagerConfig(concurrent_horizontal_pod_austoscaler_syncs=5, kube_api_qps="20"),
            CONTROLLER_MANAGER_RENAMES,
            ["--concurrent-horizontal-pod-autoscaler-syncs=5", "--kube-api-qps=20"],
        ),
        (
            KubeControllerManagerConfig(cluster_signing_duration="8760h"),
            CONTROLLER_MANAGER_RENAMES,
            ["--cluster-signing-duration=8760h"],
        ),
        (
            KubeSchedulerConfig(leader_election=LeaderElection(leader_elect=False), qps="50", burst=100),
            SCHEDULER_RENAMES,
            ["--leader-elect=false"],
        ),
        (
            KubeProxyConfig(
                enabled=True, feature_gates={"B": "false", "A": "true"}, node_port_addresses=["1.0.0.0/8"]
            ),
            PROXY_RENAMES,
            ["--feature-gates=A=true,B=false", "--nodeport-addresses=1.0.0.0/8"],
        ),
        (
            KubeProxyConfig(conntrack_max_per_core=131072, proxy_mode="ipvs"),
            PROXY_RENAMES,
            [
                "--conntrack-max-per-core=131072",
                "--proxy-mode=ipvs",
            ],
        ),
    ],
)
def test_component_flags_table(section: Any, renames: dict[str, str | None], expected: list[str]) -> None:
    repeated = ("oidc-required-claim",)
    assert format_flags(component_flags(section, renames=renames, repeated=repeated)) == expected


def test_component_flags_of_nothing() -> None:
    assert component_flags(None) == {}
    assert format_flags({}) == []


def test_every_kubelet_field_has_exactly_one_destination() -> None:
    # Case-insensitive: the model spells clientCaFile where kOps spells clientCAFile.
    fields = {(info.alias or name).lower() for name, info in KubeletConfig.model_fields.items()}
    config = {f.lower() for f in KUBELET_CONFIG_FIELDS}
    flags_ = {f.lower() for f in KUBELET_FLAG_FIELDS}
    ignored = {f.lower() for f in KUBELET_IGNORED}
    assert not (config & flags_) and not (config & ignored) and not (flags_ & ignored)
    assert fields == config | flags_ | ignored


def test_kubelet_mapping_table() -> None:
    kubelet = KubeletConfig(
        eviction_hard="memory.available<100Mi,nodefs.available<10%",
        eviction_soft_grace_period="memory.available=30s",
        feature_gates={"Foo": "true", "Bar": "false"},
        taints=["dedicated=gpu:NoSchedule", "spot:PreferNoSchedule"],
        enforce_node_allocatable="pods,system-reserved",
        kube_reserved={"cpu": "100m"},
        memory_swap_behavior="LimitedSwap",
        log_format="json",
        max_pods=50,
        log_level=3,
        node_labels={"b": "2", "a": "1"},
        cloud_provider="external",
        non_masquerade_cidr="100.64.0.0/10",
    )
    config = kubelet_configuration(kubelet)
    assert config["evictionHard"] == {"memory.available": "100Mi", "nodefs.available": "10%"}
    assert config["evictionSoftGracePeriod"] == {"memory.available": "30s"}
    assert config["featureGates"] == {"Foo": True, "Bar": False}
    assert config["registerWithTaints"] == [
        {"key": "dedicated", "effect": "NoSchedule", "value": "gpu"},
        {"key": "spot", "effect": "PreferNoSchedule"},
    ]
    assert config["enforceNodeAllocatable"] == ["pods", "system-reserved"]
    assert config["kubeReserved"] == {"cpu": "100m"}
    assert config["memorySwap"] == {"swapBehavior": "LimitedSwap"}
    assert config["logging"] == {"format": "json"}
    assert config["maxPods"] == 50
    assert format_flags(kubelet_flags(kubelet)) == [
        "--cloud-provider=external",
        "--node-labels=a=1,b=2",
        "--v=3",
    ]
    with pytest.raises(RenderError, match="invalid taint"):
        kubelet_configuration(KubeletConfig(taints=["nope"]))


def test_kubelet_sections_merge_cluster_then_control_plane_then_group() -> None:
    merged = merge_kubelet(
        KubeletConfig(max_pods=110, log_level=2),
        KubeletConfig(max_pods=50),
        KubeletConfig(log_level=4, node_labels={"x": "y"}),
    )
    assert (merged.max_pods, merged.log_level, merged.node_labels) == (50, 4, {"x": "y"})
