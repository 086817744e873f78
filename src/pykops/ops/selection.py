"""``--instance-group`` / ``--instance-group-roles``: which instance groups a command acts on.

Shared by ``update cluster`` (only these groups' machines change) and ``rolling-update cluster`` (only these
groups are rolled); a name or role that matches nothing is an error, not a silent no-op.
"""

from __future__ import annotations

from collections.abc import Iterable

from pykops.errors import UsageError

#: kops' role names and the aliases its flags accept (``master`` is the old name of the control plane).
ROLE_ALIASES = {
    "controlplane": "ControlPlane",
    "control-plane": "ControlPlane",
    "master": "ControlPlane",
    "apiserver": "APIServer",
    "node": "Node",
    "bastion": "Bastion",
}


def canonical_role(role: str) -> str:
    """``control-plane``, ``Master``, ``ControlPlane`` → ``ControlPlane``; an unknown role stays as given."""
    return ROLE_ALIASES.get(role.strip().lower(), role.strip())


def select_groups(
    groups: Iterable[tuple[str, str]], names: Iterable[str] = (), roles: Iterable[str] = ()
) -> frozenset[str] | None:
    """The names of the ``(name, role)`` groups chosen by ``names`` and ``roles`` (both given: groups that
    match both), or None when neither is given (all groups)."""
    groups = list(groups)
    names, roles = list(names), list(roles)
    if not names and not roles:
        return None
    known = {name for name, _ in groups}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"no instance group named {unknown[0]!r}; the cluster has: {', '.join(sorted(known))}"
        )
    bad_roles = [r for r in roles if r.strip().lower() not in ROLE_ALIASES]
    if bad_roles:
        raise UsageError(
            f"unknown instance group role {bad_roles[0]!r}; use control-plane, apiserver, node or bastion"
        )
    wanted_roles = {canonical_role(r) for r in roles}
    return frozenset(
        name
        for name, role in groups
        if (not names or name in names) and (not wanted_roles or canonical_role(role) in wanted_roles)
    )
