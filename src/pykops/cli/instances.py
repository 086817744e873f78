"""``get instances``, ``delete instance`` (issue 7)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this module's commands to ``cli`` (none yet)."""
