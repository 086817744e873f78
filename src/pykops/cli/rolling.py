"""``rolling-update cluster`` (issue 7): the table of what needs replacing, and with ``--yes`` the safe,
resumable replacement (see :mod:`pykops.ops.rolling`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from pykops.cli.common import globals_of, open_registry, split_list
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import info, render_table, warn
from pykops.cli.validate import kubeconfig_option, parse_seconds

if TYPE_CHECKING:
    from pykops.ops.instances import LiveCluster
    from pykops.ops.rolling import Progress, Settings, Summary

ROLLING_LOCK_LEASE = 6 * 3600.0  # a rolling update of a large cluster takes hours


def progress_printer() -> Callable[[Progress], None]:
    def on_progress(p: Progress) -> None:
        info(p.line())

    return on_progress


def summary_text(summary: Summary) -> str:
    lines = [f"Rolling update finished in {summary.seconds:.1f}s: {summary.replaced} instance(s) replaced"]
    for g in summary.groups:
        extra = f", {g.resumed} already drained by an earlier run" if g.resumed else ""
        lines.append(f"  {g.name}: {g.replaced} replaced in {g.seconds:.1f}s{extra}")
        for w in g.warnings:
            lines.append(f"    warning: {w}")
    for mark in summary.cleaned:
        what = "deleted its Node" if mark.action == "delete" else "uncordoned"
        lines.append(f"  left over from an earlier run: {mark.node} ({what})")
    return "\n".join(lines)


def run_rolling(
    live: LiveCluster,
    settings: Settings,
    *,
    yes: bool,
    interactive: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> int:
    """Show the table, or (``yes``) roll; returns the exit code."""
    from pykops.ops.instances import mark_version_skew
    from pykops.ops.rolling import RollingUpdate, StoreJournal, plan_groups, table_rows
    from pykops.ops.selection import select_groups
    from pykops.ops.validate import ApiUnreachable
    from pykops.state.lock import cluster_lock

    # a misspelt group or role is an error, not a rolling update of nothing
    groups = [(g.name, g.role) for g in live.specs]
    select_groups(groups, settings.instance_groups or (), settings.roles or ())
    if not yes:
        nodes = live.nodes_or_none()
        if nodes is None:
            warn(f"{live.kube_error}; READY and NODES are from the cloud only")
        cloud = live.cloud_groups()
        mark_version_skew(cloud, nodes or [], live.applied_kubernetes_versions())
        plans = plan_groups(
            live.specs,
            cloud,
            nodes or [],
            force=settings.force,
            only=settings.instance_groups,
            roles=settings.roles,
        )
        counts: dict[str, int] = {}
        for n in nodes or []:
            if n.group:
                counts[n.group] = counts.get(n.group, 0) + 1
        rows = table_rows(plans, counts)
        click.echo(
            render_table(["NAME", "STATUS", "NEEDUPDATE", "READY", "MIN", "TARGET", "MAX", "NODES"], rows),
            nl=False,
        )
        if any(p.to_update for p in plans):
            click.echo(
                f"\nMust specify --yes to rolling-update (pykops rolling-update cluster {live.name} --yes)"
            )
        else:
            click.echo("\nNo rolling-update required.")
        return 0
    if live.kube is None and not settings.cloud_only:
        from pykops.errors import PykopsError

        raise PykopsError(f"{live.kube_error}; to replace instances without draining, pass --cloudonly")

    def confirm(question: str) -> bool:
        return click.confirm(question, default=False, err=True)

    if not settings.cloud_only and settings.kubernetes_version is None:
        settings.kubernetes_version = live.applied_kubernetes_versions()
    with cluster_lock(
        live.registry.store, live.name, "rolling-update cluster", lease_seconds=ROLLING_LOCK_LEASE
    ):
        run = RollingUpdate(
            live.aws,
            None if settings.cloud_only else live.kube,
            live.specs,
            settings,
            check=None if settings.cloud_only else live.check,
            journal=StoreJournal(live.registry.store, live.name),
            surge_spec=live.surge_spec(),
            on_progress=on_progress or progress_printer(),
            confirm=confirm if interactive else None,
        )
        try:
            summary = run.run()
        except ApiUnreachable as exc:
            raise ApiUnreachable(
                f"{exc}; the rolling update stopped (rerun it to resume; to replace instances without "
                "draining or validating, pass --cloudonly)"
            ) from None
    if not summary.groups:
        click.echo("No rolling-update required.")
    else:
        click.echo(summary_text(summary))
    return 0


def settings_from(**kw: Any) -> Settings:
    from pykops.ops.rolling import Settings

    return Settings(
        force=kw["force"],
        cloud_only=kw["cloudonly"],
        instance_groups=split_list(kw["instance_group"]) or None,
        roles=split_list(kw["instance_group_roles"]) or None,
        drain_timeout=parse_seconds(kw["drain_timeout"]),
        post_drain_delay=parse_seconds(kw["post_drain_delay"]),
        validate_count=kw["validate_count"],
        validation_timeout=parse_seconds(kw["validation_timeout"]),
        control_plane_interval=parse_seconds(kw["control_plane_interval"]),
        node_interval=parse_seconds(kw["node_interval"]),
        fail_on_validate_error=kw["fail_on_validate_error"],
        fail_on_drain_error=kw["fail_on_drain_error"],
        max_surge=kw["max_surge"],
        max_unavailable=kw["max_unavailable"],
        poll=min(5.0, max(0.2, parse_seconds(kw["poll_interval"]))),
        validation_interval=min(10.0, max(0.2, parse_seconds(kw["poll_interval"]))),
        drain_retry=min(5.0, max(0.2, parse_seconds(kw["poll_interval"]))),
    )


def register(cli: click.Group) -> None:
    """Add ``rolling-update cluster`` to ``cli``."""

    @click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
    @cluster_options
    def rolling_update() -> None:
        """Replace instances whose launch template changed.

        \b
        Examples:
          pykops rolling-update cluster                  # what needs replacing
          pykops rolling-update cluster --yes            # control plane first, then nodes
          pykops rolling-update cluster --yes --instance-group nodes --max-surge 3
        """

    @rolling_update.command("cluster", context_settings=CONTEXT_SETTINGS)
    @click.argument("positional_name", required=False, metavar="[NAME]")
    @cluster_options
    @click.option("--yes", "-y", is_flag=True, help="Perform the rolling update (otherwise show the table).")
    @click.option("--force", is_flag=True, help="Replace every instance, up to date or not.")
    @click.option("--cloudonly", is_flag=True, help="No Kubernetes API: no drain, no validation.")
    @click.option("--instance-group", multiple=True, help="Only these groups (repeatable, comma-separated).")
    @click.option(
        "--instance-group-roles", multiple=True, help="Only these roles (control-plane, node, ...)."
    )
    @click.option(
        "--drain-timeout", default="15m", show_default=True, help="Give up draining a node after this."
    )
    @click.option("--post-drain-delay", default="5s", show_default=True, help="Wait after draining.")
    @click.option("--validate-count", default=2, show_default=True, type=click.IntRange(1))
    @click.option("--validation-timeout", default="15m", show_default=True)
    @click.option("--control-plane-interval", "--master-interval", default="15s", show_default=True)
    @click.option("--node-interval", default="15s", show_default=True)
    @click.option("--fail-on-validate-error", type=bool, default=True, show_default=True)
    @click.option("--fail-on-drain-error", type=bool, default=True, show_default=True)
    @click.option("--max-surge", type=click.IntRange(0), help="Override maxSurge for node groups.")
    @click.option(
        "--max-unavailable", type=click.IntRange(0), help="Override maxUnavailable for node groups."
    )
    @click.option("--poll-interval", default="5s", show_default=True, help="How often to look while waiting.")
    @click.option("-i", "--interactive", is_flag=True, help="Ask before replacing each batch.")
    @kubeconfig_option
    @click.pass_context
    def rolling_update_cluster(ctx: click.Context, /, **kw: Any) -> int:
        """Show, or with --yes perform, a rolling update of the cluster's instances."""
        from pykops.ops.instances import LiveCluster

        g = globals_of(ctx)
        name = g.require_name(kw.pop("positional_name"))
        yes, interactive, kubeconfig = kw.pop("yes"), kw.pop("interactive"), kw.pop("kubeconfig")
        settings = settings_from(**kw)
        live = LiveCluster(open_registry(g), name, kubeconfig=kubeconfig, need_api=not settings.cloud_only)
        return run_rolling(live, settings, yes=yes, interactive=interactive)

    cli.add_command(rolling_update, "rolling-update")
