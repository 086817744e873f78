"""``create user`` / ``delete user``: request checks and the RBAC binding (pure parts)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pykops.errors import UsageError
from pykops.ops.users import USER_LABEL, binding_for, check_request

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
