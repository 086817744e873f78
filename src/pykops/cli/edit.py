"""``edit cluster`` and ``edit instancegroup``: $EDITOR (re-opened on error, like kubectl) or --set."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from pykops.cli.common import check_spec, globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.errors import PykopsError, SpecError, UsageError

if TYPE_CHECKING:
    from pykops.api.models import Cluster, InstanceGroup

T = TypeVar("T", "Cluster", "InstanceGroup")

HEADER = (
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
    "# and an empty file will abort the edit. If an error occurs while saving this file will be\n"
    "# reopened with the relevant failures.\n"
    "#\n"
)

set_option = click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=VALUE",
    help="Set a field without an editor, e.g. spec.maxSize=3.",
)
unset_option = click.option("--unset", "unsets", multiple=True, metavar="PATH", help="Remove a field.")


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def command() -> None:
    """Edit a cluster or instance group spec.

    \b
    Examples:
      pykops edit cluster proyecto.k8s.local
      pykops edit ig nodes --set spec.minSize=3 --set spec.maxSize=3
      pykops edit cluster --set spec.kubernetesVersion=1.35.0
    """


command.name = "edit"


def _editor_command() -> list[str]:
    editor = os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi"
    return shlex.split(editor)


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def edit_in_editor(original: str, check: Callable[[str], None]) -> str | None:
    """Open the text in $EDITOR until ``check`` accepts it; None when the edit is cancelled.

    As kubectl does: errors are shown at the top of the re-opened file; an empty file or an unchanged
    one cancels; saving the same invalid text twice gives up with that error.
    """
    text = HEADER + original
    last_invalid: str | None = None
    with tempfile.TemporaryDirectory(prefix="pykops-edit-") as tmp:
        path = Path(tmp) / "edit.yaml"
        while True:
            path.write_text(text, encoding="utf-8")
            try:
                status = subprocess.run([*_editor_command(), str(path)], check=False).returncode
            except FileNotFoundError:
                raise UsageError(
                    f"editor {_editor_command()[0]!r} not found; set EDITOR or use --set"
                ) from None
            if status != 0:
                raise PykopsError(f"the editor exited with status {status}; no changes were saved")
            edited = _strip_comments(path.read_text(encoding="utf-8"))
            if not edited.strip():
                return None
            if edited.strip() == original.strip():
                return None
            try:
                check(edited)
            except PykopsError as exc:
                if last_invalid is not None and edited.strip() == last_invalid.strip():
                    raise SpecError(f"edit cancelled, no valid changes were saved: {exc}") from None
                last_invalid = edited
                text = HEADER + f"# error: {exc}\n#\n" + edited + ("\n" if not edited.endswith("\n") else "")
                continue
            return edited


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[NAME]")
@cluster_options
@set_option
@unset_option
@click.pass_context
def edit_cluster(
    ctx: click.Context, positional_name: str | None, sets: tuple[str, ...], unsets: tuple[str, ...]
) -> None:
    """Edit the cluster spec."""
    from pykops.api.models import Cluster
    from pykops.api.serialize import dump_yaml, load_one
    from pykops.api.validate import refuse_network_change

    g = globals_of(ctx)
    name = g.require_name(positional_name)
    registry = open_registry(g)
    stored = registry.get_cluster(name)
    groups = [s.obj for s in registry.get_groups(name)]

    def accept(cluster: Cluster) -> Cluster:
        if cluster.name != name:
            raise SpecError(f"metadata.name cannot be changed (was {name}, now {cluster.name})")
        refuse_network_change(stored.obj, cluster)
        check_spec(cluster, groups, state=g.state)
        return cluster

    updated = _apply(
        stored.obj,
        sets,
        unsets,
        lambda text: accept(load_one(text, Cluster, "edited cluster")),
        lambda: dump_yaml([stored.obj]),
    )
    if updated is None:
        click.echo("Edit cancelled, no changes made.", err=True)
        return
    if updated == stored.obj:
        click.echo(f"cluster/{name} unchanged")
        return
    registry.update_cluster(updated, stored.version)
    click.echo(f"cluster/{name} edited")


@command.command("instancegroup", context_settings=CONTEXT_SETTINGS)
@click.argument("group_name", metavar="NAME")
@cluster_options
@set_option
@unset_option
@click.pass_context
def edit_instancegroup(
    ctx: click.Context, group_name: str, sets: tuple[str, ...], unsets: tuple[str, ...]
) -> None:
    """Edit an instance group spec."""
    from pykops.api.models import InstanceGroup
    from pykops.api.serialize import dump_yaml, load_one

    g = globals_of(ctx)
    name = g.require_name()
    registry = open_registry(g)
    cluster = registry.get_cluster(name).obj
    stored = registry.get_group(name, group_name)
    others = [s.obj for s in registry.get_groups(name) if s.obj.name != group_name]

    def accept(group: InstanceGroup) -> InstanceGroup:
        if group.name != group_name:
            raise SpecError(f"metadata.name cannot be changed (was {group_name}, now {group.name})")
        check_spec(cluster, [*others, group], state=g.state)
        return group

    updated = _apply(
        stored.obj,
        sets,
        unsets,
        lambda text: accept(load_one(text, InstanceGroup, "edited instance group")),
        lambda: dump_yaml([stored.obj]),
    )
    if updated is None:
        click.echo("Edit cancelled, no changes made.", err=True)
        return
    if updated == stored.obj:
        click.echo(f"instancegroup/{group_name} unchanged")
        return
    registry.update_group(name, updated, stored.version)
    click.echo(f"instancegroup/{group_name} edited")


def _apply(
    obj: T,
    sets: tuple[str, ...],
    unsets: tuple[str, ...],
    parse_and_check: Callable[[str], T],
    render: Callable[[], str],
) -> T | None:
    from pykops.api.fieldpath import apply_changes
    from pykops.api.serialize import dump_yaml

    if sets or unsets:
        changed = apply_changes(obj, list(sets), list(unsets))
        return parse_and_check(dump_yaml([changed]))
    result: list[T] = []

    def check(text: str) -> None:
        result.clear()
        result.append(parse_and_check(text))

    edited = edit_in_editor(render(), check)
    return result[0] if edited is not None else None
