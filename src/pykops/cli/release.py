"""``release prepare``: download the dependency wheels that machines install pykops with."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup
from pykops.cli.output import info


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
def command() -> None:
    """The pykops release that machines install from the state store (no PyPI on the machines).

    `update cluster --yes` uploads the running pykops as a wheel, and the dependency wheels prepared
    here, to <cluster>/releases/<version>/ in the state store; each machine's bootstrap downloads them,
    checks their SHA-256 and runs nodeup.

    \b
    Examples:
      pykops release prepare                   # wheels for amd64 machines (Ubuntu 24.04, CPython 3.12)
      pykops release prepare --arch arm64
      pykops release prepare --dry-run         # only print the pip command
    """


command.name = "release"


@command.command("prepare", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--arch",
    type=click.Choice(["amd64", "arm64"]),
    default="amd64",
    show_default=True,
    help="CPU architecture of the machines.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Wheelhouse directory (default ~/.cache/pykops/wheelhouse/<version>/<arch>).",
)
@click.option("--dry-run", is_flag=True, help="Print the pip command instead of running it.")
def prepare(arch: str, directory: Path | None, dry_run: bool) -> None:
    """Download pykops' dependencies as wheels for the machines' platform (uses PyPI).

    Runs `python -m pip download --only-binary=:all:` for CPython 3.12 on manylinux <arch>, with every
    dependency pinned to the version installed here, into a staging directory; on success its wheels
    replace those of the wheelhouse. This is the only pykops command that reaches a package index (pip's
    configured one); `update cluster` then uploads the wheelhouse to the state store.
    """
    from pykops.release import ReleaseError, default_wheelhouse, prepare_command, wheel_arch

    target = directory or default_wheelhouse(arch)
    if dry_run:
        click.echo(shlex.join(prepare_command(arch, target)))
        return
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=target.parent))
    try:
        cmd = prepare_command(arch, staging)
        info(f"downloading pykops' dependencies for {arch}: {shlex.join(cmd)}")
        code = subprocess.call(cmd)
        if code != 0:
            raise ReleaseError(f"pip download failed (exit code {code}); {target} is unchanged")
        wheels = sorted(staging.glob("*.whl"))
        for wheel in wheels:
            wheel_arch(wheel.name)  # refuses anything but manylinux x86_64/aarch64 and pure wheels
        for old in target.glob("*.whl"):
            old.unlink()
        for wheel in wheels:
            wheel.replace(target / wheel.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(w.stat().st_size for w in target.glob("*.whl"))
    info(
        f"{len(wheels)} wheels ({size / 1e6:.1f} MB) for {arch} in {target}; "
        "`pykops update cluster --yes` uploads them to the state store"
    )
