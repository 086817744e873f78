"""``create volume`` (issue 8): an encrypted EBS volume for the cluster and its PersistentVolume manifest."""

from __future__ import annotations

import json

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.cli.output import info


@click.command("volume", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@click.option("--zone", required=True, help="Availability zone of the volume (one of the cluster's zones).")
@click.option("--size", type=click.IntRange(min=1), required=True, help="Size in GiB.")
@click.option("--type", "volume_type", default="gp3", show_default=True, help="EBS volume type.")
@click.option(
    "-n",
    "--volume-name",
    "volume_name",
    help="Name of the volume and its PersistentVolume (default pv-<random>); a matching one is reused.",
)
@click.option(
    "--storage-class", default="gp3", show_default=True, help="storageClassName of the PersistentVolume."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="Output format.",
)
@click.pass_context
def create_volume(
    ctx: click.Context,
    positional_name: str | None,
    zone: str,
    size: int,
    volume_type: str,
    volume_name: str | None,
    storage_class: str,
    output: str,
) -> None:
    """Create an encrypted EBS volume tagged for the cluster and print its PersistentVolume.

    The PersistentVolume uses the EBS CSI driver, has reclaim policy Retain and may only be used by
    nodes in the volume's zone. Apply it with kubectl, then claim it with a PersistentVolumeClaim of
    the same storageClassName and size.

    \b
    Examples:
      pykops create volume --zone eu-west-1a --size 10 -n data-0 > pv.yaml
      kubectl apply -f pv.yaml
    """
    import yaml

    from pykops.cli.iam import sandbox_note
    from pykops.ops.update import region_of
    from pykops.ops.volumes import VolumeRequest, persistent_volume
    from pykops.ops.volumes import create_volume as create

    g = globals_of(ctx)
    name = g.require_name(positional_name)
    cluster = open_registry(g).get_cluster(name).obj
    zones = sorted({s.zone for s in cluster.spec.subnets or [] if s.zone})
    request = VolumeRequest(
        cluster=name,
        region=region_of(cluster),
        zone=zone,
        size=size,
        volume_type=volume_type,
        name=volume_name,
        storage_class=storage_class,
    )
    sandbox_note("the volume is created in the emulator")
    volume = create(request, zones)
    verb = "Created" if volume.created else "Reusing existing"
    info(
        f"{verb} EBS volume {volume.volume_id} ({volume.size} GiB {volume.volume_type}, encrypted) in {zone}"
    )
    manifest = persistent_volume(volume, storage_class=storage_class)
    if output == "json":
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo(yaml.safe_dump(manifest, sort_keys=False), nl=False)


def register(cli: click.Group) -> None:
    """Add ``create volume`` to the existing ``create`` group."""
    create_group = cli.commands["create"]
    assert isinstance(create_group, click.Group)
    create_group.add_command(create_volume)
