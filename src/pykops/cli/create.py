"""``create cluster``, ``create instancegroup`` and ``create -f FILE``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pykops.cli.common import check_spec, config_base, emit, globals_of, open_registry, split_list
from pykops.cli.main import CONTEXT_SETTINGS, AliasGroup, cluster_options
from pykops.errors import SpecError, UsageError

if TYPE_CHECKING:
    from pykops.api.models import Cluster, InstanceGroup


def read_spec_file(path: str) -> tuple[str, str]:
    """(text, source label) of -f FILE; '-' reads standard input."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except FileNotFoundError:
        raise UsageError(f"-f {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"-f {path}: cannot read it ({exc})") from None


@click.group(cls=AliasGroup, invoke_without_command=True, context_settings=CONTEXT_SETTINGS)
@click.option("-f", "--filename", "filenames", multiple=True, help="Create the objects in this YAML file.")
@cluster_options
@click.pass_context
def command(ctx: click.Context, filenames: tuple[str, ...]) -> None:
    """Create a cluster, an instance group, or the objects of a file.

    \b
    Examples:
      pykops create -f cluster.yaml
      pykops create cluster --name proyecto.k8s.local --zones eu-west-1a,eu-west-1b,eu-west-1c
      pykops create ig spot --role Node --subnet eu-west-1a --name proyecto.k8s.local
    """
    if ctx.invoked_subcommand is not None:
        if filenames:
            raise UsageError("-f cannot be combined with a subcommand")
        return
    if not filenames:
        click.echo(ctx.get_help())
        raise UsageError("nothing to create: give -f FILE or a subcommand (cluster, instancegroup)")
    create_from_files(ctx, filenames)


command.name = "create"


def _cluster_of(group: InstanceGroup, default: str | None) -> str:
    from pykops.api.new_cluster import CLUSTER_LABEL

    name = (group.metadata.labels or {}).get(CLUSTER_LABEL) or default
    if not name:
        raise UsageError(
            f'InstanceGroup "{group.name}" names no cluster: add the label {CLUSTER_LABEL} or pass --name'
        )
    return name


def create_from_files(ctx: click.Context, filenames: tuple[str, ...]) -> None:
    from pykops.api.models import Cluster, InstanceGroup
    from pykops.api.serialize import load_documents

    g = globals_of(ctx)
    objects: list[Cluster | InstanceGroup] = []
    for path in filenames:
        text, source = read_spec_file(path)
        objects.extend(load_documents(text, source))
    clusters = [o for o in objects if isinstance(o, Cluster)]
    groups = [o for o in objects if isinstance(o, InstanceGroup)]
    if len(clusters) > 1:
        raise UsageError("a file may create one Cluster at a time")
    registry = open_registry(g)
    if clusters:
        cluster = clusters[0]
        for group in groups:
            if _cluster_of(group, cluster.name) != cluster.name:
                raise SpecError(
                    f'InstanceGroup "{group.name}" belongs to another cluster than {cluster.name}'
                )
        if registry.exists(cluster.name):
            raise SpecError(
                f"cluster {cluster.name} already exists in state store {registry.store.url}; "
                "use pykops replace -f to change it"
            )
        check_spec(cluster, groups, state=g.state)
        registry.create_cluster(cluster, groups)
        click.echo(f"Created cluster/{cluster.name}")
        for group in groups:
            click.echo(f"Created instancegroup/{group.name}")
        return
    by_cluster: dict[str, list[InstanceGroup]] = {}
    for group in groups:
        by_cluster.setdefault(_cluster_of(group, g.name), []).append(group)
    for cluster_name, new_groups in by_cluster.items():
        stored = registry.get_cluster(cluster_name)
        existing = [s.obj for s in registry.get_groups(cluster_name)]
        taken = {e.name for e in existing}
        for group in new_groups:
            if group.name in taken:
                raise SpecError(
                    f"instance group {group.name} already exists in cluster {cluster_name}; "
                    "use pykops replace -f to change it"
                )
        check_spec(stored.obj, existing + new_groups, state=g.state)
        for group in new_groups:
            registry.create_group(cluster_name, group)
            click.echo(f"Created instancegroup/{group.name}")


def _default_ssh_key() -> Path | None:
    for candidate in ("id_ed25519.pub", "id_rsa.pub"):
        path = Path.home() / ".ssh" / candidate
        if path.exists():
            return path
    return None


@command.command("cluster", context_settings=CONTEXT_SETTINGS)
@click.argument("positional_name", required=False, metavar="[NAME]")
@cluster_options
@click.option("--zones", multiple=True, help="Zones for the cluster's subnets and nodes (comma-separated).")
@click.option(
    "--control-plane-zones",
    "--master-zones",
    "control_plane_zones",
    multiple=True,
    help="Zones for the control plane; one control-plane node per zone.",
)
@click.option(
    "--control-plane-count",
    "--master-count",
    "control_plane_count",
    type=int,
    help="Number of control-plane nodes (odd: 1, 3, 5). Default: one per control-plane zone.",
)
@click.option(
    "--allow-even-control-plane", is_flag=True, help="Accept an even number of control-plane nodes."
)
@click.option("--node-count", type=int, help="Number of worker nodes. Default: one per zone.")
@click.option("--node-size", help="Instance type of worker nodes (default t3.medium).")
@click.option(
    "--control-plane-size",
    "--master-size",
    "control_plane_size",
    help="Instance type of control-plane nodes (default t3.medium).",
)
@click.option(
    "--networking",
    default="cilium",
    show_default=True,
    help="Network plugin: kubenet, cilium, calico, flannel, canal, amazonvpc, kube-router, kindnet, cni.",
)
@click.option("--kubernetes-version", help="Kubernetes version (default: the channel's recommended version).")
@click.option(
    "--ingress",
    help="Install an ingress controller behind a cloud load balancer: nginx (spec.ingressController, "
    "a pykops extension).",
)
@click.option("--authorization", default="RBAC", show_default=True, help="RBAC or AlwaysAllow.")
@click.option("--topology", default="public", show_default=True, help="public or private subnets for nodes.")
@click.option("--dns", help="DNS for the API: public, private or none (.k8s.local names use none).")
@click.option("--api-loadbalancer-type", help="API load balancer: public or internal.")
@click.option("--admin-access", multiple=True, help="CIDRs allowed to reach the Kubernetes API.")
@click.option(
    "--ssh-access", multiple=True, help="CIDRs allowed to SSH to the nodes (default: --admin-access)."
)
@click.option(
    "--ssh-public-key", help="SSH public key file (default ~/.ssh/id_ed25519.pub, then id_rsa.pub)."
)
@click.option("--network-cidr", help="VPC CIDR (default 172.20.0.0/16).")
@click.option("--vpc", help="Use this existing VPC (shared) instead of creating one.")
@click.option("--subnets", multiple=True, help="Existing subnet ids to use, one per zone in --zones order.")
@click.option("--utility-subnets", multiple=True, help="Existing utility subnet ids (private topology).")
@click.option("--bastion", is_flag=True, help="Add a bastion instance group (private topology).")
@click.option("--image", help="Machine image for every instance group (owner/name or ami-...).")
@click.option("--cloud-labels", help="Tags for every AWS resource: key=value,key2=value2.")
@click.option("--channel", default="stable", show_default=True, help="Channel of recommended versions.")
@click.option("--dry-run", is_flag=True, help="Print the spec instead of storing it (use with -o).")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="Output format for --dry-run.")
@click.option("--yes", "-y", is_flag=True, help="Also create the cloud resources (update cluster --yes).")
@click.pass_context
def create_cluster(ctx: click.Context, /, positional_name: str | None, **flags: Any) -> None:
    """Create a cluster spec in the state store.

    \b
    Examples:
      # The tutorial's HA cluster: 3 control-plane nodes in 3 zones, kubenet, RBAC
      pykops create cluster --name proyecto.k8s.local \\
        --zones eu-west-1a,eu-west-1b,eu-west-1c --control-plane-zones eu-west-1a,eu-west-1b,eu-west-1c \\
        --control-plane-count 3 --node-count 1 --node-size t2.small --control-plane-size t2.small \\
        --networking kubenet --authorization RBAC --ssh-public-key proyecto.pub
      # See the spec without storing anything
      pykops create cluster --name c.k8s.local --zones eu-west-1a --dry-run -o yaml
    """
    from pykops.api.new_cluster import CreateClusterOptions, new_cluster, parse_key_values

    g = globals_of(ctx)
    name = g.require_name(positional_name)
    if flags["dry_run"] and not flags["output"]:
        raise UsageError("--dry-run needs -o yaml or -o json")
    if flags["output"] and not flags["dry_run"]:
        raise UsageError("-o is only used with --dry-run")
    key_text: str | None = None
    key_flag = flags["ssh_public_key"]
    if isinstance(key_flag, str):
        path = Path(os.path.expanduser(key_flag))
        try:
            key_text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--ssh-public-key {key_flag}: cannot read it ({exc.strerror or exc})") from None
    elif not flags["dry_run"] and (default_key := _default_ssh_key()) is not None:
        key_text = default_key.read_text(encoding="utf-8")

    opts = CreateClusterOptions(
        name=name,
        zones=split_list(flags["zones"]),
        control_plane_zones=split_list(flags["control_plane_zones"]),
        control_plane_count=flags["control_plane_count"],
        node_count=flags["node_count"],
        node_size=flags["node_size"],
        control_plane_size=flags["control_plane_size"],
        networking=str(flags["networking"]),
        kubernetes_version=flags["kubernetes_version"],
        authorization=str(flags["authorization"]),
        topology=str(flags["topology"]),
        dns=flags["dns"],
        api_loadbalancer_type=flags["api_loadbalancer_type"],
        admin_access=split_list(flags["admin_access"]),
        ssh_access=split_list(flags["ssh_access"]),
        network_cidr=flags["network_cidr"],
        vpc=flags["vpc"],
        subnets=split_list(flags["subnets"]),
        utility_subnets=split_list(flags["utility_subnets"]),
        image=flags["image"],
        cloud_labels=parse_key_values(str(flags["cloud_labels"]), "--cloud-labels")
        if flags["cloud_labels"]
        else {},
        channel=str(flags["channel"]),
        bastion=bool(flags["bastion"]),
        config_base=config_base(g.state, name),
        ingress=flags["ingress"],
    )
    cluster, groups = new_cluster(opts)
    if flags["allow_even_control_plane"]:
        from pykops.api.validate import ALLOW_EVEN_ANNOTATION

        cluster.metadata.annotations = {ALLOW_EVEN_ANNOTATION: "true"}
    public_key = None
    if key_text is not None:
        from pykops.state.sshkeys import parse_public_key

        public_key = parse_public_key(key_text, str(key_flag or "default SSH key"))
    check_spec(
        cluster, groups, allow_even_control_plane=bool(flags["allow_even_control_plane"]), state=g.state
    )

    if flags["dry_run"]:
        emit([cluster, *groups], str(flags["output"]))
        return
    if flags["yes"]:
        from pykops.cloud.aws.cloud import require_credentials

        require_credentials()  # before anything is written: a cluster spec without a way to apply it
    registry = open_registry(g)
    registry.create_cluster(cluster, groups)
    if public_key is not None:
        from pykops.state.sshkeys import store_public_key

        store_public_key(registry.store, cluster.name, public_key)
    if not flags["yes"]:
        _print_created(cluster, groups)
        return
    from pykops.cli.update import run_update

    code = run_update(registry, cluster.name, yes=True)
    if code == 0:
        click.echo(
            "\nCluster is starting. It should be ready in a few minutes.\n\nSuggestions:\n"
            f"  * validate cluster: pykops validate cluster {cluster.name} --wait 10m\n"
            "  * list nodes: kubectl get nodes --show-labels\n"
        )


def _print_created(cluster: Cluster, groups: list[InstanceGroup]) -> None:
    node = next((g.name for g in groups if g.spec.role == "Node"), "nodes")
    cp = next((g.name for g in groups if g.is_control_plane), "")
    click.echo(
        f"Cluster configuration for {cluster.name} has been created in the state store.\n\n"
        "Suggestions:\n"
        "  * list clusters with: pykops get cluster\n"
        f"  * edit this cluster with: pykops edit cluster {cluster.name}\n"
        f"  * edit your node instance group: pykops edit ig --name={cluster.name} {node}\n"
        f"  * edit your control-plane instance group: pykops edit ig --name={cluster.name} {cp}\n\n"
        f"Finally configure your cluster with: pykops update cluster --name {cluster.name} --yes\n"
    )


@command.command("instancegroup", context_settings=CONTEXT_SETTINGS)
@click.argument("group_name", metavar="NAME")
@cluster_options
@click.option(
    "--role",
    default="Node",
    show_default=True,
    type=click.Choice(["Node", "Master", "ControlPlane", "Bastion", "APIServer"], case_sensitive=False),
)
@click.option(
    "--subnet", "subnets", multiple=True, help="Cluster subnets (names) for the group; default: all."
)
@click.option("--machine-type", help="Instance type (default t3.medium).")
@click.option("--min-size", type=int)
@click.option("--max-size", type=int)
@click.option("--dry-run", is_flag=True, help="Print the instance group instead of storing it.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.pass_context
def create_instancegroup(
    ctx: click.Context,
    group_name: str,
    role: str,
    subnets: tuple[str, ...],
    machine_type: str | None,
    min_size: int | None,
    max_size: int | None,
    dry_run: bool,
    output: str,
) -> None:
    """Add an instance group to a cluster's spec.

    \b
    Examples:
      pykops create ig big-nodes --role Node --subnet eu-west-1a,eu-west-1b --machine-type m6i.large \\
        --min-size 0 --max-size 5 --name proyecto.k8s.local
    """
    from pykops.api.models import InstanceGroup, InstanceGroupSpec, ObjectMeta
    from pykops.api.new_cluster import CLUSTER_LABEL

    g = globals_of(ctx)
    name = g.require_name()
    canonical_role = {r.lower(): r for r in ("Node", "Master", "ControlPlane", "Bastion", "APIServer")}[
        role.lower()
    ]
    registry = open_registry(g)
    stored = registry.get_cluster(name)
    existing = [s.obj for s in registry.get_groups(name)]
    if any(e.name == group_name for e in existing):
        raise SpecError(
            f"instance group {group_name} already exists in cluster {name}; use pykops edit ig {group_name}"
        )
    subnet_names = split_list(subnets)
    if not subnet_names:
        wanted = ("Utility",) if canonical_role == "Bastion" else ("Public", "Private")
        subnet_names = [s.name for s in stored.obj.spec.subnets or [] if s.type in wanted]
    default_size = 2 if canonical_role == "Node" else 1
    lo = min_size if min_size is not None else (max_size if max_size is not None else default_size)
    hi = max_size if max_size is not None else max(lo, default_size if min_size is None else lo)
    group = InstanceGroup(
        metadata=ObjectMeta(name=group_name, labels={CLUSTER_LABEL: name}),
        spec=InstanceGroupSpec(
            role=canonical_role,
            machine_type=machine_type or "t3.medium",
            min_size=lo,
            max_size=hi,
            subnets=subnet_names,
        ),
    )
    check_spec(stored.obj, [*existing, group], state=g.state)
    if dry_run:
        emit([group], output)
        return
    registry.create_group(name, group)
    click.echo(f"Created instancegroup/{group_name} in cluster {name}")
