"""The sandbox controllers' pure decision functions: rollouts, ReplicaSets, DaemonSets, PDBs, GC, nodes."""

from __future__ import annotations

from typing import Any

import pytest

from pykops.sandbox.controllers import (
    common,
    daemonset,
    deployment,
    disruption,
    gc,
    kubelet,
    nodelifecycle,
    statefulset,
)
from pykops.sandbox.controllers.deployment import RsView, plan_recreate, plan_rolling
from pykops.sandbox.controllers.job import plan_job
from pykops.sandbox.controllers.replicaset import deletion_rank, plan_replicaset
from pykops.sandbox.scheduler import format_time

NOW = 1_800_000_000.0
RU = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def pod(
    name: str,
    *,
    owner: str = "",
    node: str = "",
    ready: bool = True,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels or {},
                     "creationTimestamp": created},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    }  # fmt: skip
    if node:
        obj["spec"]["nodeName"] = node
    if owner:
        obj["metadata"]["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    return obj


def node(name: str, *, taints: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None,
         ready: str = "True", heartbeat: float = NOW) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or []},
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": format_time(heartbeat)}]
        },
    }


# --- helpers ---------------------------------------------------------------------------------------------


def test_int_or_percent_rounding() -> None:
    assert common.int_or_percent("25%", 3, round_up=True, default=0) == 1
    assert common.int_or_percent("25%", 3, round_up=False, default=0) == 0
    assert common.int_or_percent(None, 10, round_up=False, default="25%") == 2
    assert common.int_or_percent(2, 10, round_up=True, default=0) == 2
    assert common.int_or_percent("3", 10, round_up=True, default=0) == 3


def test_template_hash_is_stable_and_upstream_shaped() -> None:
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
    h = common.template_hash(t)
    assert h == common.template_hash({"spec": t["spec"], "metadata": t["metadata"]})  # key order irrelevant
    assert h != common.template_hash({**t, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}})
    assert h != common.template_hash(t, collision_count=1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert common.fnv32a(b"") == 0x811C9DC5 and common.fnv32a(b"a") == 0xE40C292C  # FNV-1a test vectors


# --- Deployment rollout math -----------------------------------------------------------------------------


def test_rolling_update_surges_then_scales_old_down_keeping_availability() -> None:
    old = RsView("web-old", replicas=3, active=3, available=3, created="1")
    step1 = plan_rolling(3, RU, None, [old])
    assert (step1.new_replicas, step1.old_replicas) == (1, {})  # surge one, nothing to remove yet
    new = RsView("web-new", replicas=1, active=1, available=0, created="2")
    assert plan_rolling(3, RU, new, [old]).old_replicas == {}  # new pod not available: keep all old
    new.available = 1
    step3 = plan_rolling(3, RU, new, [old])
    assert (step3.new_replicas, step3.old_replicas) == (1, {"web-old": 2})
    old.replicas = old.active = old.available = 2
    assert plan_rolling(3, RU, new, [old]).new_replicas == 2


def test_rolling_update_default_percentages_and_unhealthy_old_first() -> None:
    # 10 replicas, defaults 25%: surge 3 (rounded up), unavailable 2 (rounded down)
    assert deployment.surge_and_unavailable({}, 10) == (3, 2)
    assert deployment.surge_and_unavailable({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}, 4) == (
        0,
        1,
    )
    old = RsView("old", replicas=10, active=10, available=7, created="1")
    plan = plan_rolling(10, {}, None, [old])
    assert plan.new_replicas == 3
    # 13 total, minAvailable 8, new unavailable 3: may scale down 13-8-3 = 2, the 3 unhealthy first
    assert plan.old_replicas == {"old": 8}


def test_rolling_update_scales_only_when_no_old_sets() -> None:
    new = RsView("web", replicas=3, active=3, available=3)
    assert plan_rolling(5, RU, new, []).new_replicas == 5
    assert plan_rolling(1, RU, new, []).new_replicas == 1


def test_recreate_waits_for_old_pods_to_be_gone() -> None:
    old = RsView("old", replicas=2, active=2, available=2)
    assert plan_recreate(2, None, [old]).old_replicas == {"old": 0}
    assert plan_recreate(2, None, [old]).new_replicas == 0
    old.replicas = 0
    assert plan_recreate(2, RsView("new", 0), [old]).new_replicas == 0  # pods still terminating
    old.active = 0
    assert plan_recreate(2, RsView("new", 0), [old]).new_replicas == 2


def test_deployment_status_conditions() -> None:
    d = {"metadata": {"generation": 4}, "spec": {"replicas": 3}}
    new = RsView("web-1", replicas=3, active=3, ready=3, available=3)
    st = deployment.deployment_status(d, new, [new], "2026-01-01T00:00:00Z", False)
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"], st["observedGeneration"]) == (
        3,
        3,
        3,
        4,
    )
    conds = {c["type"]: c["reason"] for c in st["conditions"]}
    assert conds == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
    old = RsView("web-0", replicas=1, active=1, ready=1, available=1)
    half = RsView("web-1", replicas=1, active=1, ready=0, available=0)
    st = deployment.deployment_status(d, half, [old, half], "t", False)
    assert {c["type"]: c["reason"] for c in st["conditions"]} == {
        "Available": "MinimumReplicasUnavailable",
        "Progressing": "ReplicaSetUpdated",
    }
    assert st["unavailableReplicas"] == 2


# --- ReplicaSet ------------------------------------------------------------------------------------------


def test_replicaset_creates_missing_and_deletes_the_least_valuable_pods() -> None:
    rs = {"metadata": {"name": "rs", "namespace": "default", "uid": "rs", "generation": 2},
          "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}}}  # fmt: skip
    pods = [
        pod("running", owner="rs", node="n1", created="2026-01-01T00:00:01Z"),
        pod("notready", owner="rs", node="n1", ready=False),
        pod("unbound", owner="rs", phase="Pending", ready=False),
        pod("newer", owner="rs", node="n2", created="2026-01-01T00:00:05Z"),
        pod("other", owner="someone-else", node="n1"),
        pod("done", owner="rs", node="n1", phase="Succeeded"),
    ]
    plan = plan_replicaset(rs, pods, NOW)
    assert plan.create == 0
    assert [p["metadata"]["name"] for p in plan.delete] == ["unbound", "notready"]
    assert (
        plan.status["replicas"] == 2
        and plan.status["readyReplicas"] == 2
        and plan.status["observedGeneration"] == 2
    )
    rs["spec"]["replicas"] = 1
    assert [p["metadata"]["name"] for p in plan_replicaset(rs, pods, NOW).delete][
        -1
    ] == "newer"  # newer before older
    rs["spec"]["replicas"] = 6
    assert plan_replicaset(rs, pods, NOW).create == 2


def test_deletion_rank_orders_like_upstream() -> None:
    a = pod("a", node="n", created="2026-01-01T00:00:01Z")
    b = pod("b", node="n", created="2026-01-01T00:00:09Z")
    assert deletion_rank(b) < deletion_rank(a)
    assert deletion_rank(pod("p", phase="Pending", ready=False)) < deletion_rank(
        pod("r", node="n", ready=False)
    )


def test_pod_from_template_owner_and_labels() -> None:
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "ns", "uid": "u"},
    }
    tmpl = {"metadata": {"labels": {"app": "x"}, "annotations": {"a": "b"}}, "spec": {"containers": []}}
    p = common.pod_from_template(owner, tmpl, generate_name="rs-", extra_labels={"h": "1"})
    assert p["metadata"]["generateName"] == "rs-" and p["metadata"]["namespace"] == "ns"
    assert p["metadata"]["labels"] == {"app": "x", "h": "1"} and p["metadata"]["annotations"] == {"a": "b"}
    ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": True}
    assert p["metadata"]["ownerReferences"][0] == {**ref, "blockOwnerDeletion": True}


# --- DaemonSet -------------------------------------------------------------------------------------------

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def ds_obj(**template_spec: Any) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "ds", "namespace": "default", "uid": "ds", "generation": 1},
        "spec": {"template": {"metadata": {"labels": {"app": "ds"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}], **template_spec}}},
    }  # fmt: skip


def test_daemon_pods_get_the_controllers_tolerations() -> None:
    spec = daemonset.daemon_pod_spec(
        {"hostNetwork": True, "tolerations": [{"key": "x", "operator": "Exists"}]}
    )
    keys = {(t["key"], t["effect"]) for t in spec["tolerations"] if "key" in t and "effect" in t}
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in keys
    assert "network-unavailable" not in str(daemonset.daemon_pod_spec({})["tolerations"])


def test_daemonset_eligibility_selectors_and_taints() -> None:
    nodes = [
        node("cp", taints=[CP_TAINT]),
        node("w1", labels={"pool": "a"}),
        node("w2", labels={"pool": "b"}),
        node("evicting", taints=[{"key": "gone", "effect": "NoExecute"}]),
        node("cordoned", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    ]
    plan = daemonset.plan_daemonset(ds_obj(), nodes, [], NOW)
    assert plan.create_on == ["cordoned", "w1", "w2"]  # not the control plane; cordoned is tolerated
    plan = daemonset.plan_daemonset(ds_obj(nodeSelector={"pool": "a"}), nodes, [], NOW)
    assert plan.create_on == ["w1"] and plan.status["desiredNumberScheduled"] == 1
    plan = daemonset.plan_daemonset(ds_obj(tolerations=[{"operator": "Exists"}]), nodes, [], NOW)
    assert plan.create_on == ["cordoned", "cp", "evicting", "w1", "w2"]


def test_daemonset_keeps_pod_on_noschedule_but_not_noexecute_and_dedups() -> None:
    ds = ds_obj()
    h = common.template_hash(ds["spec"]["template"])
    lbl = {daemonset.REVISION_HASH: h}
    nodes = [
        node("cp", taints=[CP_TAINT]),
        node("bad", taints=[{"key": "gone", "effect": "NoExecute"}]),
        node("w"),
    ]
    pods = [
        pod("on-cp", owner="ds", node="cp", labels=lbl),
        pod("on-bad", owner="ds", node="bad", labels=lbl),
        pod("w-old", owner="ds", node="w", labels=lbl, created="2026-01-01T00:00:01Z"),
        pod("w-dup", owner="ds", node="w", labels=lbl, created="2026-01-01T00:00:02Z"),
        pod("nowhere", owner="ds", node="vanished", labels=lbl),
    ]
    plan = daemonset.plan_daemonset(ds, nodes, pods, NOW)
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["nowhere", "on-bad", "w-dup"]
    assert plan.create_on == []
    assert plan.status["desiredNumberScheduled"] == 1 and plan.status["numberMisscheduled"] == 1


def test_daemonset_rolling_update_respects_max_unavailable() -> None:
    ds = ds_obj()
    nodes = [node(f"n{i}") for i in range(3)]
    old = {daemonset.REVISION_HASH: "old"}
    pods = [pod(f"p{i}", owner="ds", node=f"n{i}", labels=old) for i in range(3)]
    plan = daemonset.plan_daemonset(ds, nodes, pods, NOW)
    assert len(plan.delete) == 1 and plan.status["updatedNumberScheduled"] == 0  # maxUnavailable 1
    pods[0]["status"]["conditions"][0]["status"] = "False"  # one already unavailable: it goes, nothing more
    plan = daemonset.plan_daemonset(ds, nodes, pods, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["p0"]
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert daemonset.plan_daemonset(ds, nodes, pods, NOW).delete == []


# --- PodDisruptionBudget ---------------------------------------------------------------------------------


def pdb(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "namespace": "default", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"minAvailable": 2}, (3, 2, 3, 1)),
        ({"minAvailable": "50%"}, (4, 2, 3, 1)),  # percent: expected from the controller's scale (4)
        ({"maxUnavailable": 1}, (4, 3, 3, 0)),
        ({"maxUnavailable": "50%"}, (4, 2, 3, 1)),
    ],
)
def test_pdb_status_math(spec: dict[str, Any], expected: tuple[int, int, int, int]) -> None:
    lbl = {"app": "web"}
    pods = [pod(f"w{i}", owner="rs", labels=lbl, ready=i < 3) for i in range(3)]
    pods.append(pod("other", labels={"app": "db"}))
    scales = {("ReplicaSet", "rs"): 4}
    st = disruption.plan_pdb_status(pdb(**spec), pods, scales, "t")
    assert (
        st["expectedPods"],
        st["desiredHealthy"],
        st["currentHealthy"],
        st["disruptionsAllowed"],
    ) == expected
    cond = st["conditions"][0]
    assert cond["type"] == "DisruptionAllowed" and cond["status"] == ("True" if expected[3] else "False")


def test_pdb_scales_follow_deployments() -> None:
    d = {"metadata": {"uid": "d"}, "spec": {"replicas": 5}}
    refs = [{"kind": "Deployment", "uid": "d", "controller": True}]
    rs = {"metadata": {"uid": "rs", "ownerReferences": refs}, "spec": {"replicas": 2}}
    assert disruption.controller_scales([d], [rs], []) == {("ReplicaSet", "rs"): 5}


# --- garbage collection ----------------------------------------------------------------------------------


def test_gc_collects_only_when_every_owner_is_gone() -> None:
    owners = gc.index_owners([
        {"kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default", "uid": "rs"}},
        {"kind": "Node", "metadata": {"name": "n1", "uid": "n1"}},
    ])  # fmt: skip
    known = {"ReplicaSet", "Node", "Deployment"}
    alive = pod("a", owner="rs")
    stale_uid = pod("b", owner="rs")
    stale_uid["metadata"]["ownerReferences"][0]["uid"] = "rs-previous"
    mirror = pod("m")
    mirror["metadata"]["ownerReferences"] = [{"kind": "Node", "name": "n1", "uid": "n1", "controller": True}]
    unknown_kind = pod("c")
    unknown_kind["metadata"]["ownerReferences"] = [{"kind": "CronJob", "name": "x", "uid": "x"}]
    no_owner = pod("d")
    two = pod("e", owner="rs")
    two["metadata"]["ownerReferences"].append({"kind": "Deployment", "name": "gone", "uid": "gone"})
    dead = [
        p["metadata"]["name"]
        for p in gc.collect([alive, stale_uid, mirror, unknown_kind, no_owner, two], owners, known)
    ]
    assert dead == ["b"]
    old = pod("x", node="n2", created=format_time(NOW - 60))
    assert gc.on_missing_node(old, {"n1"}, NOW) and not gc.on_missing_node(pod("y"), {"n1"}, NOW)
    assert not gc.on_missing_node(old, {"n1", "n2"}, NOW)
    young = pod("z", node="n2", created=format_time(NOW - 2))  # its node may be registering right now
    assert not gc.on_missing_node(young, {"n1"}, NOW)


def test_gc_foreground_and_orphan_finalizers() -> None:
    deleting = {"name": "d", "uid": "d", "deletionTimestamp": "t", "finalizers": ["foregroundDeletion"]}
    fg: dict[str, Any] = {"kind": "Deployment", "metadata": deleting}
    rs = {"kind": "ReplicaSet", "metadata": {"name": "rs", "uid": "rs", "ownerReferences": [{"uid": "d"}]}}
    (plan,) = gc.plan_finalizers([fg], [rs])
    assert plan.delete == [rs] and plan.remove_finalizer is None
    (plan,) = gc.plan_finalizers([fg], [])
    assert plan.remove_finalizer == "foregroundDeletion"
    orphan = {**fg, "metadata": {**fg["metadata"], "finalizers": ["orphan"]}}
    (plan,) = gc.plan_finalizers([orphan], [rs])
    assert plan.orphan == [rs] and plan.delete == [] and plan.remove_finalizer == "orphan"
    assert gc.plan_finalizers([{**fg, "metadata": {"name": "d", "uid": "d"}}], [rs]) == []


# --- node lifecycle --------------------------------------------------------------------------------------


def test_stale_heartbeat_goes_unknown_and_taints_unreachable() -> None:
    n = node("n", heartbeat=NOW - 30)
    plan = nodelifecycle.plan_node(n, [], NOW, node_grace=20, eviction_grace=10)
    assert plan.ready_unknown
    assert {(t["key"], t["effect"]) for t in plan.taints or []} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
    fresh = nodelifecycle.plan_node(node("n", heartbeat=NOW - 5), [], NOW, node_grace=20, eviction_grace=10)
    assert not fresh.ready_unknown and fresh.taints is None
    not_ready = nodelifecycle.plan_node(node("n", ready="False"), [], NOW, node_grace=20, eviction_grace=10)
    assert {t["key"] for t in not_ready.taints or []} == {"node.kubernetes.io/not-ready"}
    cordoned = node("n")
    cordoned["spec"]["unschedulable"] = True
    plan = nodelifecycle.plan_node(cordoned, [], NOW, node_grace=20, eviction_grace=10)
    assert [t["key"] for t in plan.taints or []] == ["node.kubernetes.io/unschedulable"]


def test_ready_again_removes_our_taints_but_keeps_others() -> None:
    n = node(
        "n",
        taints=[CP_TAINT, {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "x"}],
    )
    plan = nodelifecycle.plan_node(n, [], NOW, node_grace=20, eviction_grace=10)
    assert plan.taints == [CP_TAINT]


def test_eviction_waits_for_grace_and_honours_tolerations() -> None:
    added = format_time(NOW - 12)
    n = node("n", ready="Unknown", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                                            "timeAdded": added}])  # fmt: skip
    plain = pod("plain", node="n")
    forever = pod(
        "forever", node="n", tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]
    )
    short = pod(
        "short", node="n", tolerations=[{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]
    )
    long = pod("long", node="n", tolerations=[{"operator": "Exists", "tolerationSeconds": 300}])
    mirror = pod("mirror", node="n")
    mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    elsewhere = pod("elsewhere", node="m")
    pods = [plain, forever, short, long, mirror, elsewhere]
    plan = nodelifecycle.plan_node(n, pods, NOW, node_grace=20, eviction_grace=10)
    assert [p["metadata"]["name"] for p in plan.evict] == ["plain", "short"]
    assert {p["metadata"]["name"] for p in plan.mark_not_ready} == {"forever", "long"}
    early = nodelifecycle.plan_node(n, pods, NOW - 8, node_grace=20, eviction_grace=10)
    assert [p["metadata"]["name"] for p in early.evict] == []


# --- kubelet ---------------------------------------------------------------------------------------------


def test_kubelet_starts_pending_pods_with_stable_distinct_ips() -> None:
    pods = [pod(f"p{i}", node="n", phase="Pending", ready=False) for i in range(20)]
    pods.append(pod("host", node="n", phase="Pending", ready=False, hostNetwork=True))
    pods.append(pod("elsewhere", node="m", phase="Pending"))
    terminating = pod("bye", node="n")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pods.append(terminating)
    finish, updates = kubelet.plan_kubelet(
        pods, "n", pod_cidr="100.96.1.0/24", host_ip="172.20.1.10", now_str="T"
    )
    assert [p["metadata"]["name"] for p in finish] == ["bye"]
    by_name = {p["metadata"]["name"]: st for p, st in updates}
    assert set(by_name) == {f"p{i}" for i in range(20)} | {"host"}
    ips = [by_name[f"p{i}"]["podIP"] for i in range(20)]
    assert len(set(ips)) == 20 and all(
        ip.startswith("100.96.1.") and ip not in ("100.96.1.0", "100.96.1.1") for ip in ips
    )
    assert by_name["host"]["podIP"] == "172.20.1.10"
    st = by_name["p0"]
    assert st["phase"] == "Running" and st["hostIP"] == "172.20.1.10" and st["startTime"] == "T"
    assert {c["type"]: c["status"] for c in st["conditions"]}.items() >= {
        "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"
    }.items()  # fmt: skip
    (cs,) = st["containerStatuses"]
    assert (
        cs["ready"]
        and cs["state"]["running"]["startedAt"] == "T"
        and cs["containerID"].startswith("containerd://")
    )
    # running and ready pods are left alone; a Running pod marked not ready is made ready again
    pods = [pod("ok", node="n"), pod("notready", node="n", ready=False)]
    _, updates = kubelet.plan_kubelet(pods, "n", pod_cidr="100.96.1.0/24", host_ip="h", now_str="T")
    assert [p["metadata"]["name"] for p, _ in updates] == ["notready"]


def test_kubelet_starts_a_pod_only_once_its_claims_volumes_are_attached_here() -> None:
    claim_volume = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    waiting = pod("writer", node="n", phase="Pending", ready=False, volumes=claim_volume)
    claim = {"metadata": {"name": "data", "namespace": "default"}, "spec": {"volumeName": "pv-1"}}
    unbound = {"metadata": {"name": "data", "namespace": "default"}, "spec": {}}
    ebs = {
        "metadata": {"name": "pv-1"},
        "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}},
    }
    local = {"metadata": {"name": "pv-1"}, "spec": {"hostPath": {"path": "/data"}}}

    def attachment(node_name: str, attached: bool) -> dict[str, Any]:
        return {
            "spec": {"nodeName": node_name, "source": {"persistentVolumeName": "pv-1"}},
            "status": {"attached": attached},
        }

    def phase(claims: list[Any], volumes: list[Any], attachments: list[Any]) -> str:
        mountable = kubelet.volumes_ready(claims, volumes, attachments, "n")
        _, updates = kubelet.plan_kubelet(
            [waiting], "n", pod_cidr=None, host_ip="h", now_str="T", mountable=mountable
        )
        (new,) = [st for _, st in updates]
        return str(new["phase"])

    assert phase([unbound], [ebs], []) == "Pending"  # the claim is not bound yet
    assert phase([claim], [ebs], [attachment("m", True)]) == "Pending"  # attached to another node
    assert phase([claim], [ebs], [attachment("n", False)]) == "Pending"  # attaching
    assert phase([claim], [ebs], [attachment("n", True)]) == "Running"
    assert phase([claim], [local], []) == "Running"  # nothing to attach
    mountable = kubelet.volumes_ready([unbound], [ebs], [], "n")
    _, updates = kubelet.plan_kubelet(
        [waiting], "n", pod_cidr=None, host_ip="h", now_str="T", mountable=mountable
    )
    (creating,) = [st for _, st in updates]
    assert creating["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    waiting["status"] = creating  # said once: the next pass writes nothing
    assert (
        kubelet.plan_kubelet([waiting], "n", pod_cidr=None, host_ip="h", now_str="T", mountable=mountable)[1]
        == []
    )


def test_pick_pod_ip_is_deterministic_and_skips_used() -> None:
    ip = kubelet.pick_pod_ip("uid-1", "10.0.0.0/30", set())
    assert ip == "10.0.0.2" and kubelet.pick_pod_ip("uid-1", "10.0.0.0/30", {"10.0.0.2"}) is None
    a = kubelet.pick_pod_ip("uid-1", "100.96.0.0/24", set())
    assert a == kubelet.pick_pod_ip("uid-1", "100.96.0.0/24", set())


def test_qos_class() -> None:
    assert kubelet.qos_class({"containers": [{}]}) == "BestEffort"
    g = {"cpu": "1", "memory": "1Gi"}
    assert kubelet.qos_class({"containers": [{"resources": {"limits": g, "requests": g}}]}) == "Guaranteed"
    assert kubelet.qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"


def test_fresh_lease_counts_as_heartbeat() -> None:
    n = node("n", heartbeat=NOW - 60)
    leases = [
        {
            "metadata": {"name": "n", "namespace": "kube-node-lease"},
            "spec": {"renewTime": "2027-01-15T08:00:00.5Z"},
        },
        {"metadata": {"name": "n", "namespace": "default"}, "spec": {"renewTime": "2099-01-01T00:00:00Z"}},
    ]
    renewed = nodelifecycle.lease_renewals(leases)
    assert renewed == {"n": 1_800_000_000.5}
    plan = nodelifecycle.plan_node(
        n, [], NOW + 5, node_grace=20, eviction_grace=10, lease_renewed=renewed["n"]
    )
    assert not plan.ready_unknown
    plan = nodelifecycle.plan_node(
        n, [], NOW + 25, node_grace=20, eviction_grace=10, lease_renewed=renewed["n"]
    )
    assert plan.ready_unknown


def test_orphans_to_adopt_match_selector_namespace_and_have_no_controller() -> None:
    owner = {"metadata": {"name": "rs", "namespace": "default", "uid": "rs"},
             "spec": {"selector": {"matchLabels": {"app": "web"}}}}  # fmt: skip
    free = pod("free", labels={"app": "web"})
    owned = pod("owned", owner="other", labels={"app": "web"})
    wrong_labels = pod("db", labels={"app": "db"})
    elsewhere = pod("elsewhere", labels={"app": "web"})
    elsewhere["metadata"]["namespace"] = "other"
    going = pod("going", labels={"app": "web"})
    going["metadata"]["deletionTimestamp"] = "t"
    candidates = [free, owned, wrong_labels, elsewhere, going]
    assert common.orphans_to_adopt(owner, candidates) == [free]


# --- StatefulSet -----------------------------------------------------------------------------------------


def sts_obj(replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "uid": "sts", "generation": 1},
        "spec": {"replicas": replicas, "serviceName": "db",
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c"}]}},
                 **spec},
    }  # fmt: skip


def sts_pod(i: int, revision: str, **kw: Any) -> dict[str, Any]:
    p = pod(f"db-{i}", node="n", labels={"controller-revision-hash": revision}, **kw)
    p["metadata"]["ownerReferences"] = [
        {"kind": "StatefulSet", "name": "db", "uid": "sts", "controller": True}
    ]
    return p


def test_statefulset_creates_in_order_and_waits_for_ready() -> None:
    sts = sts_obj(3)
    rev = statefulset.update_revision(sts)
    assert statefulset.plan_statefulset(sts, [], NOW).create == [0]
    assert statefulset.plan_statefulset(sts, [sts_pod(0, rev, ready=False)], NOW).create == []
    assert statefulset.plan_statefulset(sts, [sts_pod(0, rev)], NOW).create == [1]
    parallel = sts_obj(3, podManagementPolicy="Parallel")
    assert statefulset.plan_statefulset(parallel, [], NOW).create == [0, 1, 2]
    body = statefulset.stateful_pod(sts, 2)
    assert body["metadata"]["name"] == "db-2" and body["spec"]["hostname"] == "db-2"
    assert (
        body["spec"]["subdomain"] == "db"
        and body["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "2"
    )


def test_statefulset_scales_down_from_the_top_and_rolls_from_the_top() -> None:
    sts = sts_obj(1)
    rev = statefulset.update_revision(sts)
    pods = [sts_pod(i, rev) for i in range(3)]
    assert [p["metadata"]["name"] for p in statefulset.plan_statefulset(sts, pods, NOW).delete] == ["db-2"]
    sts = sts_obj(3)
    old = [sts_pod(i, "db-old") for i in range(3)]
    plan = statefulset.plan_statefulset(sts, old, NOW)
    assert [p["metadata"]["name"] for p in plan.delete] == ["db-2"]
    assert plan.status["updateRevision"] == rev and plan.status["updatedReplicas"] == 0
    partitioned = sts_obj(3, updateStrategy={"rollingUpdate": {"partition": 2}})
    mixed = [sts_pod(0, "db-old"), sts_pod(1, "db-old"), sts_pod(2, statefulset.update_revision(partitioned))]
    assert statefulset.plan_statefulset(partitioned, mixed, NOW).delete == []  # below the partition
    on_delete = sts_obj(3, updateStrategy={"type": "OnDelete"})
    assert statefulset.plan_statefulset(on_delete, old, NOW).delete == []


def test_per_object_isolates_failures_and_reports_the_first() -> None:
    errors = common.PerObject("test")
    done: list[str] = []
    for name in ("a", "b", "c"):
        with errors.guard({"metadata": {"name": name}}):
            if name != "c":
                raise ValueError(f"bad {name}")
            done.append(name)
    assert done == ["c"]
    with pytest.raises(ValueError, match="bad a"):
        errors.raise_first()
    common.PerObject("clean").raise_first()  # nothing failed: no error


# --- Job -------------------------------------------------------------------------------------------------


def job_obj(**spec: Any) -> dict[str, Any]:
    return {
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "default", "uid": "job"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}, **spec},
    }


def job_pod(name: str, phase: str) -> dict[str, Any]:
    p = pod(name, node="n", phase=phase)
    p["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "j", "uid": "job", "controller": True}]
    return p


def test_job_keeps_parallelism_until_completions_then_completes() -> None:
    job = job_obj(completions=3, parallelism=2)
    assert plan_job(job, [], NOW).create == 2
    pods = [job_pod("a", "Succeeded"), job_pod("b", "Running")]
    plan = plan_job(job, pods, NOW)
    assert plan.create == 1 and plan.status["active"] == 2 and plan.status["succeeded"] == 1
    pods = [job_pod(n, "Succeeded") for n in "abc"]
    plan = plan_job(job, pods, NOW)
    assert plan.create == 0 and plan.status["completionTime"] == format_time(NOW)
    assert [(c["type"], c["status"]) for c in plan.status["conditions"]] == [("Complete", "True")]
    job["status"] = plan.status
    later = plan_job(job, pods, NOW + 100)
    assert later.status == plan.status and not later.delete_job  # converged: nothing changes
    job["spec"]["ttlSecondsAfterFinished"] = 60
    assert plan_job(job, pods, NOW + 100).delete_job


def test_job_backoff_limit_and_suspend() -> None:
    job = job_obj(backoffLimit=1)
    pods = [job_pod("a", "Failed"), job_pod("b", "Failed"), job_pod("c", "Running")]
    plan = plan_job(job, pods, NOW)
    assert [c["reason"] for c in plan.status["conditions"]] == ["BackoffLimitExceeded"]
    assert [p["metadata"]["name"] for p in plan.delete] == ["c"] and plan.status["active"] == 0
    suspended = plan_job(job_obj(suspend=True), [job_pod("x", "Running")], NOW)
    assert suspended.create == 0 and len(suspended.delete) == 1 and suspended.status["active"] == 0


def test_kubelet_completes_job_pods_only() -> None:
    running = job_pod("j-1", "Running")
    running["spec"]["restartPolicy"] = "Never"
    running["status"]["containerStatuses"] = [{"name": "c", "containerID": "containerd://x",
                                               "state": {"running": {"startedAt": "S"}}}]  # fmt: skip
    service = pod("web", node="n")
    service["spec"]["restartPolicy"] = "Never"  # a bare pod runs on, whatever its restart policy
    _, updates = kubelet.plan_kubelet([running, service], "n", pod_cidr=None, host_ip="h", now_str="T")
    ((p, st),) = updates
    assert p is running and st["phase"] == "Succeeded"
    (cs,) = st["containerStatuses"]
    assert cs["state"]["terminated"] == {"exitCode": 0, "reason": "Completed", "startedAt": "S",
                                         "finishedAt": "T", "containerID": "containerd://x"}  # fmt: skip
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "False"
