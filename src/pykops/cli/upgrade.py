"""``upgrade cluster``, ``reconcile cluster`` (issue 7)."""

from __future__ import annotations

from typing import Any

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import info, render_table, warn
from pykops.cli.validate import kubeconfig_option


def _running_versions(name: str, kubeconfig: str | None) -> tuple[list[str], dict[str, str], str | None]:
    """API server versions (the version endpoint and the control-plane kubelets) and kubelet versions."""
    from pykops.errors import PykopsError
    from pykops.ops.kubeclient import KubeClient

    try:
        kube = KubeClient.for_cluster(name, kubeconfig)
        nodes = kube.nodes()
        server = kube.server_version()
    except PykopsError as exc:
        return [], {}, str(exc)
    # Every control-plane node runs an API server of its kubelet's version (nodeup renders both from one
    # spec); /version answers for just the one API server behind the load balancer, so it is the fallback.
    apiservers = [n.kubelet_version for n in nodes if n.role == "control-plane" and n.kubelet_version]
    if not apiservers and server:
        apiservers = [server]
    return apiservers, {n.name: n.kubelet_version for n in nodes if n.kubelet_version}, None


def run_upgrade(
    registry: Any, name: str, *, version: str | None, channel: str | None, yes: bool, kubeconfig: str | None
) -> bool:
    """Show (and with ``yes`` write) the upgrade; returns whether the spec changed."""
    from pykops.api.channel import load_channel
    from pykops.errors import SpecError
    from pykops.ops.update import load_completed
    from pykops.ops.upgrade import apply_proposal, propose
    from pykops.state.lock import cluster_lock

    cluster, groups, _ = load_completed(registry, name)
    chan = load_channel(channel or cluster.spec.channel or "stable")
    apiservers, kubelets, error = _running_versions(name, kubeconfig)
    if error:
        warn(f"version skew not checked against the running cluster: {error}")
    proposal = propose(
        cluster, list(groups), channel=chan, requested=version, apiservers=apiservers, kubelets=kubelets
    )
    if proposal.up_to_date:
        click.echo(f"No upgrade required: Kubernetes {proposal.current} is current in channel {chan.name}")
        return False
    rows = [[c.what, c.field, c.old, c.new] for c in proposal.changes]
    click.echo(render_table(["ITEM", "PROPERTY", "OLD", "NEW"], rows), nl=False)
    if proposal.problems:
        raise SpecError("the upgrade breaks the version-skew policy: " + "; ".join(proposal.problems))
    if not yes:
        click.echo(f"\nMust specify --yes to perform the upgrade (pykops upgrade cluster {name} --yes)")
        return False
    with cluster_lock(registry.store, name, "upgrade cluster"):
        apply_proposal(registry, name, proposal)
    click.echo(f"\nUpgraded the spec of {name} to Kubernetes {proposal.target}.")
    click.echo(
        f"Next: pykops update cluster {name} --yes, then pykops rolling-update cluster {name} --yes "
        f"(or pykops reconcile cluster {name} --yes for both, control plane first)"
    )
    return True


def register(cli: click.Group) -> None:
    """Add ``upgrade cluster`` and ``reconcile cluster`` to ``cli``."""

    @click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
    @cluster_options
    def upgrade() -> None:
        """Upgrade a cluster's Kubernetes version.

        \b
        Examples:
          pykops upgrade cluster                      # show the proposed version
          pykops upgrade cluster --yes                # write it to the spec
          pykops upgrade cluster --kubernetes-version 1.35.0 --yes
        """

    @upgrade.command("cluster", context_settings=CONTEXT_SETTINGS)
    @click.argument("positional_name", required=False, metavar="[NAME]")
    @cluster_options
    @click.option("--kubernetes-version", help="Upgrade to this version (same or next minor only).")
    @click.option("--channel", help="Channel to take the recommended version from (default: the cluster's).")
    @click.option("--yes", "-y", is_flag=True, help="Write the upgrade to the spec.")
    @kubeconfig_option
    @click.pass_context
    def upgrade_cluster(
        ctx: click.Context,
        positional_name: str | None,
        kubernetes_version: str | None,
        channel: str | None,
        yes: bool,
        kubeconfig: str | None,
    ) -> None:
        """Propose the channel's next Kubernetes version (patch first, then the next minor) and, with
        --yes, write it to the spec."""
        g = globals_of(ctx)
        name = g.require_name(positional_name)
        run_upgrade(
            open_registry(g),
            name,
            version=kubernetes_version,
            channel=channel,
            yes=yes,
            kubeconfig=kubeconfig,
        )

    cli.add_command(upgrade, "upgrade")

    @click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
    @cluster_options
    def reconcile() -> None:
        """Bring a cluster to its spec in the safe order."""

    @reconcile.command("cluster", context_settings=CONTEXT_SETTINGS)
    @click.argument("positional_name", required=False, metavar="[NAME]")
    @cluster_options
    @click.option(
        "--yes", "-y", is_flag=True, help="Apply (otherwise show what update cluster would change)."
    )
    @click.option("--validate-count", default=2, show_default=True, type=click.IntRange(1))
    @click.option("--validation-timeout", default="15m", show_default=True)
    @click.option("--drain-timeout", default="15m", show_default=True)
    @click.option("--post-drain-delay", default="5s", show_default=True)
    @click.option("--interval", default="15s", show_default=True, help="Wait after each termination.")
    @click.option("--poll-interval", default="5s", show_default=True)
    @click.option(
        "--create-kube-config", type=bool, default=True, show_default=True, help="As update cluster's."
    )
    @kubeconfig_option
    @click.pass_context
    def reconcile_cluster(ctx: click.Context, /, positional_name: str | None, yes: bool, **kw: Any) -> int:
        """update the control plane's groups, roll them, update the rest, roll the nodes (each validated)."""
        from pykops.cli.rolling import run_rolling, settings_from
        from pykops.cli.update import run_update
        from pykops.ops.instances import LiveCluster

        g = globals_of(ctx)
        name = g.require_name(positional_name)
        registry = open_registry(g)
        if not yes:
            return run_update(registry, name, yes=False)
        common = dict(
            force=False,
            cloudonly=False,
            instance_group=(),
            drain_timeout=kw["drain_timeout"],
            post_drain_delay=kw["post_drain_delay"],
            validate_count=kw["validate_count"],
            validation_timeout=kw["validation_timeout"],
            control_plane_interval=kw["interval"],
            node_interval=kw["interval"],
            fail_on_validate_error=True,
            fail_on_drain_error=True,
            max_surge=None,
            max_unavailable=None,
            poll_interval=kw["poll_interval"],
        )
        from pykops.ops.selection import select_groups

        groups = [(s.obj.name, s.obj.spec.role or "Node") for s in registry.get_groups(name)]
        control_plane = select_groups(groups, roles=("control-plane", "apiserver"))
        # First only the control plane's machines change, so no node (a replacement, a scale-up) can boot a
        # kubelet newer than the apiservers; then everything.
        steps: list[tuple[str, tuple[str, ...], frozenset[str] | None]] = [
            ("control plane", ("ControlPlane", "APIServer"), control_plane),
            ("nodes", ("Node", "Bastion"), None),
        ]
        for label, roles, only in steps:
            what = "the control plane's instance groups" if only is not None else "the whole cluster"
            info(f"== reconcile: update {what}, then roll the {label}")
            run_update(
                registry, name, yes=True, create_kube_config=kw["create_kube_config"], only_groups=only
            )
            live = LiveCluster(registry, name, kubeconfig=kw["kubeconfig"])
            settings = settings_from(**common, instance_group_roles=(",".join(roles),))
            run_rolling(live, settings, yes=True)
        click.echo(f"Cluster {name} reconciled.")
        return 0

    cli.add_command(reconcile, "reconcile")
