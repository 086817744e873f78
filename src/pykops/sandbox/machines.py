"""The sandbox's machine simulator: every running EC2 instance of a cluster becomes a simulated machine.

This is a simulation (no VM, no container runs). What it exercises is real: each instance the AWS emulator
runs boots, after ``boot_delay`` seconds, by running the real ``pykops nodeup --root`` (as a subprocess)
with the NodeupConfig URL from its user data, into ``<sandbox dir>/machines/<instance id>``; nodeup
attaches the machine's etcd volumes through the AWS API. Then the machine:

* starts a real ``etcd`` member per etcd manifest nodeup wrote (control plane; :mod:`pykops.sandbox.etcd`),
  its data in ``<sandbox dir>/volumes/<volume id>/data`` (the EBS volume's disk, which outlives machines);
* behaves as its kubelet would (:mod:`pykops.sandbox.kubelet`): Node, heartbeats, Lease, mirror pods of
  its static manifests, pods bound to it.

Per cluster, one API front (``pykops.sandbox.kubeapi.KubeApiServer``) on 127.0.0.1 and a fixed port, with
the API server certificate nodeup wrote and the cluster CA, serves the objects from the main etcd members
of the control-plane machines that are running: with none running it answers 503, and without etcd
quorum writes fail (etcd's doing). Its address is written to ``<sandbox dir>/clusters/<cluster>/api.json``;
``<sandbox dir>/machines.json`` lists the machines for ``pykops sandbox status``. While a control-plane
machine runs, a ``ControllerManager`` thread per cluster runs the sandbox's controllers (when that module
exists); once the API first answers, the add-ons are applied from the state store (when the applier
exists).

A terminated or stopped instance's machine stops (its etcd processes and kubelet; nothing else); after
``node_removal_delay`` seconds its Node is deleted through the API, with its pods, as AWS' cloud
node-lifecycle controller does.

Run it with ``python -m pykops.sandbox.machines --sandbox-dir DIR`` (until SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import yaml

from pykops.errors import PykopsError
from pykops.sandbox.etcd import EtcdMember, EtcdProcess, parse_manifest
from pykops.sandbox.kubelet import (
    ApiError,
    Kubelet,
    NodeSpec,
    api_client_from_kubeconfig,
    delete_node,
    kubelet_flags,
    machine_labels_and_taints,
    pod_cidr_for,
    request,
)

log = logging.getLogger("pykops.sandbox.machines")

CLUSTER_TAG = "KubernetesCluster"
GROUP_TAGS = ("kops.k8s.io/instancegroup", "aws:autoscaling:groupName")
CONTROL_PLANE_TAG = "k8s.io/role/control-plane"
LIVE_STATES = frozenset({"pending", "running"})
NODEUP_ENV_KEY = "PYKOPS_NODEUP_CONFIG"
MAX_BACKOFF = 30.0
ADDON_ATTEMPTS = 5
ETCD_RESTART_BACKOFF = 5.0  # seconds between restarts of an etcd that keeps exiting
ADDON_RETRY = 10.0  # seconds
APISERVER_MANIFEST = "etc/kubernetes/manifests/kube-apiserver.yaml"
APISERVER_CERT = "srv/kubernetes/kube-apiserver/server.crt"
APISERVER_KEY = "srv/kubernetes/kube-apiserver/server.key"
CLUSTER_CA = "srv/kubernetes/ca.crt"
CONTROLLER_KUBECONFIG = "var/lib/kube-controller-manager/kubeconfig"
CLUSTER_SIGNING_CERT = "srv/kubernetes/kube-controller-manager/ca.crt"
CLUSTER_SIGNING_KEY = "srv/kubernetes/kube-controller-manager/ca.key"
# The simulator's own identity (see _write_simulator_kubeconfig).
SIMULATOR_KUBECONFIG = "simulator.kubeconfig"
SIMULATOR_USER = "pykops:sandbox-machine-simulator"
# What a cluster's directory holds, copied from (or made with) a control-plane machine's files.
ADOPTED_FILES = (
    "apiserver.crt",
    "apiserver.key",
    "ca.crt",
    "controller-manager.kubeconfig",
    SIMULATOR_KUBECONFIG,
)


class MachineError(PykopsError):
    """A simulated machine cannot boot."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def nodeup_config_url(user_data: str) -> str | None:
    """The NodeupConfig URL in a cloud-config's ``bootstrap.env`` (``PYKOPS_NODEUP_CONFIG=...``)."""
    for line in user_data.splitlines():
        text = line.strip()
        if text.startswith(f"{NODEUP_ENV_KEY}="):
            return text.split("=", 1)[1].strip() or None
    return None


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags") or []}


@dataclass
class Machine:
    """One simulated machine (one EC2 instance)."""

    instance_id: str
    cluster: str
    group: str
    role: str  # control-plane, node
    zone: str
    instance_type: str
    private_ip: str | None
    private_dns: str | None
    state: str = "booting"  # booting, failed, running, stopped
    discovered_at: float = 0.0
    retry_at: float = 0.0  # after a failed boot: not before this
    attempts: int = 0
    nodeup: subprocess.Popen[bytes] | None = None
    nodeup_log: IO[bytes] | None = None
    config_url: str | None = None
    node_name: str | None = None
    etcd: dict[str, EtcdProcess] = field(default_factory=dict)
    etcd_retry_at: dict[str, float] = field(default_factory=dict)
    kubelet: Kubelet | None = None
    stopped_at: float | None = None
    node_deleted: bool = False
    error: str | None = None

    @property
    def control_plane(self) -> bool:
        return self.role == "control-plane"

    def summary(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "cluster": self.cluster,
            "group": self.group,
            "role": self.role,
            "zone": self.zone,
            "state": self.state,
            "nodeName": self.node_name,
            "etcdMembers": [
                {
                    "cluster": name,
                    "member": process.member.name,
                    "clientURL": process.member.client_url,
                    "volume": process.member.volume_id,
                    "pid": process.pid if process.running() else None,
                }
                for name, process in sorted(self.etcd.items())
            ],
            "error": self.error,
        }


@dataclass
class ClusterFront:
    """A cluster's API front and controllers."""

    name: str
    directory: Path
    port: int
    prefix: str = "/registry"
    server: Any = None
    tls_server_name: str | None = None
    state_store: str | None = None
    controllers: threading.Thread | None = None
    controllers_stop: threading.Event | None = None
    controllers_since: float | None = None  # when the running controllers thread started (monotonic)
    api_answers_since: float | None = None  # since when the API has answered the Node removal's requests
    addons_done: bool = False
    addons_attempts: int = 0
    addons_result: str | None = None
    addons_retry_at: float = 0.0
    addons_thread: threading.Thread | None = None
    pod_cidrs: dict[str, str] = field(default_factory=dict)  # node name → podCIDR
    admin: Any = None  # the simulator's own API client (Node removal)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


# The API emulator, the controllers and the add-on applier are built alongside this module: imported by
# name, and the simulator still runs (without what is missing) when one is not there.
def _kube_api_server_class() -> Any:
    try:
        module = importlib.import_module("pykops.sandbox.kubeapi")
    except ImportError:
        return None
    return getattr(module, "KubeApiServer", None)


def _controllers_module() -> Any:
    try:
        controllers = importlib.import_module("pykops.sandbox.controllers")
    except ImportError:
        return None
    return controllers if hasattr(controllers, "ControllerManager") else None


def _addon_applier() -> Callable[..., Any] | None:
    try:
        applier = importlib.import_module("pykops.addons.applier")
    except ImportError:
        return None
    found = getattr(applier, "apply_from_state_store", None)
    return found if callable(found) else None


class MachineSimulator:
    """See the module docstring; :meth:`reconcile_once` is one pass, :meth:`run` loops until stopped."""

    def __init__(
        self,
        *,
        sandbox_dir: Path,
        boot_delay: float = 3.0,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        node_removal_delay: float = 10.0,
        node_monitor_grace: float | None = None,
        etcd_dies_with_simulator: bool = False,
    ) -> None:
        import boto3

        self.sandbox_dir = Path(sandbox_dir).absolute()
        self.boot_delay = boot_delay
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.node_removal_delay = node_removal_delay
        # How long the node lifecycle controller waits for a silent kubelet before the Node is NotReady
        # (Unknown). Default: 4 heartbeats, Kubernetes' ratio (node-monitor-grace-period 40 s, status every
        # 10 s), so that a Node goes NotReady before ``node_removal_delay`` deletes it with the defaults too.
        self.node_monitor_grace = (
            node_monitor_grace if node_monitor_grace is not None else 4.0 * heartbeat_interval
        )
        # Only when every pass runs on one long-lived thread (the module's main): the signal follows the
        # thread that started etcd, not the process.
        self.etcd_dies_with_simulator = etcd_dies_with_simulator
        self.region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        self.ec2 = boto3.client("ec2", region_name=self.region)
        self.machines: dict[str, Machine] = {}
        self.fronts: dict[str, ClusterFront] = {}
        self._lock = threading.RLock()
        self._endpoints: dict[str, list[str]] = {}
        self._ports: dict[str, int] = {}  # cluster → its API front's port, kept while this process runs
        self._closed = False
        for sub in ("machines", "volumes", "clusters"):
            (self.sandbox_dir / sub).mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------------------------
    def machine_root(self, instance_id: str) -> Path:
        return self.sandbox_dir / "machines" / instance_id

    def machine_log(self, instance_id: str) -> Path:
        return self.sandbox_dir / "machines" / f"{instance_id}.log"

    def _log_to(self, machine: Machine, message: str) -> None:
        log.info("%s: %s", machine.instance_id, message)
        with self.machine_log(machine.instance_id).open("a") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        last_error = ""
        while not stop.is_set():
            try:
                self.reconcile_once()
                last_error = ""
            except Exception as exc:  # the emulator restarting, a transient error: keep simulating
                error = f"{type(exc).__name__}: {exc}"
                if error != last_error:  # once per new error, not once per pass
                    log.warning("machine simulator pass failed (retrying): %s", error)
                last_error = error
            stop.wait(self.poll_interval)

    def reconcile_once(self) -> None:
        with self._lock:
            if self._closed:
                return
            instances = self._describe_instances()
            now = time.monotonic()
            # Stop first: a replacement may restart the same etcd member (same address) in this pass.
            for machine in list(self.machines.values()):
                instance = instances.get(machine.instance_id)
                alive = instance is not None and instance["State"]["Name"] in LIVE_STATES
                if not alive and machine.state != "stopped":
                    self._stop_machine(machine)
            for instance_id, instance in instances.items():
                if instance["State"]["Name"] not in LIVE_STATES:
                    continue
                known = self.machines.get(instance_id)
                if known is None:
                    self._discover(instance, now)
                elif known.state == "stopped":  # a stopped instance started again: it boots again
                    self._discover(instance, now, previous=known)
            for machine in list(self.machines.values()):
                if machine.state in ("booting", "failed"):
                    self._advance_boot(machine, instances.get(machine.instance_id), now)
            self._restart_exited_etcd(now)
            self._reconcile_fronts(instances)
            self._remove_nodes(now, instances)
            self._write_machines_json()

    def _describe_instances(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        paginator = self.ec2.get_paginator("describe_instances")
        for page in paginator.paginate(Filters=[{"Name": "tag-key", "Values": [CLUSTER_TAG]}]):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    out[instance["InstanceId"]] = instance
        return out

    def _discover(self, instance: dict[str, Any], now: float, previous: Machine | None = None) -> None:
        tags = _tags(instance)
        group = next((tags[t].split(".", 1)[0] for t in GROUP_TAGS if tags.get(t)), "")
        machine = Machine(
            instance_id=instance["InstanceId"],
            cluster=tags[CLUSTER_TAG],
            group=group,
            role="control-plane" if CONTROL_PLANE_TAG in tags else "node",
            zone=str((instance.get("Placement") or {}).get("AvailabilityZone", "")),
            instance_type=str(instance.get("InstanceType", "")),
            private_ip=instance.get("PrivateIpAddress"),
            private_dns=instance.get("PrivateDnsName") or None,
            discovered_at=now,
        )
        if previous is not None:
            machine.node_name = previous.node_name
        self.machines[machine.instance_id] = machine
        verb = "started again" if previous is not None else "discovered"
        self._log_to(machine, f"{verb}: {machine.role} instance of {machine.cluster}/{group}; booting")

    # -- boot ------------------------------------------------------------------------------------------------
    def _advance_boot(self, machine: Machine, instance: dict[str, Any] | None, now: float) -> None:
        if machine.nodeup is not None:
            code = machine.nodeup.poll()
            if code is None:
                return
            machine.nodeup = None
            if machine.nodeup_log is not None:
                machine.nodeup_log.close()
                machine.nodeup_log = None
            if code == 0:
                try:
                    self._finish_boot(machine)
                except Exception as exc:
                    self._boot_failed(machine, now, f"{type(exc).__name__}: {exc}")
            else:
                self._boot_failed(
                    machine, now, f"nodeup exited {code} (see {self.machine_log(machine.instance_id)})"
                )
            return
        # The delay is read on every pass: changing boot_delay applies to machines still waiting to boot.
        if (
            now < max(machine.discovered_at + self.boot_delay, machine.retry_at)
            or instance is None
            or instance["State"]["Name"] != "running"
        ):
            return
        try:
            machine.config_url = machine.config_url or self._config_url(machine.instance_id)
        except Exception as exc:
            self._boot_failed(machine, now, f"cannot read the user data: {exc}")
            return
        machine.attempts += 1
        machine.state = "booting"
        self._log_to(
            machine, f"booting (attempt {machine.attempts}): pykops nodeup --config {machine.config_url}"
        )
        machine.nodeup_log = self.machine_log(machine.instance_id).open("ab")
        machine.nodeup = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pykops",
                "nodeup",
                "--config",
                machine.config_url,
                "--root",
                str(self.machine_root(machine.instance_id)),
                "--instance-id",
                machine.instance_id,
            ],
            stdin=subprocess.DEVNULL,
            stdout=machine.nodeup_log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )

    def _boot_failed(self, machine: Machine, now: float, error: str) -> None:
        machine.state = "failed"
        machine.error = error
        backoff = min(MAX_BACKOFF, 2.0 ** max(machine.attempts - 1, 0))
        machine.retry_at = now + backoff
        self._log_to(machine, f"boot failed: {error}; retrying in {backoff:.0f}s")

    def _config_url(self, instance_id: str) -> str:
        answer = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        encoded = (answer.get("UserData") or {}).get("Value")
        if not encoded:
            raise MachineError(f"instance {instance_id} has no user data")
        url = nodeup_config_url(base64.b64decode(encoded).decode(errors="replace"))
        if not url:
            raise MachineError(f"instance {instance_id}: no {NODEUP_ENV_KEY} in its user data")
        return url

    def _finish_boot(self, machine: Machine) -> None:
        from pykops.cli.nodeup import read_nodeup_config

        root = self.machine_root(machine.instance_id)
        assert machine.config_url is not None
        config = read_nodeup_config(machine.config_url)
        cluster = config.cluster()
        group = config.group()
        machine.role = "control-plane" if config.is_control_plane else "node"
        machine.group = config.instance_group
        machine.node_name = (
            kubelet_flags(root).get("hostname-override") or machine.private_dns or machine.instance_id
        )
        front = self._front(machine.cluster)
        if front.state_store is None:
            base = config.config_base.rstrip("/")
            front.state_store = base.rsplit("/", 1)[0]
        # etcd members first: the API front serves from them.
        for manifest in sorted((root / "etc/kubernetes/manifests").glob("etcd-*.yaml")):
            member = parse_manifest(
                manifest, cluster_name=machine.cluster, volumes_dir=self.sandbox_dir / "volumes"
            )
            self._start_etcd(machine, member, root)
        if config.is_control_plane:
            self._adopt_control_plane_files(front, root)
        labels, taints = machine_labels_and_taints(root)
        for key, value in (group.spec.node_labels or {}).items():
            labels.setdefault(key, value)
        network = cluster.spec.pod_cidr or cluster.spec.non_masquerade_cidr
        if machine.node_name not in front.pod_cidrs and network:
            cidr = pod_cidr_for(machine.node_name, network, set(front.pod_cidrs.values()))
            if cidr:
                front.pod_cidrs[machine.node_name] = cidr
        containerd = next((a.version for a in config.assets if a.name == "containerd"), "1.7.0")
        spec = NodeSpec(
            node_name=machine.node_name,
            instance_id=machine.instance_id,
            zone=machine.zone,
            region=self.region,
            instance_type=machine.instance_type or (group.spec.machine_type or ""),
            instance_group=config.instance_group,
            control_plane=config.is_control_plane,
            kubernetes_version=config.kubernetes_version,
            architecture="arm64" if config.architecture == "arm64" else "amd64",
            containerd_version=containerd,
            internal_ip=machine.private_ip,
            hostname=machine.private_dns,
            pod_cidr=front.pod_cidrs.get(machine.node_name),
            labels=labels,
            taints=taints,
        )
        machine.state = "running"
        machine.error = None
        self._refresh_endpoints()
        self._ensure_front_server(front)
        cluster_name = machine.cluster
        machine.kubelet = Kubelet(
            root,
            spec,
            lambda: self._api_url(cluster_name),
            heartbeat_interval=self.heartbeat_interval,
            log=functools.partial(self._log_to, machine),
        ).start()
        self._log_to(machine, f"booted as node {machine.node_name}")

    def _start_etcd(self, machine: Machine, member: EtcdMember, root: Path) -> None:
        existing = machine.etcd.get(member.etcd_cluster)
        if existing is not None and existing.running() and existing.member == member:
            return  # a boot retried after a later step failed
        if existing is not None:
            existing.stop()
        process = EtcdProcess(
            member, root / f"etcd-{member.etcd_cluster}.log", die_with_parent=self.etcd_dies_with_simulator
        )
        process.start()
        machine.etcd[member.etcd_cluster] = process
        self._log_to(
            machine,
            f"etcd-{member.etcd_cluster} member {member.name} at {member.client_url} "
            f"(volume {member.volume_id}, pid {process.pid})",
        )

    def _restart_exited_etcd(self, now: float) -> None:
        """A running machine's etcd that exited is started again, as the kubelet restarts a static pod."""
        for machine in self.machines.values():
            if machine.state != "running":
                continue
            for name, process in machine.etcd.items():
                if process.running() or now < machine.etcd_retry_at.get(name, 0.0):
                    continue
                self._log_to(machine, f"etcd-{name} exited (code {process.returncode}); starting it again")
                machine.etcd_retry_at[name] = now + ETCD_RESTART_BACKOFF
                process.start()

    # -- stop ------------------------------------------------------------------------------------------------
    def _stop_machine(self, machine: Machine, reason: str = "instance gone") -> None:
        was_booted = machine.state == "running"
        machine.state = "stopped"
        self._refresh_endpoints()  # the API front stops using its etcd member at once
        if machine.nodeup is not None:
            machine.nodeup.terminate()
            try:
                machine.nodeup.wait(10)
            except subprocess.TimeoutExpired:
                machine.nodeup.kill()
                machine.nodeup.wait()
            machine.nodeup = None
        if machine.nodeup_log is not None:
            machine.nodeup_log.close()
            machine.nodeup_log = None
        if machine.kubelet is not None:
            machine.kubelet.stop()
        for process in machine.etcd.values():
            process.stop()
        machine.stopped_at = time.monotonic()
        machine.node_deleted = not was_booted or machine.node_name is None
        self._log_to(machine, f"{reason}: machine stopped")

    def _remove_nodes(self, now: float, instances: dict[str, dict[str, Any]]) -> None:
        """Delete the Nodes of terminated instances, as AWS' cloud node-lifecycle controller does: once the
        Node is no longer Ready (the node lifecycle controller's doing, after the kubelet stopped posting)
        and ``node_removal_delay`` has passed; with its pods. Without the controllers module (or when they
        do not mark it in twice the grace period) the delay alone decides. A stopped (not terminated)
        instance keeps its Node."""
        lifecycle = _controllers_module() is not None
        for machine in self.machines.values():
            if machine.state != "stopped" or machine.node_deleted or machine.stopped_at is None:
                continue
            if now - machine.stopped_at < self.node_removal_delay or machine.node_name is None:
                continue
            instance = instances.get(machine.instance_id)
            if instance is not None and instance["State"]["Name"] not in ("shutting-down", "terminated"):
                continue
            front = self.fronts.get(machine.cluster)
            if front is None or front.server is None:
                continue
            if front.admin is None:
                front.admin = self._admin_client(machine.cluster, "node-removal")
            api = front.admin
            if api is None:
                continue
            try:
                path = f"/api/v1/nodes/{quote(machine.node_name)}"
                try:
                    node = request(api, "GET", path, timeout=3.0)
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    node = None
                front.api_answers_since = front.api_answers_since or now
                if node is not None:
                    conditions = (node.get("status") or {}).get("conditions") or []
                    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
                    # Overdue: the controllers have had a working API long enough to mark it, and did not.
                    watched_since = max(
                        machine.stopped_at, front.controllers_since or now, front.api_answers_since
                    )
                    overdue = now - watched_since > self.node_removal_delay + 2 * self.node_monitor_grace
                    if lifecycle and ready == "True" and not overdue:
                        continue  # not NotReady yet (overdue: the controllers are not marking it)
                    pods = delete_node(api, machine.node_name)
                    self._log_to(
                        machine,
                        f"Node {machine.node_name} (Ready={ready}) deleted with {pods} pods (instance gone)",
                    )
                machine.node_deleted = True
            except ApiError:
                front.api_answers_since = None
                continue  # no quorum, no API: try again on the next pass

    # -- API fronts ------------------------------------------------------------------------------------------
    def _front(self, cluster: str) -> ClusterFront:
        front = self.fronts.get(cluster)
        if front is None:
            directory = self.sandbox_dir / "clusters" / cluster
            directory.mkdir(parents=True, exist_ok=True)
            port = self._ports.get(cluster) or _previous_port(directory / "api.json") or free_port()
            self._ports[cluster] = port
            # A cluster created again under the same name has new certificates: forget the old ones.
            for name in (*ADOPTED_FILES, "api.json"):
                (directory / name).unlink(missing_ok=True)
            shutil.rmtree(directory / "client", ignore_errors=True)
            front = ClusterFront(name=cluster, directory=directory, port=port)
            self.fronts[cluster] = front
        return front

    def _api_url(self, cluster: str) -> str | None:
        front = self.fronts.get(cluster)
        return front.url if front is not None and front.server is not None else None

    def etcd_endpoints(self, cluster: str) -> list[str]:
        """The main etcd client URLs of the cluster's running control-plane machines.

        Read from a snapshot (replaced whole, never locked): the API front calls this from its request
        threads, also while a pass holds the simulator's lock and waits for that API.
        """
        return list(self._endpoints.get(cluster, ()))

    def _refresh_endpoints(self) -> None:
        endpoints: dict[str, list[str]] = {}
        for m in self.machines.values():
            if m.state == "running" and "main" in m.etcd:
                endpoints.setdefault(m.cluster, []).append(m.etcd["main"].member.client_url)
        self._endpoints = {k: sorted(v) for k, v in endpoints.items()}

    def _adopt_control_plane_files(self, front: ClusterFront, root: Path) -> None:
        for source, target in (
            (APISERVER_CERT, "apiserver.crt"),
            (APISERVER_KEY, "apiserver.key"),
            (CLUSTER_CA, "ca.crt"),
        ):
            destination = front.directory / target
            if not destination.exists():
                shutil.copyfile(root / source, destination)
                destination.chmod(0o600 if target.endswith(".key") else 0o644)
        if not (front.directory / "controller-manager.kubeconfig").exists():
            shutil.copyfile(root / CONTROLLER_KUBECONFIG, front.directory / "controller-manager.kubeconfig")
            (front.directory / "controller-manager.kubeconfig").chmod(0o600)
        if not (front.directory / SIMULATOR_KUBECONFIG).exists():
            _write_simulator_kubeconfig(front, root)
        manifest = yaml.safe_load((root / APISERVER_MANIFEST).read_text())
        args = manifest["spec"]["containers"][0].get("args") or []
        for arg in args:
            if arg.startswith("--etcd-prefix="):
                front.prefix = arg.split("=", 1)[1]
        front.tls_server_name = _server_name(front.directory / "apiserver.crt", front.name)

    def _ensure_front_server(self, front: ClusterFront) -> None:
        if front.server is not None or not (front.directory / "apiserver.crt").exists():
            return
        server_cls = _kube_api_server_class()
        if server_cls is None:
            log.warning("pykops.sandbox.kubeapi.KubeApiServer is not available: no API for %s", front.name)
            return
        name = front.name
        server = server_cls(
            lambda: self.etcd_endpoints(name),
            certfile=str(front.directory / "apiserver.crt"),
            keyfile=str(front.directory / "apiserver.key"),
            client_ca_file=str(front.directory / "ca.crt"),
            prefix=front.prefix,
            host="127.0.0.1",
            port=front.port,
        )
        # Do not wait for the API's defaults (they need etcd quorum, which the other members bring).
        if "bootstrap_wait" in inspect.signature(server.start).parameters:
            server.start(bootstrap_wait=0.0)
        else:
            server.start()
        front.server = server
        document = {
            "server": front.url,
            "tlsServerName": front.tls_server_name or f"api.internal.{front.name}",
            "caFile": str(front.directory / "ca.crt"),
            "note": "pykops sandbox: a simulated cluster's API (Kubernetes API emulator over real etcd)",
        }
        _write_json(front.directory / "api.json", document)
        log.info("cluster %s: API front at %s", front.name, front.url)

    def _admin_client(self, cluster: str, purpose: str) -> Any:
        """An API client with the simulator's identity; ``purpose`` names its own directory of key files
        (clients used at the same time must not rewrite each other's files)."""
        front = self.fronts.get(cluster)
        kubeconfig = front.directory / SIMULATOR_KUBECONFIG if front else None
        if front is None or front.server is None or kubeconfig is None or not kubeconfig.exists():
            return None
        return api_client_from_kubeconfig(kubeconfig, front.url, scratch=front.directory / "client" / purpose)

    def _reconcile_fronts(self, instances: dict[str, dict[str, Any]]) -> None:
        for name, front in list(self.fronts.items()):
            control_plane_up = any(
                m.cluster == name and m.control_plane and m.state == "running" for m in self.machines.values()
            )
            if control_plane_up:
                self._ensure_front_server(front)
                self._report_apiserver_version(front)
                self._ensure_controllers(front)
                self._ensure_addons(front)
            else:
                self._stop_controllers(front)
            has_instances = any(
                _tags(i).get(CLUSTER_TAG) == name and i["State"]["Name"] not in ("terminated",)
                for i in instances.values()
            )
            if not has_instances:
                self._close_front(front)
                del self.fronts[name]
        # The stopped machines of a cluster that has no instance left are forgotten (deleted cluster).
        live = {_tags(i).get(CLUSTER_TAG) for i in instances.values() if i["State"]["Name"] != "terminated"}
        for machine_id in [
            k for k, m in self.machines.items() if m.state == "stopped" and m.cluster not in live
        ]:
            del self.machines[machine_id]

    def _report_apiserver_version(self, front: ClusterFront) -> None:
        """``/version`` reports the Kubernetes version of the running control-plane machines: the oldest one
        while an upgrade rolls them (a client may reach any apiserver; the oldest is what it can count on)."""
        if front.server is None:
            return
        versions = [
            m.kubelet.spec.kubernetes_version
            for m in self.machines.values()
            if m.cluster == front.name and m.control_plane and m.state == "running" and m.kubelet is not None
        ]
        if versions:
            oldest = min(versions, key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v)[:3]))
            front.server.api.version = f"v{oldest.lstrip('v')}"

    def _ensure_controllers(self, front: ClusterFront) -> None:
        if front.controllers is not None and front.controllers.is_alive():
            return
        module = _controllers_module()
        api = self._admin_client(front.name, "controllers") if module is not None else None
        if module is None or api is None:
            return
        stop = threading.Event()
        manager = module.ControllerManager(api, cluster_name=front.name, node_grace=self.node_monitor_grace)
        cloud_api = self._admin_client(front.name, "cloud controllers")

        def run_cloud() -> None:
            # What the AWS cloud controller manager (Service load balancers) and the EBS CSI controller do,
            # against the AWS emulator: see pykops.sandbox.cloudsim.
            from pykops.sandbox.cloudsim import CloudControllers

            try:
                region = self.region
                CloudControllers(cloud_api, cluster_name=front.name, region=region).run(stop)
            except Exception as exc:
                log.warning("cloud controllers of %s stopped: %s: %s", front.name, type(exc).__name__, exc)
            finally:
                cloud_api.close()

        def run() -> None:
            cloud = threading.Thread(target=run_cloud, name=f"cloud-{front.name}", daemon=True)
            if cloud_api is not None:
                cloud.start()
            try:
                manager.run(stop)
            except Exception as exc:
                log.warning("controllers of %s stopped: %s: %s", front.name, type(exc).__name__, exc)
            finally:
                stop.set()
                if cloud.is_alive():
                    cloud.join(10)
                api.close()

        front.controllers_stop = stop
        front.controllers_since = time.monotonic()
        front.controllers = threading.Thread(target=run, name=f"controllers-{front.name}", daemon=True)
        front.controllers.start()

    def _stop_controllers(self, front: ClusterFront) -> None:
        if front.controllers_stop is not None:
            front.controllers_stop.set()
        if front.controllers is not None:
            front.controllers.join(10)
        front.controllers = None
        front.controllers_stop = None
        front.controllers_since = None

    def _ensure_addons(self, front: ClusterFront) -> None:
        """Apply the cluster's add-ons from the state store once the API answers (in a thread: the applier
        waits for what it applies); a failure is logged and retried a few times."""
        if front.addons_done or (front.addons_thread is not None and front.addons_thread.is_alive()):
            return
        if time.monotonic() < front.addons_retry_at or front.addons_attempts >= ADDON_ATTEMPTS:
            return
        applier = _addon_applier()
        if applier is None or front.state_store is None:
            return
        api = self._admin_client(front.name, "addons")
        if api is None:
            return

        def apply() -> None:
            try:
                request(api, "GET", "/api/v1/namespaces/kube-system", timeout=3.0)  # the API answers
            except ApiError:
                api.close()
                return  # not yet: a later pass tries again
            front.addons_attempts += 1
            try:
                result = applier(api, cluster_name=front.name, state_store=front.state_store)
                log.info("cluster %s: add-ons applied: %s", front.name, result)
                front.addons_result = f"applied: {result}"
                front.addons_done = True
            except Exception as exc:
                log.warning(
                    "cluster %s: applying the add-ons failed: %s: %s", front.name, type(exc).__name__, exc
                )
                front.addons_retry_at = time.monotonic() + ADDON_RETRY
                front.addons_result = f"failed (attempt {front.addons_attempts}): {type(exc).__name__}: {exc}"
            finally:
                api.close()

        front.addons_thread = threading.Thread(target=apply, name=f"addons-{front.name}", daemon=True)
        front.addons_thread.start()

    def _close_front(self, front: ClusterFront) -> None:
        self._stop_controllers(front)
        if front.addons_thread is not None:
            front.addons_thread.join(2)  # a daemon thread; its client is closed when it ends
        if front.admin is not None:
            front.admin.close()
            front.admin = None
        if front.server is not None:
            front.server.stop()
            front.server = None
        (front.directory / "api.json").unlink(missing_ok=True)

    # -- status ----------------------------------------------------------------------------------------------
    def _write_machines_json(self) -> None:
        document = {
            "note": "pykops sandbox: simulated machines (no VM runs; etcd members are real processes)",
            "machines": [
                m.summary()
                for m in sorted(self.machines.values(), key=lambda m: (m.cluster, m.group, m.instance_id))
            ],
            "clusters": {
                name: {
                    "api": front.url if front.server is not None else None,
                    "etcdEndpoints": self.etcd_endpoints(name),
                    "addons": front.addons_result,
                }
                for name, front in sorted(self.fronts.items())
            },
        }
        _write_json(self.sandbox_dir / "machines.json", document)

    # -- shutdown --------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every nodeup, kubelet, etcd process, API front and controller thread this simulator
        started."""
        with self._lock:
            self._closed = True
            for front in self.fronts.values():
                self._stop_controllers(front)  # first: they would only log errors once etcd is gone
            for machine in self.machines.values():
                if machine.state != "stopped":
                    self._stop_machine(machine, "simulator closing")
            for front in self.fronts.values():
                self._close_front(front)
            self.fronts.clear()
            for machine in self.machines.values():
                machine.state = "stopped"
            self._write_machines_json()


def _write_simulator_kubeconfig(front: ClusterFront, root: Path) -> None:
    """A kubeconfig for the simulator's own calls: deleting the Nodes of terminated instances (AWS' cloud
    node-lifecycle controller), the controllers and the add-ons.

    Simulation shortcut: the certificate (CN ``pykops:sandbox-machine-simulator``, group system:masters) is
    signed with the cluster signing CA nodeup wrote for kube-controller-manager on a control-plane machine.
    On a real cluster those components have their own identities and RBAC (kube-controller-manager uses
    service account credentials, which the API emulator does not issue).
    """
    from cryptography.hazmat.primitives import serialization

    from pykops.pki.ca import issue, load_certificate, load_keypair
    from pykops.pki.kubeconfig import build_kubeconfig

    bundle = (root / CLUSTER_SIGNING_CERT).read_bytes()
    first = load_certificate(bundle).public_bytes(serialization.Encoding.PEM)
    ca = load_keypair(first, (root / CLUSTER_SIGNING_KEY).read_bytes())
    client = issue(ca, common_name=SIMULATOR_USER, organization=["system:masters"], usage="client")
    doc = build_kubeconfig(
        front.name,
        front.url,
        (root / CLUSTER_CA).read_bytes(),
        client_cert_pem=client.cert_pem,
        client_key_pem=client.key_pem,
        user=SIMULATOR_USER,
        tls_server_name=f"api.internal.{front.name}",
    )
    path = front.directory / SIMULATOR_KUBECONFIG
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _server_name(certificate: Path, cluster: str) -> str | None:
    """The name clients verify the API front by: ``api.internal.<cluster>`` (kOps' internal API name) if the
    API server certificate has it among its DNS SANs, else its first DNS SAN."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    wanted = f"api.internal.{cluster}"
    return wanted if wanted in dns else (dns[0] if dns else None)


def _previous_port(api_json: Path) -> int | None:
    """The port an earlier run of the simulator served the cluster on, if it is free now (so a restarted
    sandbox keeps the address ``export kubeconfig`` wrote)."""
    try:
        port = int(json.loads(api_json.read_text())["server"].rsplit(":", 1)[1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


def _write_json(path: Path, document: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def running_in_thread(sandbox_dir: Path, **settings: Any) -> Iterator[MachineSimulator]:
    """A simulator looping in a thread of this process (for tests and benchmarks, where ``sandbox up``'s
    background process would hide its state); stopped and closed, its etcd members with it, on exit."""
    sim = MachineSimulator(sandbox_dir=sandbox_dir, **settings)
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), daemon=True, name="machine-simulator")
    thread.start()
    try:
        yield sim
    finally:
        stop.set()
        thread.join(30)
        sim.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pykops.sandbox.machines",
        description="The pykops sandbox's machine simulator (simulated machines; real nodeup and etcd).",
    )
    parser.add_argument("--sandbox-dir", type=Path, required=True)
    parser.add_argument("--boot-delay", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--node-removal-delay", type=float, default=10.0)
    parser.add_argument("--node-monitor-grace", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    stop = threading.Event()

    def _signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    simulator = MachineSimulator(
        sandbox_dir=args.sandbox_dir,
        boot_delay=args.boot_delay,
        poll_interval=args.poll_interval,
        heartbeat_interval=args.heartbeat_interval,
        node_removal_delay=args.node_removal_delay,
        node_monitor_grace=args.node_monitor_grace,
        etcd_dies_with_simulator=True,  # run() below: every pass on this (main) thread
    )
    try:
        simulator.run(stop)
    finally:
        simulator.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
