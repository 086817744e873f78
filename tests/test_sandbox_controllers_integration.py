"""The sandbox controllers, scheduler and kubelet pod runner against the Kubernetes API emulator (real etcd).

Each test registers Nodes with the admin client (as the machine simulator's kubelets do), then alternates
``ControllerManager.sync_once()`` with ``sync_kubelet_pods`` for every live node until the cluster converges.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import kubernetes.client as k8s
import pytest

from pykops.sandbox.controllers import ControllerManager, sync_kubelet_pods
from pykops.sandbox.kubeapi.testing import KubeApiHandle
from pykops.sandbox.scheduler import ZONE_LABEL, format_time

ZONES = ("us-test-1a", "us-test-1b", "us-test-1c")


class Cluster:
    """A test cluster: the API, a controller manager, and the nodes whose kubelets are 'alive'."""

    def __init__(self, handle: KubeApiHandle, **cm_args: Any) -> None:
        self.api: k8s.ApiClient = handle.admin_client()
        # Any: the tests read optional model fields they have just checked the server fills in
        self.core: Any = k8s.CoreV1Api(self.api)
        self.apps: Any = k8s.AppsV1Api(self.api)
        self.cm = ControllerManager(self.api, cluster_name="test", **cm_args)
        self.alive: dict[str, int] = {}  # node name -> index (pod CIDR / host IP)

    def add_node(self, name: str, zone: str, *, control_plane: bool = False) -> None:
        index = len(self.alive) + 1
        labels = {ZONE_LABEL: zone, "kubernetes.io/hostname": name}
        taints = []
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
            taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDR": f"100.96.{index}.0/24", "taints": taints},
        }
        self.core.create_node(k8s.V1Node.from_dict(body))
        self.alive[name] = index
        self.heartbeat(name)

    def heartbeat(self, name: str) -> None:
        now = format_time(time.time())
        cond = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        index = self.alive[name]
        patch = {
            "status": {
                "conditions": [cond],
                "addresses": [{"type": "InternalIP", "address": f"172.20.{index}.10"}],
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            }
        }
        self.core.patch_node_status(name, patch, _content_type="application/merge-patch+json")

    def step(self) -> None:
        self.cm.sync_once()
        for name, index in self.alive.items():
            sync_kubelet_pods(self.api, name, pod_cidr=f"100.96.{index}.0/24", host_ip=f"172.20.{index}.10")

    def converge(self, check: Callable[[], bool], *, passes: int = 30, what: str = "") -> int:
        for i in range(passes):
            self.step()
            if check():
                return i + 1
        raise AssertionError(f"did not converge after {passes} passes: {what}")

    def pods(self, selector: str = "", namespace: str = "default") -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector or None).items)


def deployment(name: str, replicas: int, image: str = "nginx:1.27", **strategy: Any) -> Any:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }
    if strategy:
        body["spec"]["strategy"] = strategy
    return k8s.V1Deployment.from_dict(body)


def running_ready(p: Any) -> bool:
    return (
        p.status is not None
        and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )


@pytest.fixture
def cluster(kube_api: KubeApiHandle) -> Cluster:
    c = Cluster(kube_api)
    for i, zone in enumerate(ZONES):
        c.add_node(f"node-{i}", zone)
    return c


def test_deployment_runs_spread_over_zones_and_rolls_out(cluster: Cluster) -> None:
    cluster.apps.create_namespaced_deployment("default", deployment("web", 3))

    def three_running() -> bool:
        pods = cluster.pods("app=web")
        return len(pods) == 3 and all(running_ready(p) for p in pods)

    cluster.converge(three_running, what="3 running web pods")
    pods = cluster.pods("app=web")
    assert sorted(p.spec.node_name for p in pods) == ["node-0", "node-1", "node-2"]  # one per zone
    for p in pods:
        owner = p.metadata.owner_references[0]
        assert owner.kind == "ReplicaSet" and owner.controller is True
        assert p.metadata.name.startswith(owner.name + "-")
        assert p.status.pod_ip.startswith("100.96.") and p.status.host_ip.startswith("172.20.")
        assert p.status.container_statuses[0].state.running.started_at is not None
        assert {c.type for c in p.status.conditions} >= {
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
        }
    ips = {p.metadata.name: p.status.pod_ip for p in pods}
    cluster.step()
    assert {p.metadata.name: p.status.pod_ip for p in cluster.pods("app=web")} == ips  # stable

    d = cluster.apps.read_namespaced_deployment("web", "default")
    assert (
        d.status.ready_replicas == 3 and d.status.available_replicas == 3 and d.status.updated_replicas == 3
    )
    assert d.status.observed_generation == d.metadata.generation
    conds = {c.type: (c.status, c.reason) for c in d.status.conditions}
    assert conds["Available"] == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"] == ("True", "NewReplicaSetAvailable")
    (old_rs,) = cluster.apps.list_namespaced_replica_set("default").items
    assert old_rs.status.ready_replicas == 3

    # change the image: a RollingUpdate with maxSurge 1 / maxUnavailable 0 never drops below 3 ready pods
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}}
    cluster.apps.patch_namespaced_deployment(
        "web", "default", patch, _content_type="application/merge-patch+json"
    )
    cluster.apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}},
        _content_type="application/merge-patch+json",
    )
    min_ready, max_total = 3, 0

    def rolled() -> bool:
        nonlocal min_ready, max_total
        pods = cluster.pods("app=web")
        min_ready = min(min_ready, sum(running_ready(p) for p in pods))
        max_total = max(max_total, len(pods))
        return len(pods) == 3 and all(
            p.spec.containers[0].image == "nginx:1.28" and running_ready(p) for p in pods
        )

    cluster.converge(rolled, what="rolled out to nginx:1.28")
    assert min_ready == 3 and max_total == 4
    rss = {rs.metadata.name: rs for rs in cluster.apps.list_namespaced_replica_set("default").items}
    assert len(rss) == 2 and rss[old_rs.metadata.name].spec.replicas == 0
    (new_rs,) = [rs for name, rs in rss.items() if name != old_rs.metadata.name]
    assert new_rs.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert sorted(p.spec.node_name for p in cluster.pods("app=web")) == ["node-0", "node-1", "node-2"]
    cluster.step()
    d = cluster.apps.read_namespaced_deployment("web", "default")
    assert d.status.updated_replicas == 3 and d.status.replicas == 3
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"

    # converged: further passes write nothing (every controller is idempotent)
    def versions() -> dict[str, str]:
        lists = {
            "pod": cluster.core.list_pod_for_all_namespaces().items,
            "node": cluster.core.list_node().items,
            "rs": cluster.apps.list_replica_set_for_all_namespaces().items,
            "deploy": cluster.apps.list_deployment_for_all_namespaces().items,
        }
        return {
            f"{kind}/{o.metadata.name}": o.metadata.resource_version
            for kind, items in lists.items()
            for o in items
        }

    before = versions()
    cluster.step()
    cluster.step()
    assert versions() == before


def test_recreate_strategy_stops_old_pods_first(cluster: Cluster) -> None:
    cluster.apps.create_namespaced_deployment("default", deployment("db", 2, type="Recreate"))
    cluster.converge(lambda: len([p for p in cluster.pods("app=db") if running_ready(p)]) == 2, what="db")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "postgres:17"}]}}}}
    cluster.apps.patch_namespaced_deployment(
        "db", "default", patch, _content_type="application/merge-patch+json"
    )
    mixed = False

    def recreated() -> bool:
        nonlocal mixed
        images = {p.spec.containers[0].image for p in cluster.pods("app=db")}
        mixed = mixed or len(images) > 1
        pods = cluster.pods("app=db")
        return images == {"postgres:17"} and len(pods) == 2 and all(running_ready(p) for p in pods)

    cluster.converge(recreated, what="recreated")
    assert not mixed  # old and new pods never ran side by side


def test_deleting_a_deployment_garbage_collects_replicasets_and_pods(cluster: Cluster) -> None:
    cluster.apps.create_namespaced_deployment("default", deployment("web", 2))
    cluster.converge(lambda: len([p for p in cluster.pods("app=web") if running_ready(p)]) == 2)
    cluster.apps.delete_namespaced_deployment("web", "default")
    cluster.converge(
        lambda: not cluster.apps.list_namespaced_replica_set("default").items and not cluster.pods("app=web"),
        what="ReplicaSets and pods collected",
    )


def test_daemonset_follows_nodes_and_cordoned_node_gets_nothing_new(kube_api: KubeApiHandle) -> None:
    c = Cluster(kube_api)
    c.add_node("cp-0", ZONES[0], control_plane=True)
    c.add_node("node-0", ZONES[0])
    c.add_node("node-1", ZONES[1])
    body = {
        "metadata": {"name": "proxy", "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "proxy"}},
            "template": {
                "metadata": {"labels": {"k8s-app": "proxy"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [{"name": "proxy", "image": "kube-proxy:v1.32.0"}],
                },
            },
        },
    }
    # (raw response: the emulator answers a new DaemonSet with an empty status the typed model rejects)
    c.apps.create_namespaced_daemon_set(
        "kube-system", k8s.V1DaemonSet.from_dict(body), _preload_content=False
    )

    def on(nodes: set[str]) -> Callable[[], bool]:
        def check() -> bool:
            pods = c.pods("k8s-app=proxy", "kube-system")
            return (
                {p.spec.node_name for p in pods} == nodes
                and len(pods) == len(nodes)
                and all(running_ready(p) for p in pods)
            )

        return check

    c.converge(on({"node-0", "node-1"}), what="not on the control plane (untolerated taint)")
    for p in c.pods("k8s-app=proxy", "kube-system"):
        assert p.status.pod_ip == p.status.host_ip  # hostNetwork
        assert any(t.key == "node.kubernetes.io/unschedulable" for t in p.spec.tolerations)

    # a new node gets its pod; a cordoned node keeps its daemon pod (daemon pods tolerate unschedulable)
    c.add_node("node-2", ZONES[2])
    c.core.patch_node(
        "node-1", {"spec": {"unschedulable": True}}, _content_type="application/merge-patch+json"
    )
    c.converge(on({"node-0", "node-1", "node-2"}), what="new node")
    c.step()  # status is written before the kubelets run: one more pass reports their readiness
    ds = c.apps.read_namespaced_daemon_set("proxy", "kube-system")
    assert (
        ds.status.desired_number_scheduled,
        ds.status.current_number_scheduled,
        ds.status.number_ready,
    ) == (3, 3, 3)

    # tolerate the control-plane taint: the control-plane node gets one too
    tol = {"spec": {"template": {"spec": {"tolerations": [{"operator": "Exists"}]}}}}
    c.apps.patch_namespaced_daemon_set(
        "proxy", "kube-system", tol, _content_type="application/merge-patch+json"
    )

    def rolled() -> bool:
        st = c.apps.read_namespaced_daemon_set("proxy", "kube-system").status
        return on({"cp-0", "node-0", "node-1", "node-2"})() and (
            st.updated_number_scheduled,
            st.number_available,
        ) == (4, 4)

    c.converge(rolled, what="tolerating everything, rolled")  # what `kubectl rollout status ds` waits for
    hashes = {p.metadata.labels["controller-revision-hash"] for p in c.pods("k8s-app=proxy", "kube-system")}
    assert len(hashes) == 1

    # the cordoned node gets nothing new from the scheduler
    c.apps.create_namespaced_deployment("default", deployment("web", 4))
    c.converge(lambda: len([p for p in c.pods("app=web") if running_ready(p)]) == 4, what="web")
    assert "node-1" not in {p.spec.node_name for p in c.pods("app=web")}
    assert "cp-0" not in {p.spec.node_name for p in c.pods("app=web")}
    node1 = c.core.read_node("node-1")
    assert any(t.key == "node.kubernetes.io/unschedulable" for t in node1.spec.taints)


def test_unschedulable_pod_gets_the_schedulers_message(kube_api: KubeApiHandle) -> None:
    c = Cluster(kube_api)
    for i, zone in enumerate(ZONES):
        c.add_node(f"cp-{i}", zone, control_plane=True)
    c.add_node("node-0", ZONES[0])
    c.core.patch_node(
        "node-0", {"spec": {"unschedulable": True}}, _content_type="application/merge-patch+json"
    )
    c.apps.create_namespaced_deployment("default", deployment("web", 1))

    def stuck() -> bool:
        pods = c.pods("app=web")
        return bool(pods) and any(
            cd.type == "PodScheduled" and cd.status == "False" for cd in pods[0].status.conditions or []
        )

    c.converge(stuck, what="PodScheduled=False")
    (p,) = c.pods("app=web")
    (cond,) = [cd for cd in p.status.conditions if cd.type == "PodScheduled"]
    assert cond.reason == "Unschedulable"
    assert cond.message == (
        "0/4 nodes are available: 1 node(s) were unschedulable, "
        "3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
    )
    assert p.spec.node_name is None and p.status.phase == "Pending"


def test_stale_node_goes_unknown_and_its_pods_move(kube_api: KubeApiHandle) -> None:
    c = Cluster(kube_api, node_grace=2.0, eviction_grace=1.0)
    for i, zone in enumerate(ZONES):
        c.add_node(f"node-{i}", zone)
    c.apps.create_namespaced_deployment("default", deployment("web", 3))
    c.converge(lambda: len([p for p in c.pods("app=web") if running_ready(p)]) == 3, what="web")
    victim = next(p.spec.node_name for p in c.pods("app=web"))
    for name in c.alive:
        c.heartbeat(name)
    del c.alive[victim]  # its kubelet stops: no more heartbeats, no more pod syncs
    started = time.monotonic()

    def moved() -> bool:
        for name in c.alive:
            c.heartbeat(name)
        pods = c.pods("app=web")
        return (
            len(pods) == 3
            and victim not in {p.spec.node_name for p in pods}
            and all(running_ready(p) for p in pods)
        )

    for _ in range(60):
        c.step()
        if moved():
            break
        time.sleep(0.1)
    else:
        raise AssertionError("pods did not move off the stale node")
    elapsed = time.monotonic() - started
    # heartbeats have second precision: the node may look up to 1 s staler than it is, never fresher
    assert elapsed >= 2.0 + 1.0 - 2.0  # node_grace + eviction_grace - rounding: nothing moved early
    node = c.core.read_node(victim)
    ready = next(cd for cd in node.status.conditions if cd.type == "Ready")
    assert ready.status == "Unknown" and ready.reason == "NodeStatusUnknown"
    assert {(t.key, t.effect) for t in node.spec.taints} >= {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
    }
    # the kubelet comes back: Ready again, taints gone
    c.alive[victim] = 99
    c.heartbeat(victim)
    c.step()
    node = c.core.read_node(victim)
    assert not [t for t in node.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]


def test_pdb_status_and_eviction_budget(cluster: Cluster) -> None:
    cluster.apps.create_namespaced_deployment("default", deployment("web", 3))
    body = {
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
    }
    policy: Any = k8s.PolicyV1Api(cluster.api)
    policy.create_namespaced_pod_disruption_budget("default", k8s.V1PodDisruptionBudget.from_dict(body))

    def budget() -> tuple[int, int, int, int]:
        st = policy.read_namespaced_pod_disruption_budget("web", "default").status
        return (st.expected_pods, st.desired_healthy, st.current_healthy, st.disruptions_allowed)

    cluster.converge(lambda: budget() == (3, 2, 3, 1), what="PDB status 3/2/3/1")
    (cond,) = policy.read_namespaced_pod_disruption_budget("web", "default").status.conditions
    assert (cond.type, cond.status) == ("DisruptionAllowed", "True")
    # one eviction is allowed; the budget then blocks the second until the replacement is Ready
    first, second = (p.metadata.name for p in cluster.pods("app=web")[:2])
    eviction: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": first, "namespace": "default"},
    }
    cluster.core.create_namespaced_pod_eviction(first, "default", k8s.V1Eviction.from_dict(eviction),
                                                _preload_content=False)  # fmt: skip
    eviction["metadata"]["name"] = second
    with pytest.raises(k8s.ApiException) as err:
        cluster.core.create_namespaced_pod_eviction(second, "default", k8s.V1Eviction.from_dict(eviction))
    assert err.value.status == 429
    cluster.converge(lambda: budget() == (3, 2, 3, 1), what="replacement ready")
    assert first not in {p.metadata.name for p in cluster.pods("app=web")}


def test_foreground_and_orphan_deletion(cluster: Cluster) -> None:
    cluster.apps.create_namespaced_deployment("default", deployment("fg", 2))
    cluster.apps.create_namespaced_deployment("default", deployment("orphan", 2))
    cluster.converge(lambda: len([p for p in cluster.pods() if running_ready(p)]) == 4, what="4 pods")
    fg = k8s.V1DeleteOptions(propagation_policy="Foreground")
    cluster.apps.delete_namespaced_deployment("fg", "default", body=fg)
    orphan = k8s.V1DeleteOptions(propagation_policy="Orphan")
    cluster.apps.delete_namespaced_deployment("orphan", "default", body=orphan)

    def done() -> bool:
        deployments = cluster.apps.list_namespaced_deployment("default").items
        rss = cluster.apps.list_namespaced_replica_set("default").items
        return (
            not deployments
            and [rs.metadata.labels["app"] for rs in rss] == ["orphan"]
            and not cluster.pods("app=fg")
        )

    cluster.converge(done, what="fg gone with its dependents, orphan's ReplicaSet released")
    (rs,) = cluster.apps.list_namespaced_replica_set("default").items
    assert not rs.metadata.owner_references
    assert len([p for p in cluster.pods("app=orphan") if running_ready(p)]) == 2  # still served by the RS
    # the same Deployment created again adopts the orphaned ReplicaSet and its pods: nothing is replaced
    names = {p.metadata.name for p in cluster.pods("app=orphan")}
    cluster.apps.create_namespaced_deployment("default", deployment("orphan", 2))
    cluster.step()
    cluster.step()
    (rs,) = cluster.apps.list_namespaced_replica_set("default").items
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert {p.metadata.name for p in cluster.pods("app=orphan")} == names
    assert cluster.apps.read_namespaced_deployment("orphan", "default").status.available_replicas == 2


def test_run_loop_converges_in_the_background(cluster: Cluster) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=cluster.cm.run, args=(stop, 0.05), daemon=True)
    thread.start()
    try:
        cluster.apps.create_namespaced_deployment("default", deployment("web", 3))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for name, index in cluster.alive.items():
                sync_kubelet_pods(
                    cluster.api, name, pod_cidr=f"100.96.{index}.0/24", host_ip=f"172.20.{index}.10"
                )
            d = cluster.apps.read_namespaced_deployment("web", "default")
            if d.status and d.status.available_replicas == 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the background controller manager did not make 3 available replicas")
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert cluster.cm.passes > 0


def test_run_never_raises_when_the_api_is_down(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = k8s.Configuration(host=f"http://127.0.0.1:{port}")
    config.retries = False
    api = k8s.ApiClient(config)
    cm = ControllerManager(api, cluster_name="down")
    with pytest.raises(Exception):  # noqa: B017  (sync_once reports the failure to its caller)
        cm.sync_once()
    stop = threading.Event()
    thread = threading.Thread(target=cm.run, args=(stop, 0.01), daemon=True)
    with caplog.at_level(logging.WARNING, logger="pykops.sandbox.controllers"):
        thread.start()
        time.sleep(0.3)
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive() and cm.passes >= 3
    warnings = [r for r in caplog.records if "controller pass failed" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not once per pass


def test_statefulset_ordered_pods_and_rolling_update(cluster: Cluster) -> None:
    body = {
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "pg:16"}]},
            },
        },
    }
    cluster.apps.create_namespaced_stateful_set(
        "default", k8s.V1StatefulSet.from_dict(body), _preload_content=False
    )
    seen: list[list[str]] = []

    def ready(image: str) -> Callable[[], bool]:
        def check() -> bool:
            pods = cluster.pods("app=db")
            seen.append(sorted(p.metadata.name for p in pods))
            return len(pods) == 3 and all(
                running_ready(p) and p.spec.containers[0].image == image for p in pods
            )

        return check

    cluster.converge(ready("pg:16"), what="3 ordered pods")
    assert ["db-0"] in seen and ["db-0", "db-1"] in seen  # one at a time, in order
    assert {p.spec.hostname for p in cluster.pods("app=db")} == {"db-0", "db-1", "db-2"}
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "pg:17"}]}}}}
    cluster.apps.patch_namespaced_stateful_set(
        "db", "default", patch, _content_type="application/merge-patch+json"
    )
    cluster.converge(ready("pg:17"), what="rolled to pg:17")
    cluster.step()
    st = cluster.apps.read_namespaced_stateful_set("db", "default").status
    assert (st.replicas, st.ready_replicas, st.updated_replicas) == (3, 3, 3)
    assert st.current_revision == st.update_revision


def test_job_runs_to_completion(cluster: Cluster) -> None:
    body = {
        "metadata": {"name": "migrate"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]}
            },
        },
    }
    batch: Any = k8s.BatchV1Api(cluster.api)
    batch.create_namespaced_job("default", k8s.V1Job.from_dict(body), _preload_content=False)

    def complete() -> bool:
        st = batch.read_namespaced_job("migrate", "default").status
        return bool(
            st
            and st.succeeded == 3
            and any(c.type == "Complete" and c.status == "True" for c in st.conditions or [])
        )

    cluster.converge(complete, what="Job complete")
    pods = cluster.pods("job-name=migrate")
    assert len(pods) == 3 and all(p.status.phase == "Succeeded" for p in pods)
    st = batch.read_namespaced_job("migrate", "default").status
    assert st.active == 0 and st.completion_time is not None and st.start_time is not None


def test_deleted_node_loses_its_pods_and_they_are_replaced(kube_api: KubeApiHandle) -> None:
    c = Cluster(kube_api, orphan_pod_age=0.0)
    for i, zone in enumerate(ZONES):
        c.add_node(f"node-{i}", zone)
    c.apps.create_namespaced_deployment("default", deployment("web", 3))
    c.converge(lambda: len([p for p in c.pods("app=web") if running_ready(p)]) == 3, what="web")
    c.core.delete_node("node-1")  # what the machine simulator does when its instance is terminated
    del c.alive["node-1"]

    def replaced() -> bool:
        pods = c.pods("app=web")
        return len(pods) == 3 and all(running_ready(p) and p.spec.node_name != "node-1" for p in pods)

    c.converge(replaced, what="pod of the deleted node replaced")
