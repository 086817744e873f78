"""``get addons`` and ``addons apply``: the cluster add-ons (issue 5)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pykops.cli.common import globals_of
from pykops.cli.common import output_option as make_output_option
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.cli.output import info, render_table, warn

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from pykops.addons.applier import AddonState

KUBECONFIG_HELP = (
    "Kubeconfig file with a context named after the cluster (default $KUBECONFIG, ~/.kube/config)."
)


def api_client(kubeconfig: str | None, cluster_name: str) -> ApiClient:
    """A client for the cluster's API from the kubeconfig context named after the cluster (as exported)."""
    from pykops.ops.kubeclient import load_api_client

    client: ApiClient = load_api_client(cluster_name, kubeconfig)
    return client


def states_table(states: list[AddonState]) -> str:
    return render_table(["NAME", "VERSION", "STATE"], [[s.name, s.version, s.state] for s in states])


def register(cli: click.Group) -> None:
    """``get addons`` in the existing ``get`` group, and the ``addons`` group with ``apply``."""
    get_group = cli.commands["get"]
    assert isinstance(get_group, click.Group)
    get_group.add_command(get_addons)
    cli.add_command(addons)


@click.command("addons", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", metavar="NAME", required=False)
@cluster_options
@click.option("--kubeconfig", default=None, help=KUBECONFIG_HELP)
@make_output_option(("table", "yaml", "json"))
@click.pass_context
def get_addons(ctx: click.Context, positional_name: str | None, kubeconfig: str | None, output: str) -> None:
    """List the cluster's add-ons (NAME VERSION STATE).

    STATE compares the channel that 'update cluster' wrote with what the cluster records: applied, pending
    (never applied), outdated (an older version or manifest is applied), obsolete (applied, no longer in the
    channel: the next apply removes it), or unknown when the API cannot be reached.
    """
    import yaml

    from pykops.addons.applier import addon_states, read_records
    from pykops.addons.channel import read_channel
    from pykops.state.store import open_store

    g = globals_of(ctx)
    cluster_name = g.require_name(positional_name)
    channel, _ = read_channel(open_store(g.require_state()), cluster_name)
    records = None
    try:
        records = read_records(api_client(kubeconfig, cluster_name))
    except Exception as exc:  # any failure to reach the API only makes STATE unknown
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warn(f"cannot read the add-on records from the cluster's API ({reason}); STATE is unknown")
    states = addon_states(channel, records)
    if output == "table":
        click.echo(states_table(states), nl=False)
        return
    docs = [s.to_dict() for s in states]
    if output == "json":
        click.echo(json.dumps(docs, indent=2))
    else:
        click.echo(yaml.safe_dump(docs, sort_keys=False), nl=False)


@click.group("addons", context_settings=CONTEXT_SETTINGS)
def addons() -> None:
    """Cluster add-ons (DNS, network plugin, cloud controller, storage, optional ones)."""


@addons.command("apply", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", metavar="NAME", required=False)
@cluster_options
@click.option("--kubeconfig", default=None, help=KUBECONFIG_HELP)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds to wait, in all, for the applied add-ons' workloads to be available (0: do not wait).",
)
@click.pass_context
def apply_addons(
    ctx: click.Context, positional_name: str | None, kubeconfig: str | None, timeout: float
) -> None:
    """Apply the add-ons channel from the state store to the cluster's API (server-side apply, pruning)."""
    from pykops.addons.applier import apply_from_state_store

    g = globals_of(ctx)
    cluster_name = g.require_name(positional_name)
    report = apply_from_state_store(
        api_client(kubeconfig, cluster_name),
        cluster_name=cluster_name,
        state_store=g.require_state(),
        wait_timeout=timeout,
    )
    for line in report.applied:
        info(f"applied {line}")
    for line in report.removed:
        info(f"removed {line}")
    for line in report.pruned:
        info(f"pruned {line}")
    for line in report.not_ready:
        warn(f"{line} is not available after {timeout:g}s (it stays applied; check its pods)")
    info(f"Add-ons: {report.summary()}")
