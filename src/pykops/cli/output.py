"""Terminal output: aligned tables, warnings, and the machine formats (-o yaml|json)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click


def use_colour(stream: object) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A kops-style table: left-aligned columns separated by at least three spaces.

    Written here instead of using rich: kops users script against these columns (awk, cut), so the text
    must be plain, stable and never wrapped to the terminal width, which rich tables do by design.
    """
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        text = "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        if n == 0 and use_colour(sys.stdout):
            text = click.style(text, bold=True)
        lines.append(text)
    return "\n".join(lines) + "\n"


def warn(message: str) -> None:
    prefix = click.style("Warning:", fg="yellow", bold=True) if use_colour(sys.stderr) else "Warning:"
    click.echo(f"{prefix} {message}", err=True)


def info(message: str) -> None:
    click.echo(message, err=True)
