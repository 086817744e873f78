"""The fidelity-fix record shared by :mod:`pykops.sandbox.aws_emulator` and the ``moto_fixes_*`` modules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FidelityFix:
    """A patch to moto that restores one documented AWS behaviour."""

    name: str
    aws_behaviour: str
    apply: Callable[[], None]
