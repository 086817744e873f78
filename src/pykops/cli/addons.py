"""``get addons`` and ``addons apply``: the cluster add-ons (issue 5)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this module's commands to ``cli`` (none yet)."""
