"""The Kubernetes API of a cluster, as the day-2 commands use it (validate, drain, rolling update).

The client is the maintained ``kubernetes`` Python client, configured like kops does: the kubeconfig file
is ``--kubeconfig``, else the first path of ``$KUBECONFIG``, else ``~/.kube/config``, and the context is
the one named after the cluster (what ``pykops export kubeconfig`` writes). :class:`KubeClient` wraps the
few calls pykops needs and turns API objects into the plain records of :mod:`pykops.ops.validate`;
connection failures become :class:`ApiUnreachable` (one line, no traceback).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from pykops.errors import PykopsError
from pykops.ops.kubeconfig import kubeconfig_path
from pykops.ops.validate import ApiUnreachable, NodeInfo, PodInfo

T = TypeVar("T")

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
INSTANCE_GROUP_LABEL = "kops.k8s.io/instancegroup"
ZONE_LABEL = "topology.kubernetes.io/zone"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
#: (connect, read) seconds for every call: an unreachable API must fail fast, not hang a rolling update.
REQUEST_TIMEOUT = (5.0, 30.0)


def load_api_client(cluster: str, kubeconfig: str | os.PathLike[str] | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the context named ``cluster`` in the kubeconfig file."""
    from kubernetes import config as kconfig
    from kubernetes.config.config_exception import ConfigException

    path = kubeconfig_path(kubeconfig)
    if not path.exists():
        raise PykopsError(
            f"no kubeconfig at {path}: run pykops export kubeconfig {cluster} --admin "
            "(or pass --kubeconfig / set KUBECONFIG)"
        )
    try:
        contexts, _ = kconfig.list_kube_config_contexts(config_file=str(path))  # type: ignore[no-untyped-call]
    except ConfigException as exc:
        raise PykopsError(f"cannot read the kubeconfig {path}: {exc}") from None
    if not any(c.get("name") == cluster for c in contexts or []):
        raise PykopsError(
            f"the kubeconfig {path} has no context {cluster}: run pykops export kubeconfig {cluster} --admin"
        )
    from kubernetes import client as kclient

    configuration = kclient.Configuration()
    try:
        kconfig.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=cluster, client_configuration=configuration
        )
    except ConfigException as exc:
        raise PykopsError(f"cannot use context {cluster} of the kubeconfig {path}: {exc}") from None
    # One retry, not urllib3's three: callers poll, and an unreachable API must be reported quickly.
    configuration.retries = 1
    return kclient.ApiClient(configuration)


def _provider_instance(provider_id: str | None) -> str | None:
    """``aws:///eu-west-1a/i-0123`` → ``i-0123``."""
    if not provider_id:
        return None
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last or None


def node_info(node: Any) -> NodeInfo:
    """A ``V1Node`` as a :class:`NodeInfo`."""
    meta = node.metadata
    labels = meta.labels or {}
    status = node.status
    ready = any(
        c.type == "Ready" and c.status == "True" for c in (status.conditions if status else None) or []
    )
    spec = node.spec
    return NodeInfo(
        name=meta.name,
        role="control-plane" if any(lbl in labels for lbl in CONTROL_PLANE_LABELS) else "node",
        ready=ready,
        instance_id=_provider_instance(spec.provider_id if spec else None),
        group=labels.get(INSTANCE_GROUP_LABEL),
        zone=labels.get(ZONE_LABEL, ""),
        kubelet_version=(status.node_info.kubelet_version if status and status.node_info else "") or "",
        unschedulable=bool(spec.unschedulable) if spec else False,
        annotations=dict(meta.annotations or {}),
        taints=[t.key for t in (spec.taints if spec else None) or []],
    )


def pod_info(pod: Any) -> PodInfo:
    """A ``V1Pod`` as a :class:`PodInfo`."""
    meta = pod.metadata
    labels = meta.labels or {}
    status = pod.status
    ready = any(
        c.type == "Ready" and c.status == "True" for c in (status.conditions if status else None) or []
    )
    return PodInfo(
        namespace=meta.namespace or "default",
        name=meta.name,
        node=pod.spec.node_name if pod.spec else None,
        phase=(status.phase if status else None) or "Pending",
        ready=ready,
        priority_class=(pod.spec.priority_class_name if pod.spec else None) or "",
        mirror=MIRROR_ANNOTATION in (meta.annotations or {}),
        daemonset=any(o.kind == "DaemonSet" for o in meta.owner_references or []),
        component=labels.get("component") or labels.get("k8s-app") or "",
    )


class KubeClient:
    """The calls pykops makes to a cluster's API (see the module docstring)."""

    def __init__(self, api_client: Any, *, server: str | None = None) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.server = server or str(getattr(api_client.configuration, "host", "")) or "the API"

    @classmethod
    def for_cluster(cls, cluster: str, kubeconfig: str | os.PathLike[str] | None = None) -> KubeClient:
        return cls(load_api_client(cluster, kubeconfig))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except ApiException as exc:
            if not exc.status or exc.status >= 500:  # no answer, or the API cannot serve (etcd quorum lost)
                raise ApiUnreachable(
                    f"the Kubernetes API at {self.server} is not serving ({what}: {exc.status} {exc.reason})"
                ) from None
            raise
        except (HTTPError, OSError) as exc:
            raise ApiUnreachable(
                f"cannot reach the Kubernetes API at {self.server} ({what}: {type(exc).__name__})"
            ) from None

    # --- reads -------------------------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        answer = self._call("list nodes", lambda: self.core.list_node(_request_timeout=REQUEST_TIMEOUT))
        return [node_info(n) for n in answer.items]

    def pods(self, node: str | None = None) -> list[PodInfo]:
        selector = f"spec.nodeName={node}" if node else None
        answer = self._call(
            "list pods",
            lambda: (
                self.core.list_pod_for_all_namespaces(
                    field_selector=selector, _request_timeout=REQUEST_TIMEOUT
                )
                if selector
                else self.core.list_pod_for_all_namespaces(_request_timeout=REQUEST_TIMEOUT)
            ),
        )
        return [pod_info(p) for p in answer.items]

    def server_version(self) -> str | None:
        from kubernetes import client

        answer = self._call(
            "get version",
            lambda: client.VersionApi(self.api_client).get_code(_request_timeout=REQUEST_TIMEOUT),
        )
        return str(answer.git_version) if answer and answer.git_version else None

    # --- node changes ------------------------------------------------------------------------------------

    def _patch_node(self, name: str, body: dict[str, Any], what: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(what, lambda: self.core.patch_node(name, body, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        self._patch_node(name, {"spec": {"unschedulable": unschedulable or None}}, "cordon")

    def annotate(self, name: str, key: str, value: str | None) -> None:
        self._patch_node(name, {"metadata": {"annotations": {key: value}}}, "annotate")

    def set_taints(self, name: str, taints: list[dict[str, str]]) -> None:
        self._patch_node(name, {"spec": {"taints": taints}}, "taint")

    def node_taints(self, name: str) -> list[dict[str, str]]:
        from kubernetes.client.exceptions import ApiException

        try:
            node = self._call("get node", lambda: self.core.read_node(name, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return [
            {k: v for k, v in (("key", t.key), ("value", t.value), ("effect", t.effect)) if v}
            for t in (node.spec.taints if node.spec else None) or []
        ]

    def delete_node(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call("delete node", lambda: self.core.delete_node(name, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as exc:
            if exc.status != 404:
                raise

    # --- eviction ----------------------------------------------------------------------------------------

    def evict(self, namespace: str, name: str) -> str:
        """Ask the eviction API to evict a pod: ``"evicted"``, ``"gone"``, or ``"blocked: <why>"`` (429:
        a PodDisruptionBudget does not allow it now)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self._call(
                "evict",
                lambda: self.core.create_namespaced_pod_eviction(
                    name, namespace, body, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                return "gone"
            if exc.status == 429:
                return f"blocked: {_reason(exc)}"
            raise PykopsError(f"cannot evict pod {namespace}/{name}: {exc.status} {_reason(exc)}") from None
        return "evicted"

    def pod_exists(self, namespace: str, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self._call(
                "get pod",
                lambda: self.core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT),
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _reason(exc: Any) -> str:
    import json

    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
