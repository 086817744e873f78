"""``replace -f FILE [--force]``: replace stored objects with the file's (conditional, validated first)."""

from __future__ import annotations

import click

from pykops.cli.common import check_spec, globals_of, open_registry
from pykops.cli.create import read_spec_file
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.errors import NotFoundError, UsageError


@click.command("replace", context_settings=CONTEXT_SETTINGS)
@click.option(
    "-f", "--filename", "filenames", multiple=True, required=True, help="YAML file with the new objects."
)
@click.option("--force", is_flag=True, help="Create objects that do not exist yet.")
@cluster_options
@click.pass_context
def command(ctx: click.Context, filenames: tuple[str, ...], force: bool) -> None:
    """Replace a cluster and/or instance groups with the objects of a file.

    \b
    Examples:
      pykops get all --name proyecto.k8s.local -o yaml > cluster.yaml
      $EDITOR cluster.yaml
      pykops replace -f cluster.yaml
    """
    from pykops.api.models import Cluster, InstanceGroup
    from pykops.api.new_cluster import CLUSTER_LABEL
    from pykops.api.serialize import load_documents
    from pykops.api.validate import refuse_network_change

    g = globals_of(ctx)
    objects: list[Cluster | InstanceGroup] = []
    for path in filenames:
        text, source = read_spec_file(path)
        objects.extend(load_documents(text, source))
    clusters = [o for o in objects if isinstance(o, Cluster)]
    if len(clusters) > 1:
        raise UsageError("a file may replace one Cluster at a time")
    new_cluster = clusters[0] if clusters else None
    cluster_name = new_cluster.name if new_cluster else g.name
    groups = [o for o in objects if isinstance(o, InstanceGroup)]
    for group in groups:
        label = (group.metadata.labels or {}).get(CLUSTER_LABEL)
        cluster_name = cluster_name or label
        if label and cluster_name and label != cluster_name:
            raise UsageError(
                f'InstanceGroup "{group.name}" is labelled for cluster {label}, not {cluster_name}'
            )
    if not cluster_name:
        raise UsageError(
            "cannot tell which cluster to change: include the Cluster, label the groups, or pass --name"
        )

    registry = open_registry(g)
    exists = registry.exists(cluster_name)
    if not exists and not force:
        raise NotFoundError(
            f"cluster {cluster_name} does not exist in {registry.store.url}; use --force to create it"
        )
    stored_cluster = registry.get_cluster(cluster_name) if exists else None
    stored_groups = {s.obj.name: s for s in registry.get_groups(cluster_name)} if exists else {}
    for group in groups:
        if group.name not in stored_groups and not force:
            raise NotFoundError(
                f"instance group {group.name} does not exist in cluster {cluster_name}; "
                "use --force to create it"
            )
    final_cluster = new_cluster or (stored_cluster.obj if stored_cluster else None)
    if final_cluster is None:
        raise UsageError(f"cluster {cluster_name} does not exist; the file must include its Cluster")
    final_groups = {name: s.obj for name, s in stored_groups.items()}
    final_groups.update({grp.name: grp for grp in groups})
    refuse_network_change(stored_cluster.obj if stored_cluster else None, new_cluster)
    check_spec(final_cluster, list(final_groups.values()), state=g.state)

    if new_cluster is not None:
        if stored_cluster is None:
            registry.create_cluster(new_cluster, [])
        elif new_cluster != stored_cluster.obj:
            registry.update_cluster(new_cluster, stored_cluster.version)
        click.echo(f"Replaced cluster/{cluster_name}")
    for group in groups:
        previous = stored_groups.get(group.name)
        if previous is None:
            registry.create_group(cluster_name, group)
        elif group != previous.obj:
            registry.update_group(cluster_name, group, previous.version)
        click.echo(f"Replaced instancegroup/{group.name}")
