"""The add-on applier against the sandbox's Kubernetes API emulator (TLS on 127.0.0.1, real etcd).

No monkeypatching: the applier talks HTTP to the emulator through the official client, as it would to a
real cluster.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from pykops.addons.applier import (
    FIELD_MANAGER,
    RECORD_PREFIX,
    addon_states,
    apply_channel,
    apply_from_state_store,
    read_records,
)
from pykops.addons.channel import AddonsChannel, ChannelAddon, build_channel, write_addons
from pykops.addons.render import LABEL_MANAGED_BY, LABEL_NAME, AddonError, RenderedAddon, render_addons
from pykops.api.models import ClusterAutoscalerConfig, MetricsServerConfig
from pykops.cli.main import main
from pykops.sandbox.kubeapi.testing import KubeApiHandle
from pykops.state.memfs import MemFsStore
from test_addons import NAME, cluster_for


def _cm(name: str, addon: str, version: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {LABEL_NAME: addon, LABEL_MANAGED_BY: "pykops", "addon.kops.k8s.io/version": version},
        },
        "data": data,
    }


def _deployment(name: str, addon: str, version: str, image: str) -> dict[str, Any]:
    labels = {LABEL_NAME: addon, LABEL_MANAGED_BY: "pykops", "addon.kops.k8s.io/version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "containers": [{"name": name, "image": image}],
                },
            },
        },
    }


def _channel(*addons: RenderedAddon) -> tuple[AddonsChannel, dict[str, bytes]]:
    return build_channel(list(addons)), {a.manifest_path: a.manifest for a in addons}


def _configmap(api: Any, name: str) -> Any:
    try:
        return k8s.CoreV1Api(api).read_namespaced_config_map(name, "kube-system")
    except k8s.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _versions(api: Any, names: list[str]) -> dict[str, str]:
    core = k8s.CoreV1Api(api)
    return {n: core.read_namespaced_config_map(n, "kube-system").metadata.resource_version for n in names}


def test_apply_records_and_a_second_apply_changes_nothing(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    a = RenderedAddon(
        "a.addons.test", "1.0.0", ">=1.0.0", (_cm("a-one", "a.addons.test", "1.0.0", {"k": "v"}),)
    )
    b = RenderedAddon(
        "b.addons.test",
        "2.0.0",
        ">=1.0.0",
        (
            _cm("b-one", "b.addons.test", "2.0.0", {"x": "1"}),
            _deployment("b-dep", "b.addons.test", "2.0.0", "b:2"),
        ),
    )
    channel, manifests = _channel(a, b)
    first = apply_channel(api, channel, manifests, wait_timeout=0)
    assert first.applied == ["a.addons.test 1.0.0", "b.addons.test 2.0.0"] and first.writes > 0
    cm = _configmap(api, "a-one")
    assert cm.data == {"k": "v"}
    assert any(
        f.manager == FIELD_MANAGER and f.operation == "Apply" for f in cm.metadata.managed_fields or []
    )
    records = read_records(api)
    assert records["a.addons.test"].version == "1.0.0"
    assert records["b.addons.test"].manifest_hash == b.manifest_hash
    ns = k8s.CoreV1Api(api).read_namespace("kube-system")
    assert json.loads(ns.metadata.annotations[RECORD_PREFIX + "a.addons.test"])["channel"] == "bootstrap"
    before = _versions(api, ["a-one", "b-one"])

    second = apply_channel(api, channel, manifests, wait_timeout=0)
    assert second.applied == [] and second.skipped == ["a.addons.test", "b.addons.test"]
    assert second.writes == 0 and second.pruned == [] and second.removed == []
    assert _versions(api, ["a-one", "b-one"]) == before
    assert [s.state for s in addon_states(channel, read_records(api))] == ["applied", "applied"]


def test_removing_an_addon_removes_its_objects_and_record(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    a = RenderedAddon("a.addons.test", "1.0.0", ">=1.0.0", (_cm("a-one", "a.addons.test", "1.0.0", {}),))
    b = RenderedAddon(
        "b.addons.test",
        "1.0.0",
        ">=1.0.0",
        (_cm("b-one", "b.addons.test", "1.0.0", {}), _deployment("b-dep", "b.addons.test", "1.0.0", "b:1")),
    )
    apply_channel(api, *_channel(a, b), wait_timeout=0)
    # something of the user's in the same namespace, not labelled as an add-on: never touched
    k8s.CoreV1Api(api).create_namespaced_config_map(
        "kube-system", {"metadata": {"name": "users-own"}, "data": {"a": "b"}}
    )
    report = apply_channel(api, *_channel(a), wait_timeout=0)
    assert report.removed == ["b.addons.test"]
    assert sorted(report.pruned) == [
        "ConfigMap kube-system/b-one (b.addons.test)",
        "Deployment kube-system/b-dep (b.addons.test)",
    ]
    assert _configmap(api, "b-one") is None
    with pytest.raises(k8s.ApiException) as err:
        k8s.AppsV1Api(api).read_namespaced_deployment("b-dep", "kube-system")
    assert err.value.status == 404
    assert _configmap(api, "a-one") is not None and _configmap(api, "users-own") is not None
    assert set(read_records(api)) == {"a.addons.test"}


def test_a_version_bump_replaces_objects_and_prunes_dropped_ones(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    name = "c.addons.test"
    v1 = RenderedAddon(
        name,
        "1.0.0",
        ">=1.0.0",
        (_cm("c-config", name, "1.0.0", {"mode": "old"}), _cm("c-legacy", name, "1.0.0", {})),
    )
    apply_channel(api, *_channel(v1), wait_timeout=0)
    v2 = RenderedAddon(
        name,
        "2.0.0",
        ">=1.0.0",
        (_cm("c-config", name, "2.0.0", {"mode": "new"}), _cm("c-added", name, "2.0.0", {})),
    )
    channel2, manifests2 = _channel(v2)
    assert [s.state for s in addon_states(channel2, read_records(api))] == ["outdated"]
    report = apply_channel(api, channel2, manifests2, wait_timeout=0)
    assert report.applied == [f"{name} 2.0.0"]
    assert report.pruned == [f"ConfigMap kube-system/c-legacy ({name})"]
    config = _configmap(api, "c-config")
    assert config.data == {"mode": "new"} and config.metadata.labels["addon.kops.k8s.io/version"] == "2.0.0"
    assert _configmap(api, "c-added") is not None and _configmap(api, "c-legacy") is None
    assert read_records(api)[name].version == "2.0.0"


def test_waits_for_workloads_and_reports_those_not_available(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    name = "d.addons.test"
    addon = RenderedAddon(name, "1.0.0", ">=1.0.0", (_deployment("d-dep", name, "1.0.0", "d:1"),))
    started = time.monotonic()
    report = apply_channel(api, *_channel(addon), wait_timeout=1.5)
    assert report.not_ready == ["Deployment kube-system/d-dep"]
    assert time.monotonic() - started >= 1.5

    # Now play the controller: mark the Deployment available while the applier waits for a new version.
    addon2 = RenderedAddon(name, "1.0.1", ">=1.0.0", (_deployment("d-dep", name, "1.0.1", "d:2"),))
    apps = k8s.AppsV1Api(api)

    def controller() -> None:
        time.sleep(0.5)
        current = apps.read_namespaced_deployment("d-dep", "kube-system")
        status = {
            "observedGeneration": current.metadata.generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
        apps.patch_namespaced_deployment_status("d-dep", "kube-system", {"status": status})

    thread = threading.Thread(target=controller)
    thread.start()
    report = apply_channel(api, *_channel(addon2), wait_timeout=30)
    thread.join()
    assert report.applied == [f"{name} 1.0.1"] and report.not_ready == []


def test_a_manifest_whose_objects_lack_the_addon_label_is_refused(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    obj = _cm("e-one", "e.addons.test", "1.0.0", {})
    del obj["metadata"]["labels"][LABEL_NAME]
    channel = AddonsChannel((ChannelAddon("e.addons.test", "1.0.0", "e.yaml", "", ">=1.0.0"),))
    with pytest.raises(AddonError, match=r"lacks the label addon\.kops\.k8s\.io/name=e\.addons\.test"):
        apply_channel(api, channel, {"e.yaml": yaml.safe_dump(obj).encode()}, wait_timeout=0)
    assert _configmap(api, "e-one") is None


@pytest.mark.parametrize("plugin", ["kubenet", "calico"])
def test_real_addons_from_the_state_store(
    kube_api: KubeApiHandle, tmp_path: Path, plugin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rendered add-ons applied from the store, then re-applied: no writes."""
    api = kube_api.admin_client()
    store_url = f"memfs://addons-applier-{plugin}-{id(tmp_path)}"
    # calico brings CRDs; metrics-server an APIService
    cluster, _ = cluster_for(plugin, metrics_server=MetricsServerConfig(enabled=plugin == "calico"))
    write_addons(MemFsStore(store_url), cluster)
    report = apply_from_state_store(api, cluster_name=NAME, state_store=store_url, wait_timeout=0)
    assert [a.split()[0] for a in report.applied] == [r.name for r in render_addons(cluster)]
    core = k8s.CoreV1Api(api)
    service = core.read_namespaced_service("kube-dns", "kube-system")
    assert service.spec.cluster_ip == "100.64.0.10"
    sc = k8s.StorageV1Api(api).read_storage_class("gp3")
    assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    again = apply_from_state_store(api, cluster_name=NAME, state_store=store_url, wait_timeout=0)
    assert again.writes == 0 and again.applied == []

    # `get addons` through the CLI, with a kubeconfig whose context is named after the cluster
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    text = kubeconfig.read_text().replace("sandbox", NAME)
    kubeconfig.write_text(text)
    capsys.readouterr()
    code = main(["--state", store_url, "get", "addons", NAME, "--kubeconfig", str(kubeconfig), "-o", "json"])
    assert code == 0
    states = json.loads(capsys.readouterr().out)
    assert {s["name"]: s["state"] for s in states} == {r.name: "applied" for r in render_addons(cluster)}


def test_get_addons_without_api_access_shows_the_channel_as_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_url = f"memfs://addons-noapi-{id(tmp_path)}"
    cluster, _ = cluster_for("calico")
    channel = write_addons(MemFsStore(store_url), cluster)
    code = main(["--state", store_url, "get", "addons", NAME, "--kubeconfig", str(tmp_path / "missing")])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "STATE"]
    assert [line.split() for line in lines[1:]] == [[a.name, a.version, "unknown"] for a in channel.addons]
    assert "STATE is unknown" in err and "no kubeconfig at" in err


def test_cli_addons_apply_then_get_addons_table(
    kube_api: KubeApiHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_url = f"memfs://addons-cli-{id(tmp_path)}"
    cluster, _ = cluster_for("kubenet")
    channel = write_addons(MemFsStore(store_url), cluster)
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.write_text(kubeconfig.read_text().replace("sandbox", NAME))
    base = ["--state", store_url]
    assert main([*base, "get", "addons", NAME, "--kubeconfig", str(kubeconfig)]) == 0
    pending = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[2] for line in pending] == ["pending"] * len(channel.addons)
    assert main([*base, "addons", "apply", NAME, "--kubeconfig", str(kubeconfig), "--timeout", "0"]) == 0
    err = capsys.readouterr().err
    assert f"Add-ons: {len(channel.addons)} applied, 0 unchanged" in err
    assert main([*base, "addons", "apply", NAME, "--kubeconfig", str(kubeconfig), "--timeout", "0"]) == 0
    assert f"Add-ons: 0 applied, {len(channel.addons)} unchanged" in capsys.readouterr().err
    assert main([*base, "get", "addons", NAME, "--kubeconfig", str(kubeconfig)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [[a.name, a.version, "applied"] for a in channel.addons]


def test_disabling_an_addon_in_the_spec_removes_it_from_the_cluster(
    kube_api: KubeApiHandle, tmp_path: Path
) -> None:
    api = kube_api.admin_client()
    store_url = f"memfs://addons-spec-{id(tmp_path)}"
    store = MemFsStore(store_url)
    enabled, _ = cluster_for("kubenet", cluster_autoscaler=ClusterAutoscalerConfig(enabled=True))
    write_addons(store, enabled)
    apply_from_state_store(api, cluster_name=NAME, state_store=store_url, wait_timeout=0)
    apps = k8s.AppsV1Api(api)
    assert apps.read_namespaced_deployment("cluster-autoscaler", "kube-system").metadata.labels[
        LABEL_NAME
    ] == ("cluster-autoscaler.addons.k8s.io")
    disabled, _ = cluster_for("kubenet", cluster_autoscaler=ClusterAutoscalerConfig(enabled=False))
    write_addons(store, disabled)
    report = apply_from_state_store(api, cluster_name=NAME, state_store=store_url, wait_timeout=0)
    assert report.removed == ["cluster-autoscaler.addons.k8s.io"] and report.applied == []
    assert len(report.pruned) == 6  # SA, ClusterRole, Role, ClusterRoleBinding, RoleBinding, Deployment
    with pytest.raises(k8s.ApiException):
        apps.read_namespaced_deployment("cluster-autoscaler", "kube-system")
    with pytest.raises(k8s.ApiException):
        k8s.RbacAuthorizationV1Api(api).read_cluster_role("cluster-autoscaler")
    assert "cluster-autoscaler.addons.k8s.io" not in read_records(api)
    assert apps.read_namespaced_deployment("coredns", "kube-system") is not None  # the others stay


def test_kinds_outside_the_known_table_are_discovered_and_pruned(kube_api: KubeApiHandle) -> None:
    """A Lease (coordination.k8s.io) is in no add-on template: the applier discovers its resource, and once
    the add-on is dropped finds it again through the kinds its record keeps."""
    api = kube_api.admin_client()
    name = "f.addons.test"
    labels = {LABEL_NAME: name, LABEL_MANAGED_BY: "pykops", "addon.kops.k8s.io/version": "1.0.0"}
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "f-lease", "namespace": "kube-system", "labels": labels},
        "spec": {"holderIdentity": "someone"},
    }
    addon = RenderedAddon(name, "1.0.0", ">=1.0.0", (lease,))
    apply_channel(api, *_channel(addon), wait_timeout=0)
    coordination = k8s.CoordinationV1Api(api)
    assert coordination.read_namespaced_lease("f-lease", "kube-system").spec.holder_identity == "someone"
    assert read_records(api)[name].kinds == ("coordination.k8s.io/v1 Lease",)
    report = apply_channel(api, AddonsChannel(()), {}, wait_timeout=0)
    assert report.pruned == [f"Lease kube-system/f-lease ({name})"] and report.removed == [name]
    with pytest.raises(k8s.ApiException):
        coordination.read_namespaced_lease("f-lease", "kube-system")


def test_ingress_nginx_gets_a_load_balancer_whose_address_reaches_the_ingresses(
    aws_env: Any, kube_api: KubeApiHandle
) -> None:
    """The ingress-nginx add-on applied to the API emulator; the sandbox's simulated cloud controller makes
    the ELB (in the AWS emulator) for its Service and publishes the address into Ingresses of class nginx.
    Removing the add-on prunes its objects, and the load balancer goes with its Service."""
    import boto3

    from pykops.addons.channel import AddonsChannel
    from pykops.api.models import IngressControllerSpec
    from pykops.sandbox.cloudsim import ServiceLoadBalancers, elb_name
    from test_sandbox_cloudsim import REGION, _cluster, _node

    ec2, elb = boto3.client("ec2", region_name=REGION), boto3.client("elb", region_name=REGION)
    name, instances = _cluster(ec2)
    api = kube_api.admin_client()
    # Any: the client's optional-everywhere models would need a None check per attribute in a test.
    core: Any = k8s.CoreV1Api(api)
    net: Any = k8s.NetworkingV1Api(api)
    for zone, instance in instances.items():
        _node(core, f"node-{zone}", zone, instance)
    cluster, _ = cluster_for(ingress_controller=IngressControllerSpec(provider="nginx"))
    (ingress,) = [r for r in render_addons(cluster) if r.name == "ingress-nginx.addons.k8s.io"]
    channel, manifests = _channel(ingress)
    report = apply_channel(api, channel, manifests, wait_timeout=0)
    assert report.applied == ["ingress-nginx.addons.k8s.io 1.15.1"]
    assert net.read_ingress_class("nginx").spec.controller == "k8s.io/ingress-nginx"
    assert k8s.AppsV1Api(api).read_namespaced_deployment("ingress-nginx-controller", "ingress-nginx")

    core.create_namespace({"metadata": {"name": "demo"}})
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    rule = {
        "host": "web.example.com",
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
    }
    for ing, cls in (("web", "nginx"), ("elsewhere", "other")):
        net.create_namespaced_ingress(
            "demo", {"metadata": {"name": ing}, "spec": {"ingressClassName": cls, "rules": [rule]}}
        )
    controller = ServiceLoadBalancers(api, cluster_name=name, region=REGION)
    controller.sync_once()
    svc = core.read_namespaced_service("ingress-nginx-controller", "ingress-nginx")
    lb = elb.describe_load_balancers(LoadBalancerNames=[elb_name(svc.metadata.uid)])[
        "LoadBalancerDescriptions"
    ][0]
    listeners = lb["ListenerDescriptions"]
    assert sorted(item["Listener"]["LoadBalancerPort"] for item in listeners) == [80, 443]
    assert [i.hostname for i in svc.status.load_balancer.ingress] == [lb["DNSName"]]
    # cloudsim publishes Ingress addresses from the Services as listed at the start of a pass: the address
    # it has just written into the Service reaches the Ingresses on the next pass (its loop runs every few s).
    controller.sync_once()
    published = net.read_namespaced_ingress("web", "demo").status.load_balancer.ingress
    assert [i.hostname for i in published] == [lb["DNSName"]]
    other = net.read_namespaced_ingress("elsewhere", "demo").status
    assert other is None or not other.load_balancer or not other.load_balancer.ingress

    assert (
        apply_channel(api, channel, manifests, wait_timeout=0).writes == 0
    )  # applying twice changes nothing
    removed = apply_channel(api, AddonsChannel(()), {}, wait_timeout=0)
    assert removed.removed == ["ingress-nginx.addons.k8s.io"]
    assert "Service ingress-nginx/ingress-nginx-controller (ingress-nginx.addons.k8s.io)" in removed.pruned
    controller.sync_once()
    names = [d["LoadBalancerName"] for d in elb.describe_load_balancers()["LoadBalancerDescriptions"]]
    assert elb_name(svc.metadata.uid) not in names
