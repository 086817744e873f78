"""Day-2 operations in the sandbox (issue 7's acceptance), with the real machine simulator: the AWS emulator,
real nodeup and etcd per control-plane machine, the Kubernetes API emulator, controllers and scheduler.

The tutorial cluster (3 control-plane + 1 node over 3 zones) is created and validated; the node group is
scaled 1 → 3; Kubernetes is upgraded one minor and rolled (control plane first): a first rolling update
is interrupted midway, a second run finishes it without draining any node twice and leaves none
cordoned; every node then reports the new kubelet version, a workload's PodDisruptionBudget is never
broken, and no control-plane instance is replaced while another is not Ready.

The kubeconfig is ``pykops export kubeconfig --admin``'s, with its server pointed at the address the
simulator publishes in ``<sandbox>/clusters/<cluster>/api.json`` (the sandbox's loopback API front).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import waiting
from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed

REGION = "eu-west-1"
# Unique per run: the sandbox derives etcd members' loopback addresses from the cluster's name, so two test
# sessions using one name at the same time would join each other's etcd clusters.
NAME = f"day2-{uuid.uuid4().hex[:6]}.k8s.local"
BUCKET = "pykops-sandbox-day2"
STATE = f"s3://{BUCKET}"

SIMULATORS: dict[Path, Any] = {}  # sandbox dir -> its MachineSimulator (a test holds replacements back)

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/etcd").exists(),
    reason="etcd is not installed (make install brings Debian's etcd-server)",
)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, interval: float = 0.5) -> Any:
    return waiting.wait_for(what, check, timeout, interval)


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(["--state", STATE, *args])
    out, err = capsys.readouterr()
    assert code == expect, f"pykops {shlex.join(args)}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


@pytest.fixture
def sandbox(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Path]:
    from pykops.sandbox.machines import running_in_thread

    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    run(
        capsys,
        "create", "cluster", f"--name={NAME}", "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
        "--master-zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=3", "--node-count=1",
        "--networking=kubenet", "--yes",
    )  # fmt: skip
    directory = tmp_path / "sandbox"
    with running_in_thread(
        directory,
        boot_delay=0.2,
        poll_interval=0.2,
        heartbeat_interval=0.5,
        node_monitor_grace=6.0,  # 12 missed heartbeats: a busy test machine delays some, not that many
        node_removal_delay=1.0,
    ) as sim:
        SIMULATORS[directory] = sim
        try:
            yield directory
        finally:
            SIMULATORS.pop(directory, None)


def point_kubeconfig_at_sandbox(capsys: pytest.CaptureFixture[str], sandbox: Path, kubeconfig: Path) -> None:
    run(capsys, "export", "kubeconfig", NAME, "--admin")
    api = wait_for(
        "the API front", lambda: json.loads((sandbox / "clusters" / NAME / "api.json").read_text())
    )
    doc = yaml.safe_load(kubeconfig.read_text())
    for cluster in doc["clusters"]:
        if cluster["name"] == NAME:
            cluster["cluster"]["server"] = api["server"]
            cluster["cluster"]["tls-server-name"] = api["tlsServerName"]
    kubeconfig.write_text(yaml.safe_dump(doc))


def test_scale_upgrade_and_resumable_rolling_update(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubernetes import client

    from pykops.ops.kubeclient import KubeClient, load_api_client

    point_kubeconfig_at_sandbox(capsys, sandbox, tmp_path / "kubeconfig")
    out, _ = run(capsys, "validate", "cluster", NAME, "--wait", "4m", "--count", "2", "--interval", "1s")
    assert f"Your cluster {NAME} is ready" in out and "etcd members up: 3 of 3 (quorum 2)" in out

    # Scale the node group 1 -> 3.
    run(capsys, "edit", "ig", "nodes", "--name", NAME, "--set", "spec.minSize=3", "--set", "spec.maxSize=3")
    run(capsys, "update", "cluster", NAME, "--yes", "--create-kube-config=false")
    out, _ = run(capsys, "validate", "cluster", NAME, "--wait", "4m", "--interval", "1s")
    assert f"Your cluster {NAME} is ready" in out
    kube = KubeClient(load_api_client(NAME))
    workers = [n for n in kube.nodes() if n.role == "node"]
    assert len(workers) == 3 and all(n.ready for n in workers)
    assert len({n.zone for n in workers}) == 3  # spread over the zones
    out, _ = run(capsys, "get", "instances", "--name", NAME)
    assert out.count("UpToDate") == 6 and "NeedsUpdate" not in out

    # A workload with a PodDisruptionBudget (the sandbox's controllers and scheduler run its pods).
    api = load_api_client(NAME)
    client.AppsV1Api(api).create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        },
    )
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
        },
    )

    def web_ready() -> int:
        return sum(
            1 for p in kube.pods() if p.namespace == "default" and p.name.startswith("web") and p.ready
        )

    wait_for("3 web pods Ready", lambda: web_ready() == 3)
    lowest = [3]
    cp_not_ready_at_replacement: list[int] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            with contextlib.suppress(Exception):  # the API may be busy: keep watching
                lowest[0] = min(lowest[0], web_ready())
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    # Upgrade one minor; update; the table shows every instance needing an update.
    out, _ = run(capsys, "upgrade", "cluster", NAME, "--yes")
    assert "1.35.0" in out
    run(capsys, "update", "cluster", NAME, "--yes", "--create-kube-config=false")
    out, _ = run(capsys, "rolling-update", "cluster", NAME)
    assert "NeedsUpdate" in out and "Must specify --yes" in out  # the nodes' kubelets are older than the spec
    out, _ = run(capsys, "get", "instances", "--name", NAME)
    assert out.count("NeedsUpdate") == 6

    # First run, interrupted after the second control-plane node was drained (before its termination).
    from pykops.ops.instances import LiveCluster
    from pykops.ops.rolling import Progress, RollingUpdate, Settings, StoreJournal
    from pykops.state.registry import ClusterRegistry
    from pykops.state.store import open_store

    registry = ClusterRegistry(open_store(STATE))
    live = LiveCluster(registry, NAME)
    fast = dict(
        post_drain_delay=0, control_plane_interval=0, node_interval=0, validation_interval=1, poll=0.5,
        drain_retry=0.5, validation_timeout=240, drain_timeout=120, validate_count=1,
        kubernetes_version=live.applied_kubernetes_versions(),
    )  # fmt: skip
    terminations = 0

    def interrupt(p: Progress) -> None:
        nonlocal terminations
        if p.step.startswith("terminating"):
            if p.group.startswith(("master", "control-plane")):
                cps = [n for n in kube.nodes() if n.role == "control-plane"]
                cp_not_ready_at_replacement.append(sum(1 for n in cps if not n.ready))
            terminations += 1
            if terminations == 2:
                raise KeyboardInterrupt

    first = RollingUpdate(
        live.aws, live.kube, live.specs, Settings(**fast), check=live.check,  # type: ignore[arg-type]
        journal=StoreJournal(registry.store, NAME), on_progress=interrupt,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert len(first.drained) == 2

    # Second run, through the CLI: finishes, resuming the drained node without draining it again.
    flags = ["--post-drain-delay", "0", "--control-plane-interval", "0", "--node-interval", "0"]
    flags += [
        "--validate-count",
        "1",
        "--poll-interval",
        "0.5",
        "--validation-timeout",
        "4m",
        "--drain-timeout",
        "2m",
    ]
    out, err = run(capsys, "rolling-update", "cluster", NAME, "--yes", *flags)
    watching.set()
    watcher.join(5)
    assert "already drained by an earlier run" in err
    drained_again = [
        line
        for line in err.splitlines()
        if "cordoning and draining" in line and any(n in line for n in first.drained)
    ]
    assert drained_again == []
    assert "Rolling update finished" in out

    nodes = kube.nodes()
    assert len(nodes) == 6
    assert {n.kubelet_version for n in nodes} == {"v1.35.0"}
    assert not [n for n in nodes if n.unschedulable or "pykops.io/rolling-update" in n.annotations]
    assert lowest[0] >= 2, "the PodDisruptionBudget was broken"
    assert cp_not_ready_at_replacement and set(cp_not_ready_at_replacement) == {0}
    out, _ = run(capsys, "validate", "cluster", NAME, "--wait", "2m", "--interval", "1s")
    assert f"Your cluster {NAME} is ready" in out
    version = client.VersionApi(api)
    wait_for("/version to report v1.35.0", lambda: version.get_code().git_version == "v1.35.0", timeout=30)

    # The automatic path: upgrade again, then reconcile (update, roll the control plane, update, roll nodes).
    out, _ = run(capsys, "upgrade", "cluster", NAME, "--yes")
    assert "1.36.0" in out
    flags = ["--post-drain-delay", "0", "--interval", "0", "--validate-count", "1", "--poll-interval", "0.5"]
    out, err = run(capsys, "reconcile", "cluster", NAME, "--yes", "--create-kube-config=false", *flags)
    assert f"Cluster {NAME} reconciled." in out
    terminated = re.findall(r"\] (\S+) \(\d+/\d+\): i-\S+(?: \(\S+\))? terminating", err)
    assert len(terminated) == 6
    assert all(g.startswith("master") for g in terminated[:3]) and set(terminated[3:]) == {"nodes"}
    assert {n.kubelet_version for n in kube.nodes()} == {"v1.36.0"}
    wait_for("/version to report v1.36.0", lambda: version.get_code().git_version == "v1.36.0", timeout=30)


def test_fault_tolerance_one_control_plane_loss_is_tolerated_two_lose_quorum(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    from pykops.ops.kubeclient import KubeClient, load_api_client

    point_kubeconfig_at_sandbox(capsys, sandbox, tmp_path / "kubeconfig")
    out, _ = run(capsys, "validate", "cluster", NAME, "--wait", "4m", "--interval", "1s")
    assert "losses tolerated now: 1 control-plane node(s), 1 zone(s)" in out
    kube = KubeClient(load_api_client(NAME))
    control = sorted((n for n in kube.nodes() if n.role == "control-plane"), key=lambda n: n.name)
    SIMULATORS[sandbox].boot_delay = 3600.0  # the groups' replacements wait until the test lets them boot
    ec2 = boto3.client("ec2", region_name=REGION)

    ec2.terminate_instances(InstanceIds=[str(control[0].instance_id)])
    wait_for(
        "the lost node to go", lambda: all(n.name != control[0].name or not n.ready for n in kube.nodes())
    )
    out, err = run(capsys, "validate", "cluster", NAME, expect=2)  # the API serves; the group is short
    assert "etcd members up: 2 of 3 (quorum 2)" in out
    assert "tolerates no control-plane loss" in err and "VALIDATION ERRORS" in out

    ec2.terminate_instances(InstanceIds=[str(control[1].instance_id)])
    time.sleep(3)
    out, err = run(capsys, "validate", "cluster", NAME, "--wait", "30s", "--interval", "2s", expect=2)
    said = out + err
    assert "quorum" in said and "Traceback" not in said
    print(f"\nvalidate with 1 of 3 control-plane machines: {said.strip().splitlines()[-1]}")

    SIMULATORS[sandbox].boot_delay = 0.2  # the replacements boot and re-attach their etcd volumes
    out, _ = run(capsys, "validate", "cluster", NAME, "--wait", "4m", "--interval", "1s", "--count", "2")
    assert f"Your cluster {NAME} is ready" in out and "etcd members up: 3 of 3 (quorum 2)" in out
