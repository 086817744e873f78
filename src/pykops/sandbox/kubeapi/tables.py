"""Server-side printing (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``), as ``kubectl get`` asks.

Columns follow the apiserver's printers (``pkg/printers/internalversion``) for the kinds kubectl users
look at; other kinds get NAME and AGE. Columns with priority 1 are the ``-o wide`` ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pykops.sandbox.kubeapi.registry import Resource

Row = list[Any]
Column = tuple[str, str, int]  # name, type, priority


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration``."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = (s % 3600) // 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        rem = days % 365
        return f"{days // 365}y{rem}d" if rem else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _age(obj: dict[str, Any]) -> str:
    return age(_meta(obj).get("creationTimestamp"))


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])


def _selector(obj: dict[str, Any]) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for expr in sel.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin"}.get(expr.get("operator"), "")
        if op:
            parts.append(f"{expr.get('key')} {op} ({','.join(expr.get('values') or [])})")
        elif expr.get("operator") == "Exists":
            parts.append(str(expr.get("key")))
        else:
            parts.append(f"!{expr.get('key')}")
    return ",".join(parts) or "<none>"


def _wide_workload(obj: dict[str, Any]) -> Row:
    containers = _containers(obj)
    return [
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        _selector(obj),
    ]


# --- per kind --------------------------------------------------------------------------------------------


def _node(obj: dict[str, Any]) -> Row:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        state = "Unknown"
    else:
        state = "Ready" if ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = []
    for label, value in (_meta(obj).get("labels") or {}).items():
        if label.startswith("node-role.kubernetes.io/"):
            roles.append(label.split("/", 1)[1])
        elif label == "kubernetes.io/role" and value:
            roles.append(str(value))
    addresses = status.get("addresses") or []
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), "<none>")
    external = next((a.get("address") for a in addresses if a.get("type") == "ExternalIP"), "<none>")
    info = status.get("nodeInfo") or {}
    return [
        _meta(obj).get("name"),
        state,
        ",".join(sorted(set(roles))) or "<none>",
        _age(obj),
        info.get("kubeletVersion", ""),
        internal,
        external,
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _pod(obj: dict[str, Any]) -> Row:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason") and reason == "Running":
            reason = state["terminated"]["reason"]
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_cell = "<none>"
    if gates:
        ok = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_cell = f"{ok}/{len(gates)}"
    return [
        _meta(obj).get("name"),
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        _age(obj),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_cell,
    ]


def _deployment(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _meta(obj).get("name"),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj),
        *_wide_workload(obj),
    ]


def _replicaset(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _meta(obj).get("name"),
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj),
        *_wide_workload(obj),
    ]


def _daemonset(obj: dict[str, Any]) -> Row:
    status = obj.get("status") or {}
    node_selector = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "nodeSelector"
    ) or {}
    return [
        _meta(obj).get("name"),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in node_selector.items()) or "<none>",
        _age(obj),
        *_wide_workload(obj),
    ]


def _statefulset(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        _meta(obj).get("name"),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _age(obj),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
    ]


def _service(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    svc_type = spec.get("type", "ClusterIP")
    external = ",".join(spec.get("externalIPs") or [])
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if svc_type == "LoadBalancer":
        lb = ",".join(str(i.get("ip") or i.get("hostname")) for i in ingress)
        external = ",".join(x for x in (lb, external) if x) or "<pending>"
    elif svc_type == "ExternalName":
        external = spec.get("externalName", "")
    ports = []
    for p in spec.get("ports") or []:
        text = f"{p.get('port')}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        ports.append(f"{text}/{p.get('protocol', 'TCP')}")
    selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"
    return [
        _meta(obj).get("name"),
        svc_type,
        spec.get("clusterIP") or "<none>",
        external or "<none>",
        ",".join(ports) or "<none>",
        _age(obj),
        selector,
    ]


def _namespace(obj: dict[str, Any]) -> Row:
    phase = (obj.get("status") or {}).get("phase", "Active")
    if _meta(obj).get("deletionTimestamp"):
        phase = "Terminating"
    return [_meta(obj).get("name"), phase, _age(obj)]


def _pv(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef") or {}
    return [
        _meta(obj).get("name"),
        (spec.get("capacity") or {}).get("storage", ""),
        _access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", "Retain"),
        status.get("phase", "Pending"),
        f"{claim['namespace']}/{claim['name']}" if claim.get("name") else "",
        spec.get("storageClassName", ""),
        spec.get("volumeAttributesClassName") or "<unset>",
        status.get("reason", ""),
        _age(obj),
        spec.get("volumeMode", "Filesystem"),
    ]


def _pvc(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _meta(obj).get("name"),
        status.get("phase", "Pending"),
        spec.get("volumeName", ""),
        (status.get("capacity") or {}).get("storage", ""),
        _access_modes(status.get("accessModes")),
        spec.get("storageClassName", ""),
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(obj),
        spec.get("volumeMode", "Filesystem"),
    ]


def _access_modes(modes: Any) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short.get(m, m) for m in modes or [])


def _storageclass(obj: dict[str, Any]) -> Row:
    name = _meta(obj).get("name", "")
    annotations = _meta(obj).get("annotations") or {}
    if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
        name = f"{name} (default)"
    return [
        name,
        obj.get("provisioner", ""),
        obj.get("reclaimPolicy", "Delete"),
        obj.get("volumeBindingMode", "Immediate"),
        bool(obj.get("allowVolumeExpansion", False)),
        _age(obj),
    ]


def _event(obj: dict[str, Any]) -> Row:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    first = obj.get("firstTimestamp") or obj.get("eventTime") or _meta(obj).get("creationTimestamp")
    source = obj.get("source") or {}
    return [
        age(str(last)[:19] + "Z" if last else None),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message") or obj.get("note", ""),
        involved.get("fieldPath", ""),
        source.get("component", "") or obj.get("reportingController", ""),
        age(str(first)[:19] + "Z" if first else None),
        obj.get("count", 1),
        _meta(obj).get("name"),
    ]


def _pdb(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        _meta(obj).get("name"),
        spec.get("minAvailable", "N/A"),
        spec.get("maxUnavailable", "N/A"),
        status.get("disruptionsAllowed", 0),
        _age(obj),
    ]


def _configmap(obj: dict[str, Any]) -> Row:
    return [_meta(obj).get("name"), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), _age(obj)]


def _secret(obj: dict[str, Any]) -> Row:
    data = len(obj.get("data") or {}) + len(obj.get("stringData") or {})
    return [_meta(obj).get("name"), obj.get("type", "Opaque"), data, _age(obj)]


def _priorityclass(obj: dict[str, Any]) -> Row:
    return [
        _meta(obj).get("name"),
        obj.get("value", 0),
        bool(obj.get("globalDefault", False)),
        _age(obj),
        obj.get("preemptionPolicy", "PreemptLowerPriority"),
    ]


def _lease(obj: dict[str, Any]) -> Row:
    return [_meta(obj).get("name"), (obj.get("spec") or {}).get("holderIdentity", ""), _age(obj)]


def _serviceaccount(obj: dict[str, Any]) -> Row:
    return [_meta(obj).get("name"), len(obj.get("secrets") or []), _age(obj)]


def _endpoints(obj: dict[str, Any]) -> Row:
    pairs = []
    for subset in obj.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                pairs.append(f"{address.get('ip')}:{port.get('port')}" if port else str(address.get("ip")))
    shown = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [_meta(obj).get("name"), shown or "<none>", _age(obj)]


def _binding(obj: dict[str, Any]) -> Row:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def names(kind: str) -> str:
        out = []
        for sub in subjects:
            if sub.get("kind") == kind:
                ns = sub.get("namespace")
                out.append(
                    f"{ns}/{sub.get('name')}" if kind == "ServiceAccount" and ns else str(sub.get("name"))
                )
        return ", ".join(out)

    return [
        _meta(obj).get("name"),
        f"{ref.get('kind')}/{ref.get('name')}",
        _age(obj),
        names("User"),
        names("Group"),
        names("ServiceAccount"),
    ]


def _created_at(obj: dict[str, Any]) -> Row:
    return [_meta(obj).get("name"), _meta(obj).get("creationTimestamp", "")]


def _job(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conds.get("Complete") == "True":
        state = "Complete"
    elif conds.get("Failed") == "True":
        state = "Failed"
    else:
        state = "Running"
    completions = spec.get("completions", 1)
    return [
        _meta(obj).get("name"),
        state,
        f"{status.get('succeeded', 0)}/{completions}",
        "",
        _age(obj),
        *_wide_workload(obj),
    ]


def _ingress(obj: dict[str, Any]) -> Row:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    hosts = [str(r.get("host")) for r in spec.get("rules") or [] if r.get("host")]
    lb = (status.get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(str(i.get("ip") or i.get("hostname")) for i in lb)
    ports = "80, 443" if spec.get("tls") else "80"
    return [
        _meta(obj).get("name"),
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        address,
        ports,
        _age(obj),
    ]


def _default(obj: dict[str, Any]) -> Row:
    return [_meta(obj).get("name"), _age(obj)]


_S, _I, _B, _D = "string", "integer", "boolean", "date"
_WORKLOAD_WIDE: list[Column] = [("Containers", _S, 1), ("Images", _S, 1), ("Selector", _S, 1)]
PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], Row]]] = {
    "Node": (
        [
            ("Name", _S, 0),
            ("Status", _S, 0),
            ("Roles", _S, 0),
            ("Age", _S, 0),
            ("Version", _S, 0),
            ("Internal-IP", _S, 1),
            ("External-IP", _S, 1),
            ("OS-Image", _S, 1),
            ("Kernel-Version", _S, 1),
            ("Container-Runtime", _S, 1),
        ],
        _node,
    ),
    "Pod": (
        [
            ("Name", _S, 0),
            ("Ready", _S, 0),
            ("Status", _S, 0),
            ("Restarts", _S, 0),
            ("Age", _S, 0),
            ("IP", _S, 1),
            ("Node", _S, 1),
            ("Nominated Node", _S, 1),
            ("Readiness Gates", _S, 1),
        ],
        _pod,
    ),
    "Deployment": (
        [
            ("Name", _S, 0),
            ("Ready", _S, 0),
            ("Up-to-date", _I, 0),
            ("Available", _I, 0),
            ("Age", _S, 0),
            *_WORKLOAD_WIDE,
        ],
        _deployment,
    ),
    "ReplicaSet": (
        [
            ("Name", _S, 0),
            ("Desired", _I, 0),
            ("Current", _I, 0),
            ("Ready", _I, 0),
            ("Age", _S, 0),
            *_WORKLOAD_WIDE,
        ],
        _replicaset,
    ),
    "DaemonSet": (
        [
            ("Name", _S, 0),
            ("Desired", _I, 0),
            ("Current", _I, 0),
            ("Ready", _I, 0),
            ("Up-to-date", _I, 0),
            ("Available", _I, 0),
            ("Node Selector", _S, 0),
            ("Age", _S, 0),
            *_WORKLOAD_WIDE,
        ],
        _daemonset,
    ),
    "StatefulSet": (
        [("Name", _S, 0), ("Ready", _S, 0), ("Age", _S, 0), ("Containers", _S, 1), ("Images", _S, 1)],
        _statefulset,
    ),
    "Service": (
        [
            ("Name", _S, 0),
            ("Type", _S, 0),
            ("Cluster-IP", _S, 0),
            ("External-IP", _S, 0),
            ("Port(s)", _S, 0),
            ("Age", _S, 0),
            ("Selector", _S, 1),
        ],
        _service,
    ),
    "Namespace": ([("Name", _S, 0), ("Status", _S, 0), ("Age", _S, 0)], _namespace),
    "PersistentVolume": (
        [
            ("Name", _S, 0),
            ("Capacity", _S, 0),
            ("Access Modes", _S, 0),
            ("Reclaim Policy", _S, 0),
            ("Status", _S, 0),
            ("Claim", _S, 0),
            ("StorageClass", _S, 0),
            ("VolumeAttributesClass", _S, 0),
            ("Reason", _S, 0),
            ("Age", _S, 0),
            ("VolumeMode", _S, 1),
        ],
        _pv,
    ),
    "PersistentVolumeClaim": (
        [
            ("Name", _S, 0),
            ("Status", _S, 0),
            ("Volume", _S, 0),
            ("Capacity", _S, 0),
            ("Access Modes", _S, 0),
            ("StorageClass", _S, 0),
            ("VolumeAttributesClass", _S, 0),
            ("Age", _S, 0),
            ("VolumeMode", _S, 1),
        ],
        _pvc,
    ),
    "StorageClass": (
        [
            ("Name", _S, 0),
            ("Provisioner", _S, 0),
            ("ReclaimPolicy", _S, 0),
            ("VolumeBindingMode", _S, 0),
            ("AllowVolumeExpansion", _B, 0),
            ("Age", _S, 0),
        ],
        _storageclass,
    ),
    "Event": (
        [
            ("Last Seen", _S, 0),
            ("Type", _S, 0),
            ("Reason", _S, 0),
            ("Object", _S, 0),
            ("Message", _S, 0),
            ("Subobject", _S, 1),
            ("Source", _S, 1),
            ("First Seen", _S, 1),
            ("Count", _I, 1),
            ("Name", _S, 1),
        ],
        _event,
    ),
    "PodDisruptionBudget": (
        [
            ("Name", _S, 0),
            ("Min Available", _S, 0),
            ("Max Unavailable", _S, 0),
            ("Allowed Disruptions", _I, 0),
            ("Age", _S, 0),
        ],
        _pdb,
    ),
    "ConfigMap": ([("Name", _S, 0), ("Data", _I, 0), ("Age", _S, 0)], _configmap),
    "Secret": ([("Name", _S, 0), ("Type", _S, 0), ("Data", _I, 0), ("Age", _S, 0)], _secret),
    "PriorityClass": (
        [
            ("Name", _S, 0),
            ("Value", _I, 0),
            ("Global-Default", _B, 0),
            ("Age", _S, 0),
            ("PreemptionPolicy", _S, 1),
        ],
        _priorityclass,
    ),
    "ServiceAccount": ([("Name", _S, 0), ("Secrets", _I, 0), ("Age", _S, 0)], _serviceaccount),
    "Endpoints": ([("Name", _S, 0), ("Endpoints", _S, 0), ("Age", _S, 0)], _endpoints),
    "RoleBinding": (
        [
            ("Name", _S, 0),
            ("Role", _S, 0),
            ("Age", _S, 0),
            ("Users", _S, 1),
            ("Groups", _S, 1),
            ("ServiceAccounts", _S, 1),
        ],
        _binding,
    ),
    "ClusterRoleBinding": (
        [
            ("Name", _S, 0),
            ("Role", _S, 0),
            ("Age", _S, 0),
            ("Users", _S, 1),
            ("Groups", _S, 1),
            ("ServiceAccounts", _S, 1),
        ],
        _binding,
    ),
    "Role": ([("Name", _S, 0), ("Created At", _D, 0)], _created_at),
    "ClusterRole": ([("Name", _S, 0), ("Created At", _D, 0)], _created_at),
    "CustomResourceDefinition": ([("Name", _S, 0), ("Created At", _D, 0)], _created_at),
    "Job": (
        [
            ("Name", _S, 0),
            ("Status", _S, 0),
            ("Completions", _S, 0),
            ("Duration", _S, 0),
            ("Age", _S, 0),
            *_WORKLOAD_WIDE,
        ],
        _job,
    ),
    "Ingress": (
        [
            ("Name", _S, 0),
            ("Class", _S, 0),
            ("Hosts", _S, 0),
            ("Address", _S, 0),
            ("Ports", _S, 0),
            ("Age", _S, 0),
        ],
        _ingress,
    ),
    "Lease": ([("Name", _S, 0), ("Holder", _S, 0), ("Age", _S, 0)], _lease),
}
_DEFAULT: tuple[list[Column], Callable[[dict[str, Any]], Row]] = ([("Name", _S, 0), ("Age", _S, 0)], _default)


def table(
    res: Resource, objs: list[dict[str, Any]], include_object: str, resource_version: str
) -> dict[str, Any]:
    columns, printer = PRINTERS.get(res.kind, _DEFAULT)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": printer(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": ctype,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, ctype, priority in columns
        ],
        "rows": rows,
    }
