"""Client-certificate users and RBAC authorization from the stored roles and bindings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from pykops.sandbox.kubeapi.testing import KubeApiHandle


def _forbidden(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 403
    body = json.loads(err.value.body)
    assert body["reason"] == "Forbidden"
    return str(body["message"])


def _rbac(kube_api: KubeApiHandle) -> k8s.RbacAuthorizationV1Api:
    return k8s.RbacAuthorizationV1Api(kube_api.admin_client())


def test_a_user_without_bindings_may_only_discover(kube_api: KubeApiHandle) -> None:
    jane = kube_api.client_for("jane")
    assert k8s.VersionApi(jane).get_code().git_version == "v1.34.2"
    assert "apps" in {g.name for g in k8s.ApisApi(jane).get_api_versions().groups}
    core = k8s.CoreV1Api(jane)
    assert _forbidden(core.list_node) == (
        'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
    )
    assert _forbidden(lambda: core.read_namespaced_pod("p", "default")) == (
        'pods "p" is forbidden: User "jane" cannot get resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert _forbidden(lambda: k8s.AppsV1Api(jane).list_namespaced_deployment("default")) == (
        'deployments.apps is forbidden: User "jane" cannot list resource "deployments" in API group "apps" '
        'in the namespace "default"'
    )


def test_system_masters_may_do_everything(kube_api: KubeApiHandle) -> None:
    root = kube_api.client_for("root", ("system:masters",))
    assert k8s.CoreV1Api(root).list_node().items == []
    k8s.CoreV1Api(root).create_namespaced_secret("kube-system", {"metadata": {"name": "s"}})


def test_view_role_binding_in_one_namespace(kube_api: KubeApiHandle) -> None:
    _rbac(kube_api).create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "jane-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}],
        },
    )
    core = k8s.CoreV1Api(kube_api.client_for("jane"))
    assert core.list_namespaced_pod("default").items == []
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["kube-root-ca.crt"]
    _forbidden(lambda: core.list_namespaced_pod("kube-system"))
    assert 'cannot list resource "secrets"' in _forbidden(lambda: core.list_namespaced_secret("default"))
    assert 'cannot create resource "configmaps"' in _forbidden(
        lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
    )


def test_group_binding_to_edit_and_subresources(kube_api: KubeApiHandle) -> None:
    _rbac(kube_api).create_cluster_role_binding(
        {
            "metadata": {"name": "devs-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}],
        }
    )
    dev = k8s.CoreV1Api(kube_api.client_for("dan", ("devs",)))
    dev.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    )
    assert 'cannot patch resource "pods/status"' in _forbidden(
        lambda: dev.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    )
    dev.create_namespaced_pod_eviction("p", "default", {"metadata": {"name": "p"}}, _preload_content=False)
    assert 'cannot list resource "nodes"' in _forbidden(dev.list_node)
    other = k8s.CoreV1Api(kube_api.client_for("eve", ("outsiders",)))
    _forbidden(lambda: other.list_namespaced_pod("default"))


def test_role_with_resource_names_and_service_account_subject(kube_api: KubeApiHandle) -> None:
    rbac = _rbac(kube_api)
    admin = k8s.CoreV1Api(kube_api.admin_client())
    for name in ("allowed", "other"):
        admin.create_namespaced_config_map("kube-system", {"metadata": {"name": name}})
    rbac.create_namespaced_role(
        "kube-system",
        {
            "metadata": {"name": "one-cm"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["allowed"],
                    "verbs": ["get"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        "kube-system",
        {
            "metadata": {"name": "one-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
            "subjects": [{"kind": "ServiceAccount", "name": "dns", "namespace": "kube-system"}],
        },
    )
    sa = k8s.CoreV1Api(kube_api.client_for("system:serviceaccount:kube-system:dns"))
    assert sa.read_namespaced_config_map("allowed", "kube-system").metadata.name == "allowed"
    _forbidden(lambda: sa.read_namespaced_config_map("other", "kube-system"))
    _forbidden(lambda: sa.list_namespaced_config_map("kube-system"))  # resourceNames never grant list


def test_node_identities(kube_api: KubeApiHandle) -> None:
    """system:node:<name> users are authorized as nodes; the shared worker identity "kubelet" (group
    system:nodes) only once bound to ClusterRole system:node, as kOps' rbac add-on does."""
    node = k8s.CoreV1Api(kube_api.client_for("system:node:i-1", ("system:nodes",)))
    node.create_node({"metadata": {"name": "i-1"}})
    node.patch_node_status("i-1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert 'cannot create resource "namespaces"' in _forbidden(
        lambda: node.create_namespace({"metadata": {"name": "x"}})
    )
    worker = k8s.CoreV1Api(kube_api.client_for("kubelet", ("system:nodes",)))
    _forbidden(lambda: worker.create_node({"metadata": {"name": "i-2"}}))
    _rbac(kube_api).create_cluster_role_binding(
        {
            "metadata": {"name": "kubelet-cluster-admin"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:node",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubelet"}],
        }
    )
    worker.create_node({"metadata": {"name": "i-2"}})
    scheduler = k8s.CoreV1Api(kube_api.client_for("system:kube-scheduler"))
    assert {n.metadata.name for n in scheduler.list_node().items} == {"i-1", "i-2"}
    _forbidden(lambda: scheduler.create_namespaced_config_map("default", {"metadata": {"name": "x"}}))
