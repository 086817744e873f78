"""Rolling update, validate and drain against real local servers: the AWS emulator (moto's server: ASGs,
launch templates, instances) and the Kubernetes API emulator (real etcd, TLS, eviction honouring PDBs).

There are no simulated machines here: a small thread in the test plays the kubelets (it registers a Ready
Node for each running ASG instance, with control-plane mirror pods, removes the Nodes of terminated ones)
and a ReplicaSet (it keeps 3 ``web`` pods, binding new ones to schedulable Ready nodes and marking them
Ready). Everything pykops does goes through boto3 and the kubernetes client over HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from kubernetes import client as k

from pykops.cloud.aws.cloud import AwsCloud
from pykops.ops.instances import AwsGroups, cloud_groups, instance_rows
from pykops.ops.kubeclient import KubeClient
from pykops.ops.rolling import (
    MARK,
    MemoryJournal,
    RollingUpdate,
    RollingUpdateError,
    Settings,
    drain_node,
)
from pykops.ops.validate import GroupSpec, validate
from pykops.sandbox.aws_emulator import AwsEmulator

REGION = "eu-west-1"
CP_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd-server")


def _ready_status() -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "True"}]}


@dataclass
class Env:
    name: str
    cloud: AwsCloud
    aws: AwsGroups
    kube: KubeClient
    core: Any
    specs: list[GroupSpec]
    lt_id: str


class FakeKubelets:
    """Plays kubelets and a ReplicaSet for the test (see the module docstring)."""

    def __init__(self, env: Env, replicas: int) -> None:
        self.env = env
        self.replicas = replicas
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.min_ready = replicas
        self.full = False
        self.errors: list[str] = []

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # keep playing; the test asserts on errors
                self.errors.append(repr(exc))
            self.stop.wait(0.2)

    def sync(self) -> None:
        core = self.env.core
        groups = cloud_groups(self.env.cloud, self.env.name)
        alive = {i.id: (g.name, i) for g in groups for i in g.instances if i.alive}
        nodes = {n.metadata.name: n for n in core.list_node().items}
        for name, node in nodes.items():
            iid = node.spec.provider_id.rsplit("/", 1)[-1]
            if iid not in alive:
                core.delete_node(name)
        for iid, (group, inst) in alive.items():
            name = f"{iid}.internal"
            if name in nodes:
                continue
            cp = group.startswith("control-plane")
            labels = {"kops.k8s.io/instancegroup": group, "topology.kubernetes.io/zone": inst.zone}
            if cp:
                labels["node-role.kubernetes.io/control-plane"] = ""
            core.create_node(
                {
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"providerID": f"aws:///{inst.zone}/{iid}"},
                }
            )
            core.patch_node_status(name, {"status": _ready_status()})
            if cp:
                for comp in CP_COMPONENTS:
                    pod = f"{comp}-{name}"
                    core.create_namespaced_pod(
                        "kube-system",
                        {
                            "metadata": {
                                "name": pod,
                                "annotations": {"kubernetes.io/config.mirror": "x"},
                                "labels": {"component": comp},
                            },
                            "spec": {
                                "nodeName": name,
                                "priorityClassName": "system-cluster-critical",
                                "containers": [{"name": comp, "image": comp}],
                            },
                        },
                    )
                    self._ready(core, "kube-system", pod)
        self._replicaset(core)

    @staticmethod
    def _ready(core: Any, namespace: str, pod: str) -> None:
        core.patch_namespaced_pod_status(
            pod,
            namespace,
            {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        )

    def _replicaset(self, core: Any) -> None:
        nodes = core.list_node().items
        schedulable = sorted(
            n.metadata.name
            for n in nodes
            if not n.spec.unschedulable
            and "node-role.kubernetes.io/control-plane" not in (n.metadata.labels or {})
        )
        node_names = {n.metadata.name for n in nodes}
        pods = core.list_namespaced_pod("default", label_selector="app=web").items
        for p in pods:
            if p.spec.node_name not in node_names:  # its machine is gone
                core.delete_namespaced_pod(p.metadata.name, "default")
        pods = [p for p in pods if p.spec.node_name in node_names]
        ready = sum(1 for p in pods if p.status and p.status.phase == "Running")
        self.full = self.full or ready >= self.replicas
        if self.full:  # from the moment the workload first reached its size
            self.min_ready = min(self.min_ready, ready)
        for n in range(self.replicas - len(pods)):
            if not schedulable:
                break
            name = f"web-{uuid.uuid4().hex[:6]}"
            node = schedulable[n % len(schedulable)]
            core.create_namespaced_pod(
                "default",
                {
                    "metadata": {"name": name, "labels": {"app": "web"}},
                    "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx"}]},
                },
            )
            self._ready(core, "default", name)

    def __enter__(self) -> FakeKubelets:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _tags(name: str, group: str) -> list[dict[str, Any]]:
    return [
        {"Key": f"kubernetes.io/cluster/{name}", "Value": "owned", "PropagateAtLaunch": True},
        {"Key": "KubernetesCluster", "Value": name, "PropagateAtLaunch": True},
        {"Key": "Name", "Value": f"{group}.{name}", "PropagateAtLaunch": True},
    ]


@pytest.fixture
def env(aws_env: AwsEmulator, kube_api: Any) -> Iterator[Env]:
    name = f"roll-{uuid.uuid4().hex[:6]}.k8s.local"
    ec2 = boto3.client("ec2", region_name=REGION)
    asg = boto3.client("autoscaling", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="eu-west-1a")["Subnet"][
        "SubnetId"
    ]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lt_ids = {}
    specs = []
    for group, size, role in (("control-plane-eu-west-1a", 1, "ControlPlane"), ("nodes", 3, "Node")):
        lt = ec2.create_launch_template(
            LaunchTemplateName=f"{group}.{name}",
            LaunchTemplateData={"ImageId": image, "InstanceType": "t3.medium"},
            TagSpecifications=[
                {
                    "ResourceType": "launch-template",
                    "Tags": [{"Key": f"kubernetes.io/cluster/{name}", "Value": "owned"}],
                }
            ],
        )["LaunchTemplate"]
        lt_ids[group] = lt["LaunchTemplateId"]
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"{group}.{name}",
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"},
            MinSize=size,
            MaxSize=size,
            DesiredCapacity=size,
            VPCZoneIdentifier=subnet,
            Tags=_tags(name, group),
        )
        specs.append(GroupSpec(group, role, "t3.medium", size, size, ["eu-west-1a"]))
    cloud = AwsCloud(name, REGION)
    api = kube_api.admin_client()
    yield Env(name, cloud, AwsGroups(cloud, name), KubeClient(api), k.CoreV1Api(api), specs, lt_ids["nodes"])
    for group in ("control-plane-eu-west-1a", "nodes"):
        asg.delete_auto_scaling_group(AutoScalingGroupName=f"{group}.{name}", ForceDelete=True)


def _new_version(env: Env, group: str = "nodes") -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    asg = boto3.client("autoscaling", region_name=REGION)
    lt = ec2.describe_launch_templates(LaunchTemplateNames=[f"{group}.{env.name}"])["LaunchTemplates"][0]
    version = ec2.create_launch_template_version(
        LaunchTemplateId=lt["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"InstanceType": "t3.large"},
    )["LaunchTemplateVersion"]["VersionNumber"]
    asg.update_auto_scaling_group(
        AutoScalingGroupName=f"{group}.{env.name}",
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": str(version)},
    )


def _check(env: Env) -> Any:
    return validate(
        env.specs, cloud_groups(env.cloud, env.name), env.kube.nodes(), env.kube.pods(), etcd_members=1
    )


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _pdb(env: Env, min_available: int) -> None:
    k.PolicyV1Api(env.kube.api_client).create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
        },
    )


def test_validate_and_get_instances_against_the_emulators(env: Env) -> None:
    groups = cloud_groups(env.cloud, env.name)
    assert sorted((g.name, len(g.instances), g.lt_version) for g in groups) == [
        ("control-plane-eu-west-1a", 1, "1"),
        ("nodes", 3, "1"),
    ]
    result = _check(env)
    assert [f.kind for f in result.failures].count("Machine") == 4  # no Node joined yet
    with FakeKubelets(env, replicas=0) as kubelets:
        _wait(lambda: len(env.kube.nodes()) == 4 and len(env.kube.pods()) == 4)
        result = _check(env)
        assert result.ok, [f.message for f in result.failures]
        assert (
            result.ha is not None and result.ha.etcd_up == 1 and result.ha.control_plane_losses_tolerated == 0
        )
        rows = instance_rows(env.specs, groups, env.kube.nodes())
        assert {r[2] for r in rows} == {"UpToDate"} and all(str(r[1]).endswith(".internal") for r in rows)
        _new_version(env)
        rows = instance_rows(env.specs, cloud_groups(env.cloud, env.name), env.kube.nodes())
        assert sorted(r[2] for r in rows) == ["NeedsUpdate"] * 3 + ["UpToDate"]
        assert not kubelets.errors


def test_drain_honours_the_pdb_through_the_eviction_api(env: Env) -> None:
    with FakeKubelets(env, replicas=3) as kubelets:
        _wait(lambda: len(env.core.list_namespaced_pod("default").items) == 3)
        _pdb(env, 3)  # nothing may be evicted
        node = env.core.list_namespaced_pod("default").items[0].spec.node_name
        env.kube.cordon(node)
        with pytest.raises(RollingUpdateError, match="disruption budget"):
            drain_node(env.kube, node, timeout=1.0, retry=0.2)
        k.PolicyV1Api(env.kube.api_client).delete_namespaced_pod_disruption_budget("web", "default")
        _pdb(env, 2)  # one at a time: the fake ReplicaSet brings each back on another node
        drain_node(env.kube, node, timeout=20.0, retry=0.2)
        assert not [p for p in env.kube.pods(node) if not p.mirror]
        assert kubelets.min_ready >= 2 and not kubelets.errors


def test_rolling_update_replaces_outdated_nodes_with_surge_and_pdb(env: Env) -> None:
    with FakeKubelets(env, replicas=3) as kubelets:
        _wait(lambda: len(env.kube.nodes()) == 4 and len(env.core.list_namespaced_pod("default").items) == 3)
        _pdb(env, 2)
        _new_version(env)
        old = {i.id for g in cloud_groups(env.cloud, env.name) for i in g.instances if g.name == "nodes"}
        settings = Settings(
            post_drain_delay=0,
            node_interval=0,
            control_plane_interval=0,
            validation_interval=0.2,
            poll=0.2,
            drain_retry=0.2,
            validation_timeout=30,
            drain_timeout=30,
            max_surge=2,
        )
        journal = MemoryJournal()
        run = RollingUpdate(
            env.aws, env.kube, env.specs, settings, check=lambda: _check(env), journal=journal
        )
        summary = run.run()
        assert [(g.name, g.replaced) for g in summary.groups] == [("nodes", 3)]
        groups = {g.name: g for g in cloud_groups(env.cloud, env.name)}
        nodes_group = groups["nodes"]
        alive = [i for i in nodes_group.instances if i.alive]
        assert len(alive) == 3 and not ({i.id for i in alive} & old)
        assert all(i.lt_version == "2" and not i.needs_update for i in alive)
        assert (nodes_group.desired, nodes_group.max_size) == (3, 3)  # the surge was undone
        assert journal.data == {}
        assert sorted(run.drained) == sorted(f"{i}.internal" for i in old)
        assert not [n for n in env.kube.nodes() if n.unschedulable or MARK in n.annotations]
        assert kubelets.min_ready >= 2 and not kubelets.errors
        assert _check(env).ok


def test_delete_ig_drains_its_nodes_first(
    kube_api: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pykops.cli.main import main
    from pykops.pki.kubeconfig import build_kubeconfig, dump_kubeconfig
    from pykops.sandbox.kubeapi.testing import client_keypair, sandbox_ca

    name = "drain.k8s.local"
    state = f"file://{tmp_path / 'state'}"
    pair = client_keypair("admin", ("system:masters",))
    doc = build_kubeconfig(
        name, kube_api.url, sandbox_ca().cert_pem, client_cert_pem=pair.cert_pem, client_key_pem=pair.key_pem
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(dump_kubeconfig(doc))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    create = ["create", "cluster", f"--name={name}", "--zones=eu-west-1a", "--networking=kubenet"]
    key = tmp_path / "k.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t@p\n")
    assert main(["--state", state, *create, f"--ssh-public-key={key}"]) == 0
    assert main(["--state", state, "create", "ig", "spot", "--name", name, "--subnet", "eu-west-1a"]) == 0
    core = k.CoreV1Api(kube_api.admin_client())
    for node, group in (("spot-1", "spot"), ("other-1", "nodes")):
        core.create_node({"metadata": {"name": node, "labels": {"kops.k8s.io/instancegroup": group}}})
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": f"app-{node}"},
                "spec": {"nodeName": node, "containers": [{"name": "a", "image": "a"}]},
            },
        )
    capsys.readouterr()
    assert main(["--state", state, "delete", "ig", "spot", "--name", name, "--yes"]) == 0
    _, err = capsys.readouterr()
    assert "draining node spot-1" in err
    assert core.read_node("spot-1").spec.unschedulable is True
    assert not (core.read_node("other-1").spec or k.V1NodeSpec()).unschedulable
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["app-other-1"]


def test_node_marks_cordon_and_taints_round_trip(kube_api: Any) -> None:
    kube = KubeClient(kube_api.admin_client())
    core = k.CoreV1Api(kube.api_client)
    core.create_node(
        {"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "keep", "effect": "NoSchedule"}]}}
    )
    kube.annotate("n1", MARK, "draining")
    kube.cordon("n1")
    kube.set_taints(
        "n1",
        [*kube.node_taints("n1"), {"key": "kops.k8s.io/scheduled-for-update", "effect": "PreferNoSchedule"}],
    )
    node = kube.nodes()[0]
    assert node.unschedulable and node.annotations[MARK] == "draining"
    assert node.taints == ["keep", "kops.k8s.io/scheduled-for-update"]
    kube.set_taints("n1", [t for t in kube.node_taints("n1") if t["key"] == "keep"])
    kube.cordon("n1", False)
    kube.annotate("n1", MARK, None)
    node = kube.nodes()[0]
    assert not node.unschedulable and MARK not in node.annotations and node.taints == ["keep"]
    kube.delete_node("n1")
    kube.delete_node("n1")  # already gone: fine
    assert kube.nodes() == []
