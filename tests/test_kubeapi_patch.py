"""Patches (merge, strategic merge, JSON patch, server-side apply) and subresources of the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from pykops.sandbox.kubeapi.patch import json_patch, merge_patch, strategic_merge
from pykops.sandbox.kubeapi.testing import KubeApiHandle

POD_SPEC: dict[str, Any] = {
    "containers": [
        {
            "name": "app",
            "image": "app:1",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "ports": [{"containerPort": 80}, {"containerPort": 443}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        {"name": "sidecar", "image": "side:1"},
    ],
    "volumes": [{"name": "data", "emptyDir": {}}],
    "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}],
}


# --- the patch functions -----------------------------------------------------------------------------------


def test_merge_patch_is_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3], "x": None}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}  # not modified in place


def test_strategic_merge_by_keys_and_directives() -> None:
    obj = {"spec": json.loads(json.dumps(POD_SPEC)), "metadata": {"finalizers": ["a"]}}
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:2",
                    "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
                },
                {"name": "sidecar", "$patch": "delete"},
                {"name": "new", "image": "new:1"},
            ],
            "tolerations": [{"key": "c", "operator": "Exists"}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}],
        },
    }
    out = strategic_merge(obj, patch)
    containers = {c["name"]: c for c in out["spec"]["containers"]}
    assert list(containers) == ["app", "new"]
    assert containers["app"]["image"] == "app:2"
    assert containers["app"]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]
    assert containers["app"]["ports"] == [{"containerPort": 80}, {"containerPort": 443}]  # untouched
    assert out["spec"]["tolerations"] == [{"key": "c", "operator": "Exists"}]  # atomic: replaced
    assert [v["name"] for v in out["spec"]["volumes"]] == ["data", "cache"]
    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert "$setElementOrder/containers" not in out["spec"]
    ports = strategic_merge(
        {"ports": [{"containerPort": 80, "name": "a"}]}, {"ports": [{"containerPort": 80, "name": "b"}]}
    )
    assert ports == {"ports": [{"containerPort": 80, "name": "b"}]}
    svc_ports = strategic_merge(
        {"ports": [{"port": 53, "protocol": "UDP"}]}, {"ports": [{"port": 53, "name": "dns"}]}
    )
    assert svc_ports == {"ports": [{"port": 53, "protocol": "UDP", "name": "dns"}]}
    assert strategic_merge({"a": {"b": 1, "c": 2}}, {"a": {"$patch": "replace", "d": 3}}) == {"a": {"d": 3}}
    assert strategic_merge({"f": [1, 2, 3]}, {"$deleteFromPrimitiveList/f": [2]}) == {"f": [1, 3]}


def test_json_patch_is_rfc6902() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c", "value": "y"},
        {"op": "copy", "from": "/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e~1f"},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "test", "path": "/c", "value": "y"},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 2, 3]}, "c": "y", "e/f": "y"}
    from pykops.sandbox.kubeapi.patch import PatchError

    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/c", "value": "nope"}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])


# --- through the API -------------------------------------------------------------------------------------


def _make_pod(core: k8s.CoreV1Api, name: str = "p") -> None:
    core.create_namespaced_pod(
        "default", {"metadata": {"name": name, "labels": {"a": "1"}}, "spec": POD_SPEC}
    )


def test_patch_content_types(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    _make_pod(core)
    # the Python client sends a dict as strategic merge patch
    out = core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "app", "env": [{"name": "A", "value": "one"}]}]}}
    )
    app = out.spec.containers[0]
    assert [(e.name, e.value) for e in app.env] == [("A", "one"), ("B", "2")]
    assert [c.name for c in out.spec.containers] == ["app", "sidecar"]
    # a list is a JSON patch
    out = core.patch_namespaced_pod(
        "p", "default", [{"op": "replace", "path": "/metadata/labels/a", "value": "2"}]
    )
    assert out.metadata.labels == {"a": "2"}


def _raw(kube_api: KubeApiHandle, method: str, path: str, body: Any = None, ctype: str = "application/json",
         params: dict[str, str] | None = None) -> requests.Response:  # fmt: skip
    data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
    return requests.request(
        method,
        kube_api.url + path,
        data=data,
        params=params,
        headers={"Content-Type": ctype},
        verify=kube_api.ca_file,
        cert=kube_api.cert_files("admin", ("system:masters",)),
        timeout=10,
    )


def test_merge_patch_and_unsupported_type_over_http(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    _make_pod(core)
    path = "/api/v1/namespaces/default/pods/p"
    patch = {"metadata": {"labels": {"a": None, "b": "x"}}, "spec": {"tolerations": []}}
    resp = _raw(kube_api, "PATCH", path, patch, "application/merge-patch+json")
    assert resp.status_code == 200
    assert resp.json()["metadata"]["labels"] == {"b": "x"} and resp.json()["spec"]["tolerations"] == []
    assert _raw(kube_api, "PATCH", path, {}, "text/plain").status_code == 415
    bad = _raw(kube_api, "PATCH", path, [{"op": "remove", "path": "/nope"}], "application/json-patch+json")
    assert bad.status_code == 422


def test_server_side_apply_creates_then_merges_and_records_the_manager(kube_api: KubeApiHandle) -> None:
    path = "/api/v1/namespaces/default/configmaps/applied"
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    ctype = "application/apply-patch+yaml"
    assert _raw(kube_api, "PATCH", path, config, ctype).status_code == 400  # fieldManager is required
    first = _raw(kube_api, "PATCH", path, config, ctype, {"fieldManager": "me"})
    assert first.status_code == 201
    second = _raw(
        kube_api,
        "PATCH",
        path,
        config.replace("a: '1'", "b: '2'"),
        ctype,
        {"fieldManager": "me", "force": "true"},
    )
    assert second.status_code == 200
    obj = second.json()
    assert obj["data"] == {"a": "1", "b": "2"}  # documented: apply merges, it does not prune
    managers = [(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]]
    assert managers == [("me", "Apply")]
    assert "f:b" in obj["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]


def test_dry_run_patch_and_update(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    out = core.patch_namespaced_config_map("c", "default", {"data": {"a": "2"}}, dry_run="All")
    assert out.data == {"a": "2"}
    assert core.read_namespaced_config_map("c", "default").data == {"a": "1"}


def test_status_subresource_separates_spec_and_status(kube_api: KubeApiHandle) -> None:
    apps = k8s.AppsV1Api(kube_api.admin_client())
    body = {
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    apps.create_namespaced_deployment("default", body)
    out = apps.patch_namespaced_deployment_status(
        "d", "default", {"spec": {"replicas": 9}, "status": {"readyReplicas": 2, "replicas": 2}}
    )
    assert out.status.ready_replicas == 2 and out.spec.replicas == 2  # spec ignored on /status
    out = apps.patch_namespaced_deployment(
        "d", "default", {"spec": {"replicas": 4}, "status": {"readyReplicas": 0}}
    )
    assert out.spec.replicas == 4 and out.status.ready_replicas == 2  # status ignored on the main resource
    scale = apps.read_namespaced_deployment_scale("d", "default")
    assert (scale.spec.replicas, scale.status.selector) == (4, "app=d")
    scale = apps.patch_namespaced_deployment_scale("d", "default", {"spec": {"replicas": 1}})
    assert scale.spec.replicas == 1
    assert apps.read_namespaced_deployment("d", "default").spec.replicas == 1


def test_binding_sets_the_node_once(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    _make_pod(core)
    binding = {"metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}
    core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    pod = core.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "n1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    with pytest.raises(ApiException) as again:
        core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    assert again.value.status == 409


def _ready_pod(core: k8s.CoreV1Api, name: str, labels: dict[str, str], ready: bool = True) -> None:
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    core.patch_namespaced_pod_status(name, "default", {"status": status})


def test_eviction_honours_pod_disruption_budgets(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    policy = k8s.PolicyV1Api(api)
    for i in range(3):
        _ready_pod(core, f"web-{i}", {"app": "web"})
    _ready_pod(core, "web-sick", {"app": "web"}, ready=False)
    _ready_pod(core, "free", {"app": "other"})
    policy.create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
        },
    )

    def evict(name: str) -> None:
        core.create_namespaced_pod_eviction(
            name, "default", {"metadata": {"name": name, "namespace": "default"}}, _preload_content=False
        )

    evict("free")  # no budget covers it
    # 4 pods, minAvailable 50% → 2 must stay healthy, 3 are → one disruption; then 2 of 3 → none
    evict("web-0")
    with pytest.raises(ApiException) as refused:
        evict("web-1")
    assert refused.value.status == 429
    status = json.loads(refused.value.body)
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    names = sorted(p.metadata.name for p in core.list_namespaced_pod("default").items)
    assert names == ["web-1", "web-2", "web-sick"]
    # a pod that is not Running is evicted without consulting the budget
    core.patch_namespaced_pod_status("web-sick", "default", {"status": {"phase": "Failed"}})
    evict("web-sick")
    with pytest.raises(ApiException) as missing:
        evict("web-0")
    assert missing.value.status == 404


def test_finalizers_hold_deletion_until_removed(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "held", "finalizers": ["example.com/x"]}}
    )
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", "default", [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("held", "default")
    assert gone.value.status == 404
    core.create_namespaced_config_map("default", {"metadata": {"name": "fg"}})
    core.delete_namespaced_config_map("fg", "default", propagation_policy="Foreground")
    fg = core.read_namespaced_config_map("fg", "default")
    assert fg.metadata.finalizers == ["foregroundDeletion"] and fg.metadata.deletion_timestamp is not None


def test_delete_collection_and_namespace_contents(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespace({"metadata": {"name": "tmp"}})
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map("tmp", {"metadata": {"name": name, "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map("tmp", label_selector="tier=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map("tmp").items] == [
        "c",
        "kube-root-ca.crt",
    ]
    core.delete_namespace("tmp")
    assert core.list_namespaced_config_map("tmp").items == []
    assert "tmp" not in {n.metadata.name for n in core.list_namespace().items}
