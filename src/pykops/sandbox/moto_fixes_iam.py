"""Fidelity fixes for moto's IAM (see :mod:`pykops.sandbox.aws_emulator`).

Tests: ``tests/test_aws_emulator_ec2.py``.
"""

from __future__ import annotations

from typing import Any

from pykops.sandbox.fidelity import FidelityFix


def _fix_remove_role_not_in_profile() -> None:
    """Answer ``RemoveRoleFromInstanceProfile`` of a role not in the profile with 404 ``NoSuchEntity``.

    moto removes the role from the profile's list with ``list.remove``, whose ``ValueError`` becomes HTTP 500
    when the role exists but is not (or no longer) in the profile. AWS answers 404 ``NoSuchEntity``.
    """
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import IAMBackend

    backend_cls: Any = IAMBackend
    remove_role = backend_cls.remove_role_from_instance_profile

    def _remove_role_from_instance_profile(self: Any, profile_name: str, role_name: str) -> None:
        profile = self.get_instance_profile(profile_name)
        role = self.get_role(role_name)
        if role not in profile.roles:
            raise NotFoundException(
                f"Role {role_name} could not be found in instance profile {profile_name}."
            )
        remove_role(self, profile_name, role_name)

    backend_cls.remove_role_from_instance_profile = _remove_role_from_instance_profile


IAM_FIXES: tuple[FidelityFix, ...] = (
    FidelityFix(
        "iam-remove-role-not-in-profile",
        "RemoveRoleFromInstanceProfile with a role that is not in the profile answers 404 NoSuchEntity",
        _fix_remove_role_not_in_profile,
    ),
)
