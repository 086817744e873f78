"""``validate cluster`` (issue 7): kops' checks, tables and exit code (2 when the cluster is not ready),
with ``--wait``/``--count`` for consecutive successes and an HA summary."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.cli.output import info, render_table, warn

if TYPE_CHECKING:
    from pykops.ops.instances import LiveCluster
    from pykops.ops.validate import Attempt, HASummary, ValidationResult


def parse_seconds(text: str | None, default: float = 0.0) -> float:
    """A Go-style duration (``10m``, ``30s``, ``1h30m``) or plain seconds; ``0`` allowed."""
    from pykops.ops.kubeconfig import parse_duration

    if text is None:
        return default
    value = text.strip()
    if value in ("0", "0s", "0m", "0h"):
        return 0.0
    try:
        return float(value)
    except ValueError:
        return parse_duration(value).total_seconds()


def groups_table(result_groups: list[Any]) -> str:
    rows = [
        [g.name, g.role, g.machine_type, g.min_size, g.max_size, ",".join(g.subnets)] for g in result_groups
    ]
    return render_table(["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "SUBNETS"], rows)


def ha_text(ha: HASummary) -> str:
    zones = ", ".join(f"{z} {r}/{t}" for z, (r, t) in sorted(ha.control_plane_by_zone.items())) or "none"
    lines = [
        f"control-plane nodes Ready per zone: {zones}",
        f"etcd members up: {ha.etcd_up} of {ha.etcd_members} (quorum {ha.etcd_quorum})",
        f"losses tolerated now: {ha.control_plane_losses_tolerated} control-plane node(s), "
        f"{ha.zone_losses_tolerated} zone(s)",
    ]
    return "\n".join(lines) + "\n"


def print_result(name: str, result: ValidationResult) -> None:
    click.echo("INSTANCE GROUPS")
    click.echo(groups_table(result.groups))
    click.echo("NODE STATUS")
    rows = [
        [n.name, n.role, "True" if n.ready else "False"] for n in sorted(result.nodes, key=lambda n: n.name)
    ]
    click.echo(render_table(["NAME", "ROLE", "READY"], rows))
    if result.ha is not None:
        click.echo("HIGH AVAILABILITY")
        click.echo(ha_text(result.ha))
        for message in result.ha.warnings:
            warn(message)
    if result.failures:
        click.echo("VALIDATION ERRORS")
        click.echo(
            render_table(["KIND", "NAME", "MESSAGE"], [[f.kind, f.name, f.message] for f in result.failures])
        )
        click.echo(f"Validation Failed: cluster {name} is not ready")
    else:
        click.echo(f"Your cluster {name} is ready")


def run_validate(
    live: LiveCluster, *, wait: float, count: int, interval: float, output: str, name: str
) -> int:
    """Validate (repeatedly with ``wait``); print; return the exit code (0 ready, 2 not)."""
    from pykops.ops.validate import ValidationFailed, cloud_only_ha, validate_until

    if output == "table":
        info(f"Validating cluster {name}\n")
    terminal = sys.stderr.isatty()
    status: Any = None
    if wait > 0 and terminal:
        from rich.console import Console

        status = Console(stderr=True).status("validating...")
        status.start()

    def on_attempt(attempt: Attempt) -> None:
        if wait <= 0 and count <= 1:
            return
        failures = len(attempt.result.failures) if attempt.result else 0
        what = (
            f"ok ({attempt.consecutive}/{count} in a row)"
            if attempt.ok
            else (attempt.error or f"{failures} validation error(s)")
        )
        text = f"validation attempt {attempt.number}: {what}"
        if status is not None:
            status.update(text)
        else:
            info(text)

    try:
        passed, result, error = validate_until(
            live.check, wait=wait, count=count, interval=interval, on_attempt=on_attempt
        )
    finally:
        if status is not None:
            status.stop()
    if result is None:
        # The API could not be reached: say so, and what the cloud alone tells about the control plane.
        message = error or "the Kubernetes API could not be reached"
        if output == "table":
            click.echo("INSTANCE GROUPS")
            click.echo(groups_table(live.specs))
            click.echo("VALIDATION ERRORS")
            click.echo(render_table(["KIND", "NAME", "MESSAGE"], [["API", name, message]]))
        else:
            emit_doc(
                {"ready": False, "failures": [{"kind": "API", "name": name, "message": message}]}, output
            )
        try:
            hint = cloud_only_ha(live.specs, live.cloud_groups(), live.etcd_members)
        except Exception:  # the cloud may be unreachable too: the API error is the one to report
            hint = None
        if hint:
            warn(hint)
        raise ValidationFailed(f"validation failed: cannot validate cluster {name}: {message}")
    if output == "table":
        print_result(name, result)
    else:
        emit_doc({"ready": passed, **result.to_dict()}, output)
    if not passed:
        if count > 1 and result.ok:
            raise ValidationFailed(
                f"validation failed: cluster {name} did not validate {count} times in a row within the wait"
            )
        raise ValidationFailed(
            f"validation failed: cluster {name} is not ready ({len(result.failures)} errors)"
        )
    return 0


def emit_doc(doc: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        import yaml

        click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


def kubeconfig_option(func: Any) -> Any:
    return click.option(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config); context = cluster name.",
    )(func)


def register(cli: click.Group) -> None:
    """Add ``validate cluster`` to ``cli``."""
    from pykops.cli.main import AliasGroup

    @click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
    @cluster_options
    def validate() -> None:
        """Validate a cluster.

        \b
        Examples:
          pykops validate cluster proyecto.k8s.local
          pykops validate cluster --wait 10m --count 3
        """

    @validate.command("cluster", context_settings=CONTEXT_SETTINGS)
    @click.argument("positional_name", required=False, metavar="[NAME]")
    @cluster_options
    @click.option("--wait", default="0s", show_default=True, help="Keep trying this long (e.g. 10m).")
    @click.option("--count", default=1, show_default=True, type=click.IntRange(1), help="Successes in a row.")
    @click.option("--interval", default="10s", show_default=True, help="Time between attempts.")
    @click.option(
        "-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table", show_default=True
    )
    @kubeconfig_option
    @click.pass_context
    def validate_cluster(
        ctx: click.Context,
        positional_name: str | None,
        wait: str,
        count: int,
        interval: str,
        output: str,
        kubeconfig: str | None,
    ) -> int:
        """Validate a cluster: instance groups, nodes, system pods, control plane, etcd quorum (exit 2 if not
        ready)."""
        from pykops.ops.instances import LiveCluster

        g = globals_of(ctx)
        name = g.require_name(positional_name)
        live = LiveCluster(open_registry(g), name, kubeconfig=kubeconfig)
        code = run_validate(
            live,
            wait=parse_seconds(wait),
            count=count,
            interval=parse_seconds(interval, 10.0),
            output=output,
            name=name,
        )
        return code

    cli.add_command(validate, "validate")
