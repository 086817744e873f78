"""Benchmark: rolling-update wall time for 1, 5 and 20 nodes with maxSurge 1 and 3, against the ideal
``ceil(nodes / surge) x per-node replace time`` computed from the same run.

Two backends:

* default, FAKE: pykops' real rolling-update executor (planner, surge, cordon/drain/evict with a
  PodDisruptionBudget, terminate, wait, validate) against ``pykops.ops.rolling.SimulatedCluster``, an
  in-memory fake of the cloud and the Kubernetes API in real time (machines "boot" in ``--boot`` seconds).
  It measures the executor's own overhead and its use of parallelism, not AWS or Kubernetes latency.
* ``--sandbox``: the sandbox (a SIMULATION too, but of everything): the AWS emulator (moto's server on
  127.0.0.1), the machine simulator (real nodeup per machine, real etcd) and the Kubernetes API emulator;
  a cluster with 1 control-plane node and N worker nodes is created per size and its node group rolled
  with ``--force`` through the same code the CLI uses (boto3 and the kubernetes client over HTTP).

The per-node replace time of a run is its fastest batch (surge, boot, drain, terminate, wait, validate of
one batch); the ideal is ``ceil(nodes / surge)`` of them; overhead = wall / ideal.
Usage: ``python bench/bench_rolling.py [--boot 0.3] [--sizes 1,5,20] [--surges 1,3] [--sandbox]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pykops.ops.rolling import Progress, RollingUpdate, Settings, SimulatedCluster
from pykops.ops.validate import validate


def run_once(nodes: int, surge: int, boot: float) -> tuple[float, float, int]:
    """(wall seconds, per-node replace seconds, batches)."""
    sim = SimulatedCluster(time.monotonic, boot=boot, pod_start=boot / 10)
    specs = [sim.add_group("control-plane-a", "ControlPlane", 1), sim.add_group("nodes", "Node", nodes)]
    sim.add_workload("web", replicas=max(2, nodes), min_available=max(1, nodes - 1))
    sim.new_version("nodes")
    poll = boot / 20
    settings = Settings(
        instance_groups=["nodes"],
        max_surge=surge,
        post_drain_delay=0,
        node_interval=0,
        control_plane_interval=0,
        validation_interval=poll,
        poll=poll,
        drain_retry=poll,
        validation_timeout=60,
        drain_timeout=60,
    )
    batches: list[float] = []
    batch_start: list[float] = []

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if p.step.startswith("surging"):
            batch_start.append(now)
        elif p.step == "batch replaced" and batch_start:
            batches.append(now - batch_start[-1])

    run = RollingUpdate(
        sim,
        sim,
        specs,
        settings,
        check=lambda: validate(specs, sim.groups(), sim.nodes(), sim.pods()),
        on_progress=on_progress,
    )
    start = time.monotonic()
    summary = run.run()
    wall = time.monotonic() - start
    assert summary.replaced == nodes, summary
    assert sim.min_ready["web"] >= max(1, nodes - 1), "the PodDisruptionBudget was broken"
    return wall, min(batches), len(batches)


class BatchTimer:
    """Batch durations from the executor's progress events (a batch starts with "surging")."""

    def __init__(self) -> None:
        self.batches: list[float] = []
        self._start: float | None = None

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.step.startswith("surging"):
            self._start = now
        elif p.step == "batch replaced" and self._start is not None:
            self.batches.append(now - self._start)


def sandbox_runs(sizes: list[int], surges: list[int]) -> list[tuple[int, int, float, float, int]]:
    """Per size: create a cluster in the sandbox, wait until it validates, roll its nodes per surge."""
    import yaml

    from pykops.cli.main import main as pykops
    from pykops.ops.instances import LiveCluster
    from pykops.sandbox.aws_emulator import AwsEmulator
    from pykops.sandbox.machines import running_in_thread
    from pykops.sandbox.seed import seed
    from pykops.state.registry import ClusterRegistry
    from pykops.state.store import open_store

    region, bucket = "eu-west-1", "pykops-bench-rolling"
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="pykops-bench-rolling-") as tmp,
        AwsEmulator(region=region) as emulator,
    ):
        os.environ.update(emulator.env())
        os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=region, HOME=tmp)
        os.environ["KUBECONFIG"] = kubeconfig = f"{tmp}/kubeconfig"
        seed(emulator.endpoint_url, region, state_bucket=bucket)
        state = f"s3://{bucket}"
        for size in sizes:
            name = f"bench{size}.k8s.local"
            flags = [f"--name={name}", "--zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=1"]
            flags += [f"--node-count={size}", "--networking=kubenet", "--yes"]
            assert pykops(["--state", state, "create", "cluster", *flags]) == 0
            directory = Path(tmp) / f"sandbox-{size}"
            with running_in_thread(
                directory,
                boot_delay=0.2,
                poll_interval=0.2,
                heartbeat_interval=0.5,
                node_monitor_grace=6.0,  # as the day-2 test: 20 simulated kubelets in one process run late
                node_removal_delay=1.0,
            ):
                assert pykops(["--state", state, "export", "kubeconfig", name, "--admin"]) == 0
                api_json = directory / "clusters" / name / "api.json"
                api = _wait(lambda: json.loads(api_json.read_text()))  # noqa: B023 (called at once)
                doc = yaml.safe_load(Path(kubeconfig).read_text())
                for cluster in doc["clusters"]:
                    if cluster["name"] == name:
                        cluster["cluster"]["server"] = api["server"]
                Path(kubeconfig).write_text(yaml.safe_dump(doc))
                live = LiveCluster(ClusterRegistry(open_store(state)), name)
                _wait(lambda: live.check().ok, timeout=600)  # noqa: B023 (called at once)
                for surge in surges:
                    timer = BatchTimer()
                    fast: dict[str, Any] = dict(post_drain_delay=0, node_interval=0, validate_count=1)
                    fast.update(validation_interval=0.5, poll=0.5, drain_retry=0.5)
                    settings = Settings(force=True, instance_groups=["nodes"], max_surge=surge, **fast)
                    run = RollingUpdate(
                        live.aws, live.kube, live.specs, settings, check=live.check, on_progress=timer
                    )
                    start = time.monotonic()
                    summary = run.run()
                    wall = time.monotonic() - start
                    assert summary.replaced == size, summary
                    results.append((size, surge, wall, min(timer.batches), len(timer.batches)))
                    _print_row(size, surge, wall, min(timer.batches), len(timer.batches))
            assert pykops(["--state", state, "delete", "cluster", name, "--yes"]) == 0
    return results


def _wait(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("the sandbox did not get there in time")
        time.sleep(0.5)


def _print_row(nodes: int, surge: int, wall: float, per_node: float, batches: int) -> None:
    ideal = math.ceil(nodes / surge) * per_node
    cells = (nodes, surge, batches, f"{wall:.2f}", f"{per_node:.2f}", f"{ideal:.2f}", f"{wall / ideal:.2f}")
    print(" ".join(f"{c:>10}" for c in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--boot", type=float, default=0.3, help="FAKE mode: simulated machine boot time, seconds"
    )
    parser.add_argument("--sizes", default="1,5,20")
    parser.add_argument("--surges", default="1,3")
    parser.add_argument("--sandbox", action="store_true", help="roll a sandbox cluster instead of the fake")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    surges = [int(n) for n in args.surges.split(",")]
    columns = ("nodes", "surge", "batches", "wall s", "per-node s", "ideal s", "wall/ideal")
    if args.sandbox:
        print("rolling-update benchmark -- the sandbox (AWS emulator, machine simulator, Kubernetes API)")
        print(" ".join(f"{c:>10}" for c in columns), flush=True)
        sandbox_runs(sizes, surges)
        return
    print("rolling-update benchmark -- FAKE in-memory cluster (SimulatedCluster), real executor, real time")
    print(f"simulated boot time {args.boot:.2f}s; PDB minAvailable = nodes-1\n")
    print(" ".join(f"{c:>10}" for c in columns))
    for nodes in sizes:
        for surge in surges:
            wall, per_node, batches = run_once(nodes, surge, args.boot)
            _print_row(nodes, surge, wall, per_node, batches)


if __name__ == "__main__":
    main()
