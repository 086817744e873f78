"""``delete cluster`` and ``delete instancegroup`` (spec only: no cloud resources exist yet)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pykops.cli.common import check_spec, globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import info, render_table, warn
from pykops.errors import NotFoundError, PykopsError, SpecError

if TYPE_CHECKING:
    from pykops.engine.types import Change
    from pykops.ops.update import ClusterPlan


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


def _change_id(change: Change) -> str:
    return change.actual.id if change.actual is not None else f"{change.kind}/{change.name}"


def _resource_rows(changes: list[Change]) -> list[list[object]]:
    return [[c.kind, c.actual.id if c.actual else "", c.name] for c in changes]


#: Passes of delete cluster: while the control plane still runs, in-cluster controllers (the cloud controller
#: manager, the EBS CSI driver) may create a load balancer or a volume after the first pass listed what to
#: delete; a later pass, with the machines gone, finds and deletes those too instead of leaking them.
DELETE_PASSES = 3


def _delete_resources(name: str, region: str, changes: list[Change], plan: ClusterPlan) -> None:
    """Delete what ``plan_delete`` found, again while new resources appear; list and refuse (keeping the
    state) if anything is left after the last pass."""
    from pykops.cli.update import progress_printer
    from pykops.engine.executor import apply
    from pykops.engine.types import ApplyError
    from pykops.ops.update import plan_delete

    failure: ApplyError | None = None
    seen: set[str] = set()
    for attempt in range(DELETE_PASSES):
        ids = {_change_id(c) for c in changes}
        if not changes or (attempt and failure is not None and ids <= seen):
            break  # done, or the last pass failed and nothing new appeared: another pass would fail alike
        seen |= ids
        if attempt:
            info(f"{len(changes)} cloud resources of {name} appeared or remained; deleting them too")
        else:
            click.echo(f"Deleting {len(changes)} cloud resources of {name}...")
        try:
            progress = progress_printer(len(changes))
            apply(changes, plan.kinds, plan.cloud, desired=[], actual=plan.actual, on_event=progress)
            failure = None
        except ApplyError as exc:
            failure = exc
        changes, plan = plan_delete(name, region)
    if not changes:
        return
    click.echo(render_table(["TYPE", "ID", "NAME"], _resource_rows(changes)), nl=False)
    if failure is not None:
        raise PykopsError(
            f"{len(changes)} resources of {name} could not be deleted ({failure}); the state was kept: "
            f"fix the cause and run pykops delete cluster {name} --yes again"
        )
    raise PykopsError(
        f"{len(changes)} resources of {name} are still there; the state was kept: run the command again"
    )


def _retained(name: str, plan: ClusterPlan, delete_them: bool) -> dict[str, str]:
    """The volumes to keep (id → why), unless ``delete_them``; warns if the API could not be asked."""
    from pykops.ops.retain import find_retained

    found = find_retained(name, plan.cloud)
    if found.warning:
        warn(found.warning)
    if delete_them:
        if found.volumes:
            warn(
                f"--delete-retained-volumes: deleting {len(found.volumes)} volumes whose data was to be kept"
            )
        return {}
    return found.volumes


def _show_retained(retained: dict[str, str]) -> None:
    if retained:
        click.echo("\nKept (reclaim policy Retain; the cluster's tags are removed, the data stays):")
        rows = [["EBSVolume", vid, why] for vid, why in sorted(retained.items())]
        click.echo(render_table(["TYPE", "ID", "RETAINED BY"], rows), nl=False)


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[NAME]")
@cluster_options
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.option("--region", help="AWS region, when the cluster's spec is gone from the state store.")
@click.option(
    "--delete-retained-volumes",
    is_flag=True,
    help="Also delete the EBS volumes behind PersistentVolumes with reclaim policy Retain (kept by default).",
)
@click.pass_context
def delete_cluster(
    ctx: click.Context,
    positional_name: str | None,
    yes: bool,
    region: str | None,
    delete_retained_volumes: bool,
) -> int:
    """Delete a cluster: every cloud resource tagged for it (found by tags, not the spec), then its state.

    Shared resources (a shared VPC or subnets, tagged ``shared``) and other clusters' resources are never
    touched. Resources are deleted in dependency order, in parallel where possible, retrying while AWS
    still reports dependencies; anything left is listed and the state is kept so the command can be re-run.
    Volumes that back PersistentVolumes with reclaim policy Retain (or tagged pykops.io/reclaim-policy=Retain)
    are kept, without the cluster's tags, unless --delete-retained-volumes.
    """
    from pykops.ops.update import plan_delete, region_of

    g = globals_of(ctx)
    name = g.require_name(positional_name)
    registry = open_registry(g)
    has_state = registry.exists(name)
    if has_state:
        region = region or region_of(registry.get_cluster(name).obj)
    elif region is None:
        raise NotFoundError(
            f"cluster {name!r} not found in state store {registry.store.url}; to delete its cloud resources "
            "anyway, pass --region"
        )
    if not yes:
        changes, plan = plan_delete(name, region)
        retained = _retained(name, plan, delete_retained_volumes)
        changes = [c for c in changes if not (c.actual and c.actual.id in retained)]
        rows = _resource_rows(changes)
        keys = registry.store.list(f"{name}/") if has_state else []
        rows += [
            ["state", f"{registry.store.url.rstrip('/')}/{key}", key.removeprefix(f"{name}/")] for key in keys
        ]
        if rows:
            click.echo(render_table(["TYPE", "ID", "NAME"], rows), nl=False)
        _show_retained(retained)
        click.echo(f"\nMust specify --yes to delete cluster {name}")
        return 0
    from contextlib import nullcontext

    from pykops.state.lock import cluster_lock

    with cluster_lock(registry.store, name, "delete cluster") if has_state else nullcontext():
        changes, plan = plan_delete(name, region)
        retained = _retained(name, plan, delete_retained_volumes)
        if retained:
            from pykops.ops.retain import release

            release(name, plan.cloud, retained)  # untagged first: nothing below can find them
            _show_retained(retained)
            changes, plan = plan_delete(name, region)
        _delete_resources(name, region, changes, plan)
        removed = registry.delete_cluster(name) if has_state else 0
    from pykops.ops.kubeconfig import remove_context

    if remove_context(name):
        info(f"Removed the kubectl context {name}")
    click.echo(f"Deleted cluster: {name} ({len(changes)} cloud resources, {removed} state objects)")
    return 0


@command.command("instancegroup", context_settings=CONTEXT_SETTINGS)
@click.argument("group_name", metavar="NAME")
@cluster_options
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.option("--cloudonly", is_flag=True, help="Do not drain the group's nodes first.")
@click.option("--kubeconfig", help="kubeconfig for draining (default: $KUBECONFIG, else ~/.kube/config).")
@click.pass_context
def delete_instancegroup(
    ctx: click.Context, group_name: str, yes: bool, cloudonly: bool = False, kubeconfig: str | None = None
) -> None:
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
            f"cannot delete instance group {group_name}: etcd members {', '.join(members)} run on it "
            "and etcd needs an odd number of members; to move it, change the group (edit ig) and roll it"
        )
    check_spec(cluster, remaining, state=g.state)
    if not yes:
        click.echo(
            f'InstanceGroup "{group_name}" found for deletion\n\nMust specify --yes to delete instancegroup'
        )
        return
    if not cloudonly:
        from pykops.cli.instances import drain_before_delete

        drain_before_delete(name, group_name, kubeconfig=kubeconfig)
    registry.delete_group(name, group_name, stored.version)
    click.echo(f"InstanceGroup {group_name} deleted")
