"""``create user`` / ``delete user``: request checks and the RBAC binding (pure parts)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pykops.errors import UsageError
from pykops.ops.users import (
    USER_LABEL,
    apply_binding,
    binding_for,
    binding_name,
    check_request,
    delete_bindings,
)

DAY = timedelta(hours=24)


def test_cluster_wide_view_binding() -> None:
    request = check_request("ana", ("devs",), "view", None, DAY)
    binding = binding_for(request)
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "view",
    }
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "ana"}]
    assert binding["metadata"]["labels"][USER_LABEL] == "ana"
    assert "namespace" not in binding["metadata"]


def test_namespaced_binding_is_a_rolebinding() -> None:
    binding = binding_for(check_request("luis@example.com", (), "edit", "demo", DAY))
    assert binding["kind"] == "RoleBinding"
    assert binding["metadata"]["namespace"] == "demo"
    assert binding["metadata"]["labels"][USER_LABEL] == "luis-at-example.com"  # a valid label value
    assert binding["subjects"][0]["name"] == "luis@example.com"


@pytest.mark.parametrize(
    ("name", "groups", "role", "namespace", "ttl", "message"),
    [
        ("Ana", (), "view", None, DAY, "not valid"),
        ("system:ana", (), "view", None, DAY, "system:masters"),
        ("ana", ("system:masters",), "view", None, DAY, "system:masters"),
        ("ana", (), "", None, DAY, "--role"),
        ("ana", (), "view", "Bad_NS", DAY, "--namespace"),
        ("ana", (), "view", None, timedelta(0), "--ttl"),
        ("ana", (), "view", None, timedelta(days=400), "revoked"),
    ],
)
def test_bad_requests_are_refused(
    name: str, groups: tuple[str, ...], role: str, namespace: str | None, ttl: timedelta, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        check_request(name, groups, role, namespace, ttl)


def test_binding_grants_view_and_delete_takes_it_away(kube_api: Any) -> None:
    """Through the API emulator with RBAC: the user can read but not write; after delete, not even read."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    admin = kube_api.admin_client()
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": "demo"}})
    ana = client.CoreV1Api(kube_api.client_for("ana", ("devs",)))
    with pytest.raises(ApiException) as denied:
        ana.list_namespaced_pod("demo")
    assert denied.value.status == 403

    binding = binding_for(check_request("ana", ("devs",), "view", None, DAY))
    assert apply_binding(admin, binding) == "created"
    assert apply_binding(admin, binding) == "updated"  # idempotent
    assert ana.list_namespaced_pod("demo").items == []
    with pytest.raises(ApiException) as forbidden:
        ana.create_namespaced_config_map("demo", {"metadata": {"name": "x"}})
    assert forbidden.value.status == 403

    assert delete_bindings(admin, "ana") == [f"ClusterRoleBinding/{binding['metadata']['name']}"]
    with pytest.raises(ApiException) as again:
        ana.list_namespaced_pod("demo")
    assert again.value.status == 403
    assert delete_bindings(admin, "ana") == []


def test_namespaced_binding_only_reaches_its_namespace(kube_api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    admin = kube_api.admin_client()
    for ns in ("team", "other"):
        client.CoreV1Api(admin).create_namespace({"metadata": {"name": ns}})
    apply_binding(admin, binding_for(check_request("luis", (), "edit", "team", DAY)))
    luis = client.CoreV1Api(kube_api.client_for("luis"))
    luis.create_namespaced_config_map("team", {"metadata": {"name": "settings"}})
    with pytest.raises(ApiException) as denied:
        luis.create_namespaced_config_map("other", {"metadata": {"name": "settings"}})
    assert denied.value.status == 403
    assert delete_bindings(admin, "luis") == [f"RoleBinding/team/{binding_name('luis')}"]
