"""The sandbox's controller manager: every controller and the scheduler, in passes, on one cluster's API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import kubernetes.client as k8s

from pykops.sandbox import scheduler
from pykops.sandbox.controllers.daemonset import sync_daemonsets
from pykops.sandbox.controllers.deployment import sync_deployments
from pykops.sandbox.controllers.disruption import sync_pdbs
from pykops.sandbox.controllers.gc import POD_GC_MIN_AGE, sync_gc
from pykops.sandbox.controllers.job import sync_jobs
from pykops.sandbox.controllers.kube import Kube
from pykops.sandbox.controllers.nodelifecycle import NodeLifecycle
from pykops.sandbox.controllers.replicaset import sync_replicasets
from pykops.sandbox.controllers.statefulset import sync_statefulsets

log = logging.getLogger(__name__)


class ControllerManager:
    """A simulated kube-controller-manager plus kube-scheduler for one cluster.

    ``sync_once`` runs one pass of each controller in dependency order (node lifecycle, Deployments,
    ReplicaSets, DaemonSets, StatefulSets, Jobs, scheduler, PodDisruptionBudgets, garbage collector); every
    controller is idempotent, so a pass after a converged one changes nothing. A controller that fails
    does not stop the others; the pass then raises the first error. ``run`` repeats passes until ``stop``
    is set and never raises (the API may be down while control-plane machines restart).

    ``node_grace``: seconds without a heartbeat before a node is Ready=Unknown; ``eviction_grace``: seconds
    a NoExecute taint waits before evicting pods that do not tolerate it; ``orphan_pod_age``: how old a pod
    bound to a node that does not exist must be before it is deleted.
    """

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        cluster_name: str = "",
        node_grace: float = 20.0,
        eviction_grace: float = 10.0,
        orphan_pod_age: float = POD_GC_MIN_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.cluster_name = cluster_name
        self.kube = Kube(api)
        self.clock = clock
        self.node_lifecycle = NodeLifecycle(node_grace, eviction_grace)
        self.orphan_pod_age = orphan_pod_age
        self.passes = 0
        self._last_error = ""

    def _controllers(self) -> list[tuple[str, Callable[[], object]]]:
        kube = self.kube
        return [
            ("node-lifecycle", lambda: self.node_lifecycle.sync(kube, self.clock())),
            ("deployment", lambda: sync_deployments(kube, self.clock())),
            ("replicaset", lambda: sync_replicasets(kube, self.clock())),
            ("daemonset", lambda: sync_daemonsets(kube, self.clock())),
            ("statefulset", lambda: sync_statefulsets(kube, self.clock())),
            ("job", lambda: sync_jobs(kube, self.clock())),
            ("scheduler", lambda: scheduler.schedule_pending(kube)),
            ("disruption", lambda: sync_pdbs(kube, self.clock())),
            ("garbage-collector", lambda: sync_gc(kube, self.clock(), orphan_pod_age=self.orphan_pod_age)),
        ]

    def sync_once(self) -> None:
        """One pass of every controller and the scheduler."""
        first: BaseException | None = None
        for name, step in self._controllers():
            try:
                step()
            except Exception as err:
                log.debug("%s: %s controller failed: %s", self.cluster_name or "cluster", name, err)
                if first is None:
                    first = err
        self.passes += 1
        if first is not None:
            raise first

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Pass after pass until ``stop`` is set; errors are logged (once per distinct text) and retried."""
        while not stop.is_set():
            try:
                self.sync_once()
                if self._last_error:
                    log.info("%s: controllers recovered", self.cluster_name or "cluster")
                self._last_error = ""
            except Exception as err:
                text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                if text != self._last_error:
                    log.warning(
                        "%s: controller pass failed (will retry): %s", self.cluster_name or "cluster", text
                    )
                self._last_error = text
            stop.wait(interval)
