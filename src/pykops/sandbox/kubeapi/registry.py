"""The table of resources the emulator serves: one row per resource, no handler per kind."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding", "eviction"
    categories: tuple[str, ...] = ()
    storage: str = ""  # the etcd key segment; defaults to the plural (events.k8s.io shares core events)
    has_spec: bool = True
    singular: str = field(default="")
    custom: bool = False  # served from a CustomResourceDefinition

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_name(self) -> str:
        return self.storage or self.plural

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _r(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
    cat: tuple[str, ...] = (),
    storage: str = "",
    has_spec: bool = True,
) -> Resource:
    return Resource(group, version, plural, kind, namespaced, short, sub, cat, storage, has_spec)


_ALL = ("all",)
RESOURCES: tuple[Resource, ...] = (
    # core/v1
    _r("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    _r("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    _r("", "v1", "pods", "Pod", True, ("po",), ("status", "binding", "eviction", "log"), _ALL),
    _r("", "v1", "services", "Service", True, ("svc",), ("status",), _ALL),
    _r("", "v1", "endpoints", "Endpoints", True, ("ep",), has_spec=False),
    _r("", "v1", "configmaps", "ConfigMap", True, ("cm",), has_spec=False),
    _r("", "v1", "secrets", "Secret", True, has_spec=False),
    _r("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), has_spec=False),
    _r("", "v1", "events", "Event", True, ("ev",), has_spec=False),
    _r("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
    _r("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
    _r("", "v1", "limitranges", "LimitRange", True, ("limits",)),
    _r("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
    _r("", "v1", "replicationcontrollers", "ReplicationController", True, ("rc",), ("status", "scale"), _ALL),
    _r("", "v1", "podtemplates", "PodTemplate", True, has_spec=False),
    # apps/v1
    _r("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale"), _ALL),
    _r("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale"), _ALL),
    _r("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",), _ALL),
    _r("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale"), _ALL),
    _r("apps", "v1", "controllerrevisions", "ControllerRevision", True, has_spec=False),
    # batch/v1
    _r("batch", "v1", "jobs", "Job", True, (), ("status",), _ALL),
    _r("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",), _ALL),
    # autoscaling/v2
    _r(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        ("hpa",),
        ("status",),
        _ALL,
    ),
    # policy/v1
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
    # storage.k8s.io/v1
    _r("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",), has_spec=False),
    _r("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
    _r("storage.k8s.io", "v1", "csinodes", "CSINode", False),
    _r("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", False, (), ("status",)),
    # rbac.authorization.k8s.io/v1
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role", True, has_spec=False),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, has_spec=False),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, has_spec=False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, has_spec=False),
    # coordination.k8s.io/v1
    _r("coordination.k8s.io", "v1", "leases", "Lease", True),
    # scheduling.k8s.io/v1
    _r("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",), has_spec=False),
    # networking.k8s.io/v1
    _r("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), ("status",)),
    _r("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    # discovery.k8s.io/v1
    _r("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, has_spec=False),
    # events.k8s.io/v1 (the same storage as core events, as in Kubernetes)
    _r("events.k8s.io", "v1", "events", "Event", True, ("ev",), storage="events", has_spec=False),
    # apiextensions.k8s.io/v1 (stored; custom resources are not served)
    _r(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("status",),
    ),
    # admissionregistration.k8s.io/v1 (stored; no webhook is ever called)
    _r(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        has_spec=False,
    ),
    _r(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        False,
        has_spec=False,
    ),
    # apiregistration.k8s.io/v1 (stored; no API is aggregated)
    _r("apiregistration.k8s.io", "v1", "apiservices", "APIService", False, (), ("status",)),
    # node.k8s.io/v1
    _r("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False, has_spec=False),
    # certificates.k8s.io/v1 (stored)
    _r(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        False,
        ("csr",),
        ("status", "approval"),
    ),
)


def group_versions(resources: Sequence[Resource] = ()) -> dict[str, list[str]]:
    """Group name → its versions, in table order ("" is the core group); by default of the table."""
    out: dict[str, list[str]] = {}
    for res in resources or RESOURCES:
        versions = out.setdefault(res.group, [])
        if res.version not in versions:
            versions.append(res.version)
    return out


_BY_GV_PLURAL = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return _BY_GV_PLURAL.get((group, version, plural))


def by_kind(group: str, kind: str) -> Resource | None:
    return _BY_KIND.get((group, kind))


def resources_of(group: str, version: str, resources: Sequence[Resource] = ()) -> list[Resource]:
    return [r for r in resources or RESOURCES if r.group == group and r.version == version]


def from_crd(crd: Mapping[str, Any]) -> list[Resource]:
    """The served versions of a CustomResourceDefinition as resources (stored under ``<group>/<plural>``, as
    the apiserver keys custom resources)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
    if not (isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)):
        return []
    out = []
    for version in spec.get("versions") or []:
        if not isinstance(version, dict) or not version.get("served", True) or not version.get("name"):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        subs = tuple(s for s in ("status", "scale") if s in subresources)
        out.append(
            Resource(
                group=group,
                version=str(version["name"]),
                plural=plural,
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subs,
                categories=tuple(names.get("categories") or ()),
                storage=f"{group}/{plural}",
                singular=str(names.get("singular") or kind.lower()),
                custom=True,
            )
        )
    return out


def must(group: str, plural: str, version: str = "v1") -> Resource:
    """A resource of the table (a programming error if absent)."""
    res = lookup(group, version, plural)
    if res is None:
        raise KeyError(f"{plural}.{group}/{version} is not in the resource table")
    return res
