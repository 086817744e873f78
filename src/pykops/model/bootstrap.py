"""The user data of each launch template: a short script that bootstraps the machine with nodeup (pure).

As kops does, the script is small and stable; what a machine becomes is in the per-group bootstrap config
that ``update cluster`` writes to the state store (``igconfig/<role>/<group>/nodeupconfig.yaml``), so
changing the cluster rarely changes the launch template.

Limitation of this version: nodeup itself (installing the pinned pykops wheel from the state store and
rendering the machine) is not built yet, so the script says so and fails instead of pretending.
"""

from __future__ import annotations

from pykops import __version__
from pykops.api.models import Cluster, InstanceGroup


def igconfig_key(cluster: str, group: InstanceGroup) -> str:
    role = "control-plane" if group.is_control_plane else "node"
    return f"{cluster}/igconfig/{role}/{group.name}/nodeupconfig.yaml"


def user_data(cluster: Cluster, group: InstanceGroup, *, version: str = __version__) -> str:
    base = (cluster.spec.config_base or "").rstrip("/")
    state_root = base.rsplit("/", 1)[0] if "/" in base else base
    config_url = f"{state_root}/{igconfig_key(cluster.name, group)}"
    return (
        "#!/bin/bash\n"
        f"# pykops {version} bootstrap for instance group {group.name} of cluster {cluster.name}\n"
        "set -o errexit -o nounset -o pipefail\n"
        f"NODEUP_CONFIG={config_url}\n"
        f'echo "pykops {version}: nodeup is not available yet; the machine config is at $NODEUP_CONFIG" >&2\n'
        "exit 1\n"
    )
