"""Benchmark: AWS calls and wall time of create, no-op update and delete for 1, 3 and 20 instance groups,
and wall time under an injected per-call latency compared with the plan's critical path.

Runs against the local AWS emulator (moto's server, started here on 127.0.0.1 and stopped at the end).
Usage: ``make bench`` (or ``python bench/bench_update.py --latency 0.05``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from pykops.api.models import InstanceGroup
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.cloud.aws.cloud import AwsCloud
from pykops.engine.executor import Event
from pykops.engine.graph import build_graph
from pykops.ops.update import apply_plan, plan_cluster, plan_delete
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed
from pykops.state.registry import ClusterRegistry
from pykops.state.store import open_store

REGION = "eu-west-1"
ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def make_cluster(registry: ClusterRegistry, name: str, groups: int) -> None:
    """A cluster with ``groups`` instance groups: 1 control-plane group and groups-1 node groups."""
    opts = CreateClusterOptions(
        name=name, zones=ZONES, control_plane_count=1, node_count=1, networking="cilium"
    )
    opts.config_base = f"{registry.store.url}/{name}"
    cluster, igs = new_cluster(opts)
    nodes = next(g for g in igs if g.name == "nodes")
    extra: list[InstanceGroup] = []
    for i in range(1, groups - 1):
        copy = nodes.model_copy(deep=True)
        copy.metadata.name = f"nodes-{i}"
        extra.append(copy)
    registry.create_cluster(cluster, [*igs, *extra] if groups > 1 else [g for g in igs if g.is_control_plane])


def latency_hook(cloud: AwsCloud, seconds: float) -> None:
    """Every AWS call of this cloud waits ``seconds`` first, as a far-away region would make it."""

    def wait(**_: Any) -> None:
        time.sleep(seconds)

    for service in AwsCloud.SERVICES:
        cloud.client(service).meta.events.register("before-send", wait)


def critical_path(plan: Any, durations: dict[tuple[str, str], float]) -> float:
    """The longest chain of dependent changes, each weighted by its measured duration."""
    graph = build_graph(plan.desired, plan.actual)
    longest: dict[tuple[str, str], float] = {}
    for key in graph.order():
        deps = graph.deps.get(key, ())
        longest[key] = durations.get(key, 0.0) + max((longest.get(d, 0.0) for d in deps), default=0.0)
    return max(longest.values(), default=0.0)


def measure(label: str, action: Callable[[], AwsCloud]) -> tuple[AwsCloud, float]:
    start = time.perf_counter()
    cloud = action()
    return cloud, time.perf_counter() - start


def run(latency: float) -> None:
    with AwsEmulator(region=REGION) as emulator:
        os.environ.update(emulator.env())
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        seed(emulator.endpoint_url, REGION, state_bucket="pykops-bench-state")
        registry = ClusterRegistry(open_store("s3://pykops-bench-state"))
        print(f"{'groups':>6} {'phase':<8} {'calls':>6} {'mutating':>8} {'seconds':>8}")
        for groups in (1, 3, 20):
            name = f"bench{groups}.k8s.local"
            make_cluster(registry, name, groups)
            for phase in ("create", "no-op"):
                cloud = AwsCloud(name, REGION)
                start = time.perf_counter()
                plan = plan_cluster(registry, name, cloud=cloud)
                apply_plan(registry, plan)
                seconds = time.perf_counter() - start
                mutating = sum(cloud.calls.mutating().values())
                print(f"{groups:>6} {phase:<8} {cloud.calls.total:>6} {mutating:>8} {seconds:>8.2f}")
            cloud = AwsCloud(name, REGION)
            start = time.perf_counter()
            changes, dplan = plan_delete(name, REGION, cloud=cloud)
            from pykops.engine.executor import apply

            apply(changes, dplan.kinds, cloud, desired=[], actual=dplan.actual)
            seconds = time.perf_counter() - start
            mutating = sum(cloud.calls.mutating().values())
            print(f"{groups:>6} {'delete':<8} {cloud.calls.total:>6} {mutating:>8} {seconds:>8.2f}")
            registry.delete_cluster(name)

        if latency > 0:
            name = "latency.k8s.local"
            make_cluster(registry, name, 3)
            cloud = AwsCloud(name, REGION)
            latency_hook(cloud, latency)
            durations: dict[tuple[str, str], float] = {}

            def record(event: Event) -> None:
                if event.status == "done":
                    durations[event.key] = event.elapsed

            plan = plan_cluster(registry, name, cloud=cloud)
            start = time.perf_counter()
            from pykops.engine.executor import apply

            apply(plan.changes, plan.kinds, cloud, desired=plan.desired, actual=plan.actual, on_event=record)
            wall = time.perf_counter() - start
            path = critical_path(plan, durations)
            serial = sum(durations.values())
            print(
                f"\nlatency {latency * 1000:.0f} ms/call, 3 groups, {len(plan.changes)} changes: apply wall "
                f"{wall:.2f}s; critical path {path:.2f}s; serial sum {serial:.2f}s; "
                f"wall/critical path {wall / path if path else float('nan'):.2f}"
            )
            changes, dplan = plan_delete(name, REGION)
            apply(changes, dplan.kinds, dplan.cloud, desired=[], actual=dplan.actual)
            registry.delete_cluster(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="injected seconds per AWS call (0: off)")
    run(parser.parse_args().latency)


if __name__ == "__main__":
    main()
