"""``update cluster``: show the exact plan; with ``--yes`` apply it (locked, parallel, retried)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import info, warn

if TYPE_CHECKING:
    from pykops.engine.executor import Event
    from pykops.state.registry import ClusterRegistry

# Documented exit code: `update cluster` without --yes when changes are pending (like `terraform plan
# -detailed-exitcode`'s 2, which pykops already uses for usage errors).
EXIT_CHANGES_PENDING = 3


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def command() -> None:
    """Apply the cluster spec to the cloud.

    \b
    Examples:
      pykops update cluster proyecto.k8s.local          # show what would change (exit 3 if anything)
      pykops update cluster proyecto.k8s.local --yes    # apply it
    """


command.name = "update"


def progress_printer(total: int) -> Callable[[Event], None]:
    """Engine events → one line per finished, retried or failed change, with the count and the time."""
    start = time.monotonic()
    finished = 0

    def on_event(event: Event) -> None:
        nonlocal finished
        if event.status == "started":
            return
        if event.status in ("done", "failed", "skipped"):
            finished += 1
        detail = ""
        if event.status == "retrying":
            detail = f" (attempt {event.attempt} failed: {event.error}; retrying in {event.delay:.1f}s)"
        elif event.status == "failed":
            detail = f": {event.error}"
        info(
            f"  [{time.monotonic() - start:6.1f}s {finished:>3}/{total}] {event.action:<7} {event.status:<8} "
            f"{event.kind}/{event.name}{detail}"
        )

    return on_event


def run_update(
    registry: ClusterRegistry,
    name: str,
    *,
    yes: bool,
    create_kube_config: bool = True,
    only_groups: frozenset[str] | None = None,
) -> int:
    """Plan (and with ``yes`` apply) the cluster; returns the exit code. ``only_groups``: the instance
    groups whose machines may change (None: all)."""
    from pykops.engine.plan import render_plan, summary
    from pykops.ops.update import apply_plan, plan_cluster
    from pykops.state.lock import cluster_lock

    if only_groups is not None:
        info(f"only instance groups {', '.join(sorted(only_groups)) or '(none)'}: the others' machines wait")
    if not yes:
        plan = plan_cluster(registry, name, only_groups=only_groups)
        for message in plan.warnings:
            warn(message)
        if not plan.changes:
            click.echo("No changes need to be applied.")
            return 0
        click.echo(render_plan(plan.changes, plan.kinds), nl=False)
        click.echo(f"\nPlan: {summary(plan.changes)}.")
        click.echo(f"Must specify --yes to apply changes (pykops update cluster {name} --yes)")
        return EXIT_CHANGES_PENDING

    with cluster_lock(registry.store, name, "update cluster"):
        plan = plan_cluster(registry, name, only_groups=only_groups)
        for message in plan.warnings:
            warn(message)
        if plan.changes:
            click.echo(f"Applying: {summary(plan.changes)}.")
        elapsed = apply_plan(registry, plan, on_event=progress_printer(len(plan.changes)))
    release_warning = plan.release.warning() if plan.release is not None else None
    if release_warning:
        warn(release_warning)
    if create_kube_config:
        from pykops.ops.kubeconfig import export_kubeconfig

        path, notes = export_kubeconfig(registry.store, plan.cluster)
        for message in notes:
            warn(message)
        info(f"kubeconfig: context {name} written to {path}")
    mutating = sum(plan.cloud.calls.mutating().values())
    if not plan.changes:
        click.echo("No changes need to be applied.")
    else:
        click.echo(
            f"\nCluster changes have been applied to the cloud in {elapsed:.1f}s ({mutating} AWS changes)."
        )
    if plan.needs_rolling_update:
        click.echo(
            "\nChanges may require instances to restart: instance groups "
            + ", ".join(n.split(".", 1)[0] for n in plan.needs_rolling_update)
            + f" have a new launch template version (run: pykops rolling-update cluster {name})"
        )
    return 0


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[NAME]")
@cluster_options
@click.option(
    "--yes", "-y", is_flag=True, help="Apply the changes (otherwise only show them; exit 3 if any)."
)
@click.option(
    "--create-kube-config",
    type=bool,
    default=True,
    show_default=True,
    help="Export a kubeconfig context for the cluster after applying.",
)
@click.option(
    "--instance-group",
    multiple=True,
    help="Change only these instance groups' machines (repeatable, comma-separated); default all.",
)
@click.option(
    "--instance-group-roles",
    multiple=True,
    help="Change only the machines of groups with these roles (control-plane, apiserver, node, bastion).",
)
@click.pass_context
def update_cluster(
    ctx: click.Context,
    positional_name: str | None,
    yes: bool,
    create_kube_config: bool,
    instance_group: tuple[str, ...],
    instance_group_roles: tuple[str, ...],
) -> int:
    """Create or update the cloud resources of a cluster to match its spec.

    With --instance-group or --instance-group-roles, only those groups' launch templates, Auto Scaling
    groups and bootstrap configuration change (shared resources change as usual): reconcile cluster uses
    it to upgrade the control plane before any node can boot a newer kubelet.
    """
    from pykops.cli.common import split_list
    from pykops.ops.selection import select_groups

    g = globals_of(ctx)
    name = g.require_name(positional_name)
    registry = open_registry(g)
    only_groups = None
    if instance_group or instance_group_roles:
        registry.get_cluster(name)  # a missing cluster is said as such, not as a missing group
        groups = [(s.obj.name, s.obj.spec.role or "Node") for s in registry.get_groups(name)]
        only_groups = select_groups(groups, split_list(instance_group), split_list(instance_group_roles))
    code = run_update(registry, name, yes=yes, create_kube_config=create_kube_config, only_groups=only_groups)
    ctx.exit(code)
    return code
