"""The user data of each launch template: a cloud-config that installs pykops and runs nodeup (pure).

As kops does, the user data is small and stable; what a machine becomes is in the per-group bootstrap config
that ``update cluster`` writes to the state store (``igconfig/<role>/<group>/nodeupconfig.yaml``), so
changing the cluster rarely changes the launch template (changing the pykops version does).

The document (``#cloud-config``) writes two files and runs one command:

* ``/opt/pykops/bootstrap.env`` (0600): the settings, as ``KEY=VALUE`` lines: the pykops version, the
  state bucket, the release's key prefix in it and the NodeupConfig URL;
* ``/opt/pykops/bootstrap.py`` (0700): ``data/bootstrap.py`` verbatim (no templating): standard library
  only, it fetches the instance role's credentials from IMDSv2, downloads ``releases/<version>/`` (the
  pykops wheel and its dependencies' wheels, uploaded by ``update cluster``: see :mod:`pykops.release`)
  with SigV4-signed S3 GETs, checks every SHA-256 against the release manifest, unpacks the wheels into
  ``/opt/pykops/lib`` and runs ``pykops nodeup --config <url>`` from there;
* ``runcmd``: ``python3 /opt/pykops/bootstrap.py`` (its log: ``/var/log/pykops-bootstrap.log``).

EC2 refuses user data over 16 KB; :data:`USER_DATA_LIMIT` is checked when the document is built.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from urllib.parse import urlparse

from pykops import __version__
from pykops.api.models import Cluster, InstanceGroup
from pykops.errors import SpecError

USER_DATA_LIMIT = 16 * 1024  # bytes, before base64: EC2's limit
BOOTSTRAP_PATH = "/opt/pykops/bootstrap.py"
ENV_PATH = "/opt/pykops/bootstrap.env"


def igconfig_key(cluster: str, group: InstanceGroup) -> str:
    role = "control-plane" if group.is_control_plane else "node"
    return f"{cluster}/igconfig/{role}/{group.name}/nodeupconfig.yaml"


def release_key(cluster: str, version: str = __version__) -> str:
    """The directory (store key, no trailing slash) holding a cluster's pinned pykops release."""
    return f"{cluster}/releases/{version}"


@functools.cache
def bootstrap_script() -> str:
    """The machine's bootstrap program (``data/bootstrap.py``)."""
    return resources.files("pykops.model").joinpath("data/bootstrap.py").read_text(encoding="utf-8")


# The spec fields that shape what nodeup makes of a machine (kops puts its NodeupConfig's hash in the user
# data for the same reason): when one changes, the launch template's user data changes, so its version moves
# and `rolling-update cluster` sees which instances still run the old configuration. Scaling a group never
# asks for a rolling update.
_MACHINE_FIELDS = (
    "kubernetes_version",
    "cluster_dns_domain",
    "service_cluster_ip_range",
    "non_masquerade_cidr",
    "etcd_clusters",
    "containerd",
    "kubelet",
    "master_kubelet",
    "control_plane_kubelet",
    "kube_api_server",
    "kube_controller_manager",
    "kube_scheduler",
    "kube_proxy",
    "networking",
)


# What nodeup reads from the group (the rest — size, machine type, image, volumes, subnets — is in the launch
# template or the Auto Scaling group already, or does not touch the machines).
_GROUP_FIELDS = ("role", "node_labels", "taints", "kubelet", "sysctl_parameters", "volume_mounts")


def machine_config_hash(cluster: Cluster, group: InstanceGroup) -> str:
    """A short digest of what the group's machines are built from (pure; stable across runs)."""
    spec = cluster.spec.model_dump(
        mode="json", by_alias=True, exclude_none=True, include=set(_MACHINE_FIELDS)
    )
    own = group.spec.model_dump(mode="json", by_alias=True, exclude_none=True, include=set(_GROUP_FIELDS))
    doc = {"cluster": spec, "group": own}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def bootstrap_settings(
    cluster: Cluster, group: InstanceGroup, *, version: str = __version__
) -> dict[str, str]:
    """What ``bootstrap.env`` holds for a group's machines."""
    base = (cluster.spec.config_base or "").rstrip("/")
    state_root = base.rsplit("/", 1)[0] if "/" in base else base
    parsed = urlparse(state_root)
    prefix = f"{parsed.path.strip('/')}/" if parsed.path.strip("/") else ""
    settings = {
        "PYKOPS_VERSION": version,
        # Machines reach only an s3:// store; with another the bootstrap fails and says why.
        "PYKOPS_STATE_BUCKET": parsed.netloc if parsed.scheme == "s3" else "-",
        "PYKOPS_RELEASE_PREFIX": prefix + release_key(cluster.name, version),
        "PYKOPS_NODEUP_CONFIG": f"{state_root}/{igconfig_key(cluster.name, group)}",
        "PYKOPS_MACHINE_CONFIG_HASH": machine_config_hash(cluster, group),
    }
    for key, value in settings.items():
        if not value or any(c in value for c in "\n\r\0") or value != value.strip():
            raise SpecError(f"cannot pass {key}={value!r} to the machines' bootstrap")
    return settings


def _literal_block(text: str, indent: str = "    ") -> str:
    """``text`` as the body of a YAML literal block scalar (``|``) indented by ``indent``."""
    return "".join(f"{indent}{line}\n" if line else "\n" for line in text.splitlines())


def user_data(cluster: Cluster, group: InstanceGroup, *, version: str = __version__) -> str:
    """The cloud-config of the group's machines; see the module docstring."""
    env = "".join(f"{k}={v}\n" for k, v in bootstrap_settings(cluster, group, version=version).items())
    document = (
        "#cloud-config\n"
        f"# pykops {version} bootstrap of instance group {group.name} of cluster {cluster.name}\n"
        "write_files:\n"
        f"- path: {ENV_PATH}\n"
        "  owner: root:root\n"
        "  permissions: '0600'\n"
        "  content: |\n"
        f"{_literal_block(env)}"
        f"- path: {BOOTSTRAP_PATH}\n"
        "  owner: root:root\n"
        "  permissions: '0700'\n"
        "  content: |\n"
        f"{_literal_block(bootstrap_script())}"
        "runcmd:\n"
        f"- [python3, {BOOTSTRAP_PATH}]\n"
    )
    size = len(document.encode())
    if size > USER_DATA_LIMIT:
        raise SpecError(
            f"the user data of instance group {group.name} is {size} bytes; "
            f"EC2 accepts at most {USER_DATA_LIMIT}"
        )
    return document
