"""Entry point: the root command group, global flags, and error handling.

Heavy modules (pydantic, boto3) are imported inside the commands that need them so that
``pykops --help`` and ``pykops version`` start fast.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from pykops import __version__
from pykops.errors import PykopsError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


@dataclass
class Globals:
    state: str | None = None
    name: str | None = None
    debug: bool = False

    def require_state(self) -> str:
        if not self.state:
            raise UsageError(
                "no state store: pass --state or set KOPS_STATE_STORE, e.g. export KOPS_STATE_STORE=s3://my-bucket"
            )
        return self.state

    def require_name(self, positional: str | None = None) -> str:
        name = positional or self.name
        if not name:
            raise UsageError(
                "no cluster name: pass --name or set KOPS_CLUSTER_NAME, "
                "e.g. export KOPS_CLUSTER_NAME=proyecto.k8s.local"
            )
        return name


def cluster_options(func: F) -> F:
    """--state and --name on a subcommand, as kops accepts them anywhere on the line."""

    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value:
            setattr(ctx.ensure_object(Globals), str(param.name), value)
        return value

    func = click.option(
        "--state", expose_value=False, callback=remember, help="State store URL (default $KOPS_STATE_STORE)."
    )(func)
    func = click.option(
        "--name", expose_value=False, callback=remember, help="Cluster name (default $KOPS_CLUSTER_NAME)."
    )(func)
    return func


class AliasGroup(click.Group):
    """A group whose subcommands answer to kops' aliases (``ig``, ``instancegroups``, ``clusters``...)."""

    aliases: dict[str, str] = {
        "clusters": "cluster",
        "instancegroups": "instancegroup",
        "ig": "instancegroup",
        "igs": "instancegroup",
        "keypairs": "keypair",
        "secrets": "secret",
        "sshpublickeys": "sshpublickey",
        "kubecfg": "kubeconfig",
    }

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--state", envvar="KOPS_STATE_STORE", help="State store URL: s3://bucket, file:///path or memfs://name."
)
@click.option("--name", envvar="KOPS_CLUSTER_NAME", help="Cluster name, e.g. proyecto.k8s.local.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, state: str | None, name: str | None, debug: bool) -> None:
    """pykops: Kubernetes Operations in Python.

    Create, operate and delete highly available Kubernetes clusters on AWS from a declarative,
    kops-compatible spec kept in a state store.

    \b
    Examples:
      export KOPS_STATE_STORE=s3://my-state-bucket
      pykops create cluster --name proyecto.k8s.local --zones eu-west-1a,eu-west-1b,eu-west-1c \\
        --control-plane-count 3 --networking kubenet
      pykops get clusters
      pykops edit ig nodes --set spec.maxSize=3
    """
    g = ctx.ensure_object(Globals)
    g.state = g.state or state
    g.name = g.name or name
    g.debug = debug


@cli.command(context_settings=CONTEXT_SETTINGS)
def version() -> None:
    """Print the pykops version."""
    click.echo(f"pykops {__version__} (API kops.k8s.io/v1alpha2)")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script.

    \b
    Examples:
      source <(pykops completion bash)
      pykops completion zsh > "${fpath[1]}/_pykops"
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "pykops", "_PYKOPS_COMPLETE").source())


def _register() -> None:
    from pykops.cli import create, delete, edit, get, keys, release, replace, sandbox, update

    for module in (create, get, edit, replace, delete, update, keys, release, sandbox):
        cli.add_command(module.command)
    cli.add_command(__import__("pykops.cli.nodeup", fromlist=["command"]).command)
    # Modules that add commands to the root or to existing groups (get/create/delete) with ``register``.
    import importlib

    for name in EXTENSIONS:
        importlib.import_module(f"pykops.cli.{name}").register(cli)


# Each module ``pykops.cli.<name>`` defines ``register(cli: click.Group) -> None``.
EXTENSIONS = ("addons", "validate", "instances", "rolling", "upgrade", "iam", "volumes", "users")


_register()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        rv = cli.main(args=args, prog_name="pykops", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.UsageError as exc:
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{where}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        return exc.exit_code
    except PykopsError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"Error: internal error: {type(exc).__name__}: {exc} (re-run with --debug for a traceback)",
            err=True,
        )
        return 1
    return rv if isinstance(rv, int) else 0
