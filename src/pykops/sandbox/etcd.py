"""Real etcd members for the sandbox's simulated control-plane machines.

A simulated control-plane machine runs one ``/usr/bin/etcd`` process (Debian's ``etcd-server``) per etcd
manifest nodeup wrote into its ``/etc/kubernetes/manifests`` (``etcd-main.yaml``, ``etcd-events.yaml``),
started from that manifest's arguments, translated for the simulation:

* the member name, the ``--initial-cluster`` member list, the cluster token and the cluster state are the
  manifest's;
* every member gets a STABLE loopback address derived from (cluster name, etcd cluster, member name),
  ``127.<h1>.<h2>.<h3>`` from a hash and never ``127.0.0.1``, so a replacement machine that re-attaches
  the member's volume comes back as the same member at the same address; the manifest's ports are kept
  (main 2380/4001, events 2381/4002) and the member DNS names (``etcd-a.internal.<cluster>``) in
  ``--initial-cluster`` and the advertise URLs are replaced by those addresses;
* the data directory is the hostPath of the manifest's data volume, ``/mnt/master-<volume id>/data``,
  mapped to ``<sandbox dir>/volumes/<volume id>/data``: the EBS volume's "disk", which outlives machines.

Simulation limit: peers and clients talk plain http on loopback. The manifest's certificates name the
members by DNS name only (``etcd-a.internal.<cluster>``), which do not resolve to the loopback addresses
without root (``/etc/hosts``), so TLS is dropped rather than weakened with hostname checks turned off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import yaml

from pykops.errors import PykopsError

ETCD_BINARY = "/usr/bin/etcd"
# The flags of the manifest that the simulation passes on unchanged.
_KEPT_FLAGS = ("heartbeat-interval", "election-timeout", "snapshot-count", "quota-backend-bytes")


class EtcdError(PykopsError):
    """An etcd manifest cannot be run in the sandbox."""


def member_address(cluster_name: str, etcd_cluster: str, member: str, sandbox: str = "") -> str:
    """The member's stable loopback address: ``127.a.b.c`` from a hash of the three names and the sandbox
    (its volumes directory), so that two sandboxes running a cluster of the same name never share members.

    Never ``127.0.0.1`` (nor a ``.0``/``.255`` last byte): the first two bytes come from the hash, the last
    one is folded into 2..254.
    """
    digest = hashlib.sha256(f"{sandbox}|{cluster_name}/{etcd_cluster}/{member}".encode()).digest()
    return f"127.{digest[0]}.{digest[1]}.{2 + digest[2] % 253}"


def _flags(args: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, _, value = arg[2:].partition("=")
            out[key] = value
    return out


def _port(url: str, flag: str) -> int:
    port = urlparse(url.split(",")[0]).port
    if port is None:
        raise EtcdError(f"--{flag}={url}: no port")
    return port


@dataclass(frozen=True)
class EtcdMember:
    """One etcd member as the sandbox runs it (see the module docstring)."""

    cluster_name: str
    etcd_cluster: str  # main, events
    name: str
    address: str
    peer_port: int
    client_port: int
    metrics_port: int | None
    initial_cluster: dict[str, str]  # member name → peer URL (translated)
    token: str
    state: str  # new / existing
    data_dir: Path
    volume_id: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{self.peer_port}"

    def args(self) -> list[str]:
        args = [
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            "--initial-cluster=" + ",".join(f"{k}={v}" for k, v in sorted(self.initial_cluster.items())),
            f"--initial-cluster-state={self.state}",
            f"--initial-cluster-token={self.token}",
        ]
        if self.metrics_port is not None:
            args.append(f"--listen-metrics-urls=http://{self.address}:{self.metrics_port}")
        args += [f"--{k}={v}" for k, v in sorted(self.extra.items())]
        return args


def etcd_cluster_of(manifest: Path) -> str:
    """``etcd-main.yaml`` → ``main`` (nodeup's file names, see ``pykops.nodeup.render``)."""
    stem = manifest.name.removesuffix(".yaml")
    if not stem.startswith("etcd-"):
        raise EtcdError(f"{manifest}: not an etcd manifest (etcd-<cluster>.yaml)")
    return stem[len("etcd-") :]


def parse_manifest(manifest: Path, *, cluster_name: str, volumes_dir: Path) -> EtcdMember:
    """The member an etcd static pod manifest nodeup wrote describes, translated for the sandbox."""
    etcd_cluster = etcd_cluster_of(manifest)
    try:
        pod = yaml.safe_load(manifest.read_text())
        container = pod["spec"]["containers"][0]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError) as exc:
        raise EtcdError(f"{manifest}: cannot read the etcd pod ({exc})") from None
    flags = _flags([*(container.get("command") or []), *(container.get("args") or [])])
    for needed in ("name", "data-dir", "initial-cluster", "listen-peer-urls", "listen-client-urls"):
        if needed not in flags:
            raise EtcdError(f"{manifest}: no --{needed}")
    name = flags["name"]
    data_dir = flags["data-dir"]
    host_path: str | None = None
    for mount in container.get("volumeMounts") or []:
        if mount.get("mountPath") == data_dir:
            host_path = ((volumes.get(mount.get("name")) or {}).get("hostPath") or {}).get("path")
    parts = (host_path or "").strip("/").split("/")
    if len(parts) != 3 or parts[0] != "mnt" or not parts[1].startswith("master-") or parts[2] != "data":
        raise EtcdError(f"{manifest}: data volume {host_path!r} is not /mnt/master-<volume id>/data")
    volume_id = parts[1][len("master-") :]
    salt = str(Path(volumes_dir).resolve())
    initial: dict[str, str] = {}
    for entry in flags["initial-cluster"].split(","):
        member, _, url = entry.partition("=")
        if not member or not url:
            raise EtcdError(f"{manifest}: bad --initial-cluster entry {entry!r}")
        port = _port(url, "initial-cluster")
        initial[member] = f"http://{member_address(cluster_name, etcd_cluster, member, salt)}:{port}"
    if name not in initial:
        raise EtcdError(f"{manifest}: member {name} is not in --initial-cluster")
    metrics = flags.get("listen-metrics-urls")
    return EtcdMember(
        cluster_name=cluster_name,
        etcd_cluster=etcd_cluster,
        name=name,
        address=member_address(cluster_name, etcd_cluster, name, salt),
        peer_port=_port(flags["listen-peer-urls"], "listen-peer-urls"),
        client_port=_port(flags["listen-client-urls"], "listen-client-urls"),
        metrics_port=_port(metrics, "listen-metrics-urls") if metrics else None,
        initial_cluster=initial,
        token=flags.get("initial-cluster-token", f"etcd-cluster-token-{etcd_cluster}"),
        state=flags.get("initial-cluster-state", "new"),
        data_dir=volumes_dir / volume_id / "data",
        volume_id=volume_id,
        extra={k: flags[k] for k in _KEPT_FLAGS if k in flags},
    )


class EtcdProcess:
    """A running ``etcd`` for one member; :meth:`stop` ends exactly that process."""

    def __init__(
        self, member: EtcdMember, log_path: Path, *, binary: str = ETCD_BINARY, die_with_parent: bool = False
    ) -> None:
        self.member = member
        self.log_path = log_path
        self.binary = binary
        # etcd gets SIGTERM when the thread that started it ends (Linux parent-death signal, set by
        # util-linux's setpriv before it execs etcd): a simulator killed without close() leaves no etcd.
        self.die_with_parent = die_with_parent
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, env: Mapping[str, str] | None = None) -> EtcdProcess:
        if self.running():
            return self
        if not os.access(self.binary, os.X_OK):
            raise EtcdError(f"{self.binary} not found: install Debian's etcd-server (make etcd)")
        self.member.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.member.data_dir, 0o700)  # etcd wants its data directory private
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = self.log_path.open("ab")
        child_env: dict[str, Any] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        child_env.update(env or {})
        command = [self.binary, *self.member.args()]
        setpriv = shutil.which("setpriv") if self.die_with_parent else None
        if setpriv:
            command = [setpriv, "--pdeathsig", "TERM", *command]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # a Ctrl-C to the simulator does not hit etcd first; close() stops it
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds: this process only."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
