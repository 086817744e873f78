"""What a simulated kubelet does for the pods bound to its node (no containers run: this is a simulation).

``sync_kubelet_pods`` makes Pending pods bound to the node Running and Ready (container statuses running
since now, a pod IP from the node's pod CIDR that stays the pod's, the host IP for hostNetwork pods, the
usual conditions), makes Running pods Ready again after the node lifecycle controller marked them not
ready, and finishes the deletion of pods being deleted (the kubelet's final zero-grace delete). A Job's pods
(restartPolicy Never/OnFailure) complete (Succeeded, exit code 0) on the pass after they started. A pod
whose claims are not bound yet, or whose CSI volumes are not attached to this node yet (no VolumeAttachment
for the node with ``status.attached``), stays Pending in ``ContainerCreating``, as the kubelet's volume
manager keeps it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kubernetes.client as k8s

from pykops.sandbox.controllers.common import Obj
from pykops.sandbox.controllers.kube import POD, PV, PVC, VOLUME_ATTACHMENT, Kube, is_not_found
from pykops.sandbox.scheduler import (
    controller_ref,
    format_time,
    is_terminating,
    meta,
    now_utc,
    pod_is_ready,
    set_condition,
    spec,
    status,
)

log = logging.getLogger(__name__)


def pick_pod_ip(uid: str, pod_cidr: str, used: set[str]) -> str | None:
    """A free address of ``pod_cidr`` chosen from the pod's uid (network, .1 and broadcast skipped)."""
    try:
        net = ipaddress.ip_network(pod_cidr, strict=False)
    except ValueError:
        return None
    first = int(net.network_address) + 2
    last = int(net.broadcast_address) - 1
    size = last - first + 1
    if size <= 0:
        return None
    start = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") % size
    for i in range(size):
        ip = str(ipaddress.ip_address(first + (start + i) % size))
        if ip not in used:
            return ip
    return None


def container_id(pod_uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()


def running_status(pod: Mapping[str, Any], *, now_str: str, pod_ip: str | None, host_ip: str | None) -> Obj:
    """Pure: the status of a pod whose containers all run and are ready."""
    pod_spec = spec(pod)
    uid = meta(pod).get("uid", "")
    old = status(pod)
    started = old.get("startTime") or now_str

    def container(c: Mapping[str, Any]) -> Obj:
        image = c.get("image", "")
        return {
            "name": c.get("name", ""),
            "image": image,
            "imageID": f"{image.split('@')[0]}@sha256:" + hashlib.sha256(image.encode()).hexdigest(),
            "containerID": container_id(uid, c.get("name", "")),
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": started}},
        }

    def init_container(c: Mapping[str, Any]) -> Obj:
        out = container(c)
        out.update(
            ready=True,
            started=False,
            state={
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": started,
                    "finishedAt": started,
                    "containerID": out["containerID"],
                }
            },
        )
        return out

    conds: list[Obj] = list(old.get("conditions") or [])
    for type_ in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"):
        conds = set_condition(conds, {"type": type_, "status": "True"}, now_str)
        conds = [
            {k: v for k, v in c.items() if c.get("type") != type_ or k not in ("reason", "message")}
            for c in conds
        ]
    new: Obj = {
        "phase": "Running",
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else None,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else None,
        "startTime": started,
        "containerStatuses": [container(c) for c in pod_spec.get("containers") or []],
        "qosClass": qos_class(pod_spec),
    }
    if pod_spec.get("initContainers"):
        new["initContainerStatuses"] = [init_container(c) for c in pod_spec["initContainers"]]
    return {k: v for k, v in new.items() if v is not None}


def container_creating_status(pod: Mapping[str, Any], *, now_str: str, host_ip: str | None) -> Obj:
    """A Pending pod whose volumes are not ready: its containers wait in ``ContainerCreating``."""
    old = status(pod)
    conds = set_condition(
        list(old.get("conditions") or []), {"type": "PodScheduled", "status": "True"}, now_str
    )
    new: Obj = {
        "phase": "Pending",
        "conditions": conds,
        "hostIP": host_ip,
        "containerStatuses": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for c in spec(pod).get("containers") or []
        ],
        "qosClass": qos_class(spec(pod)),
    }
    return {k: v for k, v in new.items() if v is not None}


def qos_class(pod_spec: Mapping[str, Any]) -> str:
    """Upstream's QoS classes: nothing set → BestEffort; limits == requests everywhere → Guaranteed."""
    containers = [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        requests = {**limits, **(r.get("requests") or {})}
        if (
            not limits
            or set(limits) < {"cpu", "memory"}
            or any(requests.get(k) != v for k, v in limits.items())
        ):
            return "Burstable"
    return "Guaranteed"


def completed_status(pod: Mapping[str, Any], *, now_str: str) -> Obj:
    """Pure: the status of a pod whose containers all exited 0 (phase Succeeded)."""
    old = status(pod)
    conds: list[Obj] = list(old.get("conditions") or [])
    for type_ in ("Ready", "ContainersReady"):
        conds = set_condition(conds, {"type": type_, "status": "False", "reason": "PodCompleted"}, now_str)

    def done(cs: Mapping[str, Any]) -> Obj:
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt") or now_str
        term = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now_str}
        return {
            **cs,
            "ready": False,
            "started": False,
            "state": {"terminated": {**term, "containerID": cs.get("containerID")}},
        }

    return {
        "phase": "Succeeded",
        "conditions": conds,
        "containerStatuses": [done(cs) for cs in old.get("containerStatuses") or []],
    }


def runs_to_completion(pod: Mapping[str, Any]) -> bool:
    """A Job's pod: its simulated containers exit 0 one kubelet pass after they started."""
    ref = controller_ref(pod)
    return (
        ref is not None
        and ref.get("kind") == "Job"
        and spec(pod).get("restartPolicy") in ("Never", "OnFailure")
    )


def needs_start(pod: Mapping[str, Any]) -> bool:
    phase = status(pod).get("phase") or "Pending"
    return phase == "Pending" or (phase == "Running" and not pod_is_ready(pod))


def claims_of(pod: Mapping[str, Any]) -> list[str]:
    return [
        str(v["persistentVolumeClaim"]["claimName"])
        for v in spec(pod).get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName")
    ]


def volumes_ready(
    claims: Sequence[Obj], volumes: Sequence[Obj], attachments: Sequence[Obj], node_name: str
) -> set[tuple[str, str]]:
    """Pure: the (namespace, claim) pairs a pod on ``node_name`` can mount now: bound, and its volume either
    needs no attaching (not CSI) or is attached to this node."""
    attached = {
        (spec(a).get("source") or {}).get("persistentVolumeName")
        for a in attachments
        if spec(a).get("nodeName") == node_name and status(a).get("attached")
    }
    csi = {meta(pv).get("name") for pv in volumes if spec(pv).get("csi")}
    ready = set()
    for claim in claims:
        volume = spec(claim).get("volumeName")
        if volume and (volume not in csi or volume in attached):
            ready.add((meta(claim).get("namespace", "default"), meta(claim).get("name", "")))
    return ready


def plan_kubelet(
    pods: Sequence[Obj],
    node_name: str,
    *,
    pod_cidr: str | None,
    host_ip: str | None,
    now_str: str,
    mountable: set[tuple[str, str]] | None = None,
) -> tuple[list[Obj], list[tuple[Obj, Obj]]]:
    """Pure: (pods to finish deleting, [(pod, its new status)]) for the pods bound to ``node_name``.
    ``mountable`` (see :func:`volumes_ready`): a pod with a claim not in it waits; None: no pod has claims."""
    mine = [p for p in pods if spec(p).get("nodeName") == node_name]
    finish = [p for p in mine if is_terminating(p)]
    used = {status(p).get("podIP") for p in mine if status(p).get("podIP") and not spec(p).get("hostNetwork")}
    used_ips: set[str] = {ip for ip in used if isinstance(ip, str)}
    updates: list[tuple[Obj, Obj]] = []
    for pod in sorted(mine, key=lambda p: meta(p).get("creationTimestamp") or ""):
        if is_terminating(pod):
            continue
        if runs_to_completion(pod) and status(pod).get("phase") == "Running":
            updates.append((pod, completed_status(pod, now_str=now_str)))
            continue
        if not needs_start(pod):
            continue
        ns = meta(pod).get("namespace", "default")
        waiting = [c for c in claims_of(pod) if mountable is None or (ns, c) not in mountable]
        if waiting and status(pod).get("phase", "Pending") == "Pending":
            creating = container_creating_status(pod, now_str=now_str, host_ip=host_ip)
            if status(pod).get("containerStatuses") != creating["containerStatuses"]:
                updates.append((pod, creating))
            continue
        if spec(pod).get("hostNetwork"):
            ip = host_ip
        else:
            ip = status(pod).get("podIP")
            if not ip and pod_cidr:
                ip = pick_pod_ip(meta(pod).get("uid") or meta(pod).get("name", ""), pod_cidr, used_ips)
                if ip:
                    used_ips.add(ip)
        updates.append((pod, running_status(pod, now_str=now_str, pod_ip=ip, host_ip=host_ip)))
    return finish, updates


def sync_kubelet_pods(
    api: k8s.ApiClient, node_name: str, *, pod_cidr: str | None = None, host_ip: str | None = None
) -> None:
    """One kubelet pass for ``node_name``: start the pods bound here (once their volumes can be mounted),
    finish deleting terminating ones."""
    kube = Kube(api)
    pods = kube.list(POD, field_selector=f"spec.nodeName={node_name}")
    mountable = None
    if any(claims_of(p) for p in pods):
        mountable = volumes_ready(kube.list(PVC), kube.list(PV), kube.list(VOLUME_ATTACHMENT), node_name)
    finish, updates = plan_kubelet(
        pods,
        node_name,
        pod_cidr=pod_cidr,
        host_ip=host_ip,
        now_str=format_time(now_utc()),
        mountable=mountable,
    )
    for pod in finish:
        m = meta(pod)
        kube.delete(
            POD, m.get("namespace", "default"), m.get("name", ""), uid=m.get("uid"), grace_period_seconds=0
        )
    for pod, new_status in updates:
        m = meta(pod)
        try:
            kube.patch(
                POD, m.get("namespace", "default"), m.get("name", ""), {"status": new_status}, status=True
            )
        except Exception as err:
            if not is_not_found(err):
                raise
