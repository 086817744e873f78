"""The Kubernetes API emulator against a real etcd, through the Kubernetes Python client and plain HTTPS."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from pykops.sandbox.kubeapi import KubeApiServer
from pykops.sandbox.kubeapi.testing import EtcdProcess, KubeApiHandle


def _pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}], **spec},
    }


def _status(exc: ApiException) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(exc.body)
    return body


# --- discovery, version, health ------------------------------------------------------------------------


def test_discovery_version_and_health(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    version = k8s.VersionApi(api).get_code()
    assert version.git_version == "v1.34.2"
    assert (version.major, version.minor) == ("1", "34")
    groups = {g.name: g for g in k8s.ApisApi(api).get_api_versions().groups}
    for group in ("apps", "policy", "storage.k8s.io", "rbac.authorization.k8s.io", "coordination.k8s.io"):
        assert group in groups
    core = {r.name: r for r in k8s.CoreV1Api(api).get_api_resources().resources}
    assert core["pods"].namespaced and not core["nodes"].namespaced
    assert {"pods/status", "pods/binding", "pods/eviction"} <= set(core)
    assert core["pods/eviction"].group == "policy" and core["pods/eviction"].kind == "Eviction"
    apps = {r.name: r for r in k8s.AppsV1Api(api).get_api_resources().resources}
    assert apps["deployments/scale"].kind == "Scale" and apps["deployments"].short_names == ["deploy"]
    cert = kube_api.cert_files("admin", ("system:masters",))
    for path in ("/healthz", "/readyz", "/livez"):
        # verify= on the call: requests lets REQUESTS_CA_BUNDLE override a Session's verify
        resp = requests.get(kube_api.url + path, verify=kube_api.ca_file, cert=cert, timeout=5)
        assert (resp.status_code, resp.text) == (200, "ok")


def test_defaults_a_new_cluster_has(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
    pcs = {pc.metadata.name: pc.value for pc in k8s.SchedulingV1Api(api).list_priority_class().items}
    assert pcs == {"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}
    svc = core.read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip == "100.64.0.1"
    core.create_namespace({"metadata": {"name": "fresh"}})
    assert [sa.metadata.name for sa in core.list_namespaced_service_account("fresh").items] == ["default"]
    root_ca = core.read_namespaced_config_map("kube-root-ca.crt", "fresh").data["ca.crt"]
    assert root_ca == Path(kube_api.ca_file).read_text()
    roles = {r.metadata.name for r in k8s.RbacAuthorizationV1Api(api).list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery"} <= roles


# --- create / get / update / delete ----------------------------------------------------------------------


def test_create_get_update_delete_pod(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    created = core.create_namespaced_pod("default", _pod("web", priorityClassName="system-node-critical"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert int(created.metadata.resource_version) > 0
    assert created.status.phase == "Pending"
    assert created.spec.priority == 2000001000
    got = core.read_namespaced_pod("web", "default")
    assert got.metadata.uid == created.metadata.uid
    assert got.metadata.resource_version == created.metadata.resource_version

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_pod("default", _pod("web"))
    assert exists.value.status == 409 and _status(exists.value)["reason"] == "AlreadyExists"

    got.metadata.labels = {"tier": "front"}
    updated = core.replace_namespaced_pod("web", "default", got)
    assert updated.metadata.labels == {"tier": "front"}
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)

    got.metadata.labels = {"tier": "stale"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_pod("web", "default", got)
    assert stale.value.status == 409 and _status(stale.value)["reason"] == "Conflict"
    assert "the object has been modified" in _status(stale.value)["message"]

    core.delete_namespaced_pod("web", "default")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("web", "default")
    assert gone.value.status == 404
    assert _status(gone.value)["message"] == 'pods "web" not found'


def test_generate_name_and_missing_namespace(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    body = {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    one = core.create_namespaced_config_map("default", body)
    two = core.create_namespaced_config_map("default", body)
    assert one.metadata.name.startswith("cfg-") and len(one.metadata.name) == 9
    assert one.metadata.name != two.metadata.name
    assert one.metadata.generation is None  # ConfigMaps have no spec, hence no generation
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert missing.value.status == 404
    assert _status(missing.value)["message"] == 'namespaces "nowhere" not found'


def test_unknown_fields_are_kept_and_generation_counts_spec_changes(kube_api: KubeApiHandle) -> None:
    api = kube_api.admin_client()
    custom = k8s.CustomObjectsApi(api)
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "a", "image": "x"}]},
            },
            "futureField": {"kept": True},
        },
    }
    created = custom.create_namespaced_custom_object("apps", "v1", "default", "deployments", dep)
    assert created["spec"]["futureField"] == {"kept": True}
    assert created["metadata"]["generation"] == 1
    apps = k8s.AppsV1Api(api)
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert scaled.metadata.generation == 2
    relabeled = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"a": "b"}}})
    assert relabeled.metadata.generation == 2


def test_services_get_the_first_free_cluster_ip(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    spec = {"ports": [{"port": 53, "protocol": "UDP"}]}
    first = core.create_namespaced_service("kube-system", {"metadata": {"name": "a"}, "spec": spec})
    second = core.create_namespaced_service("kube-system", {"metadata": {"name": "b"}, "spec": spec})
    assert (first.spec.cluster_ip, second.spec.cluster_ip) == ("100.64.0.2", "100.64.0.3")
    assert first.spec.ports[0].target_port == 53
    core.delete_namespaced_service("a", "kube-system")
    third = core.create_namespaced_service("kube-system", {"metadata": {"name": "c"}, "spec": spec})
    assert third.spec.cluster_ip == "100.64.0.2"  # released by the delete
    with pytest.raises(ApiException) as taken:
        core.create_namespaced_service(
            "kube-system", {"metadata": {"name": "d"}, "spec": {**spec, "clusterIP": "100.64.0.3"}}
        )
    assert taken.value.status == 422


def test_dry_run_stores_nothing(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    out = core.create_namespaced_config_map("default", {"metadata": {"name": "dry"}}, dry_run="All")
    assert out.metadata.name == "dry"
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("dry", "default")
    assert missing.value.status == 404


# --- list and selectors ----------------------------------------------------------------------------------


def test_label_and_field_selectors(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_pod("default", _pod("a", {"app": "web", "tier": "front"}, nodeName="node-1"))
    core.create_namespaced_pod("default", _pod("b", {"app": "web"}, nodeName="node-2"))
    core.create_namespaced_pod("default", _pod("c", {"app": "db"}))
    core.create_namespaced_pod("other", _pod("d", {"app": "web"}, nodeName="node-1"))
    core.patch_namespaced_pod_status("b", "default", {"status": {"phase": "Running"}})

    def names(**kwargs: Any) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod("default", **kwargs).items)

    assert names() == ["a", "b", "c"]
    assert names(label_selector="app=web") == ["a", "b"]
    assert names(label_selector="app in (web,db),tier notin (front)") == ["b", "c"]
    assert names(label_selector="!tier") == ["b", "c"]
    assert names(label_selector="tier") == ["a"]
    assert names(label_selector="app!=web") == ["c"]
    assert names(field_selector="spec.nodeName=node-1") == ["a"]
    assert names(field_selector="spec.nodeName=") == ["c"]
    assert names(field_selector="status.phase=Running") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    assert names(field_selector="status.phase!=Running,spec.nodeName!=node-1") == ["c"]
    everywhere = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
    assert sorted((p.metadata.namespace, p.metadata.name) for p in everywhere.items) == [
        ("default", "a"),
        ("other", "d"),
    ]
    listed = core.list_namespaced_pod("default")
    assert int(listed.metadata.resource_version) >= max(
        int(p.metadata.resource_version) for p in listed.items
    )
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod("default", label_selector="app in (web")
    assert bad.value.status == 400


def test_unschedulable_field_selector_on_nodes(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_node({"metadata": {"name": "n1"}})
    core.create_node({"metadata": {"name": "n2"}, "spec": {"unschedulable": True}})
    cordoned = core.list_node(field_selector="spec.unschedulable=true").items
    assert [n.metadata.name for n in cordoned] == ["n2"]
    schedulable = core.list_node(field_selector="spec.unschedulable=false").items
    assert [n.metadata.name for n in schedulable] == ["n1"]


# --- watch -----------------------------------------------------------------------------------------------


def test_watch_streams_changes_from_a_resource_version(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespaced_config_map("default", {"metadata": {"name": "before", "labels": {"w": "y"}}})
    start = core.list_namespaced_config_map("default").metadata.resource_version

    def writer() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map("default", {"metadata": {"name": "w1", "labels": {"w": "y"}}})
        core.create_namespaced_config_map("default", {"metadata": {"name": "other", "labels": {"w": "n"}}})
        core.patch_namespaced_config_map("w1", "default", {"data": {"k": "v"}})
        core.patch_namespaced_config_map("w1", "default", {"metadata": {"labels": {"w": "n"}}})
        core.delete_namespaced_config_map("before", "default")

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[tuple[str, str]] = []
    w = k8s_watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        "default",
        label_selector="w=y",
        resource_version=start,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 4:
            w.stop()
    thread.join()
    # leaving the selector is a DELETED event, as from the apiserver's watch cache
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1"), ("DELETED", "before")]


def test_watch_without_resource_version_starts_with_the_current_objects(kube_api: KubeApiHandle) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespaced_pod("default", _pod("p1"))
    started = time.monotonic()
    events = list(k8s_watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "p1")]
    assert 0.9 <= time.monotonic() - started < 4  # timeoutSeconds ends the stream


# --- authentication and etcd availability ----------------------------------------------------------------


def test_requests_without_a_client_certificate_get_401(kube_api: KubeApiHandle) -> None:
    resp = requests.get(kube_api.url + "/api/v1/namespaces", verify=kube_api.ca_file, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["reason"] == "Unauthorized"


def test_no_etcd_endpoint_means_503(tmp_path: Any) -> None:
    with KubeApiServer(lambda: []) as server:
        resp = requests.get(server.url + "/api/v1/namespaces", timeout=5)
        assert resp.status_code == 503
        assert "no control-plane machine is serving" in resp.json()["message"]
        for path in ("/readyz", "/version", "/api", "/apis/apps/v1"):
            assert requests.get(server.url + path, timeout=5).status_code == 503


def test_stopped_etcd_fails_fast(tmp_path: Any) -> None:
    etcd = EtcdProcess(tmp_path / "etcd").start()
    url = etcd.client_url
    with KubeApiServer(lambda: [url], prefix="/stop-test") as server:
        assert requests.get(server.url + "/api/v1/namespaces/default", timeout=5).status_code == 200
        etcd.stop()
        started = time.monotonic()
        resp = requests.get(server.url + "/api/v1/namespaces/default", timeout=10)
        assert resp.status_code in (500, 503, 504)
        assert resp.json()["kind"] == "Status"
        assert time.monotonic() - started < 5


# --- throughput (printed; see the report) ----------------------------------------------------------------


def test_throughput(kube_api: KubeApiHandle, capsys: pytest.CaptureFixture[str]) -> None:
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_namespaced_pod("default", _pod("one"))
    n = 200
    started = time.monotonic()
    for _ in range(n):
        core.read_namespaced_pod("one", "default")
    get_rate = n / (time.monotonic() - started)
    for i in range(499):
        core.create_namespaced_pod("default", _pod(f"p{i:03}"))
    started = time.monotonic()
    lists = 5
    for _ in range(lists):
        assert len(core.list_namespaced_pod("default", _preload_content=False).data) > 0
    list_rate = lists / (time.monotonic() - started)
    with capsys.disabled():
        print(
            f"\nkubeapi throughput: GET one pod {get_rate:.0f}/s; LIST 500 pods {list_rate:.1f}/s (raw JSON)"
        )
    assert get_rate > 50


# --- Table output ------------------------------------------------------------------------------------------

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_table_output_for_kubectl(kube_api: KubeApiHandle) -> None:
    from pykops.sandbox.kubeapi.tables import human_duration

    assert [human_duration(s) for s in (5, 150, 700, 4000, 30000, 200000, 9000000)] == [
        "5s", "2m30s", "11m", "66m", "8h", "2d7h", "104d"
    ]  # fmt: skip
    core = k8s.CoreV1Api(kube_api.admin_client())
    core.create_node({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
                      "spec": {"unschedulable": True}})  # fmt: skip
    cert = kube_api.cert_files("admin", ("system:masters",))

    def get(path: str, **params: str) -> dict[str, Any]:
        resp = requests.get(kube_api.url + path, params=params, headers={"Accept": TABLE},
                            verify=kube_api.ca_file, cert=cert, timeout=5)  # fmt: skip
        assert resp.status_code == 200
        body: dict[str, Any] = resp.json()
        return body

    table = get("/api/v1/nodes")
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Status", "Roles", "Age", "Version"
    ]  # fmt: skip
    assert table["rows"][0]["cells"][:3] == ["n1", "Unknown,SchedulingDisabled", "control-plane"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert "object" not in get("/api/v1/nodes/n1", includeObject="None")["rows"][0]
    assert get("/api/v1/nodes/n1", includeObject="Object")["rows"][0]["object"]["spec"] == {
        "unschedulable": True
    }
    ns = get("/api/v1/namespaces/kube-system/configmaps")
    assert [c["name"] for c in ns["columnDefinitions"]] == ["Name", "Data", "Age"]
    leases = get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
    assert leases["rows"] == []


def test_stop_closes_open_connections(etcd_server: EtcdProcess) -> None:
    server = KubeApiServer(lambda: [etcd_server.client_url], prefix="/stop-conns").start()
    session = requests.Session()
    url = server.url + "/api/v1/namespaces"
    assert session.get(url, timeout=5).status_code == 200  # a kept-alive connection
    watch = session.get(url + "?watch=1&timeoutSeconds=60", stream=True, timeout=5)
    assert watch.status_code == 200
    server.stop()
    started = time.monotonic()
    with contextlib.suppress(
        requests.exceptions.ChunkedEncodingError
    ):  # cut mid-stream, as by a dying server
        for _chunk in watch.iter_content(chunk_size=None):
            pass
    assert time.monotonic() - started < 5
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_object_meta_validation(kube_api: KubeApiHandle) -> None:
    admin = kube_api.admin_client()
    core = k8s.CoreV1Api(admin)
    with pytest.raises(ApiException) as upper:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    assert upper.value.status == 422 and "RFC 1123 subdomain" in _status(upper.value)["message"]
    rbac = k8s.RbacAuthorizationV1Api(admin)
    role = rbac.create_cluster_role({"metadata": {"name": "example:reader"}, "rules": []})
    assert role.metadata.name == "example:reader"  # RBAC names are path segments
    cert = kube_api.cert_files("admin", ("system:masters",))
    resp = requests.post(
        kube_api.url + "/api/v1/namespaces/default/configmaps",
        json={"metadata": {"name": "c", "labels": {"a": 1}}},
        verify=kube_api.ca_file,
        cert=cert,
        timeout=5,
    )
    assert resp.status_code == 422 and "metadata.labels" in resp.json()["message"]


def test_optimistic_concurrency_loses_no_update(kube_api: KubeApiHandle) -> None:
    """Ten writers each add ten to a counter with read-modify-PUT, retrying on 409: none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    api = kube_api.admin_client()
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "counter"}, "data": {"n": "0"}})
    conflicts = 0
    lock = threading.Lock()

    def writer(_: int) -> None:
        nonlocal conflicts
        for _ in range(10):
            while True:
                cm = core.read_namespaced_config_map("counter", "default")
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    core.replace_namespaced_config_map("counter", "default", cm)
                    break
                except ApiException as exc:
                    assert exc.status == 409
                    with lock:
                        conflicts += 1

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(writer, range(10)))
    assert core.read_namespaced_config_map("counter", "default").data["n"] == "100"
    assert conflicts > 0  # the writers did race
