"""The add-on applier: makes a cluster's add-ons match a channel, through the official Kubernetes client.

Used three ways with the same code: by ``pykops addons apply`` against any API endpoint, by the control
plane (nodeup's machines), and by the sandbox's machine simulator when a control-plane machine boots
(:func:`apply_from_state_store`).

For each add-on of the channel, in order:

* skip it when the cluster's record says it is already at the channel's version and manifest hash;
* otherwise server-side apply each object (``PATCH`` with ``application/apply-patch+yaml``, field manager
  ``pykops-addons``, ``force=true``: pykops owns these fields) and record the version;

then prune (below), and wait, up to one overall timeout, for the Deployments and DaemonSets of the add-ons
just applied to be available (those still unavailable are reported, not fatal: a controller may need nodes
that are still booting, and the next run finds the add-on recorded and its objects in place).

Records are kept as kops keeps them: one annotation per add-on on the ``kube-system`` namespace,
``addons.k8s.io/<name>`` = ``{"version": ..., "channel": ..., "manifestHash": ...}``. An annotation on an
object that always exists needs no extra object, survives pykops versions, and is what kops' own
channels tool reads, so a cluster moved between the two keeps its history.

Pruning is label-based, per add-on name: every object labelled ``app.kubernetes.io/managed-by=pykops`` and
``addon.kops.k8s.io/name=<name>`` that the add-on's current manifest does not contain is deleted, and all
objects of an add-on no longer in the channel (whose record is then removed). It runs only when something
was applied or an add-on was dropped, so applying an unchanged channel makes no write at all.

The raw ``ApiClient.param_serialize``/``call_api`` is used rather than the dynamic client: the dynamic client
runs full API discovery on start, while the applier needs only the few kinds add-ons use (a static table,
with per-group discovery as the fallback for any other kind).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from pykops.addons.channel import AddonsChannel, ChannelAddon, read_channel
from pykops.addons.render import LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY, AddonError
from pykops.state.store import open_store

FIELD_MANAGER = "pykops-addons"
RECORD_NAMESPACE = "kube-system"
RECORD_PREFIX = "addons.k8s.io/"
DEFAULT_WAIT_TIMEOUT = 300.0
POLL_INTERVAL = 1.0

# (apiVersion, kind) -> (plural, namespaced): every kind the add-on templates use.
KNOWN_KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("storage.k8s.io/v1", "CSIDriver"): ("csidrivers", False),
    ("networking.k8s.io/v1", "IngressClass"): ("ingressclasses", False),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apiregistration.k8s.io/v1", "APIService"): ("apiservices", False),
}
# Apply order: definitions and identities before what uses them, workloads after their configuration.
_KIND_ORDER = [
    "CustomResourceDefinition",
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "Role",
    "ClusterRoleBinding",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "StorageClass",
    "CSIDriver",
    "IngressClass",
    "Service",
    "PodDisruptionBudget",
    "DaemonSet",
    "Deployment",
    "APIService",
]


@dataclass
class ApplyReport:
    applied: list[str] = field(default_factory=list)  # "<name> <version>"
    skipped: list[str] = field(default_factory=list)  # already at the channel's version and hash
    removed: list[str] = field(default_factory=list)  # add-ons no longer in the channel
    pruned: list[str] = field(default_factory=list)  # "<Kind> <namespace/>name (<addon>)"
    not_ready: list[str] = field(default_factory=list)  # workloads not available before the timeout
    writes: int = 0  # API writes made (apply, delete, record)

    def summary(self) -> str:
        parts = [f"{len(self.applied)} applied", f"{len(self.skipped)} unchanged"]
        if self.removed:
            parts.append(f"{len(self.removed)} removed")
        if self.pruned:
            parts.append(f"{len(self.pruned)} objects pruned")
        if self.not_ready:
            parts.append(f"{len(self.not_ready)} not ready")
        return ", ".join(parts)


@dataclass(frozen=True)
class AddonRecord:
    version: str
    manifest_hash: str
    channel: str = ""
    # "apiVersion Kind" of every object applied: the kinds to search when pruning this add-on later, even
    # once no manifest names them any more (a pykops addition to kops' record; kops ignores it)
    kinds: tuple[str, ...] = ()


# --- HTTP through the kubernetes client ---------------------------------------------------------------------


class _Api:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.writes = 0
        self._discovered: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        m, url, hdrs, serialized, _post = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(m, url, header_params=hdrs, body=serialized, _request_timeout=60)
        response.read()  # type: ignore[no-untyped-call]
        if method != "GET":
            self.writes += 1
        return self.client.response_deserialize(response, {"2XX": "object"}).data

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        key = (api_version, kind)
        if key in KNOWN_KINDS:
            return KNOWN_KINDS[key]
        if key not in self._discovered:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            found = self.request("GET", base)
            for r in found.get("resources", []):
                if r.get("kind") == kind and "/" not in r.get("name", ""):
                    self._discovered[key] = (r["name"], bool(r.get("namespaced")))
                    break
            else:
                raise AddonError(f"the API serves no kind {kind} in {api_version}")
        return self._discovered[key]

    def path(self, obj: Mapping[str, Any], *, with_name: bool = True, all_namespaces: bool = False) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural, namespaced = self.resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced and not all_namespaces:
            base += f"/namespaces/{obj.get('metadata', {}).get('namespace') or 'default'}"
        path = f"{base}/{plural}"
        return f"{path}/{obj['metadata']['name']}" if with_name else path


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def _api_error(what: str, exc: ApiException) -> AddonError:
    detail = exc.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        detail = json.loads(exc.body or "{}").get("message") or detail
    return AddonError(f"{what}: the API answered {exc.status}: {detail}")


# --- records ------------------------------------------------------------------------------------------------


def read_records(api: ApiClient) -> dict[str, AddonRecord]:
    """The applied version of each add-on, from the ``kube-system`` namespace's annotations."""
    try:
        ns = _Api(api).request("GET", f"/api/v1/namespaces/{RECORD_NAMESPACE}")
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise _api_error(f"reading namespace {RECORD_NAMESPACE}", exc) from None
    return _parse_records(ns)


def _parse_records(ns: Mapping[str, Any]) -> dict[str, AddonRecord]:
    out: dict[str, AddonRecord] = {}
    for key, value in ((ns.get("metadata") or {}).get("annotations") or {}).items():
        if not key.startswith(RECORD_PREFIX):
            continue
        try:
            doc = json.loads(value)
            out[key.removeprefix(RECORD_PREFIX)] = AddonRecord(
                version=str(doc.get("version") or ""),
                manifest_hash=str(doc.get("manifestHash") or ""),
                channel=str(doc.get("channel") or ""),
                kinds=tuple(str(k) for k in doc.get("kinds") or ()),
            )
        except (ValueError, AttributeError):
            continue
    return out


def _write_records(http: _Api, changes: Mapping[str, str | None]) -> None:
    if not changes:
        return
    body = {"metadata": {"annotations": {RECORD_PREFIX + k: v for k, v in changes.items()}}}
    try:
        http.request(
            "PATCH",
            f"/api/v1/namespaces/{RECORD_NAMESPACE}",
            body=body,
            content_type="application/merge-patch+json",
        )
    except ApiException as exc:
        raise _api_error(f"recording add-on versions on namespace {RECORD_NAMESPACE}", exc) from None


# --- apply, wait, prune -------------------------------------------------------------------------------------


def _objects(addon: ChannelAddon, manifest: bytes) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(manifest) if d is not None]
    except yaml.YAMLError as exc:
        raise AddonError(f"add-on {addon.name}: its manifest is not valid YAML: {exc}") from None
    for d in docs:
        if not isinstance(d, dict) or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
            raise AddonError(f"add-on {addon.name}: its manifest holds something that is not a named object")
        labels = d["metadata"].get("labels") or {}
        if labels.get(LABEL_NAME) != addon.name:
            # Pruning depends on this label: refuse a manifest whose objects could never be pruned.
            raise AddonError(f"add-on {addon.name}: {_describe(d)} lacks the label {LABEL_NAME}={addon.name}")
    order = {k: i for i, k in enumerate(_KIND_ORDER)}
    return sorted(docs, key=lambda d: order.get(d["kind"], len(order)))


def _apply_object(http: _Api, obj: dict[str, Any], addon: str) -> None:
    try:
        http.request(
            "PATCH",
            http.path(obj),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=obj,
            content_type="application/apply-patch+yaml",
        )
    except ApiException as exc:
        raise _api_error(f"add-on {addon}: applying {_describe(obj)}", exc) from None


def _is_ready(obj: Mapping[str, Any]) -> bool:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    if status.get("observedGeneration", -1) < meta.get("generation", 0):
        return False
    if obj.get("kind") == "Deployment":
        want = spec.get("replicas", 1)
        return bool(status.get("updatedReplicas", 0) >= want and status.get("availableReplicas", 0) >= want)
    want = status.get("desiredNumberScheduled", 0)
    return bool(status.get("numberAvailable", 0) >= want and status.get("updatedNumberScheduled", 0) >= want)


def _wait_ready(http: _Api, objects: list[dict[str, Any]], timeout: float) -> list[str]:
    pending = [o for o in objects if o["kind"] in ("Deployment", "DaemonSet")]
    if timeout <= 0:
        return []
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for o in pending:
            try:
                current = http.request("GET", http.path(o))
            except ApiException as exc:
                if exc.status != 404:
                    raise _api_error(f"reading {_describe(o)}", exc) from None
                current = {}
            if not _is_ready(current):
                still.append(o)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    return [_describe(o) for o in pending]


def _list_labelled(http: _Api, kinds: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every object of these kinds that pykops manages as an add-on (any add-on, any namespace)."""
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_NAME}"
    found: list[dict[str, Any]] = []
    for api_version, kind in sorted(kinds):
        probe = {"apiVersion": api_version, "kind": kind, "metadata": {"name": ""}}
        try:
            path = http.path(probe, with_name=False, all_namespaces=True)
            result = http.request("GET", path, query=[("labelSelector", selector)])
        except ApiException as exc:
            if exc.status == 404:  # e.g. a custom resource whose definition is gone
                continue
            raise _api_error(f"listing {kind} to prune", exc) from None
        except AddonError:
            continue
        for item in result.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            found.append(item)
    return found


def _delete(http: _Api, obj: Mapping[str, Any]) -> None:
    try:
        http.request(
            "DELETE",
            http.path(obj),
            body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
            content_type="application/json",
        )
    except ApiException as exc:
        if exc.status != 404:
            raise _api_error(f"pruning {_describe(obj)}", exc) from None


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))


def apply_channel(
    api: ApiClient,
    channel: AddonsChannel,
    manifests: Mapping[str, bytes],
    *,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
) -> ApplyReport:
    """Make the cluster's add-ons match ``channel`` (``manifests`` keyed by the channel's manifest paths)."""
    http = _Api(api)
    report = ApplyReport()
    records = read_records(api)
    wanted: dict[str, set[tuple[str, str, str, str]]] = {}
    kinds: set[tuple[str, str]] = set(KNOWN_KINDS)
    removals: dict[str, str | None] = {}
    workloads: list[dict[str, Any]] = []
    for addon in channel.addons:
        if addon.manifest not in manifests:
            raise AddonError(f"add-on {addon.name}: no manifest {addon.manifest} given")
        objects = _objects(addon, manifests[addon.manifest])
        wanted[addon.name] = {_identity(o) for o in objects}
        kinds.update((o["apiVersion"], o["kind"]) for o in objects)
        record = records.get(addon.name)
        if record and record.version == addon.version and record.manifest_hash == addon.manifest_hash:
            report.skipped.append(addon.name)
            continue
        for obj in objects:
            _apply_object(http, obj, addon.name)
        workloads.extend(objects)
        report.applied.append(f"{addon.name} {addon.version}")
        # Recorded as soon as it is applied: a failure in a later add-on does not make this one re-apply.
        applied = {
            "version": addon.version,
            "channel": channel.name,
            "manifestHash": addon.manifest_hash,
            "kinds": sorted({f"{o['apiVersion']} {o['kind']}" for o in objects}),
        }
        _write_records(http, {addon.name: json.dumps(applied, sort_keys=True)})
    dropped = sorted(set(records) - set(wanted))
    for record in records.values():
        for text in record.kinds:
            api_version, _, kind = text.partition(" ")
            if kind:
                kinds.add((api_version, kind))
    if report.applied or dropped:
        for obj in _list_labelled(http, kinds):
            owner = str((obj.get("metadata", {}).get("labels") or {}).get(LABEL_NAME, ""))
            if owner in wanted and _identity(obj) in wanted[owner]:
                continue
            _delete(http, obj)
            report.pruned.append(f"{_describe(obj)} ({owner})")
        for name in dropped:
            removals[name] = None
            report.removed.append(name)
    _write_records(http, removals)
    # One deadline for all: a slow add-on neither holds the others back nor multiplies the wait.
    report.not_ready = _wait_ready(http, workloads, wait_timeout)
    report.writes = http.writes
    return report


def apply_from_state_store(
    api: ApiClient, *, cluster_name: str, state_store: str, wait_timeout: float = DEFAULT_WAIT_TIMEOUT
) -> ApplyReport:
    """Apply the channel ``update cluster`` wrote for ``cluster_name`` in the state store ``state_store``."""
    channel, manifests = read_channel(open_store(state_store), cluster_name)
    return apply_channel(api, channel, manifests, wait_timeout=wait_timeout)


# --- state for `get addons` ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddonState:
    name: str
    version: str  # the channel's version (the recorded one for an obsolete add-on)
    state: str  # applied | pending | outdated | obsolete | unknown
    applied_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "appliedVersion": self.applied_version,
        }


def addon_states(channel: AddonsChannel, records: Mapping[str, AddonRecord] | None) -> list[AddonState]:
    """Each add-on's state: the channel against the cluster's records (None: the API was unreachable)."""
    out: list[AddonState] = []
    for a in channel.addons:
        if records is None:
            out.append(AddonState(a.name, a.version, "unknown"))
            continue
        record = records.get(a.name)
        if record is None:
            state = "pending"
        elif record.version == a.version and record.manifest_hash == a.manifest_hash:
            state = "applied"
        else:
            state = "outdated"
        out.append(AddonState(a.name, a.version, state, record.version if record else None))
    for name, record in sorted((records or {}).items()):
        if channel.get(name) is None:
            out.append(AddonState(name, record.version, "obsolete", record.version))
    return out
