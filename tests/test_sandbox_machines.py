"""The sandbox's machine simulator boots the tutorial cluster (AWS emulator, real nodeup, real etcd).

The tutorial cluster (3 control-plane + 1 node over 3 zones) is created against the AWS emulator; the
simulator boots every instance with the real ``pykops nodeup --root``, starts a real etcd member per etcd
manifest (3 main + 3 events), serves the API through the cluster's API front and registers the Nodes and
mirror pods. Then control-plane instances are terminated one by one: with two of three etcd members the
API still writes, with one it cannot (no quorum: etcd's doing), with none the API is gone (503); when the
Auto Scaling groups' replacements boot, re-attach the same volumes and restart the same members, the
objects written before are still there. ``close()`` leaves no etcd process behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import etcd3gw
import pytest
import yaml

from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.etcd import EtcdError, member_address, parse_manifest
from pykops.sandbox.kubelet import ApiError, api_client_from_kubeconfig, pod_cidr_for, request
from pykops.sandbox.machines import MachineSimulator, nodeup_config_url, running_in_thread
from pykops.sandbox.seed import seed
from waiting import pids_mentioning, wait_for

REGION = "eu-west-1"
NAME = "sim.k8s.local"
BUCKET = "pykops-sandbox-machines"
STATE = f"s3://{BUCKET}"


def etcd_pids(sandbox: Path) -> set[int]:
    """The running etcd processes whose data is under ``sandbox`` (other tests may run their own etcd)."""
    return set(pids_mentioning(str(sandbox), program="/usr/bin/etcd"))


def machines(sandbox: Path) -> list[dict[str, Any]]:
    path = sandbox / "machines.json"
    return list(json.loads(path.read_text())["machines"]) if path.exists() else []


def running(sandbox: Path) -> list[dict[str, Any]]:
    return [m for m in machines(sandbox) if m["state"] == "running"]


def instance_groups() -> dict[str, list[str]]:
    asg = boto3.client("autoscaling", region_name=REGION)
    groups = asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    return {
        g["AutoScalingGroupName"].split(".", 1)[0]: [
            i["InstanceId"] for i in g["Instances"] if i["LifecycleState"] == "InService"
        ]
        for g in groups
        if g["AutoScalingGroupName"].endswith(NAME)
    }


def etcd_client(url: str) -> Any:
    host, port = url.removeprefix("http://").split(":")
    return etcd3gw.client(host=host, port=int(port), protocol="http", timeout=5)


@pytest.fixture
def cluster(aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    create = [
        "--state", STATE, "create", "cluster", f"--name={NAME}",
        "--zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=3", "--node-count=1",
        "--networking=kubenet", "--yes",
    ]  # fmt: skip
    assert main(create) == 0
    yield


@pytest.fixture
def simulator(cluster: None, tmp_path: Path) -> Iterator[tuple[MachineSimulator, Path]]:
    sandbox = tmp_path / "sandbox"
    with running_in_thread(
        sandbox, boot_delay=0.2, poll_interval=0.2, heartbeat_interval=0.5, node_removal_delay=1.0
    ) as sim:
        yield sim, sandbox
    assert etcd_pids(sandbox) == set(), "close() left etcd processes running"


def test_nodeup_config_url_is_read_from_the_cloud_config() -> None:
    user_data = (
        "#cloud-config\nwrite_files:\n- path: /opt/pykops/bootstrap.env\n  content: |\n"
        "    PYKOPS_VERSION=0.1.0\n    PYKOPS_NODEUP_CONFIG=s3://b/c.k8s.local/igconfig/node/nodes/nodeupconfig.yaml\n"
    )
    assert nodeup_config_url(user_data) == "s3://b/c.k8s.local/igconfig/node/nodes/nodeupconfig.yaml"
    assert nodeup_config_url("#cloud-config\n") is None


def test_member_addresses_are_stable_distinct_loopback_and_never_127_0_0_1() -> None:
    seen = set()
    for cluster in ("a.k8s.local", "b.k8s.local"):
        for etcd in ("main", "events"):
            for member in ("a", "b", "c"):
                address = member_address(cluster, etcd, member)
                assert address == member_address(cluster, etcd, member)
                parts = [int(p) for p in address.split(".")]
                assert parts[0] == 127 and address != "127.0.0.1" and 2 <= parts[3] <= 254
                seen.add(address)
    assert len(seen) == 12


def _etcd_manifest(path: Path, data_host_path: str = "/mnt/master-vol-0abc/data") -> Path:
    """An etcd manifest shaped as nodeup writes it (pykops.nodeup.render: etcd)."""
    host = "etcd-{}.internal.x.k8s.local"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "etcd-server-events", "namespace": "kube-system"},
        "spec": {
            "containers": [
                {
                    "name": "etcd-container",
                    "command": ["/usr/local/bin/etcd"],
                    "args": [
                        f"--advertise-client-urls=https://{host.format('b')}:4002",
                        "--data-dir=/var/etcd/data",
                        "--election-timeout=1000",
                        f"--initial-advertise-peer-urls=https://{host.format('b')}:2381",
                        "--initial-cluster-state=new",
                        "--initial-cluster-token=etcd-cluster-token-events",
                        "--initial-cluster="
                        + ",".join(f"{m}=https://{host.format(m)}:2381" for m in ("a", "b", "c")),
                        "--listen-client-urls=https://0.0.0.0:4002",
                        "--listen-metrics-urls=http://127.0.0.1:2384",
                        "--listen-peer-urls=https://0.0.0.0:2381",
                        "--name=b",
                        "--peer-cert-file=/etc/kubernetes/pki/etcd-events/peer.crt",
                    ],
                    "volumeMounts": [{"name": "varetcdata", "mountPath": "/var/etcd/data"}],
                }
            ],
            "volumes": [{"name": "varetcdata", "hostPath": {"path": data_host_path}}],
        },
    }
    path.write_text(yaml.safe_dump(pod))
    return path


def test_an_etcd_manifest_is_translated_to_loopback_members_on_the_volume_disk(tmp_path: Path) -> None:
    member = parse_manifest(
        _etcd_manifest(tmp_path / "etcd-events.yaml"), cluster_name="x.k8s.local", volumes_dir=tmp_path / "v"
    )
    assert (member.etcd_cluster, member.name, member.token) == ("events", "b", "etcd-cluster-token-events")
    assert member.data_dir == tmp_path / "v" / "vol-0abc" / "data"
    salt = str((tmp_path / "v").resolve())
    address = member_address("x.k8s.local", "events", "b", salt)
    assert address != member_address("x.k8s.local", "events", "b", "/another/sandbox/volumes")
    args = member.args()
    assert f"--listen-client-urls=http://{address}:4002" in args
    assert f"--initial-advertise-peer-urls=http://{address}:2381" in args
    assert f"--listen-metrics-urls=http://{address}:2384" in args
    assert "--election-timeout=1000" in args and "--initial-cluster-state=new" in args
    initial = next(a for a in args if a.startswith("--initial-cluster="))
    assert initial == "--initial-cluster=" + ",".join(
        f"{m}=http://{member_address('x.k8s.local', 'events', m, salt)}:2381" for m in ("a", "b", "c")
    )
    assert not any("internal" in a or "https" in a or "0.0.0.0" in a or "127.0.0.1" in a for a in args)
    with pytest.raises(EtcdError, match="not /mnt/master-<volume id>/data"):
        parse_manifest(
            _etcd_manifest(tmp_path / "etcd-main.yaml", "/var/lib/etcd"),
            cluster_name="x",
            volumes_dir=tmp_path,
        )


def test_pod_cidrs_are_stable_per_node_and_never_shared() -> None:
    first = pod_cidr_for("ip-172-20-0-4.ec2.internal", "100.96.0.0/11", set())
    assert first == pod_cidr_for("ip-172-20-0-4.ec2.internal", "100.96.0.0/11", set())
    assert first is not None and first.endswith("/24")
    other = pod_cidr_for("ip-172-20-0-4.ec2.internal", "100.96.0.0/11", {first})
    assert other not in (None, first)
    assert pod_cidr_for("n", "10.0.0.0/24", set()) == "10.0.0.0/24"
    assert pod_cidr_for("n", "10.0.0.0/24", {"10.0.0.0/24"}) is None


def test_an_instance_whose_user_data_names_no_config_fails_and_is_retried(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_env.reset()
    report = seed(aws_env.endpoint_url, REGION, state_bucket=f"{BUCKET}-bad")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    (instance,) = ec2.run_instances(
        ImageId=next(iter(report.images.values())),
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.medium",
        UserData="#cloud-config\nwrite_files: []\n",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "KubernetesCluster", "Value": "bad.k8s.local"}]}
        ],
    )["Instances"]
    sim = MachineSimulator(sandbox_dir=tmp_path / "sandbox", boot_delay=0.0)
    try:
        sim.reconcile_once()  # discovered
        sim.reconcile_once()  # boot: no NodeupConfig URL
        (machine,) = machines(tmp_path / "sandbox")
        assert machine["state"] == "failed" and "PYKOPS_NODEUP_CONFIG" in machine["error"]
        log = (tmp_path / "sandbox" / "machines" / f"{instance['InstanceId']}.log").read_text()
        assert log.count("boot failed") == 1
        sim.reconcile_once()  # within the backoff: no new attempt
        assert log == (tmp_path / "sandbox" / "machines" / f"{instance['InstanceId']}.log").read_text()
        time.sleep(1.1)
        sim.reconcile_once()
        log = (tmp_path / "sandbox" / "machines" / f"{instance['InstanceId']}.log").read_text()
        assert log.count("boot failed") == 2
        assert not (tmp_path / "sandbox" / "clusters" / "bad.k8s.local" / "api.json").exists()
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        sim.reconcile_once()
        assert machines(tmp_path / "sandbox") == []  # the cluster has no instance left: forgotten
    finally:
        sim.close()


def test_tutorial_cluster_boots_loses_quorum_and_recovers_on_its_volumes(
    simulator: tuple[MachineSimulator, Path],
) -> None:
    sim, sandbox = simulator
    start = time.monotonic()
    wait_for("4 running machines", lambda: len(running(sandbox)) == 4, timeout=90)
    booted = time.monotonic() - start
    by_group = {m["group"]: m for m in running(sandbox)}
    assert sorted(by_group) == ["master-eu-west-1a", "master-eu-west-1b", "master-eu-west-1c", "nodes"]
    control_plane = [m for m in by_group.values() if m["role"] == "control-plane"]
    assert len({m["zone"] for m in control_plane}) == 3
    assert by_group["nodes"]["etcdMembers"] == [] and by_group["nodes"]["role"] == "node"

    # Each control-plane machine runs one main and one events member, from the manifests nodeup wrote,
    # at its member's loopback address, with its data on its volume's disk.
    for machine in control_plane:
        root = sandbox / "machines" / machine["instanceId"]
        members = {m["cluster"]: m for m in machine["etcdMembers"]}
        assert sorted(members) == ["events", "main"]
        for etcd, port in (("main", 4001), ("events", 4002)):
            parsed = parse_manifest(
                root / f"etc/kubernetes/manifests/etcd-{etcd}.yaml",
                cluster_name=NAME,
                volumes_dir=sandbox / "volumes",
            )
            assert members[etcd]["member"] == parsed.name == machine["zone"][-1]
            address = member_address(NAME, etcd, parsed.name, str((sandbox / "volumes").resolve()))
            assert members[etcd]["clientURL"] == f"http://{address}:{port}"
            assert (sandbox / "volumes" / members[etcd]["volume"] / "data" / "member").is_dir()
            assert (root / f"etcd-{etcd}.log").exists()
    for etcd in ("main", "events"):
        urls = [
            next(m["clientURL"] for m in cp["etcdMembers"] if m["cluster"] == etcd) for cp in control_plane
        ]

        def formed(urls: list[str] = urls) -> bool:
            members = [etcd_client(u).members() for u in urls]
            return (
                all(len(found) == 3 for found in members)
                and len({etcd_client(u).status()["header"]["cluster_id"] for u in urls}) == 1
            )

        wait_for(f"etcd-{etcd} to form one 3-member cluster", formed, timeout=30)

    api_doc = json.loads((sandbox / "clusters" / NAME / "api.json").read_text())
    assert (
        api_doc["server"].startswith("https://127.0.0.1:")
        and api_doc["tlsServerName"] == f"api.internal.{NAME}"
    )
    api = api_client_from_kubeconfig(
        sandbox / "clusters" / NAME / "simulator.kubeconfig",
        api_doc["server"],
        scratch=sandbox / "test-client",
    )
    try:
        _check_nodes_and_mirror_pods(api, control_plane, by_group["nodes"])
        print(f"\nbooted 4 machines in {booted:.1f}s; nodes ready in {time.monotonic() - start:.1f}s")
        _kubectl_get_nodes(sandbox / "clusters" / NAME / "simulator.kubeconfig")
        _etcd_that_exits_is_started_again(sandbox, control_plane[2])
        _lose_quorum_and_recover(sim, sandbox, api, control_plane)
    finally:
        api.close()


def _nodes(api: Any) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in request(api, "GET", "/api/v1/nodes")["items"]}


def _check_nodes_and_mirror_pods(api: Any, control_plane: list[dict[str, Any]], node: dict[str, Any]) -> None:
    nodes = wait_for("4 Nodes", lambda: (found := _nodes(api)) and len(found) == 4 and found, timeout=30)
    version = yaml.safe_load(
        boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{NAME}/config")["Body"].read()
    )["spec"]["kubernetesVersion"]
    zones = set()
    for machine in [*control_plane, node]:
        found = nodes[machine["nodeName"]]
        labels = found["metadata"]["labels"]
        assert labels["kops.k8s.io/instancegroup"] == machine["group"]
        assert labels["topology.kubernetes.io/zone"] == machine["zone"]
        assert labels["topology.kubernetes.io/region"] == REGION
        assert labels["kubernetes.io/hostname"] == machine["nodeName"]
        assert labels["node.kubernetes.io/instance-type"]
        assert found["spec"]["providerID"] == f"aws:///{machine['zone']}/{machine['instanceId']}"
        assert found["spec"]["podCIDR"].endswith("/24")
        assert found["status"]["nodeInfo"]["kubeletVersion"] == f"v{version.lstrip('v')}"
        ready = {c["type"]: c["status"] for c in found["status"]["conditions"]}
        assert ready["Ready"] == "True"
        taints = [t["key"] for t in found["spec"].get("taints") or []]
        if machine["role"] == "control-plane":
            assert "node-role.kubernetes.io/control-plane" in labels
            assert "node-role.kubernetes.io/control-plane" in taints
            zones.add(machine["zone"])
        else:
            assert "node-role.kubernetes.io/control-plane" not in labels and taints == []
    assert len(zones) == 3
    assert len({n["spec"]["podCIDR"] for n in nodes.values()}) == 4

    def mirror_pods() -> dict[str, dict[str, Any]]:
        pods = request(api, "GET", "/api/v1/namespaces/kube-system/pods")["items"]
        return {p["metadata"]["name"]: p for p in pods}

    expected = [
        f"{pod}-{m['nodeName']}"
        for m in control_plane
        for pod in (
            "etcd-server",
            "etcd-server-events",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
        )
    ] + [f"kube-proxy-{node['nodeName']}"]
    pods = wait_for(
        "the mirror pods, Running",
        lambda: (
            (found := mirror_pods())
            and all(
                name in found and found[name].get("status", {}).get("phase") == "Running" for name in expected
            )
            and found
        ),
        timeout=30,
    )
    apiserver = pods[f"kube-apiserver-{control_plane[0]['nodeName']}"]
    assert apiserver["metadata"]["annotations"]["kubernetes.io/config.source"] == "file"
    assert "kubernetes.io/config.mirror" in apiserver["metadata"]["annotations"]
    assert apiserver["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert apiserver["spec"]["nodeName"] == control_plane[0]["nodeName"]
    assert pods[f"kube-proxy-{node['nodeName']}"]["spec"]["priorityClassName"] == "system-node-critical"

    # Heartbeats: the Lease is renewed and the Ready condition's heartbeat moves on.
    lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node['nodeName']}"
    lease = request(api, "GET", lease_path)
    assert lease["spec"]["holderIdentity"] == node["nodeName"]
    wait_for(
        "a Lease renewal",
        lambda: request(api, "GET", lease_path)["spec"]["renewTime"] != lease["spec"]["renewTime"],
    )

    def heartbeat() -> str:
        conditions = _nodes(api)[node["nodeName"]]["status"]["conditions"]
        return str(next(c["lastHeartbeatTime"] for c in conditions if c["type"] == "Ready"))

    seen = heartbeat()
    wait_for("a Ready heartbeat", lambda: heartbeat() != seen, timeout=10)

    # A pod bound to the worker node is run by its kubelet (sync_kubelet_pods of the controllers module).
    if importlib.util.find_spec("pykops.sandbox.controllers") is not None:
        bound = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "bound", "namespace": "default"},
            "spec": {"nodeName": node["nodeName"], "containers": [{"name": "c", "image": "busybox"}]},
        }
        request(api, "POST", "/api/v1/namespaces/default/pods", bound)
        wait_for(
            "the bound pod to run",
            lambda: (
                request(api, "GET", "/api/v1/namespaces/default/pods/bound")["status"].get("phase")
                == "Running"
            ),
            timeout=30,
        )


def _kubectl_get_nodes(kubeconfig: Path) -> None:
    """The system kubectl (when there is one) lists the nodes with their roles and version."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(kubeconfig), "get", "nodes", "--no-headers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    assert sorted(row[2] for row in rows) == ["control-plane", "control-plane", "control-plane", "node"]
    assert {row[1] for row in rows} == {"Ready"} and len({row[4] for row in rows}) == 1


def _etcd_that_exits_is_started_again(sandbox: Path, machine: dict[str, Any]) -> None:
    (victim,) = [m for m in machine["etcdMembers"] if m["cluster"] == "events"]
    assert victim["pid"] in etcd_pids(sandbox)
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        (current,) = [m for m in machines(sandbox) if m["instanceId"] == machine["instanceId"]]
        pid = next(m["pid"] for m in current["etcdMembers"] if m["cluster"] == "events")
        return pid not in (None, victim["pid"]) and pid in etcd_pids(sandbox)

    wait_for("the killed etcd member to be started again", restarted, timeout=20)


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"written": name}}


def _write(api: Any, name: str, timeout: float = 15.0) -> None:
    request(api, "POST", "/api/v1/namespaces/default/configmaps", _configmap(name), timeout=timeout)


def _lose_quorum_and_recover(
    sim: MachineSimulator, sandbox: Path, api: Any, control_plane: list[dict[str, Any]]
) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    wait_for("a write", lambda: _write(api, "before") is None, timeout=30)
    sim.boot_delay = 3600.0  # replacements wait until the test lets them boot
    first, second, third = control_plane
    volumes_before = {m["instanceId"]: sorted(e["volume"] for e in m["etcdMembers"]) for m in control_plane}

    ec2.terminate_instances(InstanceIds=[first["instanceId"]])
    wait_for(
        "the machine to stop",
        lambda: any(
            m["instanceId"] == first["instanceId"] and m["state"] == "stopped" for m in machines(sandbox)
        ),
    )
    wait_for("a write with 2 of 3 members", lambda: _write(api, "two-of-three") is None, timeout=30)

    # The terminated machine's Node goes NotReady (node lifecycle controller), then away with its pods
    # (cloud node-lifecycle), as the simulator's log of that machine tells.
    wait_for(
        "the Node of the terminated instance to be deleted",
        lambda: first["nodeName"] not in _nodes(api),
        timeout=30,
    )
    log = sandbox / "machines" / f"{first['instanceId']}.log"
    wait_for(
        "the deletion of the NotReady Node in the machine's log",
        lambda: f"Node {first['nodeName']} (Ready=Unknown) deleted" in log.read_text(),
        timeout=10,
    )
    selector = {"fieldSelector": f"spec.nodeName={first['nodeName']}"}
    wait_for(
        "the pods of the deleted Node to be deleted",
        lambda: request(api, "GET", "/api/v1/pods", query=selector)["items"] == [],
        timeout=30,
    )

    ec2.terminate_instances(InstanceIds=[second["instanceId"]])
    wait_for(
        "the machine to stop",
        lambda: any(
            m["instanceId"] == second["instanceId"] and m["state"] == "stopped" for m in machines(sandbox)
        ),
    )
    refused = time.monotonic()
    with pytest.raises(ApiError):
        _write(api, "one-of-three", timeout=20)
    refused = time.monotonic() - refused

    # With no control-plane machine at all, the API itself goes away (not even reads).
    ec2.terminate_instances(InstanceIds=[third["instanceId"]])
    wait_for(
        "the machine to stop",
        lambda: any(
            m["instanceId"] == third["instanceId"] and m["state"] == "stopped" for m in machines(sandbox)
        ),
    )
    with pytest.raises(ApiError) as gone:
        request(api, "GET", "/api/v1/namespaces/default/configmaps/before")
    assert gone.value.status == 503

    # The groups have replaced the instances; let them boot: they re-attach the same volumes.
    groups = instance_groups()
    replacements = [i for g in (first["group"], second["group"], third["group"]) for i in groups[g]]
    assert not {first["instanceId"], second["instanceId"], third["instanceId"]} & set(replacements)
    sim.boot_delay = 0.2
    recovery = time.monotonic()
    wait_for(
        "the replacements to run",
        lambda: {m["instanceId"] for m in running(sandbox)} >= set(replacements),
        timeout=90,
    )
    for machine in running(sandbox):
        if machine["role"] == "control-plane":
            (old,) = [m for m in control_plane if m["group"] == machine["group"]]
            assert sorted(e["volume"] for e in machine["etcdMembers"]) == volumes_before[old["instanceId"]]
    found = wait_for(
        "the objects written before",
        lambda: request(api, "GET", "/api/v1/namespaces/default/configmaps/before"),
        timeout=60,
    )
    assert found["data"] == {"written": "before"}
    assert (
        request(api, "GET", "/api/v1/namespaces/default/configmaps/two-of-three")["data"]["written"]
        == "two-of-three"
    )
    wait_for("writes again", lambda: _write(api, "after") is None, timeout=30)
    print(
        f"write without quorum refused after {refused:.1f}s; recovered in {time.monotonic() - recovery:.1f}s"
    )
