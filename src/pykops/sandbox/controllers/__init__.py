"""The sandbox's Kubernetes controllers (a simulation): Deployments, ReplicaSets, DaemonSets,
StatefulSets, Jobs, PodDisruptionBudget status, garbage collection, node lifecycle, the scheduler pass, and
the simulated kubelet's pod runner.

They talk to an API server only through the official ``kubernetes`` client, so they run against the
sandbox's emulator or any real API server alike. Each controller is a pure decision function (tested
alone) plus thin I/O.
"""

from pykops.sandbox.controllers.kubelet import sync_kubelet_pods
from pykops.sandbox.controllers.manager import ControllerManager

__all__ = ["ControllerManager", "sync_kubelet_pods"]
