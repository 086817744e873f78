"""``get clusters|instancegroups|all`` with kops' columns, or -o yaml|json."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pykops.cli.common import OUTPUT_FORMATS, emit, globals_of, open_registry
from pykops.cli.common import output_option as make_output_option
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import render_table
from pykops.errors import NotFoundError

if TYPE_CHECKING:
    from pykops.api.models import Cluster, InstanceGroup

output_option = make_output_option(OUTPUT_FORMATS)


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def command() -> None:
    """List clusters and instance groups.

    \b
    Examples:
      pykops get clusters
      pykops get ig --name proyecto.k8s.local
      pykops get all --name proyecto.k8s.local -o yaml
    """


command.name = "get"


def _zones(cluster: Cluster, subnet_names: list[str] | None = None) -> list[str]:
    zones = [
        s.zone
        for s in cluster.spec.subnets or []
        if s.zone and (subnet_names is None or s.name in subnet_names)
    ]
    return sorted(set(zones))


def cluster_table(clusters: list[Cluster], wide: bool) -> str:
    headers = ["NAME", "CLOUD", "ZONES"] + (["KUBERNETES", "NETWORKING", "TOPOLOGY"] if wide else [])
    rows = []
    for c in clusters:
        row: list[object] = [c.name, c.spec.cloud_provider or "aws", ",".join(_zones(c))]
        if wide:
            plugin = c.spec.networking.plugin() if c.spec.networking else None
            topo = c.spec.topology.masters if c.spec.topology and c.spec.topology.masters else "public"
            row += [c.spec.kubernetes_version or "", plugin or "", topo]
        rows.append(row)
    return render_table(headers, rows)


def group_table(cluster: Cluster, groups: list[InstanceGroup], wide: bool) -> str:
    headers = ["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "ZONES"] + (["SUBNETS", "IMAGE"] if wide else [])
    rows = []
    for g in groups:
        row: list[object] = [
            g.name,
            g.role_label,
            g.spec.machine_type or "",
            g.spec.min_size if g.spec.min_size is not None else "",
            g.spec.max_size if g.spec.max_size is not None else "",
            ",".join(_zones(cluster, g.spec.subnets or [])),
        ]
        if wide:
            row += [",".join(g.spec.subnets or []), g.spec.image or ""]
        rows.append(row)
    return render_table(headers, rows)


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1)
@cluster_options
@output_option
@click.pass_context
def get_clusters(ctx: click.Context, names: tuple[str, ...], output: str) -> None:
    """List clusters (NAME CLOUD ZONES)."""
    g = globals_of(ctx)
    registry = open_registry(g)
    wanted = list(names) or registry.cluster_names()
    clusters = [registry.get_cluster(n).obj for n in wanted]
    if output in ("table", "wide"):
        if not clusters:
            click.echo(f"No clusters found in state store {registry.store.url}", err=True)
            return
        click.echo(cluster_table(clusters, output == "wide"), nl=False)
    else:
        emit(list(clusters), output)


@command.command("instancegroup", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1)
@cluster_options
@output_option
@click.pass_context
def get_instancegroups(ctx: click.Context, names: tuple[str, ...], output: str) -> None:
    """List a cluster's instance groups (NAME ROLE MACHINETYPE MIN MAX ZONES)."""
    g = globals_of(ctx)
    name = g.require_name()
    registry = open_registry(g)
    cluster = registry.get_cluster(name).obj
    groups = [s.obj for s in registry.get_groups(name)]
    if names:
        by_name = {grp.name: grp for grp in groups}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFoundError(
                f"instance group {missing[0]!r} not found in cluster {name} "
                f"(instance groups: {', '.join(by_name) or 'none'})"
            )
        groups = [by_name[n] for n in names]
    if output in ("table", "wide"):
        click.echo(group_table(cluster, groups, output == "wide"), nl=False)
    else:
        emit(list(groups), output)


@command.command("all", context_settings=CONTEXT_SETTINGS)
@cluster_options
@output_option
@click.pass_context
def get_all(ctx: click.Context, output: str) -> None:
    """Show the cluster and its instance groups."""
    g = globals_of(ctx)
    name = g.require_name()
    registry = open_registry(g)
    cluster = registry.get_cluster(name).obj
    groups = [s.obj for s in registry.get_groups(name)]
    if output in ("table", "wide"):
        click.echo("Cluster")
        click.echo(cluster_table([cluster], output == "wide"))
        click.echo("Instance Groups")
        click.echo(group_table(cluster, groups, output == "wide"), nl=False)
    else:
        emit([cluster, *groups], output)
