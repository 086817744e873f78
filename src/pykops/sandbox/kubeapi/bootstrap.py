"""What a new cluster holds from the start: namespaces, priority classes, the ``kubernetes`` Service, and the
bootstrap RBAC roles and bindings (a subset of the apiserver's ``bootstrappolicy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pykops.sandbox.kubeapi import registry as reg
from pykops.sandbox.kubeapi.errors import ApiError

if TYPE_CHECKING:
    from pykops.sandbox.kubeapi.api import KubeApi

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

PRIORITY_CLASSES = (
    (
        "system-cluster-critical",
        2000000000,
        "Used for system critical pods that must run in the cluster, "
        "but can be moved to another node if necessary.",
    ),
    (
        "system-node-critical",
        2000001000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
)

_BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]

# view: read the common resources, never secrets (as the bootstrap "view" role)
_VIEW_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "pods/log",
            "pods/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "serviceaccounts",
            "services",
            "services/status",
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": ["apps"],
        "resources": [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
        "verbs": _READ,
    },
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers", "horizontalpodautoscalers/status"],
        "verbs": _READ,
    },
    {
        "apiGroups": ["batch"],
        "resources": ["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        "verbs": _READ,
    },
    {
        "apiGroups": ["policy"],
        "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"],
        "verbs": _READ,
    },
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses", "ingresses/status", "networkpolicies"],
        "verbs": _READ,
    },
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
]

_EDIT_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": [
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ],
        "verbs": _READ,
    },
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
    {
        "apiGroups": [""],
        "resources": [
            "pods",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {
        "apiGroups": ["apps"],
        "resources": [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        "verbs": _WRITE,
    },
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": _WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": _WRITE},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _READ + _WRITE},
    *_VIEW_RULES,
]

_ADMIN_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["rolebindings", "roles"],
        "verbs": _READ + _WRITE,
    },
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
    *_EDIT_RULES,
]

_DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]


def _cluster_role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_BOOTSTRAP_LABELS, **(labels or {})},
            "annotations": _AUTOUPDATE,
        },
        "rules": rules,
    }


def _binding(name: str, role: str, group: str = "", user: str = "") -> dict[str, Any]:
    subjects = []
    if group:
        subjects.append({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group})
    if user:
        subjects.append({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(_BOOTSTRAP_LABELS), "annotations": _AUTOUPDATE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


_ALL_VERBS = ["*"]
# The sandbox's controller simulator stands in for every controller (real ones use per-controller service
# accounts), so its role covers the groups the controllers write.
_CONTROLLER_MANAGER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [
            "",
            "apps",
            "batch",
            "policy",
            "autoscaling",
            "discovery.k8s.io",
            "coordination.k8s.io",
            "events.k8s.io",
            "storage.k8s.io",
            "networking.k8s.io",
            "certificates.k8s.io",
        ],
        "resources": ["*"],
        "verbs": _ALL_VERBS,
    },
    {
        "apiGroups": [
            "rbac.authorization.k8s.io",
            "apiextensions.k8s.io",
            "scheduling.k8s.io",
            "admissionregistration.k8s.io",
            "apiregistration.k8s.io",
        ],
        "resources": ["*"],
        "verbs": _READ,
    },
]
_SCHEDULER_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _ALL_VERBS},
    {
        "apiGroups": [""],
        "resources": [
            "nodes",
            "namespaces",
            "services",
            "persistentvolumes",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "pods",
            "configmaps",
        ],
        "verbs": _READ,
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": [""], "resources": ["bindings", "pods/binding"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
    {"apiGroups": ["apps"], "resources": ["replicasets", "statefulsets"], "verbs": _READ},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _READ},
    {
        "apiGroups": ["storage.k8s.io"],
        "resources": ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities"],
        "verbs": _READ,
    },
]
_NODE_PROXIER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["endpoints", "services", "nodes"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
]


def cluster_roles() -> list[dict[str, Any]]:
    agg = "rbac.authorization.k8s.io/aggregate-to-"
    return [
        _cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        _cluster_role("admin", _ADMIN_RULES),
        _cluster_role("edit", _EDIT_RULES, {agg + "admin": "true"}),
        _cluster_role("view", _VIEW_RULES, {agg + "edit": "true"}),
        _cluster_role("system:discovery", [{"nonResourceURLs": _DISCOVERY_URLS, "verbs": ["get"]}]),
        _cluster_role(
            "system:public-info-viewer",
            [
                {
                    "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"],
                },
            ],
        ),
        _cluster_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        _cluster_role(
            "system:node",
            [
                {
                    "apiGroups": [""],
                    "resources": [
                        "nodes",
                        "nodes/status",
                        "pods",
                        "pods/status",
                        "events",
                        "configmaps",
                        "secrets",
                        "services",
                        "endpoints",
                        "persistentvolumes",
                        "persistentvolumeclaims",
                    ],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["pods/eviction", "serviceaccounts/token"],
                    "verbs": ["create"],
                },
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["csinodes", "csidrivers", "volumeattachments"],
                    "verbs": _READ,
                },
                {
                    "apiGroups": ["certificates.k8s.io"],
                    "resources": ["certificatesigningrequests"],
                    "verbs": ["create", "get", "list", "watch"],
                },
            ],
        ),
        _cluster_role("system:kube-controller-manager", _CONTROLLER_MANAGER_RULES),
        _cluster_role("system:kube-scheduler", _SCHEDULER_RULES),
        _cluster_role("system:node-proxier", _NODE_PROXIER_RULES),
    ]


def cluster_role_bindings() -> list[dict[str, Any]]:
    return [
        _binding("cluster-admin", "cluster-admin", "system:masters"),
        _binding("system:discovery", "system:discovery", "system:authenticated"),
        _binding("system:basic-user", "system:basic-user", "system:authenticated"),
        _binding("system:public-info-viewer", "system:public-info-viewer", "system:authenticated"),
        # as in Kubernetes: no subject (nodes are authorized by the Node authorizer; kOps binds the shared
        # worker identity "kubelet" to system:node itself)
        _binding("system:node", "system:node"),
        _binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            user="system:kube-controller-manager",
        ),
        _binding("system:kube-scheduler", "system:kube-scheduler", user="system:kube-scheduler"),
        _binding("system:node-proxier", "system:node-proxier", user="system:kube-proxy"),
    ]


def _create(api: KubeApi, group: str, plural: str, namespace: str | None, obj: dict[str, Any]) -> None:
    res = reg.lookup(group, "v1", plural)
    assert res is not None
    try:
        api.create_object(res, namespace, obj)
    except ApiError as err:
        if err.code != 409:
            raise


def ensure(api: KubeApi) -> None:
    """Create what is missing (idempotent: existing objects are left as they are)."""
    for ns in NAMESPACES:
        _create(api, "", "namespaces", None, {"metadata": {"name": ns}})
    for name, value, description in PRIORITY_CLASSES:
        _create(
            api,
            "scheduling.k8s.io",
            "priorityclasses",
            None,
            {
                "metadata": {"name": name},
                "value": value,
                "globalDefault": False,
                "description": description,
                "preemptionPolicy": "PreemptLowerPriority",
            },
        )
    for role in cluster_roles():
        _create(api, "rbac.authorization.k8s.io", "clusterroles", None, role)
    for binding in cluster_role_bindings():
        _create(api, "rbac.authorization.k8s.io", "clusterrolebindings", None, binding)
    services = reg.lookup("", "v1", "services")
    assert services is not None
    if api.store.get(api.key(services, "default", "kubernetes")) is None:
        _create(
            api,
            "",
            "services",
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
                },
            },
        )
