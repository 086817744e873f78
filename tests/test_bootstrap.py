"""The launch templates' user data: a cloud-config that runs data/bootstrap.py, and that script for real.

The script runs in a subprocess, as cloud-init would run it, against a fake IMDSv2 server on 127.0.0.1
and an AWS emulator of its own with moto's authentication switched on: every S3 request must carry a
valid SigV4 signature (moto recomputes it with botocore) by the temporary credentials of a role whose
policy allows reading the release. The release is the one ``upload_release`` stores; its wheelhouse
holds click (built from the installed click), the only dependency ``pykops version`` imports.
"""

from __future__ import annotations

import ast
import datetime
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import types
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pykops import __version__
from pykops.api.models import Cluster, InstanceGroup
from pykops.api.populate import populate
from pykops.model.bootstrap import USER_DATA_LIMIT, bootstrap_script, user_data
from pykops.release import make_wheel, upload_release
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.state.store import open_store

CLUSTER = "proyecto.k8s.local"
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "amd64")
BUCKET = "pykops-bootstrap-state"
ROLE = "nodes.proyecto.k8s.local"


def _group(name: str, role: str = "Node") -> InstanceGroup:
    group = InstanceGroup()
    group.metadata.name = name
    group.spec.role = role  # type: ignore[assignment]
    return group


def _cluster(name: str = CLUSTER, state: str = f"s3://{BUCKET}") -> Cluster:
    cluster = Cluster()
    cluster.metadata.name = name
    cluster.spec.config_base = f"{state}/{name}"
    return cluster


def _script_module() -> types.ModuleType:
    module = types.ModuleType("pykops_bootstrap")
    exec(compile(bootstrap_script(), "bootstrap.py", "exec"), module.__dict__)
    return module


# --- the document ----------------------------------------------------------------------------------------


def test_user_data_is_a_cloud_config_that_writes_and_runs_the_script() -> None:
    text = user_data(_cluster(state="s3://state-bucket/team"), _group("master-eu-west-1a", "ControlPlane"))
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    env, script = doc["write_files"]
    assert (env["path"], env["permissions"], env["owner"]) == (
        "/opt/pykops/bootstrap.env",
        "0600",
        "root:root",
    )
    lines = env["content"].splitlines()
    assert lines[:-1] == [
        f"PYKOPS_VERSION={__version__}",
        "PYKOPS_STATE_BUCKET=state-bucket",
        f"PYKOPS_RELEASE_PREFIX=team/{CLUSTER}/releases/{__version__}",
        f"PYKOPS_NODEUP_CONFIG=s3://state-bucket/team/{CLUSTER}/igconfig/control-plane/master-eu-west-1a/"
        "nodeupconfig.yaml",
    ]
    key, _, digest = lines[-1].partition("=")
    assert key == "PYKOPS_MACHINE_CONFIG_HASH" and len(digest) == 16 and int(digest, 16) >= 0
    assert (script["path"], script["permissions"]) == ("/opt/pykops/bootstrap.py", "0700")
    source = (Path(__file__).parents[1] / "src/pykops/model/data/bootstrap.py").read_text()
    assert script["content"] == bootstrap_script() == source  # verbatim, no templating
    assert doc["runcmd"] == [["python3", "/opt/pykops/bootstrap.py"]]
    assert set(doc) == {"write_files", "runcmd"}


def test_machines_of_a_cluster_with_a_local_state_store_fail_and_say_why(tmp_path: Path) -> None:
    root = tmp_path / "machine"
    doc = yaml.safe_load(user_data(_cluster(state=f"file://{tmp_path}/state"), _group("nodes")))
    assert "PYKOPS_STATE_BUCKET=-\n" in doc["write_files"][0]["content"]
    done = _write_files_and_run(root, doc, {"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 1
    assert f"machines can only reach an s3:// state store, not file://{tmp_path}/state/" in done.stderr


def test_the_script_uses_only_the_standard_library() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(bootstrap_script())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "urllib" in imported and imported <= set(sys.stdlib_module_names), imported


def test_user_data_stays_under_the_ec2_limit_with_long_names() -> None:
    name = ".".join(["a" * 62] * 3) + ".k8s.local"  # a 200-character cluster name
    group = _group("nodes-" + "b" * 57)
    state = "s3://" + "c" * 63 + "/" + "/".join(["prefix" * 10] * 3)
    size = len(user_data(_cluster(name, state), group).encode())
    assert size < USER_DATA_LIMIT, f"{size} bytes"
    tutorial = len(user_data(_cluster(), _group("nodes")).encode())
    assert tutorial < USER_DATA_LIMIT - 2000, f"{tutorial} bytes: less than 2 KB left"


def test_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.skip(
            "cloud-init is not installed (`make test` installs Debian's cloud-init with apt; it failed)"
        )
    cluster, groups = populate(_cluster(), [_group("master-eu-west-1a", "ControlPlane"), _group("nodes")])
    for group in groups:
        path = tmp_path / f"{group.name}.yaml"
        path.write_text(user_data(cluster, group))
        done = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Valid cloud-config" in done.stdout + done.stderr


# --- SigV4 -----------------------------------------------------------------------------------------------


def test_sigv4_matches_the_published_s3_get_object_example() -> None:
    """AWS S3 API reference, "Signature Calculations for the Authorization Header: Transferring Payload in
    a Single Chunk (AWS Signature Version 4)", Example: GET Object."""
    script = _script_module()
    headers = script.sign_v4(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {"Range": "bytes=0-9"},
        {
            "AccessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        },
        "us-east-1",
        "20130524T000000Z",
    )
    assert (
        headers["x-amz-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_sigv4_agrees_with_botocore_for_tokens_queries_and_odd_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore import auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    when = datetime.datetime(2026, 3, 1, 12, 30, 45, tzinfo=datetime.UTC)
    monkeypatch.setattr(auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    script = _script_module()
    creds = {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s3cr3t/+=", "Token": "tok+en/=="}
    key = script.s3_url("my-bucket", "eu-west-1", "team/c.k8s.local/releases/0.1.0+dev/a b+c~d.whl")
    for url in (key.replace("https://", "http://"), "http://127.0.0.1:4566/b/k?list-type=2&prefix=a%2Fb&acl"):
        ours = script.sign_v4("GET", url, {}, creds, "eu-west-1", when.strftime("%Y%m%dT%H%M%SZ"))
        request = AWSRequest("GET", url)
        auth.S3SigV4Auth(Credentials("ASIAEXAMPLE", "s3cr3t/+=", "tok+en/=="), "s3", "eu-west-1").add_auth(
            request
        )
        assert ours["authorization"].replace(", ", ",") == request.headers["Authorization"].replace(", ", ",")


def test_s3_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script_module()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert script.s3_url("b", "eu-west-1", "c/k.whl") == "https://b.s3.eu-west-1.amazonaws.com/c/k.whl"
    assert script.s3_url("a.b", "us-east-1", "k") == "https://s3.us-east-1.amazonaws.com/a.b/k"
    assert script.s3_url("b", "cn-north-1", "k") == "https://b.s3.cn-north-1.amazonaws.com.cn/k"


# --- the script for real ---------------------------------------------------------------------------------


@dataclass
class FakeImds:
    """IMDSv2 on 127.0.0.1: a token by PUT, then metadata only with that token."""

    credentials: dict[str, str]
    region: str
    fail_first_token: int = 1  # 503 to the first PUT(s): the script must retry
    token: str = "imds-token-1234"
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, had the token
    server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                imds.requests.append(("PUT", self.path, False))
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if imds.fail_first_token > 0:
                    imds.fail_first_token -= 1
                    self._send(503, "busy")
                elif self.path != "/latest/api/token" or not ttl:
                    self._send(400, "bad token request")
                else:
                    self._send(200, imds.token)

            def do_GET(self) -> None:
                ok = self.headers.get("X-aws-ec2-metadata-token") == imds.token
                imds.requests.append(("GET", self.path, ok))
                base = "/latest/meta-data/iam/security-credentials/"
                answers = {
                    base: ROLE,
                    base + ROLE: json.dumps({"Code": "Success", "Type": "AWS-HMAC", **imds.credentials}),
                    "/latest/meta-data/placement/region": imds.region,
                }
                if not ok:
                    self._send(401, "IMDSv2 token required")
                elif self.path not in answers:
                    self._send(404, "not found")
                else:
                    self._send(200, answers[self.path])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class AuthAws:
    emulator: AwsEmulator
    admin: dict[str, str]  # access key of an IAM user allowed everything
    node: dict[str, str]  # temporary credentials of the node role (AccessKeyId, SecretAccessKey, Token)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint_url,
            region_name=self.emulator.region,
            aws_access_key_id=self.admin["AccessKeyId"],
            aws_secret_access_key=self.admin["SecretAccessKey"],
        )


@pytest.fixture(scope="module")
def auth_aws() -> Iterator[AuthAws]:
    """An AWS emulator of our own where every request is authenticated (SigV4) and authorised (IAM)."""
    with AwsEmulator() as emulator:
        request = urllib.request.Request(
            emulator.endpoint_url + "/moto-api/reset-auth",
            data=b"3",
            method="POST",
            headers={"Content-Type": "text/plain"},  # moto reads the raw body, not a form
        )
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10).close()
        iam = boto3.client(
            "iam",
            endpoint_url=emulator.endpoint_url,
            region_name=emulator.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        # The 3 requests moto lets through unauthenticated: an administrator with an access key.
        iam.create_user(UserName="admin")
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        admin_policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(admin_policy))
        aws = AuthAws(
            emulator, {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}, {}
        )
        iam = aws.client("iam")
        user_arn = iam.get_user(UserName="admin")["User"]["Arn"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": user_arn}, "Action": "sts:AssumeRole"}],
        }
        role_arn = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        read = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{BUCKET}/*/releases/*",
                }
            ],
        }
        iam.put_role_policy(RoleName=ROLE, PolicyName="read-releases", PolicyDocument=json.dumps(read))
        creds = aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="i-0123456789abcdef0")[
            "Credentials"
        ]
        aws.node.update(
            AccessKeyId=creds["AccessKeyId"],
            SecretAccessKey=creds["SecretAccessKey"],
            Token=creds["SessionToken"],
            Expiration=creds["Expiration"].isoformat(),
        )
        aws.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": emulator.region}
        )
        yield aws


@pytest.fixture
def release(auth_aws: AuthAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CLUSTER's release in the emulator's bucket; its wheelhouse holds a wheel of the installed click."""
    click = md.distribution("click")
    files = [
        (f.as_posix(), Path(str(f.locate())).read_bytes())
        for f in click.files or []
        if f.parts[0] == "click" and "__pycache__" not in f.parts
    ]
    name, data = make_wheel("click", click.version, files)
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / name).write_bytes(data)
    monkeypatch.setenv("AWS_ENDPOINT_URL", auth_aws.emulator.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", auth_aws.admin["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", auth_aws.admin["SecretAccessKey"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", auth_aws.emulator.region)
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(variable, raising=False)
    upload_release(open_store(f"s3://{BUCKET}"), CLUSTER, wheelhouse=house, arches=[ARCH])
    return house


def _write_files_and_run(
    root: Path, doc: dict[str, Any], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Do what cloud-init does with the user data, under ``root``: write_files, then runcmd.

    The environment has no AWS credentials and no proxy: the script must get its credentials from IMDS.
    """
    for entry in doc["write_files"]:
        path = root / entry["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry["content"])
        path.chmod(int(entry["permissions"], 8))
    (command,) = doc["runcmd"]
    assert command[0] == "python3"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYKOPS_BOOTSTRAP_ROOT": str(root),
        "PYKOPS_BOOTSTRAP_BACKOFF": "0.01",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(root / command[1].lstrip("/"))],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=root,
    )


def _run_user_data(
    root: Path, imds: str, endpoint: str, *, args: str = "version"
) -> subprocess.CompletedProcess[str]:
    doc = yaml.safe_load(user_data(_cluster(), _group("nodes")))
    env = {"PYKOPS_BOOTSTRAP_ARGS": args, "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds}
    return _write_files_and_run(root, doc, {**env, "AWS_ENDPOINT_URL": endpoint})


@pytest.fixture
def imds(auth_aws: AuthAws) -> Iterator[FakeImds]:
    fake = FakeImds(dict(auth_aws.node), auth_aws.emulator.region)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def _imds_url(fake: FakeImds) -> str:
    assert fake.server is not None
    return f"http://127.0.0.1:{fake.server.server_address[1]}"


def test_bootstrap_installs_the_release_and_runs_pykops_from_it(
    auth_aws: AuthAws, release: Path, imds: FakeImds, tmp_path: Path
) -> None:
    root = tmp_path / "machine"
    done = _run_user_data(root, _imds_url(imds), auth_aws.emulator.endpoint_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == f"pykops {__version__} (API kops.k8s.io/v1alpha2)\n"  # from the unpacked lib
    lib = root / "opt/pykops/lib"
    assert (lib / "pykops/cli/main.py").is_file() and (lib / "click/core.py").is_file()
    assert (lib / f"pykops-{__version__}.dist-info/RECORD").is_file()
    assert not (root / "opt/pykops/downloads").exists() and not (root / "opt/pykops/lib.new").exists()
    log = (root / "var/log/pykops-bootstrap.log").read_text()
    assert "IMDSv2 token: HTTP 503 Service Unavailable busy; retrying" in log  # the first PUT failed
    assert f"(2 wheels, {ARCH}) unpacked" in log and "pykops version succeeded" in log
    # IMDSv2: a token first, then every metadata request carried it.
    assert imds.requests[0][:2] == ("PUT", "/latest/api/token")
    assert all(had for method, _, had in imds.requests if method == "GET")
    assert ("GET", f"/latest/meta-data/iam/security-credentials/{ROLE}", True) in imds.requests
    # Re-running replaces the lib cleanly.
    again = _run_user_data(root, _imds_url(imds), auth_aws.emulator.endpoint_url)
    assert again.returncode == 0, again.stderr


def test_bootstrap_fails_on_a_sha256_mismatch(
    auth_aws: AuthAws, release: Path, imds: FakeImds, tmp_path: Path
) -> None:
    s3 = auth_aws.client("s3")
    key = f"{CLUSTER}/releases/{__version__}/{next(release.glob('*.whl')).name}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the wheel the manifest lists")
    root = tmp_path / "machine"
    done = _run_user_data(root, _imds_url(imds), auth_aws.emulator.endpoint_url)
    assert done.returncode == 1
    assert "does not match the manifest's" in done.stderr
    assert hashlib.sha256(b"not the wheel the manifest lists").hexdigest() in done.stderr
    assert not (root / "opt/pykops/lib").exists()  # nothing installed, nothing run
    assert "FAILED" in (root / "var/log/pykops-bootstrap.log").read_text()


def test_bootstrap_requests_are_really_checked_by_the_emulator(
    auth_aws: AuthAws, release: Path, imds: FakeImds, tmp_path: Path
) -> None:
    """The negative control of the first test: a wrong secret key makes S3 refuse the signature."""
    imds.credentials["SecretAccessKey"] = "wrong" + imds.credentials["SecretAccessKey"][5:]
    done = _run_user_data(tmp_path / "machine", _imds_url(imds), auth_aws.emulator.endpoint_url)
    assert done.returncode == 1
    assert "SignatureDoesNotMatch" in done.stderr, done.stderr


def test_bootstrap_says_when_the_release_has_no_dependencies(
    auth_aws: AuthAws, imds: FakeImds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", auth_aws.emulator.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", auth_aws.admin["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", auth_aws.admin["SecretAccessKey"])
    store = open_store(f"s3://{BUCKET}")
    upload_release(store, CLUSTER, wheelhouse=tmp_path / "no-wheelhouse", arches=[ARCH])
    done = _run_user_data(tmp_path / "machine", _imds_url(imds), auth_aws.emulator.endpoint_url)
    assert done.returncode == 1
    assert f"the release has no dependency wheels for {ARCH}: run `pykops release prepare --arch {ARCH}`" in (
        done.stderr
    )


def test_machine_config_hash_moves_with_what_machines_are_built_from_not_with_size() -> None:
    """The user data changes (so the launch template's version moves and rolling-update sees the old
    instances) when the Kubernetes version or a group's machine spec changes, never when a group is scaled."""
    from pykops.model.bootstrap import machine_config_hash

    cluster, groups = populate(_cluster(), [_group("master-eu-west-1a", "ControlPlane"), _group("nodes")])
    nodes = groups[1]
    before = machine_config_hash(cluster, nodes)
    assert before == machine_config_hash(cluster, nodes)  # stable
    assert f"PYKOPS_MACHINE_CONFIG_HASH={before}" in user_data(cluster, nodes)

    scaled = nodes.model_copy(deep=True)
    scaled.spec.min_size, scaled.spec.max_size = 5, 7
    assert machine_config_hash(cluster, scaled) == before

    upgraded = cluster.model_copy(deep=True)
    upgraded.spec.kubernetes_version = "1.35.0"
    assert machine_config_hash(upgraded, nodes) != before
    assert user_data(upgraded, nodes) != user_data(cluster, nodes)

    labelled = nodes.model_copy(deep=True)
    labelled.spec.node_labels = {"team": "web"}
    assert machine_config_hash(cluster, labelled) != before
