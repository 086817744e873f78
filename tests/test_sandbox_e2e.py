"""The tutorial, end to end, in the sandbox (issue 6's acceptance): ``sandbox up`` with the machine simulator,
``create cluster --yes`` (3 control-plane + 1 node over 3 zones, kubenet, RBAC), ``validate cluster --wait``,
the nodes and control-plane pods through the Kubernetes API, kubectl (when installed), ``delete cluster
--yes`` leaving nothing in the AWS emulator, and ``sandbox down`` leaving no process.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from pykops.cli.main import main
from waiting import pids_mentioning, wait_for

NAME = "e2e.k8s.local"
ZONES = "eu-west-1a,eu-west-1b,eu-west-1c"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e@pykops\n"
CONTROL_PLANE_PODS = (
    "etcd-server",
    "etcd-server-events",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
)


def _run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> str:
    capsys.readouterr()  # only this command's output
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"pykops {shlex.join(args)}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out


@pytest.fixture
def sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Path]:
    """A running sandbox (emulator + machine simulator) whose environment this test uses; always stopped."""
    directory = tmp_path / "sandbox"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    try:
        out = _run(capsys, "sandbox", "up", "--dir", str(directory), "--boot-delay", "0.5")
        for line in out.splitlines():
            words = shlex.split(line)
            if words[:1] == ["export"]:
                for word in words[1:]:
                    key, _, value = word.partition("=")
                    monkeypatch.setenv(key, value)
            elif words[:1] == ["unset"]:
                for word in words[1:]:
                    monkeypatch.delenv(word, raising=False)
        yield directory
    finally:
        main(["sandbox", "down", "--dir", str(directory)])


def _kubectl(*args: str) -> str:
    exe = shutil.which("kubectl")
    assert exe is not None
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kubectl {shlex.join(args)}: {done.stderr}"
    return done.stdout


def apply_objects(api: Any, *files: Path) -> None:
    """Create every object of the YAML files through the API (as kubectl apply would on first use)."""
    from kubernetes import utils

    for path in files:
        utils.create_from_yaml(api, str(path))


def _lb_hostname(core: Any) -> str | None:
    ingress = core.read_namespaced_service("hello-lb", "demo").status.load_balancer.ingress or []
    return ingress[0].hostname if ingress else None


def _attached_volumes(core: Any) -> list[str]:
    """The EBS volumes of the demo claims, once both are bound and attached to the pod's node's instance."""
    ec2 = boto3.client("ec2")
    ids = []
    for claim in ("manual", "data"):
        name = core.read_namespaced_persistent_volume_claim(claim, "demo").spec.volume_name
        if not name:
            return []
        ids.append(core.read_persistent_volume(name).spec.csi.volume_handle)
    found = ec2.describe_volumes(VolumeIds=ids)["Volumes"]
    attached = [
        v["VolumeId"] for v in found if any(a["State"] == "attached" for a in v.get("Attachments") or [])
    ]
    return ids if len(attached) == 2 else []


def test_tutorial_in_the_sandbox(sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kubernetes import client

    from pykops.ops.kubeclient import load_api_client

    key = tmp_path / "id.pub"
    key.write_text(KEY)
    _run(
        capsys,
        "create",
        "cluster",
        "--name",
        NAME,
        "--zones",
        ZONES,
        "--master-zones",
        ZONES,
        "--master-count",
        "3",
        "--node-count",
        "1",
        "--networking",
        "kubenet",
        "--authorization",
        "RBAC",
        "--ssh-public-key",
        str(key),
        "--yes",
    )
    _run(capsys, "export", "kubeconfig", NAME, "--admin")
    config = (tmp_path / "kubeconfig").read_text()
    assert "https://127." in config  # the loopback address the sandbox maps the API endpoint to
    assert oct((tmp_path / "kubeconfig").stat().st_mode & 0o777) == "0o600"
    started = time.monotonic()
    report = _run(capsys, "validate", "cluster", "--name", NAME, "--wait", "4m")
    assert f"Your cluster {NAME} is ready" in report
    print(f"cluster valid {time.monotonic() - started:.1f}s after create")

    api = load_api_client(NAME)
    core = client.CoreV1Api(api)
    nodes = core.list_node().items
    assert len(nodes) == 4
    ready = {
        n.metadata.name: next(c.status for c in n.status.conditions if c.type == "Ready") == "True"
        for n in nodes
    }
    assert all(ready.values()), ready
    control = [n for n in nodes if "node-role.kubernetes.io/control-plane" in (n.metadata.labels or {})]
    assert len(control) == 3
    assert len({n.metadata.labels["topology.kubernetes.io/zone"] for n in control}) == 3
    assert all(
        any(t.key == "node-role.kubernetes.io/control-plane" for t in n.spec.taints or []) for n in control
    )

    pods = core.list_namespaced_pod("kube-system").items
    per_node: dict[str, Counter[str]] = {}
    for pod in pods:
        prefix = pod.metadata.name.removesuffix(f"-{pod.spec.node_name}")
        per_node.setdefault(pod.spec.node_name or "", Counter())[prefix] += 1
        if pod.metadata.annotations and "kubernetes.io/config.mirror" in pod.metadata.annotations:
            assert pod.status.phase == "Running", pod.metadata.name
    for node in control:
        for component in CONTROL_PLANE_PODS:
            assert per_node[node.metadata.name][component] == 1, (node.metadata.name, component, per_node)

    if shutil.which("kubectl"):
        names = _kubectl("get", "nodes")
        assert all(n.metadata.name in names for n in nodes)
        assert "kube-apiserver" in _kubectl("get", "pods", "-A", "-o", "wide")
        worker = next(n.metadata.name for n in nodes if n not in control)
        _kubectl("cordon", worker)
        assert core.read_node(worker).spec.unschedulable is True
        _kubectl("uncordon", worker)
        assert not core.read_node(worker).spec.unschedulable
        # The single worker holds both CoreDNS replicas under a PodDisruptionBudget, so (as on AWS) it cannot
        # be drained; a control-plane node can: its evicted pods reschedule on the other two.
        first = control[0].metadata.name
        _kubectl("drain", first, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s")
        left = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={first}").items
        owners = {ref.kind for p in left for ref in p.metadata.owner_references or []}
        assert owners <= {"Node", "DaemonSet"}, owners  # mirror pods and DaemonSet pods stay
        _kubectl("uncordon", first)
        manifest = tmp_path / "deploy.yaml"
        manifest.write_text(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\n"
            "spec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n"
            "  template:\n    metadata: {labels: {app: web}}\n"
            "    spec: {containers: [{name: web, image: registry.k8s.io/pause:3.10}]}\n"
        )
        _kubectl("apply", "-f", str(manifest))
        _kubectl("apply", "-f", str(manifest))
        assert client.AppsV1Api(api).read_namespaced_deployment("web", "default").spec.replicas == 2

    # Issue 8 in the sandbox: the test app behind a load balancer, a Retain volume and a dynamic one, a user.
    examples = Path(__file__).resolve().parent.parent / "examples"
    apply_objects(api, examples / "test-app.yaml", examples / "test-app-loadbalancer.yaml")
    # the single worker's zone: a volume is zonal, and only there can its pod run
    zone = next(n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes if n not in control)
    pv_yaml = _run(capsys, "create", "volume", "--name", NAME, "--zone", zone, "--size", "1", "-o", "yaml")
    (tmp_path / "pv.yaml").write_text(pv_yaml)
    apply_objects(api, tmp_path / "pv.yaml", examples / "volume-claim.yaml")
    hostname = wait_for("the load balancer of demo/hello-lb", lambda: _lb_hostname(core))
    elb = boto3.client("elb")
    balancers = {
        d["DNSName"]: d["LoadBalancerName"] for d in elb.describe_load_balancers()["LoadBalancerDescriptions"]
    }
    assert hostname in balancers
    volumes = wait_for("both claims bound and attached", lambda: _attached_volumes(core))
    manual = core.read_persistent_volume(
        core.read_namespaced_persistent_volume_claim("manual", "demo").spec.volume_name
    )
    retained = manual.spec.csi.volume_handle
    assert retained in volumes and len(set(volumes)) == 2  # the pre-provisioned one and a dynamic one

    user_file = tmp_path / "ana.kubeconfig"
    _run(capsys, "create", "user", "ana", "--role", "view", "--name", NAME, "--kubeconfig", str(user_file))
    assert oct(user_file.stat().st_mode & 0o777) == "0o600"
    from kubernetes import config as kconfig
    from kubernetes.client.exceptions import ApiException

    ana = client.CoreV1Api(kconfig.new_client_from_config(config_file=str(user_file), context=NAME))
    assert {p.metadata.name for p in ana.list_namespaced_pod("demo").items} >= {"writer"}
    with pytest.raises(ApiException) as denied:
        ana.delete_namespaced_pod("writer", "demo")
    assert denied.value.status == 403

    out = _run(capsys, "delete", "cluster", NAME, "--yes")
    assert retained in out and "Retain" in out
    ec2 = boto3.client("ec2")
    assert not {
        d["LoadBalancerName"] for d in elb.describe_load_balancers()["LoadBalancerDescriptions"]
    } & set(balancers.values())
    kept = ec2.describe_volumes(VolumeIds=[retained])["Volumes"][0]
    kept_tags = {t["Key"] for t in kept.get("Tags") or []}
    assert "KubernetesCluster" not in kept_tags and f"kubernetes.io/cluster/{NAME}" not in kept_tags
    dynamic = next(v for v in volumes if v != retained)
    assert ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [dynamic]}])["Volumes"] == []
    ec2.delete_volume(VolumeId=retained)
    tag = [{"Name": "tag-key", "Values": [f"kubernetes.io/cluster/{NAME}"]}]
    live = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=tag)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert live == []
    assert ec2.describe_vpcs(Filters=tag)["Vpcs"] == []
    assert ec2.describe_volumes(Filters=tag)["Volumes"] == []
    assert boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []

    _run(capsys, "sandbox", "down", "--dir", str(sandbox))
    deadline = time.monotonic() + 10
    while pids_mentioning(str(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pids_mentioning(str(sandbox)) == []
