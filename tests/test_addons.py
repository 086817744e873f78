"""Add-ons (pure): registry, rendering, strict schema validity, the channel, firewall and IAM per plugin."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pykops.addons.channel import (
    CHANNEL_FILE,
    AddonsChannel,
    ChannelAddon,
    addon_files,
    read_channel,
    write_addons,
)
from pykops.addons.registry import ADDONS, NETWORKING_ADDONS
from pykops.addons.render import (
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_VERSION,
    PRIORITY_CLASSES,
    AddonError,
    render_addons,
    substitute,
)
from pykops.api import channel as channels
from pykops.api.models import (
    Cluster,
    ClusterAutoscalerConfig,
    IngressControllerSpec,
    InstanceGroup,
    KubeDNSConfig,
    MetricsServerConfig,
)
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.api.populate import populate
from pykops.api.validate import refuse_network_change
from pykops.errors import SpecError
from pykops.model.build import build
from pykops.model.firewall import IPIP, PLUGIN_TRAFFIC, group_names
from pykops.model.iam import policy_document
from pykops.state.memfs import MemFsStore
from test_model import _ctx

NAME = "proyecto.k8s.local"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
# --networking values (the flag) for every supported plugin with an add-on, plus kubenet.
PLUGINS = ["kubenet", "calico", "cilium", "flannel", "canal", "amazonvpc", "kube-router", "kindnet"]
CHANNEL = channels.load_channel()
MINORS = [channels.format_minor(m) for m in CHANNEL.supported_minors()]


def cluster_for(
    networking: str = "kubenet", kubernetes_version: str | None = None, **spec: Any
) -> tuple[Cluster, list[InstanceGroup]]:
    cluster, groups = new_cluster(
        CreateClusterOptions(
            name=NAME,
            zones=ZONES,
            control_plane_count=3,
            node_count=1,
            networking=networking,
            kubernetes_version=kubernetes_version,
            config_base=f"s3://state-bucket/{NAME}",
        )
    )
    for key, value in spec.items():
        setattr(cluster.spec, key, value)
    return populate(cluster, groups)


def objects_by_key(cluster: Cluster) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (addon.name, o["kind"], o["metadata"]["name"]): o
        for addon in render_addons(cluster)
        for o in addon.objects
    }


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def args_of(obj: dict[str, Any]) -> list[str]:
    container = pod_spec(obj)["containers"][0]
    return list(container.get("args") or container.get("command") or [])


@cache
def _recommended(minor: str) -> str:
    major, _, rest = minor.partition(".")
    return CHANNEL.recommended_version((int(major), int(rest)))


# --- strict validity: every supported minor x every plugin --------------------------------------------------

# Objects already found valid for a version (most add-ons render the same whatever the plugin): validating
# each distinct object once per version keeps the matrix fast without validating less.
_VALID: set[tuple[str, str]] = set()


def _validate(obj: dict[str, Any], version: str, where: str) -> None:
    key = (version, json.dumps(obj, sort_keys=True))
    if key in _VALID:
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:  # the schema dump is huge: keep the message
        pytest.fail(f"{where}: {exc.message}")
    _VALID.add(key)


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize("minor", MINORS)
def test_rendered_addons_pass_strict_validation(minor: str, plugin: str) -> None:
    version = _recommended(minor)
    cluster, _ = cluster_for(
        plugin,
        version,
        metrics_server=MetricsServerConfig(enabled=True),
        cluster_autoscaler=ClusterAutoscalerConfig(enabled=True),
        ingress_controller=IngressControllerSpec(provider="nginx"),
    )
    rendered = render_addons(cluster)
    names = [r.name for r in rendered]
    assert names[-1] == "ingress-nginx.addons.k8s.io"  # applied last: after DNS, network, cloud controller
    key = "kuberouter" if plugin == "kube-router" else plugin
    expected_network = [NETWORKING_ADDONS[key]] if key in NETWORKING_ADDONS else []
    assert [n for n in names if n.startswith("networking.")] == expected_network
    assert {
        "coredns.addons.k8s.io",
        "aws-cloud-controller.addons.k8s.io",
        "storage-aws.addons.k8s.io",
    } <= set(names)
    for addon in rendered:
        for obj in addon.objects:
            where = f"{addon.name}: {obj['kind']} {obj['metadata']['name']} for {version}"
            _validate(obj, version, where)
            labels = obj["metadata"]["labels"]
            assert labels[LABEL_NAME] == addon.name, where
            assert labels[LABEL_VERSION] == addon.version, where
            assert labels[LABEL_MANAGED_BY] == "pykops", where
            assert "${" not in yaml.safe_dump(obj), where
            if obj["kind"] in ("Deployment", "DaemonSet"):
                assert pod_spec(obj)["priorityClassName"] in PRIORITY_CLASSES, where


def test_strict_validation_catches_an_unknown_field() -> None:
    cluster, _ = cluster_for()
    deployment = objects_by_key(cluster)[("coredns.addons.k8s.io", "Deployment", "coredns")]
    broken = json.loads(json.dumps(deployment))
    pod_spec(broken)["priorityClass"] = "system-cluster-critical"  # misspelt: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, cluster.spec.kubernetes_version, strict=True)


# --- what each add-on is made of ----------------------------------------------------------------------------


def test_coredns_is_served_as_kube_dns_at_the_kubelets_dns_ip() -> None:
    cluster, _ = cluster_for()
    objs = objects_by_key(cluster)
    service = objs[("coredns.addons.k8s.io", "Service", "kube-dns")]
    assert service["metadata"]["namespace"] == "kube-system"
    assert cluster.spec.kubelet is not None
    assert service["spec"]["clusterIP"] == cluster.spec.kubelet.cluster_dns == "100.64.0.10"
    assert service["spec"]["selector"] == {"k8s-app": "kube-dns"}
    deployment = objs[("coredns.addons.k8s.io", "Deployment", "coredns")]
    assert deployment["spec"]["replicas"] == 2  # an int, not the string "2"
    corefile = objs[("coredns.addons.k8s.io", "ConfigMap", "coredns")]["data"]["Corefile"]
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in corefile
    assert "forward . /etc/resolv.conf" in corefile


def test_spec_values_reach_the_manifests() -> None:
    dns = KubeDNSConfig(server_ip="100.64.0.53", replicas=3, upstream_nameservers=["1.1.1.1", "8.8.8.8"])
    dns.core_dns_image = "registry.example.com/coredns:v9"
    cluster, _ = cluster_for(kube_dns=dns)
    objs = objects_by_key(cluster)
    assert objs[("coredns.addons.k8s.io", "Service", "kube-dns")]["spec"]["clusterIP"] == "100.64.0.53"
    deployment = objs[("coredns.addons.k8s.io", "Deployment", "coredns")]
    assert deployment["spec"]["replicas"] == 3
    assert pod_spec(deployment)["containers"][0]["image"] == "registry.example.com/coredns:v9"
    corefile = objs[("coredns.addons.k8s.io", "ConfigMap", "coredns")]["data"]["Corefile"]
    assert "forward . 1.1.1.1 8.8.8.8 {" in corefile


def test_kubenet_has_no_network_daemonset_and_the_ccm_programs_routes() -> None:
    cluster, _ = cluster_for("kubenet")
    rendered = render_addons(cluster)
    assert not [r for r in rendered if r.name.startswith("networking.")]
    ccm = objects_by_key(cluster)[
        ("aws-cloud-controller.addons.k8s.io", "DaemonSet", "aws-cloud-controller-manager")
    ]
    args = args_of(ccm)
    assert "--configure-cloud-routes=true" in args
    assert f"--cluster-cidr={cluster.spec.pod_cidr}" in args and cluster.spec.pod_cidr
    assert f"--cluster-name={NAME}" in args
    assert pod_spec(ccm)["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}


@pytest.mark.parametrize("plugin", PLUGINS)
def test_cloud_routes_only_for_unencapsulated_plugins(plugin: str) -> None:
    cluster, _ = cluster_for(plugin)
    ccm = objects_by_key(cluster)[
        ("aws-cloud-controller.addons.k8s.io", "DaemonSet", "aws-cloud-controller-manager")
    ]
    routes = "true" if plugin in ("kubenet", "kindnet") else "false"
    assert f"--configure-cloud-routes={routes}" in args_of(ccm)


def test_default_storage_class_is_encrypted_gp3_waiting_for_its_consumer() -> None:
    cluster, _ = cluster_for()
    sc = objects_by_key(cluster)[("storage-aws.addons.k8s.io", "StorageClass", "gp3")]
    assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    ebs = objects_by_key(cluster)[("aws-ebs-csi-driver.addons.k8s.io", "Deployment", "ebs-csi-controller")]
    # Volumes are created tagged for the cluster: the control plane's IAM allows CreateVolume only then.
    assert f"--extra-tags=KubernetesCluster={NAME}" in pod_spec(ebs)["containers"][0]["args"]


def test_optional_addons_only_when_enabled() -> None:
    cluster, _ = cluster_for()
    names = {r.name for r in render_addons(cluster)}
    assert "metrics-server.addons.k8s.io" not in names and "cluster-autoscaler.addons.k8s.io" not in names
    cluster, _ = cluster_for(
        metrics_server=MetricsServerConfig(enabled=True),
        cluster_autoscaler=ClusterAutoscalerConfig(enabled=True),
    )
    names = {r.name for r in render_addons(cluster)}
    assert {"metrics-server.addons.k8s.io", "cluster-autoscaler.addons.k8s.io"} <= names
    assert "ingress-nginx.addons.k8s.io" not in names


# --- the ingress controller (spec.ingressController, a pykops extension) ------------------------------------

INGRESS = "ingress-nginx.addons.k8s.io"


def test_ingress_nginx_is_the_pinned_upstream_controller_behind_a_load_balancer() -> None:
    cluster, _ = cluster_for(ingress_controller=IngressControllerSpec(provider="nginx"))
    rendered = next(r for r in render_addons(cluster) if r.name == INGRESS)
    objs = {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}
    assert rendered.version == "1.15.1"
    # The Service the cloud controller (and the sandbox's simulation of it) gives a load balancer, and whose
    # address is copied into Ingresses of class nginx: exactly this namespace/name.
    service = objs[("Service", "ingress-nginx-controller")]
    assert service["metadata"]["namespace"] == "ingress-nginx"
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"),
        ("https", 443, "https"),
    ]
    ingress_class = objs[("IngressClass", "nginx")]
    assert ingress_class["spec"]["controller"] == "k8s.io/ingress-nginx"
    assert ingress_class["metadata"]["annotations"] == {"ingressclass.kubernetes.io/is-default-class": "true"}
    deployment = objs[("Deployment", "ingress-nginx-controller")]
    assert deployment["spec"]["replicas"] == 2
    pod = pod_spec(deployment)
    assert pod["priorityClassName"] == "system-cluster-critical"
    container = pod["containers"][0]
    assert container["image"] == "registry.k8s.io/ingress-nginx/controller:v1.15.1"  # a tag, no digest
    assert "@sha256" not in container["image"]
    # the Service's selector picks the controller's pods, and its named ports exist on them
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {"http", "https"} <= {p["name"] for p in container["ports"]}
    args = container["args"]
    assert "--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller" in args
    assert "--ingress-class=nginx" in args and "--controller-class=k8s.io/ingress-nginx" in args
    assert "--configmap=$(POD_NAMESPACE)/ingress-nginx-controller" in args
    assert ("ConfigMap", "ingress-nginx-controller") in objs
    # worker nodes only
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}
    ]
    assert "tolerations" not in pod
    # no admission webhook: no webhook configuration, no webhook flags, no certificate jobs
    assert not any("Webhook" in kind or kind == "Job" for kind, _ in objs)
    assert not any("webhook" in a for a in args)
    # its RBAC: the service account bound to its cluster role and namespaced role
    assert pod["serviceAccountName"] == "ingress-nginx"
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = objs[(kind, "ingress-nginx")]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ingress-nginx", "namespace": "ingress-nginx"}
        ]
    role = objs[("ClusterRole", "ingress-nginx")]
    assert any(
        "ingresses/status" in r["resources"] and "update" in r["verbs"] for r in role["rules"]
    )  # it publishes the load balancer's address into the Ingresses


def test_ingress_from_the_create_cluster_flag_and_from_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    from pykops.api.serialize import dump_yaml, load_documents
    from pykops.cli.main import main

    cluster, _ = new_cluster(CreateClusterOptions(name=NAME, zones=ZONES, ingress="NGINX"))
    assert cluster.spec.ingress_controller == IngressControllerSpec(provider="nginx")
    assert (
        main(
            [
                "create",
                "cluster",
                "--name",
                NAME,
                "--zones",
                ZONES[0],
                "--ingress",
                "nginx",
                "--dry-run",
                "-o",
                "yaml",
            ]
        )
        == 0
    )
    doc = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Cluster")
    assert doc["spec"]["ingressController"] == {"provider": "nginx"}
    # load → dump → load keeps it (the extension field round-trips like kops' own fields)
    loaded = load_documents(dump_yaml([cluster]))[0]
    assert isinstance(loaded, Cluster) and loaded.spec.ingress_controller == cluster.spec.ingress_controller
    cluster, _ = new_cluster(CreateClusterOptions(name=NAME, zones=ZONES))
    assert cluster.spec.ingress_controller is None


def test_the_rbac_addon_carries_the_kubelet_binding_nodeup_no_longer_writes() -> None:
    cluster, _ = cluster_for()
    binding = objects_by_key(cluster)[("rbac.addons.k8s.io", "ClusterRoleBinding", "kubelet-cluster-admin")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:node",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubelet"}
    ]


def test_cluster_autoscaler_discovers_the_groups_the_model_tags() -> None:
    cluster, groups = cluster_for(
        cluster_autoscaler=ClusterAutoscalerConfig(enabled=True, expander="least-waste")
    )
    ca = objects_by_key(cluster)[("cluster-autoscaler.addons.k8s.io", "Deployment", "cluster-autoscaler")]
    args = args_of(ca)
    flag = next(a for a in args if a.startswith("--node-group-auto-discovery="))
    tags = flag.removeprefix("--node-group-auto-discovery=asg:tag=").split(",")
    assert tags == ["k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{NAME}"]
    assert "--expander=least-waste" in args
    asgs = {r.name: r.props for r in build(_ctx(cluster, groups)) if r.kind == "AutoScalingGroup"}
    for name, props in asgs.items():
        has_tags = all(t in props["tags"] for t in tags)
        # the worker groups are discovered; the control plane's never are
        assert has_tags == name.startswith("nodes"), name
    # a worker group can opt out
    workers = next(g for g in groups if g.spec.role == "Node")
    workers.spec.autoscale = False
    asgs = {r.name: r.props for r in build(_ctx(cluster, groups)) if r.kind == "AutoScalingGroup"}
    assert not any(t in asgs[f"{workers.name}.{NAME}"]["tags"] for t in tags)


def test_kube_router_replaces_kube_proxy() -> None:
    cluster, _ = cluster_for("kube-router")
    assert cluster.spec.kube_proxy is not None and cluster.spec.kube_proxy.enabled is False
    router = objects_by_key(cluster)[("networking.kuberouter", "DaemonSet", "kube-router")]
    assert "--run-service-proxy=true" in args_of(router)
    cluster, _ = cluster_for("calico")
    assert cluster.spec.kube_proxy is not None and cluster.spec.kube_proxy.enabled is True


def test_upgrading_kubernetes_rerenders_the_addons_whose_ranges_say_so() -> None:
    old, _ = cluster_for(kubernetes_version="1.32.9")
    new, _ = cluster_for(kubernetes_version="1.34.2")
    before = {r.name: r.version for r in render_addons(old)}
    after = {r.name: r.version for r in render_addons(new)}
    assert before["coredns.addons.k8s.io"] == "1.11.3" and after["coredns.addons.k8s.io"] == "1.12.1"
    assert before["aws-cloud-controller.addons.k8s.io"] == "1.32.1"
    assert after["aws-cloud-controller.addons.k8s.io"] == "1.34.0"
    assert before["storage-aws.addons.k8s.io"] == after["storage-aws.addons.k8s.io"]  # range >=1.0.0
    ccm = objects_by_key(new)[
        ("aws-cloud-controller.addons.k8s.io", "DaemonSet", "aws-cloud-controller-manager")
    ]
    assert (
        pod_spec(ccm)["containers"][0]["image"]
        == "registry.k8s.io/provider-aws/cloud-controller-manager:v1.34.0"
    )


def test_every_version_range_of_every_addon_covers_the_supported_minors() -> None:
    for addon in ADDONS:
        for minor in MINORS:
            assert addon.version_for(_recommended(minor)) is not None, (addon.name, minor)


def test_substitution_is_data_only() -> None:
    values: dict[str, Any] = {"n": 3, "flags": ["--a", "--b"], "none": [], "s": "x: y"}
    doc = {"replicas": "${n}", "args": ["--first", "${flags}", "${none}", "--v=${n}"], "text": "a ${s} b"}
    assert substitute(doc, values, "t") == {
        "replicas": 3,
        "args": ["--first", "--a", "--b", "--v=3"],
        "text": "a x: y b",  # a value never becomes YAML structure
    }
    with pytest.raises(AddonError, match=r"no value for \$\{missing\}"):
        substitute({"a": "${missing}"}, values, "t")


# --- the channel in the state store -------------------------------------------------------------------------


def test_channel_lists_each_addon_with_its_manifest_and_hash() -> None:
    cluster, _ = cluster_for()
    files = addon_files(cluster)
    channel = AddonsChannel.from_yaml(files[CHANNEL_FILE])
    doc = yaml.safe_load(files[CHANNEL_FILE])
    assert doc["kind"] == "Addons" and doc["metadata"]["name"] == "bootstrap"
    assert set(doc["spec"]["addons"][0]) == {
        "name",
        "version",
        "selector",
        "manifest",
        "manifestHash",
        "kubernetesVersion",
    }
    for a in channel.addons:
        data = files[f"addons/{a.manifest}"]
        assert a.manifest == f"{a.name}/{a.version}.yaml"
        assert a.manifest_hash == hashlib.sha256(data).hexdigest()
        assert a.selector == {LABEL_NAME: a.name}
    assert set(files) == {CHANNEL_FILE, *(f"addons/{a.manifest}" for a in channel.addons)}


def test_write_addons_replaces_stale_manifests_and_reads_back(tmp_path: Any) -> None:
    store = MemFsStore(f"memfs://addons-{id(tmp_path)}")
    old, _ = cluster_for(kubernetes_version="1.32.9", metrics_server=MetricsServerConfig(enabled=True))
    write_addons(store, old)
    assert store.read(f"{NAME}/addons/coredns.addons.k8s.io/1.11.3.yaml") is not None
    new, _ = cluster_for(kubernetes_version="1.34.2")
    channel = write_addons(store, new)
    keys = set(store.list(f"{NAME}/addons/"))
    assert f"{NAME}/addons/coredns.addons.k8s.io/1.12.1.yaml" in keys
    assert f"{NAME}/addons/coredns.addons.k8s.io/1.11.3.yaml" not in keys
    assert not any("metrics-server" in k for k in keys)
    read, manifests = read_channel(store, NAME)
    assert read == channel and set(manifests) == {a.manifest for a in channel.addons}
    # a manifest changed behind the channel's back is refused
    key = f"{NAME}/addons/{channel.addons[0].manifest}"
    store.put(key, b"kind: Tampered\n")
    with pytest.raises(AddonError, match="does not match its manifestHash in the channel"):
        read_channel(store, NAME)


def test_reading_a_missing_channel_says_what_to_run() -> None:
    with pytest.raises(AddonError, match="run 'pykops update cluster --yes' first"):
        read_channel(MemFsStore("memfs://addons-empty"), NAME)


# --- network plugin changes ---------------------------------------------------------------------------------


def test_changing_the_network_plugin_is_refused_with_what_to_do() -> None:
    old, _ = cluster_for("kubenet")
    new = old.model_copy(deep=True)
    new_cluster_, _ = cluster_for("kube-router")
    new.spec.networking = new_cluster_.spec.networking
    with pytest.raises(SpecError) as err:
        refuse_network_change(old, new)
    text = str(err.value)
    assert "(kubenet → kuberouter) is not supported" in text
    assert "create a new cluster with --networking kube-router" in text
    refuse_network_change(old, old.model_copy(deep=True))  # same plugin: fine
    refuse_network_change(None, new)  # a new cluster: fine


# --- firewall and IAM per plugin ----------------------------------------------------------------------------


def _allows(rules: list[dict[str, Any]], group: str, source: str, protocol: str, port: int) -> bool:
    for r in rules:
        if r["group"] != group or r["source"] != source or r["direction"] != "ingress":
            continue
        if r["protocol"] == "-1":
            return True
        if r["protocol"] == protocol and (protocol == IPIP or r["from_port"] <= port <= r["to_port"]):
            return True
    return False


def _rules(cluster: Cluster, groups: list[InstanceGroup]) -> list[dict[str, Any]]:
    out = []
    for r in build(_ctx(cluster, groups)):
        if r.kind != "SecurityGroupRule" or "source_group" not in r.props:
            continue
        out.append(
            {
                **r.props,
                "group": r.props["group"].name,
                "source": r.props["source_group"].name,
            }
        )
    return out


@pytest.mark.parametrize("plugin", PLUGINS)
def test_security_groups_carry_each_plugins_traffic(plugin: str) -> None:
    cluster, groups = cluster_for(plugin)
    key = "kuberouter" if plugin == "kube-router" else plugin
    rules = _rules(cluster, groups)
    names = group_names(_ctx(cluster, groups))
    cp, nodes = names["control-plane"], names["node"]
    for protocol, port in PLUGIN_TRAFFIC[key]:
        for group, source in ((cp, nodes), (nodes, cp), (nodes, nodes), (cp, cp)):
            assert _allows(rules, group, source, protocol, port), (plugin, protocol, port, group, source)
    # Exactly what the plugin needs beyond kubenet's rules: IP-in-IP from nodes to the control plane for the
    # two plugins that tunnel in it, nothing for the others (VXLAN/BGP/health ports are already open).
    kubenet = {
        (r["group"], r["source"], r["protocol"], r["from_port"], r["to_port"]) for r in _rules(*cluster_for())
    }
    mine = {(r["group"], r["source"], r["protocol"], r["from_port"], r["to_port"]) for r in rules}
    extra = mine - kubenet
    if any(p == IPIP for p, _ in PLUGIN_TRAFFIC[key]):
        assert extra == {(cp, nodes, IPIP, 0, 0)}
    else:
        assert extra == set()
    assert kubenet - mine == set()
    # etcd stays closed to the nodes whatever the plugin
    for port in (2380, 2381, 4001, 4002):
        assert not _allows(rules, cp, nodes, "tcp", port)


def _actions(doc: dict[str, Any]) -> set[str]:
    return {a for s in doc["Statement"] for a in s["Action"]}


def test_cluster_autoscaler_permissions_only_when_enabled() -> None:
    cluster, groups = cluster_for()
    ctx = _ctx(cluster, groups)
    without = _actions(policy_document(ctx, "control-plane"))
    assert "autoscaling:SetDesiredCapacity" not in without
    assert "autoscaling:TerminateInstanceInAutoScalingGroup" not in without
    cluster, groups = cluster_for(cluster_autoscaler=ClusterAutoscalerConfig(enabled=True))
    ctx = _ctx(cluster, groups)
    doc = policy_document(ctx, "control-plane")
    with_ca = _actions(doc)
    assert {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"} <= with_ca
    assert {"autoscaling:DescribeScalingActivities", "ec2:DescribeImages"} <= with_ca
    resize = next(s for s in doc["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert resize["Condition"] == {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{NAME}": "1"}}
    assert "autoscaling:SetDesiredCapacity" not in _actions(policy_document(ctx, "node"))


def test_ebs_csi_and_vpc_cni_permissions() -> None:
    cluster, groups = cluster_for()
    doc = policy_document(_ctx(cluster, groups), "control-plane")
    create = next(s for s in doc["Statement"] if "ec2:CreateVolume" in s["Action"])
    assert "ec2:CreateSnapshot" in create["Action"]
    assert create["Condition"] == {"StringEquals": {"aws:RequestTag/KubernetesCluster": NAME}}
    assert "ec2:DeleteSnapshot" in _actions(doc) and "ec2:DescribeSnapshots" in _actions(doc)
    assert "ec2:AssignPrivateIpAddresses" not in _actions(policy_document(_ctx(cluster, groups), "node"))
    cluster, groups = cluster_for("amazonvpc")
    for role in ("node", "control-plane"):
        assert "ec2:AssignPrivateIpAddresses" in _actions(policy_document(_ctx(cluster, groups), role))


def test_update_clusters_derived_state_includes_the_addons() -> None:
    """``update cluster --yes`` writes the channel and manifests with the rest of the derived state."""
    from pykops.ops.update import ClusterPlan, write_derived_state
    from pykops.state.keystore import Keystore
    from pykops.state.registry import ClusterRegistry

    cluster, groups = cluster_for("cilium")
    store = MemFsStore("memfs://addons-update-derived")
    Keystore(store, NAME).ensure_cluster_keysets(cluster)
    plan = ClusterPlan(cluster, groups, [], [], [], {}, None)  # type: ignore[arg-type]
    write_derived_state(ClusterRegistry(store), plan)
    channel, manifests = read_channel(store, NAME)
    assert [a.name for a in channel.addons] == [r.name for r in render_addons(cluster)]
    assert set(manifests) == {a.manifest for a in channel.addons}
    assert "networking.cilium.io" in {a.name for a in channel.addons}
    assert store.read(f"{NAME}/cluster-completed.spec") is not None


def test_addon_states_compare_the_channel_with_the_records() -> None:
    from pykops.addons.applier import AddonRecord, addon_states

    channel = AddonsChannel(
        (
            ChannelAddon("a", "1.0.0", "a/1.0.0.yaml", "h1", ">=1.0.0"),
            ChannelAddon("b", "2.0.0", "b/2.0.0.yaml", "h2", ">=1.0.0"),
            ChannelAddon("c", "1.0.0", "c/1.0.0.yaml", "h3", ">=1.0.0"),
            ChannelAddon("d", "1.0.0", "d/1.0.0.yaml", "h4", ">=1.0.0"),
        )
    )
    records = {
        "a": AddonRecord("1.0.0", "h1"),
        "b": AddonRecord("1.0.0", "old"),  # older version
        "c": AddonRecord("1.0.0", "other"),  # same version, different manifest (a spec change)
        "gone": AddonRecord("0.1.0", "h9"),
    }
    states = [(s.name, s.version, s.state, s.applied_version) for s in addon_states(channel, records)]
    assert states == [
        ("a", "1.0.0", "applied", "1.0.0"),
        ("b", "2.0.0", "outdated", "1.0.0"),
        ("c", "1.0.0", "outdated", "1.0.0"),
        ("d", "1.0.0", "pending", None),
        ("gone", "0.1.0", "obsolete", "0.1.0"),
    ]
    assert {s.state for s in addon_states(channel, None)} == {"unknown"}


def test_replace_refuses_a_network_plugin_change_and_keeps_the_stored_spec(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from pykops.api.serialize import dump_yaml
    from pykops.cli.main import main
    from pykops.state.registry import ClusterRegistry

    url = f"memfs://addons-replace-{id(tmp_path)}"
    store = MemFsStore(url)
    cluster, groups = new_cluster(
        CreateClusterOptions(
            name=NAME, zones=ZONES, control_plane_count=3, node_count=1, networking="kubenet"
        )
    )
    ClusterRegistry(store).create_cluster(cluster, groups)
    changed = cluster.model_copy(deep=True)
    changed.spec.networking = cluster_for("cilium")[0].spec.networking
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(dump_yaml([changed]))
    assert main(["--state", url, "replace", "-f", str(spec_file)]) == 1
    err = capsys.readouterr().err
    assert "changing the network plugin of an existing cluster (kubenet → cilium) is not supported" in err
    assert "create a new cluster with --networking cilium" in err
    stored = ClusterRegistry(store).get_cluster(NAME).obj
    assert stored.spec.networking is not None and stored.spec.networking.plugin() == "kubenet"
