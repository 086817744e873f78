"""kubectl 1.32 (the system one) against the emulator: get, cordon, drain through the eviction API, apply."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from pykops.sandbox.kubeapi.testing import KubeApiHandle

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:{tag}
        ports:
        - containerPort: 80
"""


def _deployment(replicas: int, tag: str) -> str:
    return DEPLOYMENT.replace("{replicas}", str(replicas)).replace("{tag}", tag)


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [KUBECTL, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.kubeconfig.parent)},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc


def _node(name: str, ip: str, role: str) -> dict[str, Any]:
    info = {
        "architecture": "amd64",
        "bootID": "boot",
        "containerRuntimeVersion": "containerd://1.7.24",
        "kernelVersion": "6.1.0-28-cloud-amd64",
        "kubeProxyVersion": "",
        "kubeletVersion": "v1.34.2",
        "machineID": "m",
        "operatingSystem": "linux",
        "osImage": "Debian GNU/Linux 12 (bookworm)",
        "systemUUID": "s",
    }
    return {
        "metadata": {"name": name, "labels": {f"node-role.kubernetes.io/{role}": ""}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": ip}],
            "nodeInfo": info,
        },
    }


def _running_pod(
    core: k8s.CoreV1Api, ns: str, name: str, node: str, owner: dict[str, Any], **meta: Any
) -> None:
    body = {
        "metadata": {"name": name, "ownerReferences": [{**owner, "controller": True}], **meta},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }
    core.create_namespaced_pod(ns, body)
    status = {
        "phase": "Running",
        "podIP": "100.96.1.5",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "c",
                "ready": True,
                "restartCount": 0,
                "image": "pause",
                "imageID": "",
                "state": {"running": {}},
            }
        ],
    }
    core.patch_namespaced_pod_status(name, ns, {"status": status})


def test_kubectl_get_cordon_drain_apply(kube_api: KubeApiHandle, tmp_path: Path) -> None:
    kubectl = Kubectl(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    assert (tmp_path / "kubeconfig").stat().st_mode & 0o777 == 0o600
    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    core.create_node(_node("i-control", "172.20.32.10", "control-plane"))
    core.create_node(_node("i-node", "172.20.64.10", "node"))
    ds = k8s.AppsV1Api(api).create_namespaced_daemon_set(
        "kube-system",
        {
            "metadata": {"name": "kube-proxy"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                    "spec": {"containers": [{"name": "p", "image": "kube-proxy"}]},
                },
            },
        },
    )
    ds_owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": ds.metadata.uid}
    rs_owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-5d4f", "uid": "rs-uid"}
    _running_pod(core, "kube-system", "kube-proxy-x", "i-node", ds_owner)
    _running_pod(core, "default", "app-1", "i-node", rs_owner, labels={"app": "app"})
    _running_pod(core, "default", "app-2", "i-control", rs_owner, labels={"app": "app"})

    nodes = kubectl("get", "nodes").stdout.splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    rows = {line.split()[0]: line.split() for line in nodes[1:]}
    assert rows["i-control"][1:3] == ["Ready", "control-plane"] and rows["i-control"][4] == "v1.34.2"
    assert rows["i-node"][1:3] == ["Ready", "node"]

    pods = kubectl("get", "pods", "-A", "-o", "wide").stdout.splitlines()
    assert pods[0].split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "NOMINATED NODE" in pods[0]
    by_name = {line.split()[1]: line.split() for line in pods[1:]}
    assert by_name["app-1"][2:4] == ["1/1", "Running"] and by_name["app-1"][6:8] == ["100.96.1.5", "i-node"]

    assert "is simulated; the sandbox runs no containers" in kubectl("logs", "app-2").stdout

    assert "node/i-node cordoned" in kubectl("cordon", "i-node").stdout
    assert "Ready,SchedulingDisabled" in kubectl("get", "node", "i-node").stdout
    assert core.read_node("i-node").spec.unschedulable is True

    drain = kubectl("drain", "i-node", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s")
    assert "evicted" in drain.stdout and "node/i-node drained" in drain.stdout
    assert "ignoring DaemonSet-managed Pods: kube-system/kube-proxy-x" in drain.stderr
    remaining = {(p.metadata.namespace, p.metadata.name) for p in core.list_pod_for_all_namespaces().items}
    assert remaining == {("kube-system", "kube-proxy-x"), ("default", "app-2")}

    kubectl("uncordon", "i-node")
    assert not core.read_node("i-node").spec.unschedulable

    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(_deployment(2, "1.27"))
    assert "deployment.apps/web created" in kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(_deployment(3, "1.28"))
    assert "deployment.apps/web configured" in kubectl("apply", "-f", str(manifest)).stdout
    dep = k8s.AppsV1Api(api).read_namespaced_deployment("web", "default")
    assert dep.spec.replicas == 3 and dep.spec.template.spec.containers[0].image == "nginx:1.28"
    assert dep.metadata.generation == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep.metadata.annotations
    assert "deployment.apps/web unchanged" in kubectl("apply", "-f", str(manifest)).stdout

    deploys = kubectl("get", "deploy").stdout.splitlines()
    assert deploys[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deploys[1].split()[:2] == ["web", "0/3"]
    as_json = json.loads(kubectl("get", "deploy", "web", "-o", "json").stdout)
    assert as_json["spec"]["replicas"] == 3

    assert 'deployment.apps "web" deleted' in kubectl("delete", "-f", str(manifest)).stdout
    assert kubectl("get", "deploy").stdout == ""
    missing = kubectl("get", "deploy", "web", check=False)
    assert missing.returncode == 1 and 'deployments.apps "web" not found' in missing.stderr


def test_kubectl_drain_waits_for_the_disruption_budget(kube_api: KubeApiHandle, tmp_path: Path) -> None:
    kubectl = Kubectl(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    core.create_node(_node("i-node", "172.20.64.10", "node"))
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "db", "uid": "rs-uid"}
    _running_pod(core, "default", "db-1", "i-node", owner, labels={"app": "db"})
    _running_pod(core, "default", "db-2", "i-node", owner, labels={"app": "db"})
    k8s.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        "default",
        {"metadata": {"name": "db"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}},
    )
    drain = kubectl("drain", "i-node", "--timeout=3s", check=False)
    assert drain.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in drain.stderr
    left = [p.metadata.name for p in core.list_namespaced_pod("default").items]
    assert len(left) == 1  # one eviction spent the only allowed disruption; drain evicts both at once


def test_kubectl_forbidden_for_a_user_without_roles(kube_api: KubeApiHandle, tmp_path: Path) -> None:
    kubectl = Kubectl(kube_api.write_kubeconfig(tmp_path / "kubeconfig", user="jane", groups=()))
    denied = kubectl("get", "nodes", check=False)
    assert denied.returncode == 1
    assert (
        'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
        in (denied.stderr)
    )


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "ippools.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "IPPool", "plural": "ippools", "singular": "ippool", "shortNames": ["ipp"]},
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
                "subresources": {"status": {}},
            }
        ],
    },
}


def test_custom_resources_are_served_from_their_definitions(kube_api: KubeApiHandle, tmp_path: Path) -> None:
    api = kube_api.admin_client()
    ext = k8s.ApiextensionsV1Api(api)
    created = ext.create_custom_resource_definition(CRD)
    assert {c.type: c.status for c in created.status.conditions} == {
        "NamesAccepted": "True",
        "Established": "True",
    }
    custom = k8s.CustomObjectsApi(api)
    pool = {
        "apiVersion": "example.com/v1",
        "kind": "IPPool",
        "metadata": {"name": "pool-a"},
        "spec": {"cidr": "10.0.0.0/16"},
    }
    custom.create_cluster_custom_object("example.com", "v1", "ippools", pool)
    got = custom.get_cluster_custom_object("example.com", "v1", "ippools", "pool-a")
    assert got["spec"] == {"cidr": "10.0.0.0/16"} and got["metadata"]["uid"]
    kubectl = Kubectl(kube_api.write_kubeconfig(tmp_path / "kubeconfig"))
    listed = kubectl("get", "ipp").stdout.splitlines()
    assert listed[0].split() == ["NAME", "AGE"] and listed[1].split()[0] == "pool-a"
    manifest = tmp_path / "pool.yaml"
    manifest.write_text(
        "apiVersion: example.com/v1\nkind: IPPool\nmetadata:\n  name: pool-b\nspec:\n  cidr: 10.1.0.0/16\n"
    )
    assert "ippool.example.com/pool-b created" in kubectl("apply", "-f", str(manifest)).stdout
    ext.delete_custom_resource_definition("ippools.example.com")
    missing = kubectl("get", "ippools.example.com", check=False)
    assert missing.returncode == 1
    with pytest.raises(ApiException) as gone:
        custom.get_cluster_custom_object("example.com", "v1", "ippools", "pool-a")
    assert gone.value.status == 404
