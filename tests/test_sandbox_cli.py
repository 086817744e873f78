"""``pykops sandbox up|status|down`` (a background AWS emulator) and the seeding of the emulator."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from pykops.api.channel import load_channel
from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.manager import LABEL, STATE_BUCKET
from pykops.sandbox.seed import AL2023_IMAGES, AMAZON_OWNER, REQUIRED_MANAGED_POLICIES, UBUNTU_OWNER, seed

REGION = "eu-west-1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) still answers kill(0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _exports(text: str) -> dict[str, str]:
    """The variables of the ``export NAME=value`` lines of an env file."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


def _client(service: str, env: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str, expect: int = 0) -> tuple[str, str]:
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert code == expect, f"exit {code}, stdout={out!r} stderr={err!r}"
        return out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Iterator[Path]:
    """A sandbox directory; whatever happens, the sandbox in it is stopped afterwards."""
    directory = tmp_path / "sandbox"
    try:
        yield directory
    finally:
        main(["sandbox", "down", "--dir", str(directory)])


# --- lifecycle -------------------------------------------------------------------------------------------


def test_up_status_use_up_again_down(cli: Cli, sandbox_dir: Path) -> None:
    d = str(sandbox_dir)
    out, err = cli("sandbox", "up", "--dir", d)
    assert LABEL in err and "pykops sandbox (local simulation; no AWS account is used)" in err
    env = _exports(out)
    assert env == _exports((sandbox_dir / "env").read_text())
    assert all(line.startswith(("export ", "unset ", "#")) for line in out.splitlines())
    endpoint = env["AWS_ENDPOINT_URL"]
    assert endpoint.startswith("http://127.0.0.1:") and int(endpoint.rsplit(":", 1)[1]) > 0
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == REGION
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["KOPS_STATE_STORE"] == f"s3://{STATE_BUCKET}"
    pid = int((sandbox_dir / "aws-emulator.pid").read_text())
    assert _alive(pid)
    assert os.getsid(pid) == pid  # its own session: the shell's Ctrl-C and hang-up do not reach it
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"  # no stdin to watch
    assert "pykops AWS emulator listening on" in (sandbox_dir / "aws-emulator.log").read_text()

    out, err = cli("sandbox", "status", "--dir", d)
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "STATUS", "PID", "ENDPOINT"]
    assert rows[1] == ["aws-emulator", "running", str(pid), endpoint]
    assert rows[2] == ["state-store", "ready", "-", f"s3://{STATE_BUCKET}"]

    # boto3, configured from the env file, talks to the sandbox: images seeded, state store ready.
    ec2, s3, iam = _client("ec2", env), _client("s3", env), _client("iam", env)
    channel = load_channel()
    for arch, ec2_arch in (("amd64", "x86_64"), ("arm64", "arm64")):
        owner, name = channel.default_image(channel.default_kubernetes_version, arch).split("/", 1)
        images = ec2.describe_images(Owners=[owner], Filters=[{"Name": "name", "Values": [name]}])["Images"]
        assert [(i["Name"], i["OwnerId"], i["Architecture"]) for i in images] == [(name, owner, ec2_arch)]
    al2023 = ec2.describe_images(
        Owners=[AMAZON_OWNER], Filters=[{"Name": "name", "Values": [name for name, _ in AL2023_IMAGES]}]
    )["Images"]
    assert sorted((i["Name"], i["Architecture"]) for i in al2023) == sorted(AL2023_IMAGES)
    s3.head_bucket(Bucket=STATE_BUCKET)
    assert s3.get_bucket_versioning(Bucket=STATE_BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=STATE_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/IAMFullAccess")["Policy"]["PolicyName"]
    s3.put_object(Bucket=STATE_BUCKET, Key="kept", Body=b"data")

    # up again: already running, same endpoint, same process, data kept.
    out, err = cli("sandbox", "up", "--dir", d)
    assert "already running" in err
    assert _exports(out) == env
    assert int((sandbox_dir / "aws-emulator.pid").read_text()) == pid
    assert s3.get_object(Bucket=STATE_BUCKET, Key="kept")["Body"].read() == b"data"

    _, err = cli("sandbox", "down", "--dir", d)
    assert f"Stopped the AWS emulator (pid {pid})" in err
    assert not _alive(pid)
    assert not (sandbox_dir / "aws-emulator.pid").exists()
    assert not (sandbox_dir / "env").exists()
    out, _ = cli("sandbox", "status", "--dir", d, expect=3)
    assert out.splitlines()[1].split()[:2] == ["aws-emulator", "stopped"]
    _, err = cli("sandbox", "down", "--dir", d)  # idempotent
    assert "not running" in err


def test_the_sandbox_outlives_the_command_that_started_it(cli: Cli, sandbox_dir: Path) -> None:
    cmd = [sys.executable, "-m", "pykops", "sandbox", "up", "--dir", str(sandbox_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    pid = int((sandbox_dir / "aws-emulator.pid").read_text())
    assert _alive(pid)  # the CLI process has exited; the emulator runs on
    out, _ = cli("sandbox", "status", "--dir", str(sandbox_dir))
    assert out.splitlines()[1].split()[:3] == ["aws-emulator", "running", str(pid)]
    assert _client("s3", _exports(done.stdout)).head_bucket(Bucket=STATE_BUCKET)
    cli("sandbox", "down", "--dir", str(sandbox_dir))
    assert not _alive(pid)


def test_up_on_a_busy_port_fails_cleanly(cli: Cli, sandbox_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out, err = cli("sandbox", "up", "--dir", str(sandbox_dir), "--port", str(port), expect=1)
    assert out == ""
    assert "the AWS emulator exited before it was ready" in err
    assert "Address already in use" in err
    assert not (sandbox_dir / "aws-emulator.pid").exists()
    assert not (sandbox_dir / "env").exists()
    cli("sandbox", "status", "--dir", str(sandbox_dir), expect=3)


def test_stale_pid_file(cli: Cli, sandbox_dir: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    sandbox_dir.mkdir()
    (sandbox_dir / "aws-emulator.pid").write_text(f"{gone.pid}\n")
    out, _ = cli("sandbox", "status", "--dir", str(sandbox_dir), expect=3)
    assert "stopped (stale pid file)" in out
    _, err = cli("sandbox", "down", "--dir", str(sandbox_dir))
    assert "not running" in err
    assert not (sandbox_dir / "aws-emulator.pid").exists()


def test_default_directory(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYKOPS_SANDBOX_DIR", str(tmp_path / "from-env"))
    _, err = cli("sandbox", "status", expect=3)
    assert str(tmp_path / "from-env") in err
    monkeypatch.delenv("PYKOPS_SANDBOX_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _, err = cli("sandbox", "status", expect=3)
    assert str(tmp_path / "home" / ".pykops" / "sandbox") in err


# --- seeding ---------------------------------------------------------------------------------------------


def test_seed_publishes_the_channel_images_and_checks_iam(aws_emulator: AwsEmulator) -> None:
    bucket = f"pykops-seed-{uuid.uuid4().hex[:12]}"
    first = seed(aws_emulator.endpoint_url, REGION, state_bucket=bucket)
    channel_specs = {image.name for image in load_channel().images}
    al2023_specs = {f"{AMAZON_OWNER}/{name}" for name, _ in AL2023_IMAGES}
    assert set(first.images) == channel_specs | al2023_specs
    assert list(first.policies) == list(REQUIRED_MANAGED_POLICIES)
    assert first.state_bucket == bucket
    again = seed(aws_emulator.endpoint_url, REGION)  # idempotent: nothing registered twice
    assert again.registered == [] and again.images == first.images

    env = {**aws_emulator.env(), "AWS_REGION": REGION}
    ec2 = _client("ec2", env)
    ubuntu = ec2.describe_images(
        Owners=[UBUNTU_OWNER],
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-*-server-*"]}],
    )["Images"]
    assert {(i["Name"].split("-")[-3], i["Architecture"], i["RootDeviceName"]) for i in ubuntu} == {
        ("amd64", "x86_64", "/dev/sda1"),
        ("arm64", "arm64", "/dev/sda1"),
    }
    assert {i["OwnerId"] for i in ubuntu} == {UBUNTU_OWNER} and all(i["Public"] for i in ubuntu)

    # What `update cluster` does with the channel's image names and the al2023 family's patterns.
    from pykops.cloud.aws.images import resolve_images

    family = load_channel().image_family("al2023")
    names = sorted(channel_specs) + [f"amazon/{family.name_pattern(arch)}" for arch in ("amd64", "arm64")]
    resolved = resolve_images(SimpleNamespace(ec2=ec2, region=REGION), names)
    assert {spec: resolved[spec].id for spec in channel_specs} == {s: first.images[s] for s in channel_specs}
    assert resolved[f"amazon/{family.name_pattern('arm64')}"].architecture == "arm64"

    s3 = _client("s3", env)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
