"""validate cluster: the pure verdict (kops' checks), the HA summary, repeated validation, and the
conversion of Kubernetes API objects into records."""

from __future__ import annotations

from kubernetes import client as k

from pykops.ops.kubeclient import node_info, pod_info
from pykops.ops.rolling import FakeClock
from pykops.ops.validate import (
    ApiUnreachable,
    CloudGroup,
    CloudInstance,
    GroupSpec,
    NodeInfo,
    PodInfo,
    ValidationResult,
    cloud_only_ha,
    validate,
    validate_until,
)

GROUPS = [
    GroupSpec("control-plane-eu-west-1a", "ControlPlane", "t2.small", 1, 1),
    GroupSpec("control-plane-eu-west-1b", "ControlPlane", "t2.small", 1, 1),
    GroupSpec("control-plane-eu-west-1c", "ControlPlane", "t2.small", 1, 1),
    GroupSpec("nodes", "Node", "t2.small", 1, 1),
]
ZONES = {"control-plane-eu-west-1a": "a", "control-plane-eu-west-1b": "b", "control-plane-eu-west-1c": "c"}


def healthy() -> tuple[list[CloudGroup], list[NodeInfo], list[PodInfo]]:
    cloud, nodes, pods = [], [], []
    for g in GROUPS:
        iid = f"i-{g.name}"
        cloud.append(
            CloudGroup(g.name, f"{g.name}.c", 1, 1, 1, "1", [CloudInstance(iid, g.name, lt_version="1")])
        )
        cp = g.is_control_plane
        zone = "eu-west-1" + ZONES.get(g.name, "a")
        nodes.append(NodeInfo(f"n-{g.name}", "control-plane" if cp else "node", True, iid, g.name, zone))
        if cp:
            for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd-server"):
                pods.append(
                    PodInfo(
                        "kube-system",
                        f"{comp}-n-{g.name}",
                        f"n-{g.name}",
                        "Running",
                        True,
                        "system-cluster-critical",
                        True,
                    )
                )
    pods.append(PodInfo("kube-system", "coredns-1", "n-nodes", "Running", True, "system-cluster-critical"))
    return cloud, nodes, pods


def messages(result: ValidationResult) -> list[str]:
    return [f.message for f in result.failures]


def test_healthy_ha_cluster_validates_and_tolerates_one_loss() -> None:
    result = validate(GROUPS, *healthy(), etcd_members=3)
    assert result.ok, messages(result)
    assert result.ha is not None
    assert result.ha.etcd_up == 3 and result.ha.etcd_quorum == 2
    assert result.ha.control_plane_losses_tolerated == 1 and result.ha.zone_losses_tolerated == 1
    assert result.ha.control_plane_by_zone == {
        "eu-west-1a": (1, 1),
        "eu-west-1b": (1, 1),
        "eu-west-1c": (1, 1),
    }
    assert result.ha.warnings == []


def test_missing_instances_unjoined_machines_and_not_ready_nodes() -> None:
    cloud, nodes, pods = healthy()
    cloud[3].desired = 3
    cloud[3].instances.append(CloudInstance("i-new", "nodes"))
    nodes[3].ready = False
    result = validate(GROUPS, cloud, nodes, pods, etcd_members=3)
    assert messages(result) == [
        'InstanceGroup "nodes" did not have enough nodes 0 vs 3',
        'machine "i-new" has not yet joined cluster',
        'node "n-nodes" of role "node" is not ready',
    ]
    assert {f.group for f in result.failures} == {"nodes"}
    assert result.only_group("control-plane-eu-west-1a") == []


def test_critical_pods_and_control_plane_components() -> None:
    cloud, nodes, pods = healthy()
    pods = [p for p in pods if p.name != "kube-scheduler-n-control-plane-eu-west-1a"]
    pods.append(PodInfo("kube-system", "coredns-2", None, "Pending", False, "system-cluster-critical"))
    pods.append(PodInfo("kube-system", "kube-proxy-x", "n-nodes", "Running", False, "system-node-critical"))
    pods.append(PodInfo("default", "web", "n-nodes", "Pending", False, ""))  # not critical: ignored
    result = validate(GROUPS, cloud, nodes, pods, etcd_members=3)
    assert messages(result) == [
        'control-plane node "n-control-plane-eu-west-1a" is missing kube-scheduler pod',
        'system-cluster-critical pod "kube-system/coredns-2" is pending',
        'system-node-critical pod "kube-system/kube-proxy-x" is not ready',
    ]
    assert [f.group for f in result.failures] == ["control-plane-eu-west-1a", None, "nodes"]


def test_one_control_plane_lost_warns_that_nothing_more_is_tolerated() -> None:
    cloud, nodes, pods = healthy()
    nodes[0].ready = False
    result = validate(GROUPS, cloud, nodes, pods, etcd_members=3)
    assert result.ha is not None and result.ha.etcd_up == 2
    assert result.ha.control_plane_losses_tolerated == 0 and result.ha.zone_losses_tolerated == 0
    assert any("tolerates no control-plane loss" in w for w in result.ha.warnings)
    assert not any(f.kind == "etcd" for f in result.failures)


def test_two_control_planes_lost_is_a_quorum_failure() -> None:
    cloud, nodes, pods = healthy()
    nodes[0].ready = nodes[1].ready = False
    result = validate(GROUPS, cloud, nodes, pods, etcd_members=3)
    assert "etcd has lost quorum: 1 of 3 members up, 2 needed" in messages(result)
    assert result.ha is not None and any("no quorum" in w for w in result.ha.warnings)


def test_cloud_only_ha_when_api_is_down() -> None:
    cloud, _, _ = healthy()
    cloud[0].instances[0].state = "terminated"
    cloud[1].instances[0].lifecycle = "Terminating"
    text = cloud_only_ha(GROUPS, cloud, 3)
    assert text is not None and "only 1 of 3 control-plane instances are running" in text


def test_validate_until_needs_consecutive_successes() -> None:
    clock = FakeClock()
    answers = iter([True, False, True, True])
    ok = ValidationResult([], [], [])

    def check() -> ValidationResult:
        if next(answers):
            return ok
        raise ApiUnreachable("cannot reach the Kubernetes API")

    passed, _, _ = validate_until(check, wait=100, count=2, interval=5, clock=clock, sleep=clock.sleep)
    assert passed and clock.now == 1015.0  # four attempts: the failure reset the count
    flapping = iter([True, False] * 10)
    passed, _, _ = validate_until(
        lambda: ok if next(flapping) else (_ for _ in ()).throw(ApiUnreachable("down")),
        wait=30,
        count=2,
        interval=5,
        clock=clock,
        sleep=clock.sleep,
    )
    assert not passed


def test_node_and_pod_conversion_from_api_objects() -> None:
    node = k.V1Node(
        metadata=k.V1ObjectMeta(
            name="i-abc.eu-west-1.compute.internal",
            labels={
                "node-role.kubernetes.io/control-plane": "",
                "kops.k8s.io/instancegroup": "control-plane-eu-west-1a",
                "topology.kubernetes.io/zone": "eu-west-1a",
            },
            annotations={"pykops.io/rolling-update": "draining"},
        ),
        spec=k.V1NodeSpec(
            provider_id="aws:///eu-west-1a/i-abc",
            unschedulable=True,
            taints=[k.V1Taint(key="t", effect="NoSchedule")],
        ),
        status=k.V1NodeStatus(
            conditions=[k.V1NodeCondition(type="Ready", status="True")],
            node_info=k.V1NodeSystemInfo(
                kubelet_version="v1.34.1",
                architecture="amd64",
                boot_id="",
                container_runtime_version="",
                kernel_version="",
                kube_proxy_version="",
                machine_id="",
                operating_system="linux",
                os_image="",
                system_uuid="",
            ),
        ),
    )
    info = node_info(node)
    assert (info.role, info.ready, info.instance_id, info.group, info.zone) == (
        "control-plane",
        True,
        "i-abc",
        "control-plane-eu-west-1a",
        "eu-west-1a",
    )
    assert info.kubelet_version == "v1.34.1" and info.unschedulable and info.taints == ["t"]
    pod = k.V1Pod(
        metadata=k.V1ObjectMeta(
            name="kube-proxy-x",
            namespace="kube-system",
            annotations={"kubernetes.io/config.mirror": "abc"},
            labels={"k8s-app": "kube-proxy"},
        ),
        spec=k.V1PodSpec(node_name="n1", priority_class_name="system-node-critical", containers=[]),
        status=k.V1PodStatus(phase="Running", conditions=[k.V1PodCondition(type="Ready", status="False")]),
    )
    p = pod_info(pod)
    assert (p.node, p.phase, p.ready, p.mirror, p.daemonset, p.component) == (
        "n1",
        "Running",
        False,
        True,
        False,
        "kube-proxy",
    )


def test_nodes_without_a_running_instance_do_not_count_for_ha() -> None:
    cloud, nodes, pods = healthy()
    cloud[0].instances[0].state = "terminated"  # its Node still reads Ready (heartbeats not yet missed)
    result = validate(GROUPS, cloud, nodes, pods, etcd_members=3)
    assert result.ha is not None and result.ha.etcd_up == 2 and result.ha.control_plane_losses_tolerated == 0
    assert 'InstanceGroup "control-plane-eu-west-1a" did not have enough nodes 0 vs 1' in messages(result)
