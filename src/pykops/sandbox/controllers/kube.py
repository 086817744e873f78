"""The controllers' only door to the API: the official ``kubernetes`` client's typed APIs, with plain dicts.

Every controller reads and writes objects as the JSON dicts the API server speaks (camelCase keys), so the
decision functions stay pure and easy to test. Reads use the typed list methods with
``_preload_content=False`` (the raw JSON; no model round trip that could drop fields an emulator adds);
writes build the client's models from those dicts (``V1Pod.from_dict``) or send merge patches. Nothing
here knows whether the server is the sandbox's emulator or a real cluster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import kubernetes.client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """How the typed client names one resource: its API class, the snake-case stem of its methods."""

    kind: str
    api: str  # "CoreV1Api", "AppsV1Api", ...
    stem: str  # "pod", "replica_set", ...
    namespaced: bool = True
    api_version: str = "v1"

    @property
    def model(self) -> Any:
        return getattr(k8s, "V1" + self.kind)


POD = Resource("Pod", "CoreV1Api", "pod")
NODE = Resource("Node", "CoreV1Api", "node", namespaced=False)
DEPLOYMENT = Resource("Deployment", "AppsV1Api", "deployment", api_version="apps/v1")
REPLICA_SET = Resource("ReplicaSet", "AppsV1Api", "replica_set", api_version="apps/v1")
DAEMON_SET = Resource("DaemonSet", "AppsV1Api", "daemon_set", api_version="apps/v1")
STATEFUL_SET = Resource("StatefulSet", "AppsV1Api", "stateful_set", api_version="apps/v1")
JOB = Resource("Job", "BatchV1Api", "job", api_version="batch/v1")
PDB = Resource("PodDisruptionBudget", "PolicyV1Api", "pod_disruption_budget", api_version="policy/v1")
LEASE = Resource("Lease", "CoordinationV1Api", "lease", api_version="coordination.k8s.io/v1")
PVC = Resource("PersistentVolumeClaim", "CoreV1Api", "persistent_volume_claim")
PV = Resource("PersistentVolume", "CoreV1Api", "persistent_volume", namespaced=False)
VOLUME_ATTACHMENT = Resource(
    "VolumeAttachment", "StorageV1Api", "volume_attachment", namespaced=False, api_version="storage.k8s.io/v1"
)
SERVICE = Resource("Service", "CoreV1Api", "service")
INGRESS = Resource("Ingress", "NetworkingV1Api", "ingress", api_version="networking.k8s.io/v1")
STORAGE_CLASS = Resource(
    "StorageClass", "StorageV1Api", "storage_class", namespaced=False, api_version="storage.k8s.io/v1"
)

BY_KIND = {r.kind: r for r in (POD, NODE, DEPLOYMENT, REPLICA_SET, DAEMON_SET, STATEFUL_SET, JOB, PDB)}


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, ApiException) and err.status == 404


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, ApiException) and err.status == 409


class Kube:
    """Thin I/O over an ``ApiClient``: list, create, merge-patch (object or status), delete, bind."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self._apis: dict[str, Any] = {}

    def _api(self, name: str) -> Any:
        if name not in self._apis:
            self._apis[name] = getattr(k8s, name)(self.api)
        return self._apis[name]

    @staticmethod
    def _json(resp: Any) -> Any:
        return json.loads(resp.data) if resp.data else {}

    def list(self, res: Resource, *, field_selector: str | None = None) -> list[Obj]:
        """Every object of a kind (all namespaces), each with ``kind``/``apiVersion`` filled in."""
        api = self._api(res.api)
        method = f"list_{res.stem}_for_all_namespaces" if res.namespaced else f"list_{res.stem}"
        kwargs: dict[str, Any] = {"_preload_content": False}
        if field_selector:
            kwargs["field_selector"] = field_selector
        items: list[Obj] = self._json(getattr(api, method)(**kwargs)).get("items") or []
        for item in items:
            item.setdefault("kind", res.kind)
            item.setdefault("apiVersion", res.api_version)
        return items

    def create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        api = self._api(res.api)
        model = res.model.from_dict(body)
        if res.namespaced:
            resp = getattr(api, f"create_namespaced_{res.stem}")(namespace, model, _preload_content=False)
        else:
            resp = getattr(api, f"create_{res.stem}")(model, _preload_content=False)
        out: Obj = self._json(resp)
        return out

    def patch(self, res: Resource, namespace: str, name: str, patch: Obj, *, status: bool = False) -> Obj:
        """A JSON merge patch of the object (or of its ``status`` subresource)."""
        api = self._api(res.api)
        suffix = "_status" if status else ""
        kwargs: dict[str, Any] = {"_preload_content": False, "_content_type": MERGE_PATCH}
        if res.namespaced:
            resp = getattr(api, f"patch_namespaced_{res.stem}{suffix}")(name, namespace, patch, **kwargs)
        else:
            resp = getattr(api, f"patch_{res.stem}{suffix}")(name, patch, **kwargs)
        out: Obj = self._json(resp)
        return out

    def delete(
        self,
        res: Resource,
        namespace: str,
        name: str,
        *,
        uid: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = "Background",
    ) -> bool:
        """Delete; False when it was already gone. ``uid`` guards against deleting a same-named successor."""
        api = self._api(res.api)
        body: dict[str, Any] = {}
        if uid:
            body["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        options = k8s.V1DeleteOptions.from_dict(body) if body else None
        try:
            if res.namespaced:
                getattr(api, f"delete_namespaced_{res.stem}")(
                    name, namespace, body=options, _preload_content=False
                )
            else:
                getattr(api, f"delete_{res.stem}")(name, body=options, _preload_content=False)
        except ApiException as err:
            if err.status in (404, 409):  # gone, or a successor with another uid
                return False
            raise
        return True

    def bind(self, namespace: str, pod: str, node: str) -> None:
        """Bind a pod to a node through ``pods/binding``; patch ``spec.nodeName`` if the server lacks it."""
        binding = k8s.V1Binding.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
        )
        try:
            self._api("CoreV1Api").create_namespaced_pod_binding(
                pod, namespace, binding, _preload_content=False
            )
        except ApiException as err:
            if err.status not in (404, 405, 501):
                raise
            if err.status == 404 and "binding" not in (err.body or "").lower():
                # The pod itself is gone (a 404 about the subresource names it).
                self._pod_exists_or_raise(namespace, pod, err)
            log.debug(
                "pods/binding unavailable (%s); patching spec.nodeName of %s/%s", err.status, namespace, pod
            )
            self.patch(POD, namespace, pod, {"spec": {"nodeName": node}})

    def _pod_exists_or_raise(self, namespace: str, pod: str, err: ApiException) -> None:
        try:
            self._api("CoreV1Api").read_namespaced_pod(pod, namespace, _preload_content=False)
        except ApiException as read_err:
            if read_err.status == 404:
                raise err from None
            raise
