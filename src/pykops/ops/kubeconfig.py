"""``export kubeconfig`` and the kubeconfig side of ``delete cluster``: the I/O around pki.kubeconfig.

As kops (``pkg/kubeconfig/create_kubecfg.go``, ``cmd/kops/export_kubeconfig.go``):

* the file is ``--kubeconfig``, else the first path of ``$KUBECONFIG``, else ``~/.kube/config``; it is
  written with mode 0600 (atomically: a temporary file renamed over it);
* the server is ``https://api.internal.<cluster>`` with ``--internal``; otherwise the API's public name
  (``https://api.<cluster>`` by default), replaced by the API load balancer's DNS name when the cluster
  has one (found in AWS by its name); ``tls-server-name`` is ``api.internal.<cluster>``;
* in the sandbox (``$PYKOPS_SANDBOX_DIR`` set, as the sandbox's env file does) the server is the loopback
  address the sandbox maps the cluster's API endpoint to (``<sandbox>/clusters/<cluster>/api.json``,
  written by the machine simulator), with the same ``tls-server-name``: the simulated API presents the
  certificate nodeup issued, so TLS is verified as on AWS;
* the CA bundle (every trusted ``kubernetes-ca`` certificate) is embedded;
* ``--admin[=DURATION]`` (default 18h) adds a client certificate signed by the cluster CA with
  ``CN=kubecfg-<local user>``, ``O=system:masters``, in a user named after the cluster; ``--user NAME``
  makes the context use an existing user of the kubeconfig instead.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pykops.api.models import Cluster
from pykops.errors import PykopsError, UsageError
from pykops.pki.ca import issue
from pykops.pki.kubeconfig import (
    Config,
    build_kubeconfig,
    dump_kubeconfig,
    merge_kubeconfig,
    parse_kubeconfig,
    remove_cluster,
)
from pykops.state.keystore import KUBERNETES_CA, Keystore
from pykops.state.store import StateStore

DEFAULT_ADMIN_LIFETIME = timedelta(hours=18)  # kops' DefaultKubecfgAdminLifetime
ADMIN_ORGANIZATION = "system:masters"  # kops' rbac.SystemPrivilegedGroup
KUBECONFIG_MODE = 0o600

LoadBalancerLookup = Callable[[Cluster], str | None]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """A Go-style duration (``18h``, ``1h30m``, ``90m``, ``3600s``); it must be positive."""
    value = text.strip()
    pos, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit h, m or s, e.g. 18h, 1h30m, 90m"
        )
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be positive")
    return timedelta(seconds=seconds)


def kubeconfig_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit``, else the first path of ``$KUBECONFIG``, else ``~/.kube/config`` (kubectl's rules)."""
    if explicit:
        return Path(explicit).expanduser()
    for part in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if part.strip():
            return Path(part.strip()).expanduser()
    return Path.home() / ".kube" / "config"


def internal_api_name(cluster: Cluster) -> str:
    return cluster.spec.master_internal_name or f"api.internal.{cluster.name}"


def public_api_name(cluster: Cluster) -> str:
    api = cluster.spec.api
    return (api.public_name if api else None) or cluster.spec.master_public_name or f"api.{cluster.name}"


def has_api_load_balancer(cluster: Cluster) -> bool:
    """Whether the cluster's API is behind a load balancer (the default when ``api.dns`` is not chosen)."""
    api = cluster.spec.api
    return api is None or api.load_balancer is not None or api.dns is None


def api_load_balancer_dns(cluster: Cluster, *, region: str | None = None) -> str | None:
    """The DNS name of the cluster's API load balancer in AWS, or ``None`` if there is none (yet)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from pykops.api.regions import region_of_zone
    from pykops.cloud.aws.cloud import AwsCloud, classify, error_code
    from pykops.model.names import elb_name

    if region is None:
        zones = [s.zone for s in cluster.spec.subnets or [] if s.zone]
        if not zones:
            raise PykopsError(f"cluster {cluster.name} has no subnets with zones; cannot tell its region")
        region = region_of_zone(zones[0])
    cloud = AwsCloud(cluster.name, region)
    try:
        found = cloud.elbv2.describe_load_balancers(Names=[elb_name("api", cluster.name)])
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in ("LoadBalancerNotFound", "LoadBalancerNotFoundException"):
            return None
        raise classify(exc) from None
    for lb in found.get("LoadBalancers", []):
        if lb.get("DNSName"):
            return str(lb["DNSName"])
    return None


@dataclass
class ServerChoice:
    url: str
    warnings: list[str] = field(default_factory=list)


def api_server_url(
    cluster: Cluster, *, internal: bool = False, lookup: LoadBalancerLookup | None = None
) -> ServerChoice:
    """The API server URL for the kubeconfig (see the module docstring); ``cluster`` is the completed spec."""
    sandboxed = sandbox_api_endpoint(cluster.name)
    if sandboxed is not None:
        return ServerChoice(sandboxed)
    if internal:
        return ServerChoice(f"https://{internal_api_name(cluster)}")
    choice = ServerChoice(f"https://{_wrap_ipv6(public_api_name(cluster))}")
    if has_api_load_balancer(cluster):
        dns = (lookup or api_load_balancer_dns)(cluster)
        if dns:
            choice.url = f"https://{_wrap_ipv6(dns)}"
        else:
            choice.warnings.append(
                f"did not find the API load balancer of {cluster.name} (is the cluster created? "
                f"pykops update cluster --yes); using {choice.url}"
            )
    return choice


SANDBOX_DIR_ENV = "PYKOPS_SANDBOX_DIR"
SANDBOX_WAIT = 15.0  # seconds: the simulator maps a cluster's API within a poll or two of its first instance


def sandbox_api_endpoint(cluster_name: str, *, wait: float = SANDBOX_WAIT) -> str | None:
    """The loopback URL the sandbox maps ``cluster_name``'s API endpoint to, when running in the sandbox.

    ``None`` outside the sandbox. Inside it, the machine simulator writes ``clusters/<name>/api.json`` once it
    has seen the cluster's instances; if its daemon runs (``machines.pid``) this waits up to ``wait`` seconds
    for the file, so ``update cluster --yes`` right after creating the instances gets the right address.
    """
    import json
    import time

    directory = os.environ.get(SANDBOX_DIR_ENV)
    if not directory:
        return None
    base = Path(directory).expanduser()
    path = base / "clusters" / cluster_name / "api.json"
    deadline = time.monotonic() + (wait if (base / "machines.pid").exists() else 0.0)
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            server = json.loads(path.read_text())["server"]
            if isinstance(server, str) and server.startswith("https://127."):
                return server
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _wrap_ipv6(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def admin_common_name() -> str:
    """kops' admin CN: ``kubecfg-<local user>``."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        return "kubecfg"
    return f"kubecfg-{who}" if who else "kubecfg"


def build_cluster_kubeconfig(
    store: StateStore,
    cluster: Cluster,
    *,
    admin: timedelta | None = None,
    user: str | None = None,
    internal: bool = False,
    lookup: LoadBalancerLookup | None = None,
) -> tuple[Config, list[str]]:
    """The kubeconfig document for ``cluster`` (completed spec) and any warnings; nothing is written."""
    if admin is not None and user:
        raise UsageError("cannot use both --admin and --user")
    keyset = Keystore(store, cluster.name).require(KUBERNETES_CA)
    choice = api_server_url(cluster, internal=internal, lookup=lookup)
    cert_pem = key_pem = None
    if admin is not None:
        client = issue(
            keyset.primary_keypair(),
            common_name=admin_common_name(),
            organization=[ADMIN_ORGANIZATION],
            usage="client",
            validity=admin,
        )
        cert_pem, key_pem = client.cert_pem, client.key_pem
    doc = build_kubeconfig(
        cluster.name,
        choice.url,
        keyset.ca_bundle(),
        client_cert_pem=cert_pem,
        client_key_pem=key_pem,
        user=user,
        tls_server_name=internal_api_name(cluster),
    )
    return doc, choice.warnings


def read_kubeconfig(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return parse_kubeconfig("", str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise PykopsError(f"cannot read the kubeconfig {path}: {exc}") from None
    return parse_kubeconfig(text, str(path))


def write_kubeconfig(path: Path, config: Config) -> None:
    """Write ``config`` to ``path`` (through a symlink) atomically with mode 0600; parents get 0700."""
    target = path.resolve() if path.is_symlink() else path
    data = dump_kubeconfig(config).encode()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, KUBECONFIG_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise PykopsError(f"cannot write the kubeconfig {target}: {exc.strerror or exc}") from None


def export_kubeconfig(
    store: StateStore,
    cluster: Cluster,
    *,
    admin: timedelta | None = None,
    user: str | None = None,
    internal: bool = False,
    kubeconfig: str | os.PathLike[str] | None = None,
    lookup: LoadBalancerLookup | None = None,
) -> tuple[Path, list[str]]:
    """Merge ``cluster``'s context into the kubeconfig file and make it current; returns (path, warnings)."""
    doc, warnings = build_cluster_kubeconfig(
        store, cluster, admin=admin, user=user, internal=internal, lookup=lookup
    )
    path = kubeconfig_path(kubeconfig)
    existing = read_kubeconfig(path)
    merged = merge_kubeconfig(existing, doc)
    write_kubeconfig(path, merged)
    context: dict[str, Any] = next(c for c in merged["contexts"] if c["name"] == cluster.name)
    if not (context.get("context") or {}).get("user"):
        warnings.append(
            "exported the kubeconfig with no user credentials; use --admin or --user with "
            "pykops export kubeconfig"
        )
    return path, warnings


def remove_context(cluster: str, *, kubeconfig: str | os.PathLike[str] | None = None) -> bool:
    """Remove the cluster, context and users kops' export wrote for ``cluster`` from the kubeconfig file;
    returns whether anything was removed (a missing file is left missing)."""
    path = kubeconfig_path(kubeconfig)
    if not path.exists():
        return False
    config, changed = remove_cluster(read_kubeconfig(path), cluster)
    if changed:
        write_kubeconfig(path, config)
    return changed
