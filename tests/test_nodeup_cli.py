"""``pykops nodeup`` end to end against the AWS emulator: --root rendering, etcd volumes, replacement."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cryptography import x509

from pykops.api.models import Cluster, InstanceGroup
from pykops.api.new_cluster import CreateClusterOptions, new_cluster
from pykops.api.populate import populate
from pykops.cli import nodeup as cli_nodeup
from pykops.cli.main import main
from pykops.model.bootstrap import igconfig_key
from pykops.nodeup.config import (
    NODE_KEYSETS,
    EtcdMemberRef,
    NodeupConfig,
    build_nodeup_config,
    ca_certificates_for,
)
from pykops.nodeup.volumes import (
    HOSTS_BEGIN,
    EtcdVolume,
    VolumeError,
    attach_etcd_volumes,
    plan_attachments,
    update_hosts,
)
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.state.keystore import Keystore
from pykops.state.store import open_store

REGION = "eu-west-1"
LB = "api-lb.elb.eu-west-1.amazonaws.com"


@dataclass
class Env:
    name: str
    cluster: Cluster
    groups: list[InstanceGroup]
    state: str
    ec2: Any
    ami: str

    def config_url(self, group: str) -> str:
        g = next(x for x in self.groups if x.name == group)
        return f"{self.state}/{igconfig_key(self.name, g)}"

    def run_instance(self, zone: str) -> str:
        instance = self.ec2.run_instances(
            ImageId=self.ami, MinCount=1, MaxCount=1, Placement={"AvailabilityZone": zone}
        )["Instances"][0]
        return str(instance["InstanceId"])

    def volumes(self) -> dict[str, dict[str, Any]]:
        found = self.ec2.describe_volumes(
            Filters=[{"Name": f"tag:kubernetes.io/cluster/{self.name}", "Values": ["owned"]}]
        )["Volumes"]
        return {v["VolumeId"]: v for v in found}


def _create_etcd_volumes(ec2: Any, cluster: Cluster) -> None:
    """The volumes `update cluster` creates (docs/resources.md EBSVolume), one per member per etcd cluster."""
    zones = {g: f"eu-west-1{g[-1]}" for g in ("master-eu-west-1a", "master-eu-west-1b", "master-eu-west-1c")}
    for etcd in cluster.spec.etcd_clusters or []:
        members = etcd.etcd_members or []
        everyone = ",".join(m.name for m in members)
        for member in members:
            tags = {
                "KubernetesCluster": cluster.name,
                f"kubernetes.io/cluster/{cluster.name}": "owned",
                "Name": f"{member.name}.etcd-{etcd.name}.{cluster.name}",
                f"k8s.io/etcd/{etcd.name}": f"{member.name}/{everyone}",
                "k8s.io/role/control-plane": "1",
                "k8s.io/role/master": "1",
            }
            ec2.create_volume(
                AvailabilityZone=zones[member.instance_group or ""],
                Size=20,
                VolumeType="gp3",
                Encrypted=True,
                TagSpecifications=[
                    {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                ],
            )


@pytest.fixture
def env(aws_env: AwsEmulator, tmp_path: Path) -> Env:
    name = f"n{uuid.uuid4().hex[:8]}.k8s.local"
    state = f"file://{tmp_path / 'state'}"
    cluster, groups = new_cluster(
        CreateClusterOptions(
            name=name,
            zones=["eu-west-1a", "eu-west-1b", "eu-west-1c"],
            control_plane_count=3,
            node_count=1,
            networking="kubenet",
            config_base=f"{state}/{name}",
        )
    )
    cluster, groups = populate(cluster, groups)
    store = open_store(state)
    keystore = Keystore(store, name)
    keystore.ensure_cluster_keysets(cluster)
    for group in groups:
        config = build_nodeup_config(
            cluster, group, api_endpoint=LB, ca_certificates=ca_certificates_for(keystore, cluster, group)
        )
        store.put(igconfig_key(name, group), config.to_yaml().encode())
    ec2 = boto3.client("ec2", region_name=REGION)
    _create_etcd_volumes(ec2, cluster)
    image = ec2.register_image(
        Name=f"pykops/nodeup-{name}",
        RootDeviceName="/dev/sda1",
        Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
    )
    return Env(name, cluster, groups, state, ec2, str(image["ImageId"]))


def tree(path: Path) -> dict[str, int]:
    return (
        {str(p.relative_to(path)): p.stat().st_mode for p in sorted(path.rglob("*"))} if path.exists() else {}
    )


def run(*args: str) -> int:
    return main(["nodeup", *args])


# --- control plane with --root ---------------------------------------------------------------------------


def test_control_plane_root_mode(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "machine"
    instance = env.run_instance("eu-west-1a")
    state_before = tree(tmp_path / "state")

    assert (
        run("--config", env.config_url("master-eu-west-1a"), "--root", str(root), "--instance-id", instance)
        == 0
    )

    # Nothing but the machine's root changed under tmp_path (the state store is only read).
    assert tree(tmp_path / "state") == state_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["machine", "state"]
    # The files, with their modes.
    manifests = sorted(p.name for p in (root / "etc/kubernetes/manifests").iterdir())
    assert manifests == [
        "etcd-events.yaml",
        "etcd-main.yaml",
        "kube-apiserver.yaml",
        "kube-controller-manager.yaml",
        "kube-proxy.yaml",
        "kube-scheduler.yaml",
    ]
    for key in root.rglob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((root / "var/lib/kubelet/kubeconfig").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "srv/kubernetes/ca.crt").stat().st_mode) == 0o644
    assert not list(root.rglob(".*.key.*"))  # no temporary files left behind

    # Assets are listed, not downloaded.
    listed = json.loads((root / "var/lib/pykops/assets.json").read_text())["assets"]
    assert [a["name"] for a in listed] == ["containerd", "runc", "cni-plugins", "kubelet", "kubectl"]
    assert all(len(a["sha256"]) == 64 and a["url"].startswith("https://") for a in listed)
    assert not (root / "usr/local/bin/kubelet").exists()

    # This zone's volumes (member a of main and events) are attached to the instance, and "mounted".
    volumes = env.volumes()
    mine = {
        v["VolumeId"]: {t["Key"]: t["Value"] for t in v["Tags"]}
        for v in volumes.values()
        if v["State"] == "in-use"
    }
    assert len(mine) == 2
    for volume_id, tags in mine.items():
        volume = volumes[volume_id]
        assert volume["AvailabilityZone"] == "eu-west-1a"
        assert volume["Attachments"][0]["InstanceId"] == instance
        assert volume["Attachments"][0]["State"] == "attached"
        assert any(v.startswith("a/") for k, v in tags.items() if k.startswith("k8s.io/etcd/"))
        assert (root / f"mnt/master-{volume_id}").is_dir()
    others = [v for v in volumes.values() if v["AvailabilityZone"] != "eu-west-1a"]
    assert len(others) == 4 and all(v["State"] == "available" for v in others)

    # The etcd pods keep their data on the attached volumes.
    main_pod = yaml.safe_load((root / "etc/kubernetes/manifests/etcd-main.yaml").read_text())
    data = next(v for v in main_pod["spec"]["volumes"] if v["name"] == "varetcdata")["hostPath"]["path"]
    main_volume = next(vid for vid, tags in mine.items() if "k8s.io/etcd/main" in tags)
    assert data == f"/mnt/master-{main_volume}/data"

    # The member's name resolves through the managed /etc/hosts block.
    hosts = (root / "etc/hosts").read_text()
    ip = env.ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "PrivateIpAddress"
    ]
    assert HOSTS_BEGIN in hosts and f"{ip}\tetcd-a.internal.{env.name}" in hosts

    err = capsys.readouterr().err
    assert "PRIVATE KEY" not in err


def test_replaced_control_plane_instance_takes_over_the_same_volumes(env: Env, tmp_path: Path) -> None:
    first = env.run_instance("eu-west-1b")
    assert (
        run(
            "--config",
            env.config_url("master-eu-west-1b"),
            "--root",
            str(tmp_path / "m1"),
            "--instance-id",
            first,
        )
        == 0
    )
    taken = {vid for vid, v in env.volumes().items() if v["Attachments"]}
    assert len(taken) == 2
    manifest1 = (tmp_path / "m1/etc/kubernetes/manifests/etcd-main.yaml").read_text()

    env.ec2.terminate_instances(InstanceIds=[first])
    second = env.run_instance("eu-west-1b")
    assert (
        run(
            "--config",
            env.config_url("master-eu-west-1b"),
            "--root",
            str(tmp_path / "m2"),
            "--instance-id",
            second,
        )
        == 0
    )

    volumes = env.volumes()
    now = {vid for vid, v in volumes.items() if v["Attachments"]}
    assert now == taken  # the same member volumes, hence the same etcd data
    assert all(volumes[vid]["Attachments"][0]["InstanceId"] == second for vid in now)
    manifest2 = (tmp_path / "m2/etc/kubernetes/manifests/etcd-main.yaml").read_text()
    data = [line for line in manifest1.splitlines() if "/mnt/master-" in line]
    assert data and data == [line for line in manifest2.splitlines() if "/mnt/master-" in line]
    assert "--name=b" in manifest2


def test_a_volume_in_use_by_a_live_instance_is_not_taken(env: Env) -> None:
    owner = env.run_instance("eu-west-1c")
    members = [EtcdMemberRef(name="c", etcd_cluster="main")]
    attach_etcd_volumes(env.ec2, cluster_name=env.name, instance_id=owner, zone="eu-west-1c", members=members)
    intruder = env.run_instance("eu-west-1c")
    ticks = iter(range(0, 1000, 10))
    with pytest.raises(VolumeError, match="timed out"):
        attach_etcd_volumes(
            env.ec2,
            cluster_name=env.name,
            instance_id=intruder,
            zone="eu-west-1c",
            members=members,
            timeout=25,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
        )
    main_volume = next(
        v
        for v in env.volumes().values()
        if any(t["Key"] == "k8s.io/etcd/main" and t["Value"].startswith("c/") for t in v["Tags"])
    )
    assert main_volume["Attachments"][0]["InstanceId"] == owner


def test_a_volume_taken_between_look_and_attach_is_left_to_its_new_owner(env: Env) -> None:
    """Two machines race for one volume: the loser's AttachVolume gets VolumeInUse, it looks again (no crash)
    and waits for the volume instead of taking it."""
    me = env.run_instance("eu-west-1c")
    rival = env.run_instance("eu-west-1c")
    members = [EtcdMemberRef(name="c", etcd_cluster="main")]
    said: list[str] = []

    def log(message: str) -> None:
        said.append(message)
        if message.startswith("attaching ") and len(said) == 1:  # the rival is faster, just this once
            env.ec2.attach_volume(VolumeId=message.split()[1], InstanceId=rival, Device="/dev/xvdu")

    ticks = iter(range(0, 1000, 10))
    with pytest.raises(VolumeError, match="timed out"):
        attach_etcd_volumes(
            env.ec2,
            cluster_name=env.name,
            instance_id=me,
            zone="eu-west-1c",
            members=members,
            timeout=25,
            sleep=lambda _: None,
            clock=lambda: float(next(ticks)),
            log=log,
        )
    assert any("was just attached elsewhere; looking again" in line for line in said)
    taken = [v for v in env.volumes().values() if v["Attachments"]]
    assert [v["Attachments"][0]["InstanceId"] for v in taken] == [rival]


# --- nodes, dry run, refusals ----------------------------------------------------------------------------


def test_node_root_mode(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "node"
    instance = env.run_instance("eu-west-1c")
    assert run("--config", env.config_url("nodes"), "--root", str(root), "--instance-id", instance) == 0
    assert sorted(p.name for p in (root / "etc/kubernetes/manifests").iterdir()) == ["kube-proxy.yaml"]
    assert not (root / "mnt").exists() and not (root / "etc/hosts").exists()
    config = yaml.safe_load((root / "var/lib/kubelet/kubelet-config.yaml").read_text())
    assert config["providerID"] == f"aws:///eu-west-1c/{instance}"
    assert all(not v["Attachments"] for v in env.volumes().values())


def _record_keyset_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    read: list[str] = []
    real = Keystore._read

    def recording(self: Keystore, name: str) -> Any:
        read.append(name)
        return real(self, name)

    monkeypatch.setattr(Keystore, "_read", recording)
    return read


def _openssl_verify(tmp_path: Path, ca: Path, cert_pem: bytes) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    leaf = tmp_path / "leaf.crt"
    leaf.write_bytes(cert_pem)
    result = subprocess.run(["openssl", "verify", "-CAfile", ca, leaf], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


def _files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_node_never_reads_a_ca_private_key(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker node bootstraps with every CA keyset gone from the state store (as on AWS, where its IAM
    role cannot read them): it reads only its kubelet and kube-proxy keysets."""
    store = open_store(env.state)
    keystore = Keystore(store, env.name)
    ca = keystore.require("kubernetes-ca")
    for name in keystore.names():
        if name not in NODE_KEYSETS:
            store.delete(keystore.key(name))
    assert keystore.names() == sorted(NODE_KEYSETS)
    read = _record_keyset_reads(monkeypatch)

    root = tmp_path / "node"
    instance = env.run_instance("eu-west-1b")
    assert run("--config", env.config_url("nodes"), "--root", str(root), "--instance-id", instance) == 0
    assert sorted(set(read)) == sorted(NODE_KEYSETS)
    assert (root / "srv/kubernetes/ca.crt").read_bytes() == ca.ca_bundle()
    assert _files_holding(root, ca.primary_keypair().key_pem.strip()) == []
    for kubeconfig, keyset, subject in [
        ("var/lib/kubelet/kubeconfig", "kubelet", "CN=kubelet,O=system:nodes"),
        ("var/lib/kube-proxy/kubeconfig", "kube-proxy", "CN=system:kube-proxy"),
    ]:
        user = yaml.safe_load((root / kubeconfig).read_text())["users"][0]["user"]
        pem = base64.b64decode(user["client-certificate-data"])
        assert pem == keystore.require(keyset).primary.cert_pem
        assert x509.load_pem_x509_certificate(pem).subject.rfc4514_string() == subject
        _openssl_verify(tmp_path, root / "srv/kubernetes/ca.crt", pem)


def test_an_older_node_config_reads_only_the_ca_certificates(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config written before caCertificates (listing kubernetes-ca as a keyset): the node still uses its
    kubelet and kube-proxy keypairs, and takes only the certificates of kubernetes-ca from the store."""
    store = open_store(env.state)
    group = next(g for g in env.groups if g.name == "nodes")
    key = igconfig_key(env.name, group)
    found = store.read(key)
    assert found is not None
    config = NodeupConfig.from_yaml(found.data.decode())
    older = config.model_copy(update={"keysets": ["kubernetes-ca"], "ca_certificates": {}})
    store.put(key, older.to_yaml().encode())
    ca = Keystore(store, env.name).require("kubernetes-ca")
    read = _record_keyset_reads(monkeypatch)

    root = tmp_path / "node"
    instance = env.run_instance("eu-west-1c")
    assert run("--config", env.config_url("nodes"), "--root", str(root), "--instance-id", instance) == 0
    assert "no caCertificates for kubernetes-ca" in capsys.readouterr().err
    assert sorted(set(read)) == sorted([*NODE_KEYSETS, "kubernetes-ca"])
    assert (root / "srv/kubernetes/ca.crt").read_bytes() == ca.ca_bundle()
    assert _files_holding(root, ca.primary_keypair().key_pem.strip()) == []

    # Where the node cannot read the CA's keyset (its IAM role on AWS), it says how to fix the config.
    store.delete(Keystore(store, env.name).key("kubernetes-ca"))
    assert run("--config", env.config_url("nodes"), "--root", str(root), "--instance-id", instance) == 1
    assert "pykops update cluster --yes" in capsys.readouterr().err


def test_dry_run_lists_files_without_secrets(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "dry"
    instance = env.run_instance("eu-west-1a")
    assert (
        run(
            "--config",
            env.config_url("master-eu-west-1a"),
            "--root",
            str(root),
            "--instance-id",
            instance,
            "--dry-run",
        )
        == 0
    )
    out = capsys.readouterr()
    assert not root.exists()
    assert "PRIVATE KEY" not in out.out + out.err
    lines = out.out.splitlines()
    assert lines[0].split() == ["MODE", "SIZE", "PATH"]
    assert any(
        line.startswith("0600") and line.endswith("/srv/kubernetes/kube-apiserver/server.key")
        for line in lines
    )
    assert any(line.split()[-1] == "/etc/kubernetes/manifests/etcd-main.yaml" for line in lines)
    assert "would attach" in out.err
    assert all(not v["Attachments"] for v in env.volumes().values())  # nothing attached by a dry run


def test_root_mode_needs_an_instance_id(env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--config", env.config_url("nodes"), "--root", str(tmp_path / "r")) == 2
    assert "--root needs --instance-id" in capsys.readouterr().err


def test_real_machine_refuses_an_asset_without_a_hash(
    env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = env.cluster.model_copy(deep=True)
    cluster.spec.kubernetes_version = "1.36.99"  # no pinned hash
    group = next(g for g in env.groups if g.name == "nodes")
    store = open_store(env.state)
    store.put(
        igconfig_key(env.name, group), build_nodeup_config(cluster, group, api_endpoint=LB).to_yaml().encode()
    )
    touched: list[str] = []
    monkeypatch.setattr(
        cli_nodeup, "imds_identity", lambda *a, **k: touched.append("imds") or ("i", "z", None)
    )
    assert run("--config", env.config_url("nodes")) == 1
    err = capsys.readouterr().err
    assert "no pinned SHA-256 for kubelet 1.36.99" in err and "kubectl 1.36.99" in err
    assert touched == []  # refused before anything else


def test_missing_config(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            "--config",
            f"{env.state}/{env.name}/igconfig/node/nope/nodeupconfig.yaml",
            "--root",
            "/tmp/x",
            "--instance-id",
            "i-1",
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


# --- pure helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "store", "key"),
    [
        (
            "s3://b/c.k8s.local/igconfig/node/nodes/nodeupconfig.yaml",
            "s3://b",
            "c.k8s.local/igconfig/node/nodes/nodeupconfig.yaml",
        ),
        ("s3://b/p/c/igconfig/node/n/nodeupconfig.yaml", "s3://b/p", "c/igconfig/node/n/nodeupconfig.yaml"),
        (
            "memfs://s/c/igconfig/control-plane/m/nodeupconfig.yaml",
            "memfs://s",
            "c/igconfig/control-plane/m/nodeupconfig.yaml",
        ),
        ("file:///x/y/config.yaml", "file:///x/y", "config.yaml"),
    ],
)
def test_split_url(url: str, store: str, key: str) -> None:
    assert cli_nodeup.split_url(url) == (store, key)


def test_target_path_never_leaves_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert cli_nodeup.target_path(root, "/etc/x") == (root / "etc/x").resolve()
    for bad in ("etc/x", "/etc/../../x", "/etc/./x"):
        with pytest.raises(cli_nodeup.NodeupError, match="refusing"):
            cli_nodeup.target_path(root, bad)
    (root / "etc").symlink_to(tmp_path)  # a symlink pointing out of the root
    with pytest.raises(cli_nodeup.NodeupError, match="outside"):
        cli_nodeup.target_path(root, "/etc/passwd")
    with pytest.raises(cli_nodeup.NodeupError, match="outside"):
        cli_nodeup.write_files([cli_nodeup_file("/etc/passwd")], root)
    assert not (tmp_path / "passwd").exists()


def cli_nodeup_file(path: str) -> Any:
    from pykops.nodeup.render import FileSpec

    return FileSpec(path, b"x", 0o644)


def _vol(vid: str, cluster: str, member: str, **kw: Any) -> EtcdVolume:
    return EtcdVolume(
        volume_id=vid,
        etcd_cluster=cluster,
        member=member,
        zone=kw.pop("zone", "z1"),
        state=kw.pop("state", "available"),
        **kw,
    )


def test_plan_attachments() -> None:
    members = [EtcdMemberRef(name="a", etcd_cluster="main"), EtcdMemberRef(name="a", etcd_cluster="events")]
    volumes = [
        _vol("v-main-a", "main", "a", state="in-use", attached_to="i-old", attachment_state="attached"),
        _vol("v-events-a", "events", "a"),
        _vol("v-main-b", "main", "b"),  # another member's: never taken
        _vol("v-main-a-z2", "main", "a", zone="z2"),  # another zone's: never taken
    ]
    plan = plan_attachments(
        volumes, instance_id="i-new", zone="z1", members=members, instance_states={"i-old": "terminated"}
    )
    assert {k: (a.kind, a.volume.volume_id) for k, a in plan.items()} == {
        "main": ("detach", "v-main-a"),
        "events": ("attach", "v-events-a"),
    }
    plan = plan_attachments(
        volumes, instance_id="i-new", zone="z1", members=members, instance_states={"i-old": "running"}
    )
    assert plan["main"].kind == "wait"
    mine = [_vol("v-main-a", "main", "a", state="in-use", attached_to="i-new", attachment_state="attached")]
    assert (
        plan_attachments(mine, instance_id="i-new", zone="z1", members=members[:1], instance_states={})[
            "main"
        ].kind
        == "keep"
    )
    with pytest.raises(VolumeError, match="no volume for etcd-events member a in z1"):
        plan_attachments(mine, instance_id="i-new", zone="z1", members=members, instance_states={})


def test_update_hosts_keeps_other_lines() -> None:
    text = "127.0.0.1 localhost\n"
    once = update_hosts(text, {"etcd-a.internal.c": "10.0.0.1"})
    assert once.startswith("127.0.0.1 localhost\n") and "10.0.0.1\tetcd-a.internal.c" in once
    twice = update_hosts(once, {"etcd-a.internal.c": "10.0.0.2"})
    assert "10.0.0.1" not in twice and twice.count(HOSTS_BEGIN) == 1


# --- IMDSv2 ----------------------------------------------------------------------------------------------


@pytest.fixture
def fake_imds() -> Iterator[str]:
    token = "tok-123"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._send(200, token)
            else:
                self._send(400, "")

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != token:
                self._send(401, "")  # IMDSv2 only: no token, no answer
                return
            answers = {
                "/latest/meta-data/instance-id": "i-0abc",
                "/latest/meta-data/placement/availability-zone": "eu-west-1b",
                "/latest/meta-data/local-hostname": "ip-10-0-0-5.eu-west-1.compute.internal",
            }
            if self.path in answers:
                self._send(200, answers[self.path])
            else:
                self._send(404, "")

        def _send(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_imds_v2_identity(fake_imds: str) -> None:
    assert cli_nodeup.imds_identity(fake_imds) == (
        "i-0abc",
        "eu-west-1b",
        "ip-10-0-0-5.eu-west-1.compute.internal",
    )


def test_imds_unreachable_is_a_clear_error() -> None:
    with pytest.raises(cli_nodeup.NodeupError, match="instance metadata service"):
        cli_nodeup.imds_identity("http://127.0.0.1:9", timeout=0.5)


def test_cwd_is_left_alone(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    instance = env.run_instance("eu-west-1a")
    assert run("--config", env.config_url("nodes"), "--root", "relative-root", "--instance-id", instance) == 0
    assert sorted(os.listdir(cwd)) == ["relative-root"]


def test_mount_point_stays_in_root(tmp_path: Path) -> None:
    from pykops.nodeup.volumes import mount_point

    assert mount_point("vol-0abc", tmp_path) == (tmp_path / "mnt/master-vol-0abc").resolve()
    assert mount_point("vol-0abc") == Path("/mnt/master-vol-0abc")
    with pytest.raises(VolumeError, match="refusing"):
        mount_point("../../../x", tmp_path)


def test_download_checks_the_pinned_hash(tmp_path: Path) -> None:
    import hashlib
    import io

    from pykops.nodeup.assets import Asset, AssetError

    payload = b"kubelet binary"
    good = Asset(
        name="kubelet",
        version="1.34.2",
        arch="amd64",
        url="https://x/kubelet",
        sha256=hashlib.sha256(payload).hexdigest(),
    )

    def opener(url: str, timeout: float) -> io.BytesIO:
        assert url == "https://x/kubelet"
        return io.BytesIO(payload)

    path = cli_nodeup.download_asset(good, cache=tmp_path, opener=opener)
    assert path.read_bytes() == payload and path.name == good.sha256
    bad = good.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(cli_nodeup.NodeupError, match="does not match the pinned"):
        cli_nodeup.download_asset(bad, cache=tmp_path, opener=opener)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.sha256]  # nothing unverified kept
    with pytest.raises(AssetError, match="no pinned SHA-256"):
        cli_nodeup.download_asset(good.model_copy(update={"sha256": None}), cache=tmp_path, opener=opener)
