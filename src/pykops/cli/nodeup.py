"""``pykops nodeup``: bootstrap this machine from its instance group's NodeupConfig (the I/O shell).

It reads the config and the keysets the role needs from the state store (a worker node: only its
``kubelet`` and ``kube-proxy`` keypairs, never a CA's private key; its CA certificates are in the config),
learns who the machine is (instance id and zone: the instance metadata service, or ``--instance-id`` and
EC2), attaches and mounts the etcd volumes of a control-plane machine, renders the machine's files
(:mod:`pykops.nodeup.render`, pure) and writes them. Without ``--root`` it also downloads the pinned
binaries (each checked against its SHA-256; a binary without a pinned hash is refused) and starts
containerd and the kubelet.

``--root DIR`` renders a machine into a directory instead: every file lands under DIR (never outside), no
binary is downloaded (``DIR/var/lib/pykops/assets.json`` lists what would be), no service is started, and
the etcd volumes are still attached through the AWS API (so EC2 records it) but "mounted" by creating
``DIR/mnt/master-<volume id>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pykops.cli.output import info
from pykops.errors import PykopsError, UsageError

if TYPE_CHECKING:
    from pykops.nodeup.assets import Asset
    from pykops.nodeup.config import NodeupConfig
    from pykops.nodeup.render import FileSpec, Pki
    from pykops.state.keystore import Keystore

# pykops.cli.main's settings (not imported from there: main imports this module while registering it).
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
IMDS_ENDPOINT = "http://169.254.169.254"
ASSETS_MANIFEST = "var/lib/pykops/assets.json"
ASSET_CACHE = Path("/var/cache/pykops/assets")
# Where each downloaded asset is installed (kOps' locations).
INSTALL_PATHS = {
    "containerd": "/usr/bin",  # the tarball's bin/* (containerd, ctr, shims)
    "runc": "/usr/sbin/runc",
    "cni-plugins": "/opt/cni/bin",
    "kubelet": "/usr/local/bin/kubelet",
    "kubectl": "/usr/local/bin/kubectl",
}


class NodeupError(PykopsError):
    """nodeup cannot bootstrap this machine."""


@dataclass(frozen=True)
class Identity:
    instance_id: str
    zone: str
    node_name: str
    private_ip: str | None = None


# --- the state store -------------------------------------------------------------------------------------


def split_url(url: str) -> tuple[str, str]:
    """A state-store object URL → (store URL, key): the store is the state root when the URL has kOps'
    ``<cluster>/igconfig/...`` layout, else the URL's parent."""
    text = url.rstrip("/")
    marker = "/igconfig/"
    if marker in text:
        head, tail = text.split(marker, 1)
        root, _, cluster = head.rpartition("/")
        if root and cluster and "://" in root + "/":
            scheme_end = root.find("://") + 3
            if len(root) > scheme_end:
                return root, f"{cluster}{marker}{tail}"
    parent, _, key = text.rpartition("/")
    if not key or parent.endswith(":/"):
        raise UsageError(f"--config {url!r}: expected the URL of an object in a state store")
    return parent, key


def read_url(url: str) -> bytes:
    from pykops.state.store import open_store

    store_url, key = split_url(url)
    found = open_store(store_url).read(key)
    if found is None:
        raise NodeupError(f"{url} does not exist; it is written by: pykops update cluster --yes")
    return found.data


def read_nodeup_config(url: str) -> NodeupConfig:
    from pykops.nodeup.config import NodeupConfig

    return NodeupConfig.from_yaml(read_url(url).decode(), url)


def config_keystore(config: NodeupConfig) -> Keystore:
    """The keystore of the config's cluster, in the state store its ``configBase`` names."""
    from pykops.state.keystore import Keystore
    from pykops.state.store import open_store

    base = config.config_base.rstrip("/")
    root, _, cluster = base.rpartition("/")
    if cluster != config.cluster_name:
        raise NodeupError(f"configBase {base} does not end with the cluster name {config.cluster_name}")
    return Keystore(open_store(root), config.cluster_name)


def read_pki(config: NodeupConfig, keystore: Keystore | None = None) -> Pki:
    """The primary keypair of each keyset the role reads (``<cluster>/pki/private/<name>/keyset.yaml``):
    on a worker node only ``kubelet`` and ``kube-proxy``, never a CA (:func:`private_keysets_to_read`)."""
    from pykops.nodeup.config import private_keysets_to_read

    keystore = keystore or config_keystore(config)
    out: dict[str, tuple[bytes, bytes]] = {}
    for name in private_keysets_to_read(config):
        primary = keystore.require(name).primary
        if not primary.key_pem:
            raise NodeupError(f"keyset {name} has no private key for its primary item {primary.id}")
        out[name] = (primary.cert_pem, primary.key_pem)
    return out


def read_missing_ca_certificates(
    config: NodeupConfig, pki: Pki, keystore: Keystore | None = None
) -> dict[str, bytes]:
    """The CA certificates the machine needs that neither its config (``caCertificates``) nor ``pki``
    holds: a config written before ``caCertificates`` existed. Read from the keystore, keeping only the
    certificates; on AWS a worker node's IAM role may not read a CA's keyset, so re-running
    ``update cluster --yes`` (which writes them into the config) is the fix."""
    from pykops.nodeup.config import ca_keysets_for

    missing = [
        name
        for name in ca_keysets_for(config.cluster(), config.role)
        if name not in config.ca_certificates and name not in pki
    ]
    if not missing:
        return {}
    info(
        f"  warning: the NodeupConfig has no caCertificates for {', '.join(missing)} (written by an older "
        "pykops); reading the certificates from the state store. Re-run: pykops update cluster --yes"
    )
    keystore = keystore or config_keystore(config)
    out: dict[str, bytes] = {}
    for name in missing:
        try:
            out[name] = keystore.require(name).ca_bundle()
        except PykopsError as exc:
            raise NodeupError(
                f"cannot read the {name} certificates ({exc}); rewrite this machine's config with "
                "caCertificates: pykops update cluster --yes"
            ) from None
    return out


# --- who is this machine ---------------------------------------------------------------------------------


def imds_identity(endpoint: str = IMDS_ENDPOINT, *, timeout: float = 2.0) -> tuple[str, str, str | None]:
    """(instance id, zone, local hostname) from the instance metadata service, IMDSv2 (token first)."""
    try:
        token_request = urllib.request.Request(
            f"{endpoint}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"},
        )
        with urllib.request.urlopen(token_request, timeout=timeout) as response:
            token = response.read().decode()

        def get(path: str) -> str:
            request = urllib.request.Request(
                f"{endpoint}/latest/meta-data/{path}", headers={"X-aws-ec2-metadata-token": token}
            )
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return str(response.read().decode()).strip()

        instance_id = get("instance-id")
        zone = get("placement/availability-zone")
        try:
            hostname: str | None = get("local-hostname")
        except OSError:
            hostname = None
    except OSError as exc:
        raise NodeupError(
            f"cannot read the instance metadata service at {endpoint} ({exc}); "
            "outside EC2 use --root DIR --instance-id ID"
        ) from None
    return instance_id, zone, hostname


def ec2_client(region: str) -> Any:
    import boto3

    return boto3.client("ec2", region_name=region)


def describe_identity(ec2: Any, instance_id: str) -> Identity:
    from botocore.exceptions import ClientError

    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id]).get("Reservations", [])
    except ClientError as exc:
        raise NodeupError(
            f"instance {instance_id}: {exc.response.get('Error', {}).get('Message', exc)}"
        ) from None
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise NodeupError(f"instance {instance_id} not found in EC2")
    instance = instances[0]
    zone = str((instance.get("Placement") or {}).get("AvailabilityZone", ""))
    return Identity(
        instance_id=instance_id,
        zone=zone,
        node_name=str(instance.get("PrivateDnsName") or instance_id),
        private_ip=instance.get("PrivateIpAddress"),
    )


def cluster_region(config: NodeupConfig) -> str:
    from pykops.api.regions import region_of_zone

    zones = [s.zone for s in config.cluster().spec.subnets or [] if s.zone]
    if not zones:
        raise NodeupError(f"cluster {config.cluster_name} has no subnets with zones; cannot tell its region")
    return region_of_zone(zones[0])


# --- writing ---------------------------------------------------------------------------------------------


def target_path(root: Path, path: str) -> Path:
    """Where ``path`` (absolute on the machine) goes under ``root``; refuses anything that would escape."""
    if not path.startswith("/") or any(part in ("..", ".") for part in path.split("/")):
        raise NodeupError(f"refusing to write {path!r}: not a plain absolute path")
    base = root.resolve()
    target = (base / path.lstrip("/")).resolve()
    if target != base and base not in target.parents:
        raise NodeupError(f"refusing to write {path} outside {base} (resolves to {target})")
    return target


def write_files(files: Iterable[FileSpec], root: Path) -> list[Path]:
    """Write each file under ``root`` (``/`` on a real machine) atomically, with its mode."""
    written: list[Path] = []
    for spec in files:
        target = target_path(root, spec.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target = target_path(root, spec.path)  # again: a directory created above may not be a symlink out
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, spec.mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(spec.content)
            if spec.owner and os.geteuid() == 0 and str(root) == "/":
                shutil.chown(tmp, user=spec.owner)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(target)
    return written


def assets_manifest(assets: Iterable[Asset]) -> bytes:
    entries = [
        {
            "name": a.name,
            "version": a.version,
            "arch": a.arch,
            "url": a.url,
            "sha256": a.sha256,
            "installTo": INSTALL_PATHS.get(a.name),
        }
        for a in assets
    ]
    return (json.dumps({"assets": entries}, indent=2) + "\n").encode()


def download_asset(
    asset: Asset, cache: Path = ASSET_CACHE, opener: Callable[..., Any] = urllib.request.urlopen
) -> Path:
    """Download ``asset`` into the cache and check its SHA-256 (refused if it has none)."""
    from pykops.nodeup.assets import require_hashes

    require_hashes([asset])
    assert asset.sha256 is not None
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / asset.sha256
    if final.exists() and _sha256(final) == asset.sha256:
        return final
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=cache)
    try:
        with os.fdopen(fd, "wb") as out, opener(asset.url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != asset.sha256:
            raise NodeupError(
                f"{asset.url}: SHA-256 {digest.hexdigest()} does not match the pinned {asset.sha256}; "
                "not installed"
            )
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def install_asset(asset: Asset, path: Path) -> None:
    target = INSTALL_PATHS[asset.name]
    if asset.name in ("containerd", "cni-plugins"):
        Path(target).mkdir(parents=True, exist_ok=True)
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = os.path.basename(member.name)
                source = tar.extractfile(member)
                if source is None or not name:
                    continue
                _install_bytes(source.read(), Path(target) / name)
    else:
        _install_bytes(path.read_bytes(), Path(target))


def _install_bytes(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def start_services(files: Iterable[FileSpec]) -> None:
    units = [f.path.rsplit("/", 1)[1] for f in files if f.path.startswith("/etc/systemd/system/")]
    commands = [
        ["modprobe", "overlay"],
        ["modprobe", "br_netfilter"],
        ["sysctl", "--system"],
        ["systemctl", "daemon-reload"],
        *(["systemctl", "enable", "--now", unit] for unit in sorted(units, key=_unit_order)),
    ]
    for command in commands:
        subprocess.run(command, check=True)


def _unit_order(unit: str) -> tuple[int, str]:
    order = {"cni-iptables-setup.service": 0, "containerd.service": 1, "kubelet.service": 2}
    return (order.get(unit, 3), unit)


def update_hosts_file(path: Path, entries: dict[str, str]) -> None:
    from pykops.nodeup.volumes import update_hosts

    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(update_hosts(text, entries))


# --- the command -----------------------------------------------------------------------------------------


def _mode(mode: int) -> str:
    return f"0{mode:o}"


def run_nodeup(
    config_url: str,
    *,
    root: Path | None,
    instance_id: str | None,
    node_name: str | None,
    dry_run: bool,
    imds_endpoint: str = IMDS_ENDPOINT,
) -> int:
    from pykops.nodeup.assets import require_hashes
    from pykops.nodeup.render import render_machine
    from pykops.nodeup.volumes import (
        attach_etcd_volumes,
        describe_etcd_volumes,
        etcd_peer_addresses,
        mount_etcd_volume,
        plan_attachments,
    )

    config = read_nodeup_config(config_url)
    if root is None:
        # A real machine installs only what it can verify; refuse before touching anything.
        require_hashes(config.assets)
    region = cluster_region(config)
    ec2 = ec2_client(region)
    if root is not None:
        if not instance_id:
            raise UsageError("--root needs --instance-id (the metadata service is not used in --root mode)")
        identity = describe_identity(ec2, instance_id)
    else:
        if instance_id:
            identity = describe_identity(ec2, instance_id)
        else:
            found_id, zone, hostname = imds_identity(imds_endpoint)
            identity = Identity(found_id, zone, hostname or found_id)
    node = node_name or identity.node_name
    info(
        f"nodeup: {config.role} {identity.instance_id} ({node}) in {identity.zone}, instance group "
        f"{config.instance_group} of {config.cluster_name}, Kubernetes {config.kubernetes_version}"
    )
    keystore = config_keystore(config)
    pki = read_pki(config, keystore)
    ca_certificates = read_missing_ca_certificates(config, pki, keystore)

    etcd_volumes: dict[str, str] = {}
    if config.is_control_plane and config.etcd_members:
        if dry_run:
            volumes = describe_etcd_volumes(ec2, config.cluster_name, identity.zone)
            owners = {
                v.attached_to: "running"
                for v in volumes
                if v.attached_to and v.attached_to != identity.instance_id
            }
            plan = plan_attachments(
                volumes,
                instance_id=identity.instance_id,
                zone=identity.zone,
                members=config.etcd_members,
                instance_states={k: v for k, v in owners.items() if k},
            )
            etcd_volumes = {name: action.volume.volume_id for name, action in plan.items()}
            for name, action in sorted(plan.items()):
                info(f"  etcd-{name}: would {action.kind} {action.volume.volume_id} ({action.reason})")
        else:
            attached = attach_etcd_volumes(
                ec2,
                cluster_name=config.cluster_name,
                instance_id=identity.instance_id,
                zone=identity.zone,
                members=config.etcd_members,
                log=lambda message: info(f"  {message}"),
            )
            for name, volume in sorted(attached.items()):
                mounted = mount_etcd_volume(volume, root=root)
                etcd_volumes[name] = volume.volume_id
                info(f"  etcd-{name}: {volume.volume_id} (member {volume.member}) mounted at {mounted}")

    files = render_machine(
        config,
        instance_id=identity.instance_id,
        zone=identity.zone,
        node_name=node,
        pki=pki,
        etcd_volumes=etcd_volumes,
        ca_certificates=ca_certificates,
    )
    if dry_run:
        click.echo(f"{'MODE':<6} {'SIZE':>7}  PATH")
        for spec in files:
            click.echo(f"{_mode(spec.mode):<6} {len(spec.content):>7}  {spec.path}")
        click.echo(
            f"{len(files)} files; assets: " + ", ".join(f"{a.name} {a.version}" for a in config.assets)
        )
        return 0

    base = root if root is not None else Path("/")
    if root is None:
        for asset in config.assets:
            install_asset(asset, download_asset(asset))
    write_files(files, base)
    if config.is_control_plane:
        peers = etcd_peer_addresses(ec2, config.cluster_name)
        update_hosts_file(target_path(base, "/etc/hosts"), peers)
    if root is not None:
        manifest = target_path(root, "/" + ASSETS_MANIFEST)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_bytes(assets_manifest(config.assets))
        missing = [a for a in config.assets if not a.sha256]
        if missing:
            info("  warning: no pinned SHA-256 for " + ", ".join(f"{a.name} {a.version}" for a in missing))
        info(f"nodeup: wrote {len(files)} files under {root} (assets listed in {manifest}, not downloaded)")
    else:
        start_services(files)
        info(f"nodeup: wrote {len(files)} files, installed {len(config.assets)} assets, started services")
    return 0


@click.command("nodeup", context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_url", required=True, help="URL of this instance group's nodeupconfig.yaml.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Render into DIR: write nothing outside it, download nothing, start nothing.",
)
@click.option("--instance-id", help="This machine's EC2 instance id (needed with --root; else from IMDSv2).")
@click.option("--node-name", help="Kubernetes node name (default: the instance's private DNS name).")
@click.option("--dry-run", is_flag=True, help="List the files (mode, size, path) instead of writing them.")
@click.pass_context
def command(
    ctx: click.Context,
    config_url: str,
    root: Path | None,
    instance_id: str | None,
    node_name: str | None,
    dry_run: bool,
) -> int:
    """Bootstrap this machine as a member of its instance group.

    \b
    Examples:
      pykops nodeup --config s3://state/proyecto.k8s.local/igconfig/node/nodes/nodeupconfig.yaml
      pykops nodeup --config file:///state/c.k8s.local/igconfig/control-plane/master-a/nodeupconfig.yaml \\
        --root /tmp/machine --instance-id i-0123456789abcdef0
    """
    code = run_nodeup(
        config_url,
        root=root.absolute() if root is not None else None,
        instance_id=instance_id,
        node_name=node_name,
        dry_run=dry_run,
        imds_endpoint=os.environ.get("PYKOPS_IMDS_ENDPOINT", IMDS_ENDPOINT),
    )
    ctx.exit(code)
    return code
