"""Keysets and secrets in the state store (kops' layout and format), and the CLI commands over them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cryptography import x509

from pykops.api.models import (
    Cluster,
    ClusterSpec,
    DiscoveryServiceOptions,
    EtcdClusterSpec,
    ObjectMeta,
    ServiceAccountIssuerDiscoveryConfig,
)
from pykops.cli.main import main
from pykops.errors import ConflictError, NotFoundError, PykopsError, UsageError
from pykops.pki.ca import issue, new_ca, verify_signed_by
from pykops.state import keystore as keystore_module
from pykops.state.keystore import Keyset, Keystore, cluster_keyset_names
from pykops.state.memfs import MemFsStore, reset_memfs
from pykops.state.secrets import SecretStore, validate_dockerconfig, validate_encryptionconfig
from pykops.state.store import StateStore, open_store

NAME = "proyecto.k8s.local"
DATA = Path(__file__).parent / "data"
KOPS_KEYSET = DATA / "pki" / "kops-keyset-kubernetes-ca.yaml"
KOPS_ID = "237054359138908419352140518924933177492"
PRIVATE_MARKERS = (
    "PRIVATE KEY",
    "privateMaterial",
    base64.b64encode(b"-----BEGIN RSA PRIVATE KEY").decode()[:30],
)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    backend: str = getattr(request, "param", "memfs")
    if backend == "file":
        yield f"file://{tmp_path / 'state'}"
    elif backend == "memfs":
        name = f"keys-{uuid.uuid4().hex}"
        yield f"memfs://{name}"
        reset_memfs(name)
    else:
        request.getfixturevalue("aws_env")
        bucket = f"pykops-keys-{uuid.uuid4().hex[:16]}"
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield f"s3://{bucket}/state"


@pytest.fixture
def store(store_url: str) -> StateStore:
    return open_store(store_url)


def _cluster(etcd: tuple[str, ...] = ("main", "events"), discovery_url: str | None = None) -> Cluster:
    spec = ClusterSpec(etcd_clusters=[EtcdClusterSpec(name=n) for n in etcd])
    if discovery_url:
        spec.service_account_issuer_discovery = ServiceAccountIssuerDiscoveryConfig(
            discovery_service=DiscoveryServiceOptions(url=discovery_url)
        )
    return Cluster(metadata=ObjectMeta(name=NAME), spec=spec)


def _no_private_material(text: str) -> None:
    for marker in PRIVATE_MARKERS:
        assert marker not in text, f"{marker!r} leaked"


# --- layout and format ------------------------------------------------------------------------------------


def test_ensure_creates_once_in_kops_layout(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    first = ks.ensure("kubernetes-ca")
    second = ks.ensure("kubernetes-ca")
    assert first == second and first.primary.id == second.primary.id
    assert store.list(f"{NAME}/pki/") == [f"{NAME}/pki/private/kubernetes-ca/keyset.yaml"]
    doc = yaml.safe_load(store.read(f"{NAME}/pki/private/kubernetes-ca/keyset.yaml").data)
    assert doc["apiVersion"] == "kops.k8s.io/v1alpha2" and doc["kind"] == "Keyset"
    assert doc["metadata"] == {"name": "kubernetes-ca"}
    assert doc["spec"]["type"] == "Keypair" and doc["spec"]["primaryId"] == first.primary_id
    (item,) = doc["spec"]["keys"]
    assert set(item) == {"id", "privateMaterial", "publicMaterial"}
    assert base64.b64decode(item["publicMaterial"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert base64.b64decode(item["privateMaterial"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert first.primary.certificate.subject.rfc4514_string() == "CN=kubernetes-ca"


def test_reads_kops_keyset_and_writes_the_same_document() -> None:
    text = KOPS_KEYSET.read_bytes()
    keyset = Keyset.from_yaml(text, str(KOPS_KEYSET))
    assert keyset.name == "kubernetes-ca" and keyset.primary.id == KOPS_ID
    assert keyset.primary.certificate.subject.rfc4514_string() == "CN=kubernetes"
    assert keyset.primary_keypair().private_key.key_size == 2048
    assert yaml.safe_load(keyset.to_yaml()) == yaml.safe_load(text)


def test_reads_legacy_kops_names(store: StateStore) -> None:
    """kops < 1.22 named the cluster CA ``ca`` (and < 1.19 the service-account key ``master``)."""
    store.create(f"{NAME}/pki/private/ca/keyset.yaml", KOPS_KEYSET.read_bytes(), secret=True)
    found = Keystore(store, NAME).get("kubernetes-ca")
    assert found is not None and found.name == "kubernetes-ca" and found.primary.id == KOPS_ID


@pytest.mark.parametrize("store_url", ["file", "memfs", "s3"], indirect=True)
def test_racing_creators_end_with_one_keyset(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both threads see no keyset and generate one; the conditional create lets exactly one win."""
    _race_two_creators(
        store, monkeypatch, "new_keypair", lambda ks: ks.ensure("etcd-clients-ca"), "etcd-clients-ca"
    )


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_private_files_are_0600_on_a_file_store(store: StateStore, tmp_path: Path) -> None:
    Keystore(store, NAME).ensure_cluster_keysets(_cluster())
    SecretStore(store, NAME).create("dockerconfig", b'{"auths": {}}')
    files = [p for p in (tmp_path / "state" / NAME).rglob("*") if p.is_file()]
    assert len(files) == 11  # 8 CAs and keys, the kubelet and kube-proxy keysets, the secret
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for directory in (tmp_path / "state" / NAME / "pki" / "private").iterdir():
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_memfs_marks_keysets_secret(store: StateStore) -> None:
    Keystore(store, NAME).ensure("kubernetes-ca")
    assert isinstance(store, MemFsStore)
    assert store.is_secret(f"{NAME}/pki/private/kubernetes-ca/keyset.yaml")


@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_keysets_are_server_side_encrypted_on_s3(store: StateStore) -> None:
    Keystore(store, NAME).ensure("kubernetes-ca")
    bucket = store.url.removeprefix("s3://").split("/", 1)[0]
    head = boto3.client("s3", region_name="eu-west-1").head_object(
        Bucket=bucket, Key=f"state/{NAME}/pki/private/kubernetes-ca/keyset.yaml"
    )
    assert head["ServerSideEncryption"] == "AES256"


# --- the cluster's keysets ---------------------------------------------------------------------------------


def test_cluster_keyset_names_follow_kops() -> None:
    assert cluster_keyset_names(_cluster()) == {
        "kubernetes-ca": "ca",
        "kubelet": "leaf",
        "kube-proxy": "leaf",
        "apiserver-aggregator-ca": "ca",
        "service-account": "rsa",
        "etcd-clients-ca": "ca",
        "etcd-manager-ca-main": "ca",
        "etcd-peers-ca-main": "ca",
        "etcd-manager-ca-events": "ca",
        "etcd-peers-ca-events": "ca",
    }
    names = cluster_keyset_names(_cluster(("main", "events", "cilium"), discovery_url="https://d.example"))
    assert {
        "etcd-clients-ca-cilium",
        "etcd-manager-ca-cilium",
        "etcd-peers-ca-cilium",
        "discovery-ca",
    } <= set(names)


def test_ensure_cluster_keysets_is_idempotent(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    first = ks.ensure_cluster_keysets(_cluster())
    assert sorted(first) == ks.names()
    assert first["service-account"].primary.certificate.subject.rfc4514_string() == "CN=service-account"
    before = {k: store.read(k) for k in store.list(f"{NAME}/pki/")}
    second = ks.ensure_cluster_keysets(_cluster())
    assert {n: k.primary_id for n, k in first.items()} == {n: k.primary_id for n, k in second.items()}
    assert {k: store.read(k) for k in store.list(f"{NAME}/pki/")} == before


# --- leaf keysets: the nodes' kubelet and kube-proxy client keypairs ----------------------------------------


def _openssl_verify(tmp_path: Path, ca_pem: bytes, cert_pem: bytes) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "leaf.crt").write_bytes(cert_pem)
    result = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", tmp_path / "ca.crt", tmp_path / "leaf.crt"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "subject"),
    [("kubelet", "CN=kubelet,O=system:nodes"), ("kube-proxy", "CN=system:kube-proxy")],
)
def test_leaf_keysets_are_kops_legacy_client_certificates(
    store: StateStore, tmp_path: Path, name: str, subject: str
) -> None:
    ks = Keystore(store, NAME)
    keysets = ks.ensure_cluster_keysets(_cluster())
    ca, leaf = keysets["kubernetes-ca"], keysets[name]
    assert store.read(f"{NAME}/pki/private/{name}/keyset.yaml") is not None
    assert leaf.name == name and len(leaf.items) == 1 and leaf.primary.has_private_key
    cert = leaf.primary.certificate
    assert cert.subject.rfc4514_string() == subject
    assert cert.issuer == ca.primary.certificate.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc <= ca.primary.certificate.not_valid_after_utc
    assert leaf.primary.id == str(cert.serial_number)
    assert verify_signed_by(leaf.primary.cert_pem, ca.primary.cert_pem)
    _openssl_verify(tmp_path, ca.ca_bundle(), leaf.primary.cert_pem)
    info = {i.name: i for i in ks.list([name])}[name]
    assert info.is_primary and info.has_private_key and not info.is_ca


def test_leaf_keysets_are_created_once(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    first = ks.ensure_cluster_keysets(_cluster())
    second = ks.ensure_cluster_keysets(_cluster())
    for name in ("kubelet", "kube-proxy"):
        assert first[name].primary_id == second[name].primary_id
        assert ks.ensure_leaf(name) == first[name]
        assert ks.ensure(name, "leaf") == first[name]


def test_a_leaf_needs_its_ca_first(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    with pytest.raises(NotFoundError, match="keyset kubernetes-ca not found"):
        ks.ensure_leaf("kubelet")
    assert store.list(f"{NAME}/pki/") == []
    with pytest.raises(PykopsError, match="not a leaf keyset"):
        ks.ensure_leaf("kubernetes-ca")
    with pytest.raises(PykopsError, match="issued from a CA"):
        keystore_module.new_keypair("kubelet", "leaf")


@pytest.mark.parametrize("store_url", ["file", "memfs"], indirect=True)
def test_racing_leaf_creators_end_with_one_keyset(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    Keystore(store, NAME).ensure("kubernetes-ca")
    _race_two_creators(
        store, monkeypatch, "new_leaf_keypair", lambda ks: ks.ensure_leaf("kubelet"), "kubelet"
    )


def test_reissue_rotates_a_leaf_after_the_ca(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    keysets = ks.ensure_cluster_keysets(_cluster())
    old = keysets["kubelet"]
    new_ca_item = new_ca("kubernetes-ca")
    ks.add_item("kubernetes-ca", new_ca_item, primary=True)
    rotated = ks.reissue("kubelet")
    assert [i.id for i in rotated.items] == [old.primary_id, rotated.primary_id]
    assert rotated.primary_id != old.primary_id
    assert verify_signed_by(rotated.primary.cert_pem, new_ca_item.cert_pem)
    assert rotated.primary.certificate.subject.rfc4514_string() == "CN=kubelet,O=system:nodes"
    assert ks.require("kubelet").primary_id == rotated.primary_id


# --- rotation --------------------------------------------------------------------------------------------


def test_rotation_add_item_then_switch_primary_then_distrust(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    original = ks.ensure("kubernetes-ca")
    old_id = original.primary_id
    new = new_ca("kubernetes-ca")

    added = ks.add_item("kubernetes-ca", new)
    assert [i.id for i in added.items] == [old_id, new.id]
    assert added.primary.id == old_id  # staged, not yet used to sign
    bundle = added.ca_bundle()
    assert original.primary.cert_pem in bundle and new.cert_pem in bundle
    assert bundle.index(original.primary.cert_pem) < bundle.index(new.cert_pem)  # oldest first, as kops

    promoted = ks.set_primary("kubernetes-ca", new.id)
    assert promoted.primary.id == new.id
    reread = ks.get("kubernetes-ca")
    assert reread is not None and reread.primary.id == new.id and len(reread.items) == 2
    leaf = issue(reread.primary_keypair(), common_name="x")
    assert leaf.certificate.issuer == new.certificate.subject

    with pytest.raises(PykopsError, match="primary"):
        ks.distrust("kubernetes-ca", new.id)
    distrusted = ks.distrust("kubernetes-ca", old_id)
    assert distrusted.ca_bundle() == new.cert_pem
    assert distrusted.item(old_id).distrust_timestamp is not None
    with pytest.raises(PykopsError, match="distrusted"):
        ks.set_primary("kubernetes-ca", old_id)
    # the distrust timestamp survives the round trip through kops' YAML
    again = ks.get("kubernetes-ca")
    assert (
        again is not None
        and again.item(old_id).distrust_timestamp == distrusted.item(old_id).distrust_timestamp
    )


def test_new_primary_gets_an_id_newer_than_every_item(store: StateStore) -> None:
    older = new_ca("x")  # made first: smaller serial
    ks = Keystore(store, NAME)
    current = ks.ensure("kubernetes-ca")
    promoted = ks.add_item("kubernetes-ca", older, primary=True)
    assert int(promoted.primary_id) > int(current.primary_id)
    assert promoted.primary.cert_pem == older.cert_pem


def test_stale_keyset_update_conflicts(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    ks.ensure("kubernetes-ca")
    a = ks.get("kubernetes-ca")
    b = ks.get("kubernetes-ca")
    assert a is not None and b is not None
    ks.replace(a.with_item(new_ca("kubernetes-ca")))
    with pytest.raises(ConflictError):
        ks.replace(b.with_item(new_ca("kubernetes-ca")))
    final = ks.get("kubernetes-ca")
    assert final is not None and len(final.items) == 2


def test_store_rules_of_kops(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    keyset = Keyset.new("kubernetes-ca", new_ca("kubernetes-ca"))
    with pytest.raises(PykopsError, match="not one of its items"):
        ks.create(Keyset(keyset.name, keyset.items, primary_id="1"))
    with pytest.raises(NotFoundError):
        ks.set_primary("nope", "1")
    with pytest.raises(PykopsError, match="invalid keyset name"):
        ks.get("../x")


def test_private_material_stays_out_of_repr_and_listing(store: StateStore) -> None:
    ks = Keystore(store, NAME)
    keyset = ks.ensure("kubernetes-ca")
    _no_private_material(repr(keyset) + repr(keyset.items) + repr(keyset.primary))
    infos = ks.list()
    assert [(i.name, i.id, i.is_primary, i.has_private_key, i.is_ca) for i in infos] == [
        ("kubernetes-ca", keyset.primary_id, True, True, True)
    ]
    _no_private_material(repr(infos) + json.dumps([i.to_dict() for i in infos]))


# --- secrets --------------------------------------------------------------------------------------------


def test_secrets_in_kops_format(store: StateStore) -> None:
    secrets = SecretStore(store, NAME)
    secrets.create("dockerconfig", b'{"auths": {"r.example": {"auth": "dTpw"}}}')
    raw = store.read(f"{NAME}/secrets/dockerconfig")
    assert raw is not None
    assert json.loads(raw.data) == {
        "Data": base64.b64encode(b'{"auths": {"r.example": {"auth": "dTpw"}}}').decode()
    }
    assert secrets.get("dockerconfig") == b'{"auths": {"r.example": {"auth": "dTpw"}}}'
    with pytest.raises(ConflictError, match="--force"):
        secrets.create("dockerconfig", b"{}")
    secrets.create("dockerconfig", b'{"auths": {}}', force=True)
    assert secrets.get("dockerconfig") == b'{"auths": {}}'
    assert secrets.list() == ["dockerconfig"]
    secrets.delete("dockerconfig")
    assert secrets.list() == [] and secrets.get("dockerconfig") is None
    with pytest.raises(NotFoundError):
        secrets.delete("dockerconfig")


ENCRYPTION_CONFIG = b"""\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/Cg==
      - identity: {}
"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "auths"),
        (b'{"credsStore": "desktop"}', "auths"),
        (b'{"auths": {"r": "x"}}', "must be an object"),
    ],
)
def test_dockerconfig_validation(data: bytes, message: str) -> None:
    validate_dockerconfig(b'{"auths": {"r.example": {"auth": "dTpw"}}}', "ok")
    with pytest.raises(UsageError, match=message):
        validate_dockerconfig(data, "f")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: [", "not valid YAML"),
        (b"kind: Secret\napiVersion: v1\n", "kind: EncryptionConfiguration"),
        (b"kind: EncryptionConfiguration\napiVersion: v2\nresources: []\n", "apiVersion"),
        (b"kind: EncryptionConfiguration\napiVersion: apiserver.config.k8s.io/v1\n", "resources"),
    ],
)
def test_encryptionconfig_validation(data: bytes, message: str) -> None:
    validate_encryptionconfig(ENCRYPTION_CONFIG, "ok")
    with pytest.raises(UsageError, match=message):
        validate_encryptionconfig(data, "f")


# --- CLI ------------------------------------------------------------------------------------------------


class Cli:
    def __init__(self, state: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.state = state
        self.capsys = capsys
        self.seen = ""

    def __call__(self, *args: str, expect: int = 0) -> tuple[str, str]:
        code = main(["--state", self.state, "--name", NAME, *args])
        out, err = self.capsys.readouterr()
        self.seen += out + err
        assert code == expect, f"exit {code}, stdout={out!r} stderr={err!r}"
        return out, err


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KOPS_STATE_STORE", raising=False)
    monkeypatch.delenv("KOPS_CLUSTER_NAME", raising=False)
    state = f"file://{tmp_path / 'state'}"
    c = Cli(state, capsys)
    c("create", "cluster", "--zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=3")
    yield c
    _no_private_material(c.seen)  # nothing any command printed ever held private material


def _ensure_keysets(state: str) -> dict[str, Keyset]:
    from pykops.api.populate import populate_cluster
    from pykops.state.registry import ClusterRegistry

    registry = ClusterRegistry(open_store(state))
    cluster = populate_cluster(registry.get_cluster(NAME).obj, [g.obj for g in registry.get_groups(NAME)])
    return Keystore(registry.store, NAME).ensure_cluster_keysets(cluster)


def test_cli_get_keypairs(cli: Cli) -> None:
    out, err = cli("get", "keypairs", expect=1)
    assert "no keypairs found" in err and "update cluster" in err
    keysets = _ensure_keysets(cli.state)
    out, _ = cli("get", "keypairs")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "ISSUED", "EXPIRES", "PRIMARY", "HASPRIVATE"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(keysets)
    row = next(line.split() for line in lines[1:] if line.startswith("kubernetes-ca "))
    assert row[1] == keysets["kubernetes-ca"].primary_id and row[4:] == ["*", "*"]

    out, _ = cli("get", "keypair", "kubernetes-ca", "service-account", "-o", "json")
    items = json.loads(out)
    assert [(i["name"], i["isPrimary"], i["hasPrivateKey"]) for i in items] == [
        ("kubernetes-ca", True, True),
        ("service-account", True, True),
    ]
    assert items[0]["subject"] == "CN=kubernetes-ca" and items[0]["isCA"] and items[0]["keyLength"] == 2048
    out, _ = cli("get", "keypairs", "kubernetes-ca", "-o", "yaml")
    assert yaml.safe_load(out)[0]["id"] == keysets["kubernetes-ca"].primary_id
    _, err = cli("get", "keypairs", "nope", expect=1)
    assert "nope" in err and "kubernetes-ca" in err


def test_cli_get_keypairs_distrusted(cli: Cli) -> None:
    _ensure_keysets(cli.state)
    ks = Keystore(open_store(cli.state), NAME)
    old = ks.require("kubernetes-ca").primary_id
    new = new_ca("kubernetes-ca")
    ks.add_item("kubernetes-ca", new, primary=True)
    ks.distrust("kubernetes-ca", old)
    out, _ = cli("get", "keypairs", "kubernetes-ca")
    assert old not in out and new.id in out
    out, _ = cli("get", "keypairs", "kubernetes-ca", "--distrusted")
    assert "DISTRUSTED" in out.splitlines()[0] and old in out


def test_cli_secrets(cli: Cli, tmp_path: Path) -> None:
    _, err = cli("get", "secrets", expect=1)
    assert "no secrets found" in err
    docker = tmp_path / "config.json"
    docker.write_text('{"auths": {"registry.example.com": {"auth": "c2VjcmV0OnBhc3N3b3Jk"}}}')
    cli("create", "secret", "dockerconfig", "-f", str(docker))
    _, err = cli("create", "secret", "dockerconfig", "-f", str(docker), expect=1)
    assert "--force" in err
    cli("create", "secret", "dockerconfig", "-f", str(docker), "--force")
    bad = tmp_path / "bad.json"
    bad.write_text('{"credsStore": "desktop"}')
    _, err = cli("create", "secret", "dockerconfig", "-f", str(bad), "--force", expect=2)
    assert "auths" in err
    enc = tmp_path / "enc.yaml"
    enc.write_bytes(ENCRYPTION_CONFIG)
    cli("create", "secret", "encryptionconfig", "-f", str(enc))
    _, err = cli("create", "secret", "encryptionconfig", "-f", str(docker), "--force", expect=2)
    assert "EncryptionConfiguration" in err

    out, _ = cli("get", "secrets")
    assert out.split() == ["NAME", "dockerconfig", "encryptionconfig"]
    out, _ = cli("get", "secret", "-o", "json")
    assert json.loads(out) == [{"name": "dockerconfig"}, {"name": "encryptionconfig"}]
    out, _ = cli("get", "secrets", "encryptionconfig", "-o", "yaml")
    assert yaml.safe_load(out) == [{"name": "encryptionconfig"}]
    assert "c2VjcmV0" not in cli.seen and "aescbc" not in cli.seen  # secret content is never printed

    cli("delete", "secret", "dockerconfig")
    _, err = cli("delete", "secret", "dockerconfig", expect=1)
    assert "encryptionconfig" in err
    out, _ = cli("get", "secrets")
    assert out.split() == ["NAME", "encryptionconfig"]


def _new_ssh_public_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    public = ed25519.Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" x\n"


def test_cli_sshpublickeys(cli: Cli, tmp_path: Path) -> None:
    _, err = cli("get", "sshpublickeys", expect=1)
    assert "no SSH public key" in err
    _, err = cli("create", "sshpublickey", expect=2)
    assert "id_ed25519.pub" in err
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@host\n"
    (ssh / "id_ed25519.pub").write_text(key)
    (ssh / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot read\n")
    out, _ = cli("create", "sshpublickey")
    out, _ = cli("get", "sshpublickeys")
    (fingerprint,) = out.split()[1:]
    assert len(fingerprint.split(":")) == 16
    stored = open_store(cli.state).list(f"{NAME}/pki/ssh/public/admin/")
    assert stored == [f"{NAME}/pki/ssh/public/admin/{fingerprint.replace(':', '')}"]
    out, _ = cli("get", "sshpublickey", NAME, "-o", "json")
    assert json.loads(out) == [{"id": fingerprint, "publicKey": key.strip()}]
    cli("create", "sshpublickey", "-i", str(ssh / "id_ed25519.pub"))  # the same key again: fine

    other = tmp_path / "other.pub"
    other.write_bytes(_new_ssh_public_key())
    _, err = cli("create", "sshpublickey", "-i", str(other), expect=1)
    assert "exactly one" in err and "delete sshpublickey" in err
    _, err = cli("create", "sshpublickey", "-i", str(ssh / "id_ed25519"), expect=2)
    assert "private key" in err
    cli("delete", "sshpublickey")
    cli("create", "sshpublickey", "-i", str(other))
    out, _ = cli("get", "sshpublickeys")
    assert fingerprint not in out


def test_cli_needs_an_existing_cluster(cli: Cli) -> None:
    code = main(["--state", cli.state, "--name", "other.k8s.local", "get", "keypairs"])
    assert code == 1


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_keystore_writes_through_os_umask(store: StateStore, tmp_path: Path) -> None:
    """0600 whatever the umask: the store sets the mode explicitly."""
    old = os.umask(0)
    try:
        Keystore(store, NAME).ensure("kubernetes-ca")
    finally:
        os.umask(old)
    path = tmp_path / "state" / NAME / "pki" / "private" / "kubernetes-ca" / "keyset.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _race_two_creators(
    store: StateStore,
    monkeypatch: pytest.MonkeyPatch,
    generator: str,
    ensure: Callable[[Keystore], Keyset],
    name: str,
) -> None:
    """Two threads each generate a keypair (held at a barrier so both exist before either is written) and
    ensure keyset ``name``: both must end with the same single stored item."""
    barrier = threading.Barrier(2, timeout=30)
    real = getattr(keystore_module, generator)
    generated: list[str] = []

    def slow(*args: Any) -> Any:
        keypair = real(*args)
        generated.append(keypair.id)
        barrier.wait()  # both candidates exist before either is written
        return keypair

    monkeypatch.setattr(keystore_module, generator, slow)
    results: list[Keyset] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ensure(Keystore(open_store(store.url), NAME)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(generated) == 2 and generated[0] != generated[1]
    assert results[0].primary_id == results[1].primary_id
    stored = Keystore(store, NAME).get(name)
    assert stored is not None and len(stored.items) == 1 and stored.primary_id == results[0].primary_id
