"""Keys, secrets and kubeconfig commands.

``get keypairs|secrets|sshpublickeys``, ``create sshpublickey``, ``create secret dockerconfig|
encryptionconfig``, ``delete secret|sshpublickey`` (added to the existing ``get``/``create``/``delete``
groups) and ``export kubeconfig`` (this module's ``command``). Nothing here ever prints private material:
keypairs show public facts only and secrets only their names.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.common import output_option as make_output_option
from pykops.cli.create import command as create_group
from pykops.cli.delete import command as delete_group
from pykops.cli.get import command as get_group
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.cli.output import info, render_table, warn
from pykops.errors import NotFoundError, PykopsError, UsageError

if TYPE_CHECKING:
    from pykops.state.registry import ClusterRegistry

OUTPUTS = ("table", "yaml", "json")

output_option = make_output_option(OUTPUTS)


def _emit_data(items: list[dict[str, Any]], output: str) -> None:
    import yaml

    if output == "json":
        click.echo(json.dumps(items, indent=2))
    else:
        click.echo(yaml.safe_dump(items, sort_keys=False, default_flow_style=False), nl=False)


def _registry_for(ctx: click.Context, positional: str | None = None) -> tuple[ClusterRegistry, str]:
    """The registry and the cluster's name, checking that the cluster exists."""
    g = globals_of(ctx)
    name = g.require_name(positional)
    registry = open_registry(g)
    registry.get_cluster(name)  # NotFoundError with the usual hints
    return registry, name


def _local_date(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d") if value else ""


# --- get --------------------------------------------------------------------------------------------------


@get_group.command("keypair", context_settings=CONTEXT_SETTINGS)
@click.argument("keysets", nargs=-1, metavar="[KEYSET]...")
@cluster_options
@output_option
@click.option("--distrusted", is_flag=True, help="Include distrusted keypairs.")
@click.pass_context
def get_keypairs(ctx: click.Context, keysets: tuple[str, ...], output: str, distrusted: bool) -> None:
    """List a cluster's keypairs (NAME ID ISSUED EXPIRES PRIMARY HASPRIVATE); never private keys.

    \b
    Examples:
      pykops get keypairs
      pykops get keypairs kubernetes-ca -o yaml
    """
    from pykops.state.keystore import Keystore

    registry, name = _registry_for(ctx)
    keystore = Keystore(registry.store, name)
    if keysets:
        known = set(keystore.names())
        missing = [k for k in keysets if k not in known]
        if missing:
            raise NotFoundError(
                f"keyset {missing[0]!r} not found in cluster {name} "
                f"(keysets: {', '.join(sorted(known)) or 'none'})"
            )
    items = [i for i in keystore.list(keysets) if distrusted or i.distrust_timestamp is None]
    if not items:
        raise NotFoundError(
            f"no keypairs found for cluster {name}; they are created by: pykops update cluster {name} --yes"
        )
    if output != "table":
        _emit_data([i.to_dict() for i in items], output)
        return
    headers = [
        "NAME",
        "ID",
        "ISSUED",
        "EXPIRES",
        *(["DISTRUSTED"] if distrusted else []),
        "PRIMARY",
        "HASPRIVATE",
    ]
    rows = [
        [
            i.name,
            i.id,
            _local_date(i.not_before),
            _local_date(i.not_after),
            *([_local_date(i.distrust_timestamp)] if distrusted else []),
            "*" if i.is_primary else "",
            "*" if i.has_private_key else "",
        ]
        for i in items
    ]
    click.echo(render_table(headers, rows), nl=False)


@get_group.command("secret", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, metavar="[SECRET_NAME]...")
@cluster_options
@output_option
@click.pass_context
def get_secrets(ctx: click.Context, names: tuple[str, ...], output: str) -> None:
    """List a cluster's secrets by name (their content is never printed).

    \b
    Examples:
      pykops get secrets
    """
    from pykops.state.secrets import SecretStore

    registry, name = _registry_for(ctx)
    items = SecretStore(registry.store, name).list()
    if names:
        items = [i for i in items if i in names]
    if not items:
        raise NotFoundError(f"no secrets found for cluster {name}")
    if output == "table":
        click.echo(render_table(["NAME"], [[i] for i in items]), nl=False)
    else:
        _emit_data([{"name": i} for i in items], output)


def _ssh_keys(registry: ClusterRegistry, name: str) -> list[tuple[str, str]]:
    """(colon fingerprint, key text) of the cluster's stored SSH public keys."""
    from pykops.state.sshkeys import parse_public_key

    out = []
    for key in registry.store.list(f"{name}/pki/ssh/public/admin/"):
        found = registry.store.read(key)
        if found is None:
            continue
        parsed = parse_public_key(found.data.decode(errors="replace"), key)
        fp = parsed.fingerprint
        out.append((":".join(fp[i : i + 2] for i in range(0, len(fp), 2)), parsed.text.strip()))
    return out


@get_group.command("sshpublickey", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@output_option
@click.pass_context
def get_sshpublickeys(ctx: click.Context, positional_name: str | None, output: str) -> None:
    """List a cluster's SSH public keys (ID = MD5 fingerprint, as kops and AWS show it)."""
    registry, name = _registry_for(ctx, positional_name)
    keys = _ssh_keys(registry, name)
    if output == "table":
        if not keys:
            raise NotFoundError(f"no SSH public key found for cluster {name}")
        click.echo(render_table(["ID"], [[fp] for fp, _ in keys]), nl=False)
    else:
        _emit_data([{"id": fp, "publicKey": text} for fp, text in keys], output)


# --- create -----------------------------------------------------------------------------------------------


def _default_ssh_public_key() -> Path:
    for candidate in ("id_ed25519.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / candidate
        if path.exists():
            return path
    raise UsageError(
        "no SSH public key: pass -i FILE (neither ~/.ssh/id_ed25519.pub nor ~/.ssh/id_rsa.pub exists)"
    )


def _generate_key_pair(private_path: Path) -> str:
    """Write a new ed25519 key pair (private: OpenSSH format, mode 0600 from creation; ``.pub`` beside it).

    Refuses to overwrite either file. Returns the public key line; the private key never leaves the file.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = private_path.with_name(private_path.name + ".pub")
    for existing in (private_path, public_path):
        if existing.exists():
            raise UsageError(f"--out {private_path}: {existing} already exists; not overwriting it")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    text = f"{public.decode()} pykops\n"
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"--out {private_path}: already exists; not overwriting it") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # whatever the umask
        handle.write(private)
    with open(public_path, "x", encoding="utf-8") as handle:
        handle.write(text)
    return text


@create_group.command("sshpublickey", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@click.option(
    "-i",
    "--ssh-public-key",
    "key_file",
    help="SSH public key file (default ~/.ssh/id_ed25519.pub, then ~/.ssh/id_rsa.pub).",
)
@click.option("--generate", is_flag=True, help="Create a new ed25519 key pair and store its public half.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --generate: the private key file (default ~/.ssh/pykops-<cluster>; .pub beside it).",
)
@click.pass_context
def create_sshpublickey(
    ctx: click.Context, positional_name: str | None, key_file: str | None, generate: bool, out: Path | None
) -> None:
    """Store the SSH public key the cluster's machines accept (AWS clusters take exactly one).

    --generate creates the key pair instead (the tutorial's create-key-pair, chmod 400 and ssh-keygen -y):
    the private key in OpenSSH format, mode 0600, never printed; an existing file is never overwritten.

    \b
    Examples:
      pykops create sshpublickey -i ~/.ssh/id_ed25519.pub
      pykops create sshpublickey --generate --out proyecto.key
    """
    from pykops.state.sshkeys import parse_public_key, store_public_key

    if generate and key_file:
        raise UsageError("cannot use both --generate and -i")
    if out is not None and not generate:
        raise UsageError("--out is for --generate")
    registry, name = _registry_for(ctx, positional_name)
    if generate:
        others = [f for f, _ in _ssh_keys(registry, name)]
        path = (out or Path.home() / ".ssh" / f"pykops-{name}").expanduser()
        text = "" if others else _generate_key_pair(path)
    else:
        path = Path(key_file).expanduser() if key_file else _default_ssh_public_key()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-i {path}: cannot read it ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise UsageError(f"-i {path}: not an SSH public key (not text)") from None
    key = parse_public_key(text, str(path)) if text else None
    fp = ":".join(key.fingerprint[i : i + 2] for i in range(0, len(key.fingerprint), 2)) if key else ""
    others = [f for f, _ in _ssh_keys(registry, name) if f != fp]
    if others:
        raise PykopsError(
            f"cluster {name} already has the SSH public key {others[0]} and AWS clusters take exactly one; "
            f"delete it first with: pykops delete sshpublickey --name {name}"
        )
    assert key is not None
    store_public_key(registry.store, name, key)
    if generate:
        info(f"Wrote private key {path} (mode 0600) and public key {path}.pub")
        info(f"Log in with: ssh -i {path} ubuntu@<node address>")
    click.echo(f"Stored SSH public key {fp} for cluster {name}")


@create_group.group("secret", cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def create_secret() -> None:
    """Create a secret: dockerconfig (registry credentials) or encryptionconfig (encryption at rest).

    \b
    Examples:
      pykops create secret dockerconfig -f ~/.docker/config.json
      pykops create secret encryptionconfig -f encryption-config.yaml --force
    """


def _read_secret_file(path: str) -> tuple[bytes, str]:
    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        return Path(path).expanduser().read_bytes(), path
    except OSError as exc:
        raise UsageError(f"-f {path}: cannot read it ({exc.strerror or exc})") from None


def _create_secret(
    ctx: click.Context, positional: str | None, secret: str, filename: str, force: bool
) -> None:
    from pykops.state.secrets import VALIDATORS, SecretStore

    registry, name = _registry_for(ctx, positional)
    data, source = _read_secret_file(filename)
    VALIDATORS[secret](data, source)
    SecretStore(registry.store, name).create(secret, data, force=force)
    click.echo(f"{'Replaced' if force else 'Created'} secret {secret} for cluster {name}")


_filename_option = click.option("-f", "--filename", required=True, help="The file ('-' for standard input).")
_force_option = click.option("--force", is_flag=True, help="Replace the secret if it exists.")


@create_secret.command("dockerconfig", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@_filename_option
@_force_option
@click.pass_context
def create_secret_dockerconfig(
    ctx: click.Context, positional_name: str | None, filename: str, force: bool
) -> None:
    """Store a Docker config.json (JSON with "auths") for pulling images from private registries."""
    from pykops.state.secrets import DOCKERCONFIG

    _create_secret(ctx, positional_name, DOCKERCONFIG, filename, force)


@create_secret.command("encryptionconfig", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@_filename_option
@_force_option
@click.pass_context
def create_secret_encryptionconfig(
    ctx: click.Context, positional_name: str | None, filename: str, force: bool
) -> None:
    """Store the API server's EncryptionConfiguration (encryption of secrets at rest in etcd)."""
    from pykops.state.secrets import ENCRYPTIONCONFIG

    _create_secret(ctx, positional_name, ENCRYPTIONCONFIG, filename, force)


# --- delete -----------------------------------------------------------------------------------------------


@delete_group.command("secret", context_settings=CONTEXT_SETTINGS)
@click.argument("secret_name", metavar="NAME")
@cluster_options
@click.pass_context
def delete_secret(ctx: click.Context, secret_name: str) -> None:
    """Delete a secret of the cluster."""
    from pykops.state.secrets import SecretStore

    registry, name = _registry_for(ctx)
    SecretStore(registry.store, name).delete(secret_name)
    click.echo(f"Deleted secret {secret_name} of cluster {name}")


@delete_group.command("sshpublickey", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@click.pass_context
def delete_sshpublickey(ctx: click.Context, positional_name: str | None) -> None:
    """Delete the cluster's SSH public key(s) from the state store."""
    registry, name = _registry_for(ctx, positional_name)
    keys = registry.store.list(f"{name}/pki/ssh/public/admin/")
    if not keys:
        raise NotFoundError(f"no SSH public key found for cluster {name}")
    for key in keys:
        registry.store.delete(key)
    click.echo(f"Deleted {len(keys)} SSH public key(s) of cluster {name}")


# --- export -----------------------------------------------------------------------------------------------


@click.group(cls=AliasGroup, context_settings=CONTEXT_SETTINGS)
@cluster_options
def command() -> None:
    """Export configuration: a kubeconfig for a cluster.

    \b
    Examples:
      pykops export kubeconfig --admin
      pykops export kubeconfig proyecto.k8s.local --admin=1h --kubeconfig ./kubeconfig
    """


command.name = "export"


@command.command("kubeconfig", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[CLUSTER]")
@cluster_options
@click.option(
    "--admin",
    is_flag=False,
    flag_value="18h",
    default=None,
    metavar="[=DURATION]",
    help="Also export a cluster-admin client certificate valid this long (default 18h).",
)
@click.option("--user", help="Use this existing user of the kubeconfig in the cluster's context.")
@click.option("--kubeconfig", "kubeconfig", help="The kubeconfig file (default $KUBECONFIG, ~/.kube/config).")
@click.option(
    "--internal", is_flag=True, help="Use the cluster's internal API name (api.internal.<cluster>)."
)
@click.option("--all", "all_clusters", is_flag=True, help="Export every cluster of the state store.")
@click.pass_context
def export_kubeconfig(
    ctx: click.Context,
    positional_name: str | None,
    admin: str | None,
    user: str | None,
    kubeconfig: str | None,
    internal: bool,
    all_clusters: bool,
) -> None:
    """Merge a context named after the cluster into the kubeconfig (mode 0600) and make it current.

    The CA is embedded; the server is the API load balancer's DNS name when there is one, else
    https://api.<cluster> (https://api.internal.<cluster> with --internal). --admin issues a client
    certificate in group system:masters signed by the cluster CA; keep the file safe.
    """
    from pykops.api.populate import populate_cluster
    from pykops.ops.kubeconfig import export_kubeconfig as export
    from pykops.ops.kubeconfig import parse_duration

    lifetime = None
    if admin is not None:
        try:
            lifetime = parse_duration(admin)
        except UsageError:
            # `--admin CLUSTER`: like pflag's NoOptDefVal, a bare --admin does not take the next word.
            if positional_name is not None or all_clusters:
                raise
            positional_name, lifetime = admin, parse_duration("18h")
    if lifetime is not None and user:
        raise UsageError("cannot use both --admin and --user")
    g = globals_of(ctx)
    registry = open_registry(g)
    if all_clusters:
        if positional_name:
            raise UsageError("cannot use both --all and a cluster name")
        names = registry.cluster_names()
        if not names:
            raise NotFoundError(f"no clusters found in state store {registry.store.url}")
    else:
        names = [g.require_name(positional_name)]
    for name in names:
        stored = registry.get_cluster(name).obj
        groups = [s.obj for s in registry.get_groups(name)]
        cluster = populate_cluster(stored, groups)
        path, warnings = export(
            registry.store, cluster, admin=lifetime, user=user, internal=internal, kubeconfig=kubeconfig
        )
        for message in warnings:
            warn(message)
        info(f"Wrote {path}")
        click.echo(f"pykops has set your kubectl context to {name}")
