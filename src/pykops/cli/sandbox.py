"""``sandbox up|status|down``: a local simulation of AWS to try pykops without an AWS account."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup
from pykops.cli.output import info, render_table

#: ``sandbox status`` exit code when the sandbox is not running (as ``systemctl status``/LSB: "not running").
EXIT_NOT_RUNNING = 3

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Sandbox directory (default $PYKOPS_SANDBOX_DIR or ~/.pykops/sandbox).",
)


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
def command() -> None:
    """Run a local simulation of AWS to try pykops without an AWS account.

    The sandbox is moto's AWS emulator, with pykops' fidelity fixes, running in the background on
    127.0.0.1. It is seeded with the operating-system images of pykops' release channels, the AWS managed
    IAM policies and a state-store bucket. Nothing in it reaches AWS; its data is lost on `down`.

    \b
    Examples:
      eval "$(pykops sandbox up)"      # start it and point this shell at it
      pykops sandbox status
      pykops create cluster --name demo.k8s.local --zones eu-west-1a
      pykops sandbox down
    """


command.name = "sandbox"


@command.command("up", context_settings=CONTEXT_SETTINGS)
@dir_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 for the AWS endpoint; 0 picks a free one.",
)
@click.option("--region", default="eu-west-1", show_default=True, help="AWS region the sandbox simulates.")
@click.option(
    "--boot-delay",
    type=click.FloatRange(0, 600),
    default=3.0,
    show_default=True,
    help="Seconds from an EC2 instance running to its simulated machine booting.",
)
@click.option(
    "--machines/--no-machines",
    default=True,
    show_default=True,
    help="Run the machine simulator (simulated machines, etcd, a Kubernetes API per cluster).",
)
def up(directory: Path | None, port: int, region: str, boot_delay: float, machines: bool) -> None:
    """Start the sandbox in the background (if it is not running) and print its environment.

    The export lines go to stdout, messages to stderr, so that `eval "$(pykops sandbox up)"` points the
    current shell at the sandbox. They are also in <dir>/env (`source ~/.pykops/sandbox/env`).
    """
    from pykops.sandbox.manager import LABEL, LOG_FILE, Sandbox

    sandbox = Sandbox(directory)
    info(LABEL)
    state, started = sandbox.up(port, region=region, progress=info, machines=machines, boot_delay=boot_delay)
    if not started:
        info(
            f"The sandbox is already running at {state.endpoint_url} (pid {state.pid}, region {state.region})"
        )
        if port not in (0, state.port):
            info(f"--port {port} ignored: run `pykops sandbox down` first to move it")
        if region != state.region:
            info(f"--region {region} ignored: run `pykops sandbox down` first to change it")
    else:
        info(f"Log: {sandbox.path(LOG_FILE)}")
    where = (
        "" if sandbox.directory == Sandbox().directory else f" --dir {shlex.quote(str(sandbox.directory))}"
    )
    info(f'Use it in this shell: eval "$(pykops sandbox up{where})"  (or: source {sandbox.path("env")})')
    info(f"Stop it: pykops sandbox down{where}")
    click.echo(sandbox.env_text(state), nl=False)


@command.command("status", context_settings=CONTEXT_SETTINGS)
@dir_option
@click.pass_context
def status(ctx: click.Context, directory: Path | None) -> None:
    """Show the sandbox's components (NAME STATUS PID ENDPOINT); exit 3 if it is not running."""
    from pykops.sandbox.manager import LABEL, Sandbox

    sandbox = Sandbox(directory)
    info(f"{LABEL}: {sandbox.directory}")
    components = sandbox.status()
    rows = [[c.name, c.status, c.pid if c.pid is not None else "-", c.endpoint] for c in components]
    click.echo(render_table(["NAME", "STATUS", "PID", "ENDPOINT"], rows), nl=False)
    if components[0].status != "running":
        ctx.exit(EXIT_NOT_RUNNING)


@command.command("down", context_settings=CONTEXT_SETTINGS)
@dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def down(directory: Path | None, timeout: float) -> None:
    """Stop the sandbox (its data is lost)."""
    from pykops.sandbox.manager import LABEL, Sandbox

    sandbox = Sandbox(directory)
    info(LABEL)
    pid = sandbox.down(timeout)
    if pid is None:
        info(f"The sandbox in {sandbox.directory} is not running")
    else:
        info(f"Stopped the AWS emulator (pid {pid})")
