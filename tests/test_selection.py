"""--instance-group / --instance-group-roles: choosing groups, and what a restricted update may change."""

from __future__ import annotations

import pytest

from pykops.engine.types import Action, Change, Resource
from pykops.errors import UsageError
from pykops.ops.selection import canonical_role, select_groups
from pykops.ops.update import restrict_to_groups

GROUPS = [
    ("master-a", "Master"),
    ("control-plane-b", "ControlPlane"),
    ("nodes", "Node"),
    ("bastions", "Bastion"),
]


def test_roles_accept_kops_aliases() -> None:
    assert {canonical_role(r) for r in ("master", "Control-Plane", "controlplane")} == {"ControlPlane"}
    assert select_groups(GROUPS, roles=["control-plane"]) == {"master-a", "control-plane-b"}
    assert select_groups(GROUPS, roles=["Node", "bastion"]) == {"nodes", "bastions"}


def test_names_and_roles_together_and_neither() -> None:
    assert select_groups(GROUPS) is None
    assert select_groups(GROUPS, names=["nodes", "master-a"], roles=["master"]) == {"master-a"}
    assert select_groups(GROUPS, names=["nodes"]) == {"nodes"}


def test_unknown_names_and_roles_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="no instance group named 'node'; the cluster has: bastions, "):
        select_groups(GROUPS, names=["node"])
    with pytest.raises(UsageError, match="unknown instance group role 'worker'"):
        select_groups(GROUPS, roles=["worker"])


def _change(kind: str, name: str, action: Action = "update") -> Change:
    return Change(action, kind, name, desired=Resource(kind, name, {}))


def test_a_restricted_update_keeps_shared_changes_and_the_chosen_groups_only() -> None:
    changes = [
        _change("LaunchTemplate", "master-a.c.k8s.local"),
        _change("AutoScalingGroup", "master-a.c.k8s.local"),
        _change("LaunchTemplate", "nodes.c.k8s.local"),
        _change("AutoScalingGroup", "new-group.c.k8s.local", "create"),
        _change("SecurityGroup", "nodes.c.k8s.local"),  # shared by a role, not one group's
        _change("VPC", "c.k8s.local"),
    ]
    kept = restrict_to_groups(changes, "c.k8s.local", {"master-a"})
    assert [(c.kind, c.name) for c in kept] == [
        ("LaunchTemplate", "master-a.c.k8s.local"),
        ("AutoScalingGroup", "master-a.c.k8s.local"),
        ("SecurityGroup", "nodes.c.k8s.local"),
        ("VPC", "c.k8s.local"),
    ]
