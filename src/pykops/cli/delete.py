"""``delete cluster`` and ``delete instancegroup`` (spec only: no cloud resources exist yet)."""

from __future__ import annotations

import click

from pykops.cli.common import check_spec, globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import render_table
from pykops.errors import SpecError


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def command() -> None:
    """Delete a cluster or an instance group.

    \b
    Examples:
      pykops delete cluster proyecto.k8s.local          # show what would be deleted
      pykops delete cluster proyecto.k8s.local --yes
      pykops delete ig spot --name proyecto.k8s.local --yes
    """


command.name = "delete"


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[NAME]")
@cluster_options
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def delete_cluster(ctx: click.Context, positional_name: str | None, yes: bool) -> None:
    """Delete a cluster's state (this version creates no cloud resources, so there are none to delete)."""
    g = globals_of(ctx)
    name = g.require_name(positional_name)
    registry = open_registry(g)
    registry.get_cluster(name)  # a clear error when it does not exist
    keys = registry.store.list(f"{name}/")
    if not yes:
        rows = [
            ["state", f"{registry.store.url.rstrip('/')}/{key}", key.removeprefix(f"{name}/")] for key in keys
        ]
        click.echo(render_table(["TYPE", "ID", "NAME"], rows), nl=False)
        click.echo(f"\nMust specify --yes to delete cluster {name}")
        return
    removed = registry.delete_cluster(name)
    click.echo(f"Deleted cluster: {name} ({removed} state objects removed)")


@command.command("instancegroup", context_settings=CONTEXT_SETTINGS)
@click.argument("group_name", metavar="NAME")
@cluster_options
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def delete_instancegroup(ctx: click.Context, group_name: str, yes: bool) -> None:
    """Remove an instance group from the cluster's spec."""
    g = globals_of(ctx)
    name = g.require_name()
    registry = open_registry(g)
    cluster = registry.get_cluster(name).obj
    stored = registry.get_group(name, group_name)
    remaining = [s.obj for s in registry.get_groups(name) if s.obj.name != group_name]
    members = [
        f"{m.name} ({etcd.name})"
        for etcd in cluster.spec.etcd_clusters or []
        for m in etcd.etcd_members or []
        if m.instance_group == group_name
    ]
    if members:
        raise SpecError(
            f"cannot delete instance group {group_name}: etcd members {', '.join(members)} run on it; "
            "remove them from spec.etcdClusters first (keeping an odd member count), or replace the group"
        )
    check_spec(cluster, remaining, state=g.state)
    if not yes:
        click.echo(
            f'InstanceGroup "{group_name}" found for deletion\n\nMust specify --yes to delete instancegroup'
        )
        return
    registry.delete_group(name, group_name, stored.version)
    click.echo(f"InstanceGroup {group_name} deleted")
