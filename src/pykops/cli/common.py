"""Helpers shared by the commands: opening the state store, loading and checking specs, output formats."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pykops.cli.main import Globals
from pykops.cli.output import warn
from pykops.errors import UsageError

if TYPE_CHECKING:
    from pykops.api.models import Cluster, InstanceGroup
    from pykops.state.registry import ClusterRegistry

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_FORMATS = ("table", "wide", "yaml", "json")


def output_option(formats: tuple[str, ...] = OUTPUT_FORMATS) -> Callable[[F], F]:
    """``-o/--output`` with the given formats, table by default."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(formats),
        default="table",
        show_default=True,
        help="Output format.",
    )


def globals_of(ctx: click.Context) -> Globals:
    return ctx.ensure_object(Globals)


def open_registry(g: Globals) -> ClusterRegistry:
    from pykops.state.registry import ClusterRegistry
    from pykops.state.store import open_store

    return ClusterRegistry(open_store(g.require_state()))


def config_base(state: str | None, name: str) -> str | None:
    return f"{state.rstrip('/')}/{name}" if state else None


def check_spec(
    cluster: Cluster,
    groups: list[InstanceGroup],
    *,
    allow_even_control_plane: bool = False,
    state: str | None = None,
) -> None:
    """Populate and validate (pure); print warnings; raise SpecError before anything is written."""
    from pykops.api.populate import populate
    from pykops.api.validate import validate, validate_before_populate

    validate_before_populate(cluster, groups)
    completed, completed_groups = populate(cluster, groups, config_base=config_base(state, cluster.name))
    result = validate(completed, completed_groups, allow_even_control_plane=allow_even_control_plane)
    for message in result.warnings:
        warn(message)


def emit(objects: list[Cluster | InstanceGroup], output: str) -> None:
    from pykops.api.serialize import dump_json, dump_yaml

    if output == "yaml":
        click.echo(dump_yaml(objects), nl=False)
    elif output == "json":
        click.echo(dump_json(objects), nl=False)
    else:
        raise UsageError(f"-o {output}: expected yaml or json here")


def split_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """Flags given several times and/or comma-separated: ``--zones a,b --zones c`` → [a, b, c]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
