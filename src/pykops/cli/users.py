"""``create user``, ``delete user``: a kubeconfig for a person, with RBAC bindings made through the API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from pykops.cli.common import globals_of, open_registry
from pykops.cli.main import CONTEXT_SETTINGS, cluster_options
from pykops.cli.output import info, warn


def _api_client(cluster: str, kubeconfig: str | None) -> Any:
    from pykops.ops.kubeclient import load_api_client

    return load_api_client(cluster, kubeconfig)


@click.command("user", context_settings=CONTEXT_SETTINGS)
@click.argument("user")
@click.option(
    "--group", "groups", multiple=True, help="The certificate's O= (a group RBAC can bind); repeatable."
)
@click.option(
    "--role",
    default="view",
    show_default=True,
    help="ClusterRole to grant: view, edit, admin, cluster-admin or any ClusterRole's name.",
)
@click.option("--namespace", default=None, help="Grant the role in this namespace only (a RoleBinding).")
@click.option(
    "--ttl", default="24h", show_default=True, help="Lifetime of the client certificate (e.g. 8h, 7d)."
)
@click.option(
    "--kubeconfig",
    "out",
    default=None,
    help="Write the user's kubeconfig here (default: ./<user>.kubeconfig); mode 0600, never overwritten.",
)
@click.option(
    "--admin-kubeconfig",
    default=None,
    help="Your own kubeconfig, used to create the binding (default: $KUBECONFIG or ~/.kube/config).",
)
@cluster_options
@click.pass_context
def create_user(
    ctx: click.Context,
    user: str,
    groups: tuple[str, ...],
    role: str,
    namespace: str | None,
    ttl: str,
    out: str | None,
    admin_kubeconfig: str | None,
) -> None:
    """Give a person access: a client certificate from the cluster CA (CN=USER, O=each --group) in a
    kubeconfig of their own, and a (Cluster)RoleBinding of --role made through the API.

    \b
    Examples:
      pykops create user ana --role view
      pykops create user luis --role edit --namespace demo --ttl 8h
    """
    from pykops.api.populate import populate_cluster
    from pykops.ops.kubeconfig import api_server_url, parse_duration, write_kubeconfig
    from pykops.ops.users import binding_for, check_request, user_kubeconfig

    request = check_request(user, groups, role, namespace, parse_duration(ttl))
    target = Path(out or f"{user}.kubeconfig").expanduser()
    if target.exists():
        raise click.UsageError(f"{target} exists; choose another --kubeconfig or remove it first")
    g = globals_of(ctx)
    name = g.require_name(None)
    registry = open_registry(g)
    stored = registry.get_cluster(name).obj
    cluster = populate_cluster(stored, [s.obj for s in registry.get_groups(name)])
    binding = binding_for(request)
    api = _api_client(name, admin_kubeconfig)
    from pykops.ops.users import apply_binding

    outcome = apply_binding(api, binding)  # first: no credentials are handed out for a binding that failed
    doc = user_kubeconfig(registry.store, cluster, api_server_url(cluster).url, request)
    write_kubeconfig(target, doc)
    scope = f"in namespace {namespace}" if namespace else "cluster-wide"
    info(f"{binding['kind']} {binding['metadata']['name']} {outcome}: ClusterRole {request.role} {scope}")
    mode = oct(os.stat(target).st_mode & 0o777)
    info(f"Wrote {target} (mode {mode}); it holds a private key: hand it over safely")
    click.echo(f"user {user} can use: KUBECONFIG={target} kubectl get pods")
    warn(
        f"the certificate is valid for {ttl}; 'pykops delete user {user}' removes the binding, but the "
        "certificate itself cannot be revoked and authenticates until it expires"
    )


@click.command("user", context_settings=CONTEXT_SETTINGS)
@click.argument("user")
@click.option(
    "--kubeconfig", "admin_kubeconfig", default=None, help="Your kubeconfig (default: $KUBECONFIG)."
)
@cluster_options
@click.pass_context
def delete_user(ctx: click.Context, user: str, admin_kubeconfig: str | None) -> None:
    """Remove the bindings 'create user' made for USER (the certificate expires on its own)."""
    g = globals_of(ctx)
    name = g.require_name(None)
    open_registry(g).get_cluster(name)  # the cluster must exist
    from pykops.ops.users import delete_bindings

    removed = delete_bindings(_api_client(name, admin_kubeconfig), user)
    if not removed:
        info(f"no bindings of user {user} found in cluster {name}")
    for what in removed:
        click.echo(f"deleted {what}")
    warn(f"{user}'s client certificate cannot be revoked: it authenticates (with no role) until it expires")


def register(cli: click.Group) -> None:
    """``create user`` and ``delete user``."""
    create = cli.commands["create"]
    delete = cli.commands["delete"]
    assert isinstance(create, click.Group) and isinstance(delete, click.Group)
    create.add_command(create_user)
    delete.add_command(delete_user)
