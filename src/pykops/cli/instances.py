"""``get instances``, ``delete instance`` (issue 7)."""

from __future__ import annotations

from typing import Any

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.cli.output import info, render_table, warn
from pykops.cli.validate import emit_doc, kubeconfig_option, parse_seconds


def register(cli: click.Group) -> None:
    """Add ``get instances`` and ``delete instance`` to the existing ``get`` and ``delete`` groups."""
    get_group = cli.commands["get"]
    delete_group = cli.commands["delete"]
    assert isinstance(get_group, click.Group) and isinstance(delete_group, click.Group)

    @click.command("instances", context_settings=CONTEXT_SETTINGS)
    @cluster_options
    @click.option(
        "-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True
    )
    @kubeconfig_option
    @click.pass_context
    def get_instances(ctx: click.Context, output: str, kubeconfig: str | None) -> None:
        """List the cluster's instances (ID NODE-NAME STATUS ROLES STATE INTERNAL-IP EXTERNAL-IP
        INSTANCE-GROUP MACHINE-TYPE)."""
        from pykops.ops.instances import INSTANCE_HEADERS, LiveCluster, instance_rows, mark_version_skew

        g = globals_of(ctx)
        live = LiveCluster(open_registry(g), g.require_name(), kubeconfig=kubeconfig)
        nodes = live.nodes_or_none()
        if nodes is None:
            warn(f"{live.kube_error}; NODE-NAME is left empty")
        cloud = live.cloud_groups()
        mark_version_skew(cloud, nodes or [], live.applied_kubernetes_versions())
        rows = instance_rows(live.specs, cloud, nodes)
        if output == "table":
            click.echo(render_table(INSTANCE_HEADERS, rows), nl=False)
        else:
            keys = [h.lower() for h in INSTANCE_HEADERS]
            emit_doc({"instances": [dict(zip(keys, r, strict=True)) for r in rows]}, output)

    get_group.add_command(get_instances)

    @click.command("instance", context_settings=CONTEXT_SETTINGS)
    @click.argument("ref", metavar="ID|NODE")
    @cluster_options
    @click.option("--yes", "-y", is_flag=True, help="Really delete.")
    @click.option("--surge", is_flag=True, help="Launch and wait for a replacement before draining.")
    @click.option("--cloudonly", is_flag=True, help="Do not drain (no Kubernetes API needed).")
    @click.option("--drain-timeout", default="15m", show_default=True)
    @click.option("--post-drain-delay", default="5s", show_default=True)
    @click.option(
        "--validation-timeout", default="15m", show_default=True, help="Wait this long for the replacement."
    )
    @kubeconfig_option
    @click.pass_context
    def delete_instance(
        ctx: click.Context, /, ref: str, yes: bool, surge: bool, cloudonly: bool, **kw: Any
    ) -> None:
        """Delete an instance (by id or node name): cordon, drain, terminate; its group launches a replacement
        (first, with --surge)."""
        from pykops.ops.instances import LiveCluster, find_instance
        from pykops.ops.rolling import RollingUpdate, Settings, StoreJournal
        from pykops.state.lock import cluster_lock

        g = globals_of(ctx)
        name = g.require_name()
        live = LiveCluster(open_registry(g), name, kubeconfig=kw["kubeconfig"], need_api=not cloudonly)
        nodes = live.nodes_or_none() or []
        if yes and not cloudonly and live.kube_error:
            from pykops.errors import PykopsError

            raise PykopsError(f"{live.kube_error}; to terminate without draining, pass --cloudonly")
        group, inst = find_instance(live.cloud_groups(), nodes, ref)
        node = next((n.name for n in nodes if n.instance_id == inst.id), None)
        if not yes:
            click.echo(
                f"Instance {inst.id}"
                + (f" (node {node})" if node else "")
                + f" of {group.name} found for deletion"
            )
            click.echo("\nMust specify --yes to delete instance")
            return
        settings = Settings(
            cloud_only=cloudonly,
            drain_timeout=parse_seconds(kw["drain_timeout"]),
            post_drain_delay=parse_seconds(kw["post_drain_delay"]),
            validation_timeout=parse_seconds(kw["validation_timeout"]),
            node_interval=0,
            control_plane_interval=0,
        )
        with cluster_lock(live.registry.store, name, "delete instance"):
            run = RollingUpdate(
                live.aws,
                None if cloudonly else live.kube,
                live.specs,
                settings,
                journal=StoreJournal(live.registry.store, name),
                on_progress=lambda p: info(p.line()),
            )
            run.replace_instances(group.name, [inst.id], surge=surge)
        click.echo(f"Deleted instance {inst.id}" + (f" (node {node})" if node else ""))

    delete_group.add_command(delete_instance)


def drain_before_delete(
    cluster: str, group: str, *, kubeconfig: str | None = None, timeout: float = 900.0
) -> None:
    """``delete ig``: cordon and drain the group's nodes first (kops does too). Without a kubeconfig context
    for the cluster (never exported: a spec-only cluster) there is nothing to drain; an unreachable API is an
    error that points at ``--cloudonly``."""
    from pykops.errors import PykopsError
    from pykops.ops.kubeclient import KubeClient
    from pykops.ops.kubeconfig import kubeconfig_path, read_kubeconfig
    from pykops.ops.rolling import drain_group

    path = kubeconfig_path(kubeconfig)
    contexts = read_kubeconfig(path).get("contexts") or [] if path.exists() else []
    if not any(c.get("name") == cluster for c in contexts):
        info(f"not draining: no kubeconfig context {cluster} in {path} (use --cloudonly to skip this check)")
        return
    kube = KubeClient.for_cluster(cluster, kubeconfig)
    try:
        drained = drain_group(kube, group, timeout=timeout, on_node=lambda n: info(f"draining node {n}"))
    except PykopsError as exc:
        raise PykopsError(f"{exc}; to delete the group without draining, pass --cloudonly") from None
    if drained:
        info(f"drained {len(drained)} node(s) of {group}")
