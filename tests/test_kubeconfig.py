"""kubeconfig: the pure document functions, export/remove on disk, and what kubectl and the Python client
make of the result."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pykops.api.models import APISpec, Cluster, ClusterSpec, ClusterSubnet, Empty, EtcdClusterSpec, ObjectMeta
from pykops.cli.main import main
from pykops.errors import UsageError
from pykops.model.names import elb_name
from pykops.ops import kubeconfig as ops_kubeconfig
from pykops.ops.kubeconfig import (
    DEFAULT_ADMIN_LIFETIME,
    api_load_balancer_dns,
    api_server_url,
    build_cluster_kubeconfig,
    export_kubeconfig,
    kubeconfig_path,
    parse_duration,
    remove_context,
)
from pykops.pki.ca import load_certificate, new_ca, verify_signed_by
from pykops.pki.kubeconfig import (
    KubeconfigError,
    build_kubeconfig,
    merge_kubeconfig,
    parse_kubeconfig,
    remove_cluster,
)
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.state.keystore import Keystore
from pykops.state.memfs import reset_memfs
from pykops.state.store import StateStore, open_store

NAME = "proyecto.k8s.local"
KUBECTL = shutil.which("kubectl")
OPENSSL = shutil.which("openssl")
LB_DNS = "api-proyecto-k8s-local-abc-0123456789.elb.eu-west-1.amazonaws.com"


def _cluster(*, dns_api: bool = False) -> Cluster:
    spec = ClusterSpec(
        subnets=[ClusterSubnet(name="eu-west-1a", zone="eu-west-1a")],
        etcd_clusters=[EtcdClusterSpec(name="main"), EtcdClusterSpec(name="events")],
    )
    if dns_api:
        spec.api = APISpec(dns=Empty())
    return Cluster(metadata=ObjectMeta(name=NAME), spec=spec)


def _lookup(_: Cluster) -> str:
    return LB_DNS


def _no_lookup(_: Cluster) -> None:
    return None


@pytest.fixture
def store() -> Iterator[StateStore]:
    name = f"kubeconfig-{uuid.uuid4().hex}"
    s = open_store(f"memfs://{name}")
    Keystore(s, NAME).ensure("kubernetes-ca")
    yield s
    reset_memfs(name)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and no KUBECONFIG, so that no test touches the real ~/.kube/config."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


def _b64d(value: str) -> bytes:
    return base64.b64decode(value)


def _entry(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    matches = [e for e in config[section] if e["name"] == name]
    assert len(matches) == 1, (section, name, config[section])
    return matches[0]


OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "preferences": {},
    "clusters": [{"name": "kind-dev", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "kind-dev", "user": {"token": "t0ken"}}, {"name": "oidc", "user": {"token": "x"}}],
    "contexts": [{"name": "kind-dev", "context": {"cluster": "kind-dev", "user": "kind-dev"}}],
    "current-context": "kind-dev",
}


# --- pure documents ---------------------------------------------------------------------------------------


def test_build_kubeconfig_shape() -> None:
    ca = new_ca("kubernetes-ca")
    doc = build_kubeconfig(
        NAME,
        "https://api.example",
        ca.cert_pem,
        client_cert_pem=b"CERT",
        client_key_pem=b"KEY",
        tls_server_name=f"api.internal.{NAME}",
    )
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config" and doc["current-context"] == NAME
    cluster = _entry(doc, "clusters", NAME)["cluster"]
    assert _b64d(cluster["certificate-authority-data"]) == ca.cert_pem
    assert cluster["server"] == "https://api.example"
    assert cluster["tls-server-name"] == f"api.internal.{NAME}"
    assert _entry(doc, "contexts", NAME)["context"] == {"cluster": NAME, "user": NAME}
    user = _entry(doc, "users", NAME)["user"]
    assert _b64d(user["client-certificate-data"]) == b"CERT" and _b64d(user["client-key-data"]) == b"KEY"

    no_user = build_kubeconfig(NAME, "https://api.example", ca.cert_pem)
    assert no_user["users"] == [] and _entry(no_user, "contexts", NAME)["context"] == {"cluster": NAME}
    with pytest.raises(KubeconfigError):
        build_kubeconfig(NAME, "https://x", b"", client_cert_pem=b"CERT")
    with pytest.raises(KubeconfigError, match="https"):
        build_kubeconfig(NAME, "http://x", b"")


def test_merge_keeps_other_entries_and_replaces_ours() -> None:
    first = build_kubeconfig(NAME, "https://old", b"CA1", client_cert_pem=b"C1", client_key_pem=b"K1")
    merged = merge_kubeconfig(OTHER, first)
    assert [c["name"] for c in merged["clusters"]] == ["kind-dev", NAME]
    assert [u["name"] for u in merged["users"]] == ["kind-dev", "oidc", NAME]
    assert merged["current-context"] == NAME
    assert OTHER["current-context"] == "kind-dev"  # inputs untouched

    second = build_kubeconfig(NAME, "https://new", b"CA2", client_cert_pem=b"C2", client_key_pem=b"K2")
    again = merge_kubeconfig(merged, second)
    assert [c["name"] for c in again["clusters"]] == ["kind-dev", NAME]
    assert _entry(again, "clusters", NAME)["cluster"]["server"] == "https://new"
    assert _b64d(_entry(again, "users", NAME)["user"]["client-key-data"]) == b"K2"
    assert _entry(again, "users", "kind-dev") == _entry(OTHER, "users", "kind-dev")
    assert _entry(again, "contexts", "kind-dev") == _entry(OTHER, "contexts", "kind-dev")


def test_merge_without_credentials_keeps_the_existing_user() -> None:
    """As kops: exporting without --admin/--user does not drop credentials exported earlier."""
    with_admin = merge_kubeconfig(
        None, build_kubeconfig(NAME, "https://a", b"CA", client_cert_pem=b"C", client_key_pem=b"K")
    )
    plain = merge_kubeconfig(with_admin, build_kubeconfig(NAME, "https://b", b"CA"))
    assert _entry(plain, "contexts", NAME)["context"] == {"cluster": NAME, "user": NAME}
    assert _entry(plain, "clusters", NAME)["cluster"]["server"] == "https://b"


def test_merge_with_existing_user() -> None:
    merged = merge_kubeconfig(OTHER, build_kubeconfig(NAME, "https://a", b"CA", user="oidc"))
    assert _entry(merged, "contexts", NAME)["context"] == {"cluster": NAME, "user": "oidc"}
    with pytest.raises(KubeconfigError, match="could not find user 'nobody'"):
        merge_kubeconfig(OTHER, build_kubeconfig(NAME, "https://a", b"CA", user="nobody"))


def test_remove_cluster() -> None:
    merged = merge_kubeconfig(
        OTHER, build_kubeconfig(NAME, "https://a", b"CA", client_cert_pem=b"C", client_key_pem=b"K")
    )
    merged["users"].append({"name": f"{NAME}-basic-auth", "user": {"username": "admin"}})
    removed, changed = remove_cluster(merged, NAME)
    assert changed and removed["current-context"] == ""
    assert removed["clusters"] == OTHER["clusters"] and removed["users"] == OTHER["users"]
    assert removed["contexts"] == OTHER["contexts"]
    assert remove_cluster(OTHER, NAME) == (OTHER, False)


def test_parse_kubeconfig() -> None:
    assert parse_kubeconfig("", "f")["clusters"] == []
    assert parse_kubeconfig(yaml.safe_dump(OTHER), "f") == OTHER
    for bad in ("- a\n", "kind: Pod\n", "clusters: 3\n", "users: [{user: {}}]\n", "a: [\n"):
        with pytest.raises(KubeconfigError):
            parse_kubeconfig(bad, "f")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("18h", timedelta(hours=18)), ("1h30m", timedelta(minutes=90)), ("90s", timedelta(seconds=90))],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "18", "h", "1d", "0h", "1h 2m", "-1h", "cluster.k8s.local"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


# --- server URL -------------------------------------------------------------------------------------------


def test_server_url_choices() -> None:
    assert api_server_url(_cluster(), lookup=_lookup).url == f"https://{LB_DNS}"
    assert api_server_url(_cluster(), internal=True, lookup=_lookup).url == f"https://api.internal.{NAME}"
    missing = api_server_url(_cluster(), lookup=_no_lookup)
    assert missing.url == f"https://api.{NAME}" and "load balancer" in missing.warnings[0]
    assert api_server_url(_cluster(dns_api=True), lookup=_lookup).url == f"https://api.{NAME}"
    public = _cluster(dns_api=True)
    assert public.spec.api is not None
    public.spec.api.public_name = "k8s.example.com"
    assert api_server_url(public).url == "https://k8s.example.com"


def test_api_load_balancer_dns_from_aws(aws_env: AwsEmulator) -> None:
    cluster = _cluster()
    assert api_load_balancer_dns(cluster) is None
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.32.0/19", AvailabilityZone="eu-west-1a")
    elbv2 = boto3.client("elbv2", region_name="eu-west-1")
    lb = elbv2.create_load_balancer(
        Name=elb_name("api", NAME), Type="network", Subnets=[subnet["Subnet"]["SubnetId"]]
    )["LoadBalancers"][0]
    try:
        assert api_load_balancer_dns(cluster) == lb["DNSName"]
        assert api_server_url(cluster).url == f"https://{lb['DNSName']}"
    finally:
        elbv2.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])


# --- export and remove on disk ----------------------------------------------------------------------------


def test_kubeconfig_path_rules(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert kubeconfig_path() == home / ".kube" / "config"
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert kubeconfig_path() == tmp_path / "a"
    assert kubeconfig_path(str(tmp_path / "c")) == tmp_path / "c"


def test_export_admin_merges_into_existing_file_0600(store: StateStore, home: Path) -> None:
    path = home / ".kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(OTHER))
    path.chmod(0o644)
    before = datetime.now(UTC)
    written, warnings = export_kubeconfig(store, _cluster(), admin=DEFAULT_ADMIN_LIFETIME, lookup=_lookup)
    assert written == path and warnings == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == NAME
    assert _entry(config, "contexts", "kind-dev") == _entry(OTHER, "contexts", "kind-dev")
    assert _entry(config, "users", "kind-dev") == _entry(OTHER, "users", "kind-dev")
    cluster = _entry(config, "clusters", NAME)["cluster"]
    assert cluster["server"] == f"https://{LB_DNS}" and cluster["tls-server-name"] == f"api.internal.{NAME}"
    ca = Keystore(store, NAME).require("kubernetes-ca")
    assert _b64d(cluster["certificate-authority-data"]) == ca.ca_bundle()

    user = _entry(config, "users", NAME)["user"]
    cert_pem = _b64d(user["client-certificate-data"])
    assert _b64d(user["client-key-data"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert verify_signed_by(cert_pem, ca.primary.cert_pem)
    cert = load_certificate(cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value).startswith("kubecfg")
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    expiry = cert.not_valid_after_utc - before
    assert timedelta(hours=18) - timedelta(seconds=5) <= expiry <= timedelta(hours=18, seconds=5)

    if OPENSSL:
        (home / "ca.pem").write_bytes(ca.primary.cert_pem)
        (home / "admin.pem").write_bytes(cert_pem)
        done = subprocess.run(
            [
                OPENSSL,
                "verify",
                "-purpose",
                "sslclient",
                "-CAfile",
                str(home / "ca.pem"),
                str(home / "admin.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_export_without_credentials_warns(store: StateStore, tmp_path: Path) -> None:
    path, warnings = export_kubeconfig(store, _cluster(), kubeconfig=tmp_path / "kc", lookup=_no_lookup)
    assert any("no user credentials" in w for w in warnings)
    config = yaml.safe_load(path.read_text())
    assert _entry(config, "contexts", NAME)["context"] == {"cluster": NAME}
    assert config["users"] == []


def test_export_with_existing_user_and_internal(store: StateStore, tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(OTHER))
    export_kubeconfig(store, _cluster(), user="oidc", internal=True, kubeconfig=path, lookup=_lookup)
    config = yaml.safe_load(path.read_text())
    assert _entry(config, "contexts", NAME)["context"] == {"cluster": NAME, "user": "oidc"}
    assert _entry(config, "clusters", NAME)["cluster"]["server"] == f"https://api.internal.{NAME}"
    with pytest.raises(KubeconfigError, match="could not find user"):
        export_kubeconfig(store, _cluster(), user="nobody", kubeconfig=path, lookup=_lookup)
    with pytest.raises(UsageError, match="both"):
        build_cluster_kubeconfig(store, _cluster(), admin=timedelta(hours=1), user="oidc", lookup=_lookup)


def test_export_follows_a_symlink_and_kubeconfig_env(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real-config"
    real.write_text(yaml.safe_dump(OTHER))
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv("KUBECONFIG", f"{link}:{tmp_path / 'second'}")
    export_kubeconfig(store, _cluster(), admin=timedelta(hours=1), lookup=_lookup)
    assert link.is_symlink() and not (tmp_path / "second").exists()
    assert yaml.safe_load(real.read_text())["current-context"] == NAME
    assert stat.S_IMODE(real.stat().st_mode) == 0o600


def test_remove_context(store: StateStore, tmp_path: Path) -> None:
    path = tmp_path / "kc"
    assert remove_context(NAME, kubeconfig=path) is False and not path.exists()
    path.write_text(yaml.safe_dump(OTHER))
    export_kubeconfig(store, _cluster(), admin=timedelta(hours=1), kubeconfig=path, lookup=_lookup)
    assert remove_context(NAME, kubeconfig=path) is True
    config = yaml.safe_load(path.read_text())
    assert config["clusters"] == OTHER["clusters"] and config["users"] == OTHER["users"]
    assert config["current-context"] == ""
    assert remove_context(NAME, kubeconfig=path) is False


def test_export_needs_the_ca(tmp_path: Path) -> None:
    empty = open_store(f"memfs://kubeconfig-empty-{uuid.uuid4().hex}")
    with pytest.raises(Exception, match="update cluster"):
        export_kubeconfig(empty, _cluster(), kubeconfig=tmp_path / "kc", lookup=_lookup)


# --- consumers: kubectl and the Kubernetes Python client --------------------------------------------------


@pytest.fixture
def exported(store: StateStore, tmp_path: Path) -> Path:
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(OTHER))
    export_kubeconfig(store, _cluster(), admin=timedelta(hours=1), kubeconfig=path, lookup=_lookup)
    return path


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_accepts_the_kubeconfig(exported: Path) -> None:
    assert KUBECTL is not None

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            [KUBECTL, "config", *args, "--kubeconfig", str(exported)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    view = json.loads(kubectl("view", "--raw", "-o", "json"))
    ours = yaml.safe_load(exported.read_text())
    assert view["current-context"] == NAME
    assert {c["name"] for c in view["contexts"]} == {"kind-dev", NAME}
    assert _entry(view, "clusters", NAME)["cluster"] == _entry(ours, "clusters", NAME)["cluster"]
    assert _entry(view, "users", NAME)["user"] == _entry(ours, "users", NAME)["user"]
    assert kubectl("current-context").strip() == NAME
    minified = yaml.safe_load(kubectl("view", "--minify", "--flatten"))
    assert minified["clusters"][0]["cluster"]["server"] == f"https://{LB_DNS}"
    assert "PRIVATE KEY" not in kubectl("view")  # kubectl itself redacts the data


def test_python_client_accepts_the_kubeconfig(exported: Path) -> None:
    kube_config = pytest.importorskip("kubernetes.config")
    client = pytest.importorskip("kubernetes.client")
    contexts, active = kube_config.list_kube_config_contexts(config_file=str(exported))
    assert active["name"] == NAME and {c["name"] for c in contexts} == {"kind-dev", NAME}
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(exported), client_configuration=configuration)
    assert configuration.host == f"https://{LB_DNS}"
    assert configuration.tls_server_name == f"api.internal.{NAME}"
    ours = yaml.safe_load(exported.read_text())
    assert Path(configuration.ssl_ca_cert).read_bytes() == _b64d(
        _entry(ours, "clusters", NAME)["cluster"]["certificate-authority-data"]
    )
    assert Path(configuration.cert_file).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert Path(configuration.key_file).read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")


# --- CLI --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("KOPS_STATE_STORE", raising=False)
    monkeypatch.delenv("KOPS_CLUSTER_NAME", raising=False)
    monkeypatch.setattr(ops_kubeconfig, "api_load_balancer_dns", _lookup)
    state = f"file://{tmp_path / 'state'}"
    assert main(["--state", state, "create", "cluster", f"--name={NAME}", "--zones=eu-west-1a"]) == 0
    Keystore(open_store(state), NAME).ensure("kubernetes-ca")
    return state


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "PRIVATE KEY" not in out + err and "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVk" not in out + err
    return code, out, err


def test_cli_export_kubeconfig(
    cli_state: str, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, out, err = _run(capsys, "--state", cli_state, "export", "kubeconfig", NAME, "--admin")
    assert code == 0, err
    assert f"context to {NAME}" in out
    path = home / ".kube" / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = yaml.safe_load(path.read_text())
    assert _entry(config, "clusters", NAME)["cluster"]["server"] == f"https://{LB_DNS}"
    cert = load_certificate(_b64d(_entry(config, "users", NAME)["user"]["client-certificate-data"]))
    assert cert.not_valid_after_utc - datetime.now(UTC) > timedelta(hours=17)

    kc = tmp_path / "kc"
    code, _, err = _run(
        capsys,
        "--state",
        cli_state,
        "--name",
        NAME,
        "export",
        "kubecfg",
        "--admin=1h",
        "--kubeconfig",
        str(kc),
    )
    assert code == 0, err
    cert = load_certificate(
        _b64d(_entry(yaml.safe_load(kc.read_text()), "users", NAME)["user"]["client-certificate-data"])
    )
    assert cert.not_valid_after_utc - datetime.now(UTC) < timedelta(hours=1, seconds=5)

    # `--admin CLUSTER`: a bare --admin does not swallow the cluster name
    code, _, err = _run(
        capsys, "--state", cli_state, "export", "kubeconfig", "--admin", NAME, "--kubeconfig", str(kc)
    )
    assert code == 0, err

    code, _, err = _run(
        capsys, "--state", cli_state, "export", "kubeconfig", NAME, "--internal", "--kubeconfig", str(kc)
    )
    assert code == 0, err
    assert (
        _entry(yaml.safe_load(kc.read_text()), "clusters", NAME)["cluster"]["server"]
        == f"https://api.internal.{NAME}"
    )

    code, _, err = _run(
        capsys, "--state", cli_state, "export", "kubeconfig", NAME, "--admin=1h", "--user", "x"
    )
    assert code == 2 and "both" in err
    code, _, err = _run(capsys, "--state", cli_state, "export", "kubeconfig", NAME, "--user", "nobody")
    assert code == 1 and "could not find user" in err
    code, _, err = _run(capsys, "--state", cli_state, "export", "kubeconfig", NAME, "--admin=soon")
    assert code == 2 and "invalid duration" in err
    code, _, err = _run(capsys, "--state", cli_state, "export", "kubeconfig", "missing.k8s.local")
    assert code == 1 and "not found" in err


def test_cli_export_all(cli_state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    kc = tmp_path / "kc"
    code, _, err = _run(
        capsys, "--state", cli_state, "export", "kubeconfig", "--all", "--kubeconfig", str(kc)
    )
    assert code == 0, err
    assert "no user credentials" in err
    assert [c["name"] for c in yaml.safe_load(kc.read_text())["contexts"]] == [NAME]
