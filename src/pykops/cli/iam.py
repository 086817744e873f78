"""``iam bootstrap``, ``iam print-policy``, ``get zones``, ``state create-bucket`` (issue 8).

The tutorial's AWS preparation, one command each. AWS is imported inside the commands (fast ``--help``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pykops.cli.common import output_option
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup
from pykops.cli.output import info, render_table, warn


def sandbox_note(what: str) -> None:
    """One line on stderr saying that this is the sandbox's simulation, when it is."""
    from pykops.ops.iam_bootstrap import sandbox_dir

    if sandbox_dir() is not None:
        from pykops.sandbox.manager import LABEL

        info(f"{LABEL}: {what}")


@click.group("iam", cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
def iam_group() -> None:
    """The IAM group, policies, user and access key pykops runs with (the tutorial's IAM steps)."""


@iam_group.command("bootstrap", context_settings=CONTEXT_SETTINGS)
@click.option("--group", default="kops", show_default=True, help="IAM group to create.")
@click.option(
    "--user", default="kopsuser", show_default=True, help="IAM user to create and add to the group."
)
@click.option(
    "--profile", help="Profile of the credentials file for the user's access key (default: the user)."
)
@click.option(
    "--least-privilege",
    is_flag=True,
    help="Attach one customer-managed policy with only the actions pykops uses (see iam print-policy) "
    "instead of the tutorial's four AWS managed *FullAccess policies.",
)
@click.option(
    "--credentials-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="AWS shared credentials file (default $AWS_SHARED_CREDENTIALS_FILE, then ~/.aws/credentials).",
)
def bootstrap(
    group: str, user: str, profile: str | None, least_privilege: bool, credentials_file: Path | None
) -> None:
    """Create the kops IAM group, its policies, the user and an access key; idempotent.

    Run it with an administrator's credentials. Each step creates only what is missing (a second run
    creates nothing). A new access key is written to the credentials file under the profile (mode 0600);
    its secret is never printed. A profile that already holds a key is kept.

    \b
    Examples:
      pykops iam bootstrap
      pykops iam bootstrap --least-privilege --profile kops
      export AWS_PROFILE=kopsuser
    """
    from pykops.ops.iam_bootstrap import bootstrap as run_bootstrap
    from pykops.ops.iam_bootstrap import credentials_path

    sandbox_note(f"IAM is simulated; the keys go to {credentials_file or credentials_path()}")
    result = run_bootstrap(
        group=group,
        user=user,
        profile=profile,
        least_privilege=least_privilege,
        credentials_file=credentials_file,
    )
    rows = [[s.kind, s.name, s.status, s.detail] for s in result.steps]
    click.echo(render_table(["RESOURCE", "NAME", "STATUS", "DETAIL"], rows), nl=False)
    for message in result.warnings:
        warn(message)
    created = len(result.created)
    info(f"{created} created or updated, {len(result.steps) - created} already there")
    info(f"Use it with: export AWS_PROFILE={profile or user}")


@iam_group.command("print-policy", context_settings=CONTEXT_SETTINGS)
@click.option("--compact", "compact_json", is_flag=True, help="No indentation (as IAM counts its size).")
def print_policy(compact_json: bool) -> None:
    """Print the least-privilege IAM policy: the AWS actions pykops' code can call.

    The actions are derived from pykops' source (every boto3 operation it can call, mapped to its IAM
    action), not kept by hand. When the policy exceeds IAM's 6,144-character limit for a managed policy
    it is split, and a JSON list of documents is printed.

    \b
    Examples:
      pykops iam print-policy > pykops-policy.json
      aws iam create-policy --policy-name pykops --policy-document file://pykops-policy.json
    """
    from pykops.ops.iam_policy import policy_documents

    documents = policy_documents()
    value: object = documents[0] if len(documents) == 1 else documents
    click.echo(json.dumps(value, separators=(",", ":")) if compact_json else json.dumps(value, indent=2))


# --- get zones --------------------------------------------------------------------------------------------


@click.command("zones", context_settings=CONTEXT_SETTINGS)
@click.option("--region", help="AWS region (default $AWS_REGION / $AWS_DEFAULT_REGION).")
@output_option(("table", "csv", "json"))
def get_zones(region: str | None, output: str) -> None:
    """List the region's available availability zones (NAME STATE ID).

    -o csv prints the comma-separated names, the tutorial's ZONES variable.

    \b
    Examples:
      pykops get zones --region eu-west-1
      export ZONES=$(pykops get zones -o csv)
    """
    from pykops.ops.zones import default_region, list_zones

    sandbox_note("the zones are the emulator's")
    zones = list_zones(default_region(region))
    if output == "csv":
        click.echo(",".join(z.name for z in zones))
    elif output == "json":
        items = [{"name": z.name, "state": z.state, "id": z.zone_id, "region": z.region} for z in zones]
        click.echo(json.dumps(items, indent=2))
    else:
        click.echo(
            render_table(["NAME", "STATE", "ID"], [[z.name, z.state, z.zone_id] for z in zones]), nl=False
        )


# --- state create-bucket ----------------------------------------------------------------------------------


@click.group("state", cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
def state_group() -> None:
    """The state store itself (the S3 bucket KOPS_STATE_STORE names)."""


@state_group.command("create-bucket", context_settings=CONTEXT_SETTINGS)
@click.argument("url", metavar="s3://BUCKET")
@click.option("--region", help="Region of a new bucket (default $AWS_REGION / $AWS_DEFAULT_REGION).")
@click.option("--kms-key", help="Encrypt with this KMS key (id, ARN or alias) instead of S3-managed keys.")
def create_bucket(url: str, region: str | None, kms_key: str | None) -> None:
    """Create the state-store bucket: versioning, default encryption, public access blocked; idempotent.

    \b
    Examples:
      pykops state create-bucket s3://my-kops-state --region eu-west-1
      export KOPS_STATE_STORE=s3://my-kops-state
    """
    from pykops.ops.bucket import create_state_bucket, parse_bucket_url
    from pykops.ops.zones import default_region

    bucket = parse_bucket_url(url)
    sandbox_note("the bucket is created in the emulator")
    result = create_state_bucket(bucket, default_region(region), kms_key=kms_key)
    rows = [[setting, status] for setting, status in result.steps]
    click.echo(render_table(["SETTING", "STATUS"], rows), nl=False)
    verb = "Created" if result.changed else "Kept"
    info(
        f"{verb} state store s3://{bucket} in {result.region}; use it with: export KOPS_STATE_STORE=s3://{bucket}"
    )


def register(cli: click.Group) -> None:
    """Add ``iam``, ``state`` and ``get zones`` to ``cli``."""
    cli.add_command(iam_group)
    cli.add_command(state_group)
    get = cli.commands["get"]
    assert isinstance(get, click.Group)
    get.add_command(get_zones)
