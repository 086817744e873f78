"""The sandbox scheduler's pure parts: predicates (selectors, affinity, taints), filters, spreading."""

from __future__ import annotations

from typing import Any

import pytest

from pykops.sandbox import scheduler as s

CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node(
    name: str,
    zone: str = "us-test-1a",
    *,
    ready: bool = True,
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    allocatable: dict[str, str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "kind": "Node",
        "metadata": {"name": name, "labels": {s.ZONE_LABEL: zone, **(labels or {})}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    if allocatable is not None:
        obj["status"]["allocatable"] = allocatable
    return obj


def pod(
    name: str,
    *,
    node_name: str | None = None,
    owner: str | None = None,
    requests: dict[str, str] | None = None,
    host_port: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "nginx"}
    if requests:
        container["resources"] = {"requests": requests}
    if host_port:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port}]
    obj: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": f"2026-01-01T00:00:{len(name):02d}Z",
        },
        "spec": {"containers": [container], **spec},
        "status": {"phase": "Pending"},
    }
    if node_name:
        obj["spec"]["nodeName"] = node_name
        obj["status"]["phase"] = "Running"
    if owner:
        obj["metadata"]["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    return obj


# --- predicates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (
            {"key": "a", "operator": "Equal", "value": "1", "effect": "NoSchedule"},
            {"key": "a", "value": "1", "effect": "NoSchedule"},
            True,
        ),
        ({"key": "a", "value": "2"}, {"key": "a", "value": "1", "effect": "NoSchedule"}, False),
        ({"key": "a", "operator": "Exists"}, {"key": "a", "value": "1", "effect": "NoExecute"}, True),
        ({"operator": "Exists"}, {"key": "anything", "effect": "NoSchedule"}, True),
        (
            {"key": "a", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "a", "effect": "NoExecute"},
            False,
        ),
        ({"key": "b", "operator": "Exists"}, {"key": "a", "effect": "NoSchedule"}, False),
        ({"key": "a"}, {"key": "a", "effect": "NoSchedule"}, True),  # Equal with empty value
        (
            {"operator": "Equal", "value": ""},
            {"key": "a", "effect": "NoSchedule"},
            False,
        ),  # Equal needs a key
    ],
)
def test_toleration_semantics(toleration: dict[str, Any], taint: dict[str, Any], expected: bool) -> None:
    assert s.toleration_tolerates(toleration, taint) is expected


def test_label_selector_operators() -> None:
    lbls = {"app": "web", "tier": "front"}
    assert s.label_selector_matches({}, lbls)
    assert not s.label_selector_matches(None, lbls)
    assert s.label_selector_matches({"matchLabels": {"app": "web"}}, lbls)
    assert not s.label_selector_matches({"matchLabels": {"app": "db"}}, lbls)
    expr = [
        {"key": "tier", "operator": "In", "values": ["front", "back"]},
        {"key": "env", "operator": "DoesNotExist"},
        {"key": "app", "operator": "NotIn", "values": ["db"]},
        {"key": "app", "operator": "Exists"},
    ]
    assert s.label_selector_matches({"matchExpressions": expr}, lbls)
    assert not s.label_selector_matches({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, lbls)


def test_node_affinity_terms_are_ored_and_expressions_anded() -> None:
    n = node("n1", "us-test-1b", labels={"kubernetes.io/arch": "arm64"})
    required = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": s.ZONE_LABEL, "operator": "In", "values": ["us-test-1a"]}]},
            {
                "matchExpressions": [
                    {"key": s.ZONE_LABEL, "operator": "In", "values": ["us-test-1b"]},
                    {"key": "kubernetes.io/arch", "operator": "NotIn", "values": ["amd64"]},
                ]
            },
        ]
    }
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}}
    assert s.pod_matches_node_affinity(spec, n)
    required["nodeSelectorTerms"].pop()
    assert not s.pod_matches_node_affinity(spec, n)
    assert s.pod_matches_node_affinity({"nodeSelector": {"kubernetes.io/arch": "arm64"}}, n)
    assert not s.pod_matches_node_affinity({"nodeSelector": {"kubernetes.io/arch": "amd64"}}, n)
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert s.node_selector_term_matches(by_name, n)
    assert not s.node_selector_term_matches({}, n)


def test_pod_requests_sum_containers_and_take_max_init() -> None:
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
        ],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}],
    }
    req = s.pod_requests(spec)
    assert req["cpu"] == 1 and req["memory"] == 64 * 1024 * 1024


# --- filtering -------------------------------------------------------------------------------------------


def test_unschedulable_message_counts_each_reason_like_kube_scheduler() -> None:
    nodes = [node(f"cp-{z}", z, taints=[CP_TAINT]) for z in ("a", "b", "c")] + [node("w", unschedulable=True)]
    (decision,) = s.schedule([pod("web")], nodes)
    assert decision.node is None
    assert decision.message == (
        "0/4 nodes are available: 1 node(s) were unschedulable, "
        "3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
    )


def test_filters_taints_readiness_affinity_ports_and_resources() -> None:
    nodes = [
        node("tainted", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
        node("notready", ready=False),
        node("arm", labels={"kubernetes.io/arch": "arm64"}),
        node("small", labels={"kubernetes.io/arch": "amd64"}, allocatable={"cpu": "500m", "pods": "110"}),
        node("port", labels={"kubernetes.io/arch": "amd64"}),
    ]
    bound = [
        pod("existing", node_name="port", host_port=8080),
        pod("hog", node_name="small", requests={"cpu": "400m"}),
    ]
    p = pod("new", requests={"cpu": "200m"}, host_port=8080, nodeSelector={"kubernetes.io/arch": "amd64"})
    decisions = s.schedule([*bound, p], nodes)
    assert decisions == [
        s.Decision(
            "default",
            "new",
            None,
            "0/5 nodes are available: 1 Insufficient cpu, 1 node(s) didn't have free ports for the requested "
            "pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint "
            "{dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.",
        )
    ]
    # tolerating the taint and dropping the port and selector: it fits only where nothing else blocks
    p2 = pod("new2", requests={"cpu": "200m"}, tolerations=[{"key": "dedicated", "operator": "Exists"}])
    (d2,) = s.schedule([*bound, p2], nodes[:1] + nodes[3:4])
    assert d2.node == "tainted"


def test_missing_allocatable_is_unlimited_and_pod_count_is_enforced() -> None:
    huge = pod("huge", requests={"cpu": "64", "memory": "1Ti"})
    assert s.schedule([huge], [node("n")])[0].node == "n"
    full = node("full", allocatable={"pods": "1"})
    (d,) = s.schedule([pod("a", node_name="full"), pod("b")], [full])
    assert d.node is None and "1 Too many pods" in d.message


def test_cordoned_node_tolerated_only_with_unschedulable_toleration() -> None:
    cordoned = node("n", unschedulable=True)
    assert s.schedule([pod("p")], [cordoned])[0].node is None
    tol = [{"key": s.TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]
    assert s.schedule([pod("p", tolerations=tol)], [cordoned])[0].node == "n"


# --- spreading and ordering ------------------------------------------------------------------------------


def test_replicas_spread_over_zones_then_nodes() -> None:
    nodes = [node("a1", "a"), node("a2", "a"), node("b1", "b"), node("c1", "c")]
    pods = [pod(f"web-{i}", owner="rs1") for i in range(4)]
    decisions = s.schedule(pods, nodes)
    chosen = [d.node for d in decisions]
    zones = {"a1": "a", "a2": "a", "b1": "b", "c1": "c"}
    assert sorted(zones[c] for c in chosen[:3] if c) == ["a", "b", "c"]  # first three: one per zone
    assert chosen[3] in ("a1", "a2", "b1", "c1") and len(set(chosen)) == 4  # the fourth: the free node


def test_spreading_counts_existing_pods_of_the_same_owner_only() -> None:
    nodes = [node("a1", "a"), node("b1", "b")]
    existing = [pod("other-1", node_name="b1", owner="other"), pod("web-0", node_name="a1", owner="rs1")]
    (d,) = s.schedule([*existing, pod("web-1", owner="rs1")], nodes)
    assert d.node == "b1"  # zone b has no rs1 pod, even though b1 has more pods overall
    (d2,) = s.schedule([*existing, pod("solo")], nodes)
    assert d2.node == "a1"  # no owner: fewest pods overall, then name


def test_pending_order_and_filters() -> None:
    pods = [
        pod("low"),
        pod("high", priority=1000),
        pod("other-scheduler", schedulerName="my-scheduler"),
        pod("bound", node_name="n"),
        pod("gated", schedulingGates=[{"name": "g"}]),
    ]
    assert [p["metadata"]["name"] for p in s.pending_unbound(pods)] == ["high", "low"]


def test_no_nodes_message() -> None:
    assert s.schedule([pod("p")], [])[0].message == "no nodes available to schedule pods"


def test_time_round_trip() -> None:
    t = s.parse_time("2026-12-04T17:53:37Z")
    assert t is not None and s.format_time(t) == "2026-12-04T17:53:37Z"
    assert s.parse_time(None) is None and s.parse_time("garbage") is None


def test_host_network_pods_take_their_container_ports() -> None:
    spec: dict[str, Any] = {
        "hostNetwork": True,
        "containers": [{"name": "c", "ports": [{"containerPort": 3988}]}],
    }
    assert s.pod_host_ports(spec) == {("TCP", 3988)}
    assert s.pod_host_ports({**spec, "hostNetwork": False}) == set()
    first = pod("a", node_name="n1", **spec)
    (d,) = s.schedule([first, pod("b", **spec)], [node("n1")])
    assert d.node is None and "free ports" in d.message


def test_pods_follow_their_volumes_zone() -> None:
    """VolumeBinding: a claim bound to a zonal volume pins its pod to that zone; a missing claim blocks it."""
    from pykops.sandbox.scheduler import claim_terms, schedule

    def node(name: str, zone: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }

    def pod(name: str, claim: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": "demo", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {
                "containers": [{"name": "c"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
            },
            "status": {"phase": "Pending"},
        }

    zone_b = [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1b"]}
            ]
        }
    ]
    zone_c = [{"matchExpressions": [{**zone_b[0]["matchExpressions"][0], "values": ["eu-west-1c"]}]}]
    static_c = {  # an Available pre-provisioned volume in eu-west-1c that the binder will give to "static"
        "metadata": {"name": "pv-c"},
        "spec": {
            "storageClassName": "gp3",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "2Gi"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": zone_c}},
        },
        "status": {"phase": "Available"},
    }
    request = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    claims = claim_terms(
        [
            {"metadata": {"name": "bound", "namespace": "demo"}, "spec": {"volumeName": "pv-b"}},
            {"metadata": {"name": "waiting", "namespace": "demo"}, "spec": {"storageClassName": "gp3"}},
            {
                "metadata": {"name": "static", "namespace": "demo"},
                "spec": {"storageClassName": "gp3", **request},
            },
        ],
        [
            {
                "metadata": {"name": "pv-b"},
                "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": zone_b}}},
            },
            static_c,
        ],
    )
    nodes = [node("a", "eu-west-1a"), node("b", "eu-west-1b"), node("c", "eu-west-1c")]
    (alone,) = schedule([pod("p4", "static")], nodes, claims)  # three empty nodes: only the volume decides
    assert alone.node == "c"  # its claim is not bound yet, but the volume it will get is in eu-west-1c
    pods = [pod("p1", "bound"), pod("p2", "waiting"), pod("p3", "nope")]
    decisions = {d.pod: d for d in schedule(pods, nodes, claims)}
    assert decisions["p1"].node == "b"
    assert decisions["p2"].node is not None  # dynamic, waits for its first consumer: any node
    assert (
        decisions["p3"].node is None and 'persistentvolumeclaim "nope" not found' in decisions["p3"].message
    )
