"""The tutorial cluster's real add-ons come up under the sandbox's controllers, scheduler and kubelets.

The add-on applier applies the rendered channel to the Kubernetes API emulator and waits for its Deployments
and DaemonSets to be ready, while a ControllerManager runs in the background and simulated kubelets of the
tutorial's nodes (3 control-plane nodes over 3 zones, 1 worker) run the pods bound to them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes.client as k8s
import pytest

from pykops.addons.applier import apply_channel
from pykops.addons.channel import build_channel
from pykops.addons.render import render_addons
from pykops.sandbox.controllers import ControllerManager, sync_kubelet_pods
from pykops.sandbox.kubeapi.testing import KubeApiHandle
from pykops.sandbox.scheduler import ZONE_LABEL, format_time
from test_addons import ZONES, cluster_for

CP = "node-role.kubernetes.io/control-plane"


def register(core: Any, name: str, zone: str, index: int, *, control_plane: bool) -> None:
    labels = {ZONE_LABEL: zone, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    taints = []
    if control_plane:
        labels[CP] = ""
        taints.append({"key": CP, "effect": "NoSchedule"})
    else:
        labels["node-role.kubernetes.io/node"] = ""
    body = {
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": f"100.96.{index}.0/24", "taints": taints},
    }
    core.create_node(k8s.V1Node.from_dict(body))


def heartbeat(core: Any, name: str, index: int) -> None:
    now = format_time(time.time())
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now,
             "lastTransitionTime": now}  # fmt: skip
    status = {"conditions": [ready], "addresses": [{"type": "InternalIP", "address": f"172.20.{index}.10"}]}
    core.patch_node_status(name, {"status": status}, _content_type="application/merge-patch+json")


@pytest.mark.parametrize("networking", ["kubenet", "calico"])
def test_tutorial_addons_become_ready(kube_api: KubeApiHandle, networking: str) -> None:
    cluster, _ = cluster_for(networking)
    addons = render_addons(cluster)
    channel, manifests = build_channel(addons), {a.manifest_path: a.manifest for a in addons}
    api = kube_api.admin_client()
    core: Any = k8s.CoreV1Api(api)
    nodes = {f"cp-{z}": (z, i + 1, True) for i, z in enumerate(ZONES)}
    nodes["node-a"] = (ZONES[0], 4, False)
    for name, (zone, index, control_plane) in nodes.items():
        register(core, name, zone, index, control_plane=control_plane)
        heartbeat(core, name, index)

    stop = threading.Event()
    cm = ControllerManager(api, cluster_name=cluster.metadata.name)
    manager = threading.Thread(target=cm.run, args=(stop, 0.1), daemon=True)

    def kubelets() -> None:
        while not stop.is_set():
            for name, (_, index, _) in nodes.items():
                try:
                    heartbeat(core, name, index)
                    sync_kubelet_pods(
                        api, name, pod_cidr=f"100.96.{index}.0/24", host_ip=f"172.20.{index}.10"
                    )
                except Exception:  # the test's assertions report what did not converge
                    pass
            stop.wait(0.1)

    kubelet_thread = threading.Thread(target=kubelets, daemon=True)
    manager.start()
    kubelet_thread.start()
    try:
        started = time.monotonic()
        report = apply_channel(api, channel, manifests, wait_timeout=45)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        manager.join(timeout=10)
        kubelet_thread.join(timeout=10)
    assert report.not_ready == [], f"not ready after {elapsed:.1f}s: {report.not_ready}"
    pods = core.list_namespaced_pod("kube-system").items
    assert pods and all(p.status.phase == "Running" for p in pods)
    workers = [p for p in pods if p.spec.node_name == "node-a"]
    assert workers  # something landed on the worker (CoreDNS at least)
    unschedulable = [p.metadata.name for p in pods if not p.spec.node_name]
    assert unschedulable == []
    # the real manifests' node selectors and tolerations: the cloud controller on each control-plane node
    # only, CoreDNS (which does not tolerate the control-plane taint) on the worker only
    ccm = sorted(
        p.spec.node_name for p in pods if p.metadata.name.startswith("aws-cloud-controller-manager-")
    )
    assert ccm == sorted(n for n in nodes if n.startswith("cp-"))
    assert {p.spec.node_name for p in pods if p.metadata.name.startswith("coredns-")} == {"node-a"}
