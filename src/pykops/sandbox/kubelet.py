"""The kubelet of a simulated sandbox machine: what a real kubelet tells the API, without running containers.

Per booted machine, through the Kubernetes client configured from the kubeconfig nodeup wrote
(``/var/lib/kubelet/kubeconfig``: its client certificate, key and CA; the server replaced by the cluster's
API front, the TLS server name kept), a :class:`Kubelet`:

* registers the Node (labels, taints from the kubelet configuration nodeup wrote, providerID, podCIDR,
  addresses, nodeInfo, capacity from the instance type) and keeps its Ready condition fresh (a status patch
  every ``heartbeat_interval``) along with its Lease in ``kube-node-lease``;
* creates a mirror pod for every static pod manifest in ``/etc/kubernetes/manifests`` (``<pod>-<node>``,
  ``kubernetes.io/config.mirror``, owned by the Node) and reports it Running/Ready (nothing runs: this is
  a simulation; the etcd members are the exception, started by :mod:`pykops.sandbox.machines`);
* runs the pods bound to the node with ``pykops.sandbox.controllers.sync_kubelet_pods`` when that module
  exists.

While the API cannot be reached (no control-plane machine, etcd without quorum) it retries quietly.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from pykops.errors import PykopsError

MANIFESTS_DIR = "etc/kubernetes/manifests"
KUBELET_KUBECONFIG = "var/lib/kubelet/kubeconfig"
KUBELET_CONFIG = "var/lib/kubelet/kubelet-config.yaml"
KUBELET_UNIT = "etc/systemd/system/kubelet.service"
OS_IMAGE = "pykops sandbox (simulated machine)"
MAX_PODS = 110
LEASE_DURATION = 40
REQUEST_TIMEOUT = 5.0
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"


class KubeletError(PykopsError):
    """A simulated machine's kubelet files cannot be used."""


class ApiError(Exception):
    """The API answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the API client ----------------------------------------------------------------------------------------


def api_client_from_kubeconfig(kubeconfig: Path, server: str, *, scratch: Path | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` from a kubeconfig nodeup wrote, its server replaced by ``server``.

    The CA, client certificate and key (embedded ``*-data``) are written into ``scratch`` (default: a
    private temporary directory) because the client's TLS settings take file names; the kubeconfig's
    ``tls-server-name`` is kept (the API front's certificate is the cluster's API server certificate).
    """
    from kubernetes import client

    try:
        doc = yaml.safe_load(kubeconfig.read_text())
        context_name = doc.get("current-context") or doc["contexts"][0]["name"]
        context = next(c["context"] for c in doc["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == context["user"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, StopIteration, TypeError, AttributeError) as exc:
        raise KubeletError(f"{kubeconfig}: not a usable kubeconfig ({exc})") from None
    directory = scratch or Path(tempfile.mkdtemp(prefix="pykops-kubelet-"))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def material(key: str, name: str) -> str | None:
        source = cluster if key.startswith("certificate-authority") else user
        if source.get(f"{key}-data"):
            path = directory / name
            path.write_bytes(base64.b64decode(source[f"{key}-data"]))
            path.chmod(0o600)
            return str(path)
        found = source.get(key)
        return str(found) if found else None

    configuration = client.Configuration()
    configuration.host = server.rstrip("/")
    configuration.ssl_ca_cert = material("certificate-authority", "ca.crt")
    configuration.cert_file = material("client-certificate", "client.crt")
    configuration.key_file = material("client-key", "client.key")
    configuration.tls_server_name = cluster.get("tls-server-name")
    configuration.retries = 0  # our loops retry; urllib3's retries would only slow them down
    return client.ApiClient(configuration)


def request(
    api: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = REQUEST_TIMEOUT,
) -> dict[str, Any]:
    """One JSON request through ``api`` (an ApiClient: its TLS settings and connection pool) → the decoded
    answer; :class:`ApiError` for an error status or an unreachable server.

    Plain JSON rather than the generated typed methods: the simulation sends whole objects as dicts (mirror
    pods, status patches) and reads a few fields back, which the strict typed models make awkward.
    """
    url = api.configuration.host + path + (f"?{urlencode(query)}" if query else "")
    headers = {"Accept": "application/json", "Content-Type": content_type}
    try:
        response = api.rest_client.request(method, url, headers=headers, body=body, _request_timeout=timeout)
        raw = response.read()
    except Exception as exc:  # connection refused, TLS, timeouts: all "unreachable"
        raise ApiError(0, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    status = int(response.status)
    try:
        decoded: Any = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw[:200].decode(errors="replace")}
    if status >= 400:
        message = decoded.get("message", "") if isinstance(decoded, dict) else str(decoded)
        raise ApiError(status, str(message))
    return decoded if isinstance(decoded, dict) else {"items": decoded}


def merge_patch(api: Any, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return request(api, "PATCH", path, dict(body), content_type="application/merge-patch+json")


# --- what the machine is ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    """What the kubelet of one simulated machine registers."""

    node_name: str
    instance_id: str
    zone: str
    region: str
    instance_type: str
    instance_group: str
    control_plane: bool
    kubernetes_version: str
    architecture: str = "amd64"
    containerd_version: str = "1.7.0"
    internal_ip: str | None = None
    hostname: str | None = None
    pod_cidr: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


def kubelet_flags(root: Path) -> dict[str, str]:
    """The ``--flag=value`` arguments of the kubelet unit nodeup wrote."""
    unit = root / KUBELET_UNIT
    if not unit.exists():
        return {}
    flags: dict[str, str] = {}
    for line in unit.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ExecStart="):
            for word in shlex.split(line[len("ExecStart=") :]):
                if word.startswith("--") and "=" in word:
                    key, _, value = word[2:].partition("=")
                    flags[key] = value
    return flags


def machine_labels_and_taints(root: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(nodeLabels from the unit's ``--node-labels``, taints from ``registerWithTaints``) as nodeup wrote."""
    labels: dict[str, str] = {}
    for pair in kubelet_flags(root).get("node-labels", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key:
            labels[key] = value
    taints: list[dict[str, str]] = []
    config_path = root / KUBELET_CONFIG
    if config_path.exists():
        config = yaml.safe_load(config_path.read_text()) or {}
        for taint in config.get("registerWithTaints") or []:
            taints.append({k: str(v) for k, v in taint.items() if v not in (None, "")})
    return labels, taints


def pod_cidr_for(node_name: str, network: str, taken: set[str]) -> str | None:
    """A /24 of ``network`` for a node: picked from a hash of its name (stable), skipping ``taken``."""
    net = ipaddress.ip_network(network, strict=False)
    if net.version != 4 or net.prefixlen > 24:
        return None
    count = 2 ** (24 - net.prefixlen)
    start = int.from_bytes(hashlib.sha256(node_name.encode()).digest()[:4], "big") % count
    for offset in range(count):
        index = (start + offset) % count
        subnet = ipaddress.ip_network((int(net.network_address) + (index << 8), 24))
        if str(subnet) not in taken:
            return str(subnet)
    return None


def node_object(spec: NodeSpec, vcpu: int, memory_gib: float) -> dict[str, Any]:
    labels = {
        **spec.labels,
        "kubernetes.io/hostname": spec.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": spec.architecture,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": spec.architecture,
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/zone": spec.zone,
        "topology.kubernetes.io/region": spec.region,
        "kops.k8s.io/instancegroup": spec.instance_group,
    }
    if spec.control_plane:
        labels[CONTROL_PLANE_LABEL] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    else:
        labels.setdefault("node-role.kubernetes.io/node", "")
    node_spec: dict[str, Any] = {"providerID": f"aws:///{spec.zone}/{spec.instance_id}"}
    if spec.pod_cidr:
        node_spec["podCIDR"] = spec.pod_cidr
        node_spec["podCIDRs"] = [spec.pod_cidr]
    if spec.taints:
        node_spec["taints"] = spec.taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.node_name,
            "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "pykops.io/simulated": "true"},
        },
        "spec": node_spec,
        "status": node_status(spec, vcpu, memory_gib, transition=now_rfc3339()),
    }


def node_status(spec: NodeSpec, vcpu: int, memory_gib: float, *, transition: str) -> dict[str, Any]:
    now = now_rfc3339()
    memory_ki = int(memory_gib * 1024 * 1024)
    capacity = {
        "cpu": str(vcpu),
        "memory": f"{memory_ki}Ki",
        "pods": str(MAX_PODS),
        "ephemeral-storage": "130045936Ki",
        "hugepages-2Mi": "0",
    }
    allocatable = {**capacity, "memory": f"{max(memory_ki - 100 * 1024, 0)}Ki"}
    addresses = []
    if spec.internal_ip:
        addresses.append({"type": "InternalIP", "address": spec.internal_ip})
    if spec.hostname:
        addresses += [
            {"type": "Hostname", "address": spec.hostname},
            {"type": "InternalDNS", "address": spec.hostname},
        ]

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": transition,
            "reason": reason,
            "message": message,
        }

    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": addresses,
        "conditions": [
            condition(
                "MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated machine)"),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": hashlib.md5(spec.instance_id.encode()).hexdigest(),
            "systemUUID": spec.instance_id,
            "bootID": hashlib.md5(f"{spec.instance_id}/boot".encode()).hexdigest(),
            "kernelVersion": "6.1.0-sandbox",
            "osImage": OS_IMAGE,
            "containerRuntimeVersion": f"containerd://{spec.containerd_version}",
            "kubeletVersion": f"v{spec.kubernetes_version.lstrip('v')}",
            "kubeProxyVersion": f"v{spec.kubernetes_version.lstrip('v')}",
            "operatingSystem": "linux",
            "architecture": spec.architecture,
        },
    }


def mirror_pod(
    manifest: Mapping[str, Any], spec: NodeSpec, node_uid: str, config_hash: str
) -> dict[str, Any]:
    """The mirror pod of a static pod manifest on ``spec``'s node (what the real kubelet creates)."""
    metadata = dict(manifest.get("metadata") or {})
    name = f"{metadata['name']}-{spec.node_name}"
    annotations = {
        **(metadata.get("annotations") or {}),
        "kubernetes.io/config.hash": config_hash,
        "kubernetes.io/config.mirror": config_hash,
        "kubernetes.io/config.seen": now_micro(),
        "kubernetes.io/config.source": "file",
    }
    pod_spec = {**(manifest.get("spec") or {}), "nodeName": spec.node_name}
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault(
        "tolerations", [{"operator": "Exists", "effect": "NoExecute"}]
    )  # static pods tolerate everything (kubelet)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": metadata.get("namespace") or "default",
            "labels": dict(metadata.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": spec.node_name,
                    "uid": node_uid,
                    "controller": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def running_status(pod: Mapping[str, Any], host_ip: str | None, started: str) -> dict[str, Any]:
    """A Running/Ready pod status for a host-network pod (every static pod nodeup writes is one)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = [
        {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": c.get("image"),
            "containerID": "containerd://"
            + hashlib.sha256(f"{pod['metadata']['name']}/{c.get('name')}".encode()).hexdigest(),
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": started}},
        }
        for c in containers
    ]
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": started}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": conditions,
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": "Burstable",
    }
    if host_ip:
        status.update(hostIP=host_ip, hostIPs=[{"ip": host_ip}], podIP=host_ip, podIPs=[{"ip": host_ip}])
    return status


def static_manifests(root: Path) -> list[tuple[dict[str, Any], str]]:
    """(pod, config hash) for every static pod manifest under ``root``."""
    out: list[tuple[dict[str, Any], str]] = []
    directory = root / MANIFESTS_DIR
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        data = path.read_bytes()
        pod = yaml.safe_load(data)
        if isinstance(pod, dict) and pod.get("kind") == "Pod" and (pod.get("metadata") or {}).get("name"):
            out.append((pod, hashlib.md5(data).hexdigest()))
    return out


def _sync_pods_function() -> Callable[..., Any] | None:
    import importlib

    try:  # built alongside this module; without it bound pods are not run
        controllers = importlib.import_module("pykops.sandbox.controllers")
    except ImportError:
        return None
    found = getattr(controllers, "sync_kubelet_pods", None)
    return found if callable(found) else None


# --- the kubelet --------------------------------------------------------------------------------------------


class Kubelet:
    """The simulated kubelet of one machine; :meth:`sync_once` is one pass, :meth:`start` runs passes in a
    thread until :meth:`stop`."""

    def __init__(
        self,
        root: Path,
        spec: NodeSpec,
        api_url: Callable[[], str | None],
        *,
        heartbeat_interval: float = 5.0,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.root = root
        self.spec = spec
        self.api_url = api_url
        self.heartbeat_interval = heartbeat_interval
        self.log = log
        self._api: Any = None
        self._api_server: str | None = None
        self._node_uid: str | None = None
        self._ready_since: str | None = None
        self._mirrored: set[str] = set()
        self._started = now_rfc3339()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self.registered = threading.Event()
        from pykops.api.instance_types import lookup

        found = lookup(spec.instance_type)
        self._vcpu = found.vcpu if found else 2
        self._memory_gib = found.memory_gib if found else 4.0

    # -- client ------------------------------------------------------------------------------------------
    def _client(self) -> Any:
        server = self.api_url()
        if server is None:
            raise ApiError(0, "no API front for this cluster yet")
        if self._api is None or self._api_server != server:
            if self._api is not None:
                self._api.close()
            self._api = api_client_from_kubeconfig(
                self.root / KUBELET_KUBECONFIG, server, scratch=self.root / "var/lib/kubelet/sandbox-client"
            )
            self._api_server = server
        return self._api

    # -- one pass ------------------------------------------------------------------------------------------
    def sync_once(self) -> bool:
        """Register (once), heartbeat, mirror pods, run bound pods. False if the API did not answer."""
        try:
            api = self._client()
            if self._node_uid is None:
                self._register(api)
            else:
                self._heartbeat(api)
            self._lease(api)
            self._mirror_pods(api)
            sync = _sync_pods_function()
            if sync is not None:
                sync(api, self.spec.node_name, pod_cidr=self.spec.pod_cidr, host_ip=self.spec.internal_ip)
        except ApiError as exc:
            if str(exc) != self._last_error:  # quietly: one line per new error, not per retry
                self.log(f"kubelet {self.spec.node_name}: the API did not accept an update ({exc}); retrying")
                self._last_error = str(exc)
            if exc.status == 404 and self._node_uid is not None:
                self._node_uid = None  # the Node was deleted: register again, as the kubelet does
                self._mirrored.clear()
            return False
        except Exception as exc:  # a bug in a pass must not end the machine's kubelet
            self.log(f"kubelet {self.spec.node_name}: {type(exc).__name__}: {exc}")
            return False
        if self._last_error is not None:
            self.log(f"kubelet {self.spec.node_name}: API available again")
            self._last_error = None
        return True

    def _register(self, api: Any) -> None:
        body = node_object(self.spec, self._vcpu, self._memory_gib)
        try:
            created = request(api, "POST", "/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            path = f"/api/v1/nodes/{quote(self.spec.node_name)}"
            created = merge_patch(
                api, path, {"metadata": {"labels": body["metadata"]["labels"]}, "spec": body["spec"]}
            )
            merge_patch(api, path + "/status", {"status": body["status"]})
        self._ready_since = body["status"]["conditions"][-1]["lastTransitionTime"]
        self._node_uid = str(created.get("metadata", {}).get("uid", ""))
        self.log(f"kubelet {self.spec.node_name}: registered Node (uid {self._node_uid})")
        self.registered.set()

    def _heartbeat(self, api: Any) -> None:
        path = f"/api/v1/nodes/{quote(self.spec.node_name)}"
        current = request(api, "GET", path)
        conditions = (current.get("status") or {}).get("conditions") or []
        if next((c.get("status") for c in conditions if c.get("type") == "Ready"), None) != "True":
            self._ready_since = (
                now_rfc3339()
            )  # Ready again (e.g. after the node lifecycle controller's Unknown)
        status = node_status(
            self.spec, self._vcpu, self._memory_gib, transition=self._ready_since or now_rfc3339()
        )
        merge_patch(api, f"{path}/status", {"status": status})

    def _lease(self, api: Any) -> None:
        namespace = "kube-node-lease"
        base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        spec = {
            "holderIdentity": self.spec.node_name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": now_micro(),
        }
        try:
            merge_patch(api, f"{base}/{quote(self.spec.node_name)}", {"spec": spec})
            return
        except ApiError as exc:
            if exc.status != 404:
                raise
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.spec.node_name,
                "namespace": namespace,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.spec.node_name, "uid": self._node_uid}
                ],
            },
            "spec": spec,
        }
        try:
            request(api, "POST", base, body)
        except ApiError as exc:
            if exc.status != 404:
                raise
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            try:
                request(api, "POST", "/api/v1/namespaces", ns)
            except ApiError as ns_exc:
                if ns_exc.status != 409:
                    raise
            request(api, "POST", base, body)

    def _mirror_pods(self, api: Any) -> None:
        for manifest, config_hash in static_manifests(self.root):
            pod = mirror_pod(manifest, self.spec, self._node_uid or "", config_hash)
            namespace = pod["metadata"]["namespace"]
            path = f"/api/v1/namespaces/{quote(namespace)}/pods"
            key = f"{namespace}/{pod['metadata']['name']}"
            if key in self._mirrored:
                continue
            try:
                request(api, "POST", path, pod)
            except ApiError as exc:
                if exc.status != 409:
                    raise
            status = running_status(pod, self.spec.internal_ip, self._started)
            merge_patch(api, f"{path}/{quote(pod['metadata']['name'])}/status", {"status": status})
            self._mirrored.add(key)

    def forget_mirror_pods(self) -> None:
        """Check every mirror pod again on the next pass (e.g. after someone deleted one)."""
        self._mirrored.clear()

    # -- thread ------------------------------------------------------------------------------------------
    def start(self) -> Kubelet:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"kubelet-{self.spec.node_name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        passes = 0
        while not self._stop.is_set():
            ok = self.sync_once()
            passes += 1
            if passes % 6 == 0:
                self.forget_mirror_pods()  # recreate mirror pods deleted meanwhile, as the kubelet does
            self._stop.wait(
                self.heartbeat_interval if ok and self._node_uid else min(1.0, self.heartbeat_interval)
            )

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._api is not None:
            self._api.close()
            self._api = None


def delete_node(api: Any, node_name: str) -> int:
    """Delete a Node, then the pods still bound to it (what the cloud node-lifecycle controller and the pod
    garbage collector do); the number of pods deleted. The Node goes first so that no controller binds a
    new pod to it meanwhile."""
    try:
        request(api, "DELETE", f"/api/v1/nodes/{quote(node_name)}")
    except ApiError as exc:
        if exc.status != 404:
            raise
    pods = request(api, "GET", "/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node_name}"})
    deleted = 0
    for pod in pods.get("items") or []:
        meta = pod.get("metadata") or {}
        if (pod.get("spec") or {}).get("nodeName") != node_name:
            continue  # in case a field selector was ignored
        try:
            request(
                api, "DELETE", f"/api/v1/namespaces/{quote(meta['namespace'])}/pods/{quote(meta['name'])}"
            )
            deleted += 1
        except ApiError as exc:
            if exc.status != 404:
                raise
    return deleted
