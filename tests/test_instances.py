"""The day-2 commands against the AWS emulator when the cluster's API cannot be reached (no machines run
here: moto's instances never boot): ``validate cluster`` says so in one line and exits 2, with what the
cloud tells about etcd quorum; ``get instances``, the ``rolling-update`` table, ``rolling-update --yes
--cloudonly`` and ``delete instance --cloudonly`` work from the cloud alone."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest
import yaml

from pykops.cli.main import main
from pykops.ops.instances import INSTANCE_HEADERS
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed

REGION = "eu-west-1"
NAME = "inst.k8s.local"
BUCKET = "pykops-it-instances"
STATE = f"s3://{BUCKET}"


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(["--state", STATE, *args])
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    run(
        capsys,
        "create", "cluster", f"--name={NAME}", "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
        "--master-zones=eu-west-1a,eu-west-1b,eu-west-1c", "--master-count=3", "--node-count=2",
        "--networking=kubenet", "--yes",
    )  # fmt: skip
    run(capsys, "export", "kubeconfig", NAME, "--admin")
    doc = yaml.safe_load(kubeconfig.read_text())
    for c in doc["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{closed_port()}"  # nothing listens there
    kubeconfig.write_text(yaml.safe_dump(doc))
    return kubeconfig


def test_day2_commands_without_the_api(cluster: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run(capsys, "validate", "cluster", NAME, expect=2)
    assert "INSTANCE GROUPS" in out and "VALIDATION ERRORS" in out
    assert "cannot reach the Kubernetes API" in err and "Traceback" not in err
    assert "3 of 3 control-plane instances are running in the cloud" in err
    out, err = run(capsys, "validate", "cluster", NAME, "-o", "json", expect=2)
    assert '"kind": "API"' in out and "cannot reach the Kubernetes API" in err

    # Same cluster (creating one is slow): instances, the rolling-update table, cloud-only operations.
    out, err = run(capsys, "get", "instances", "--name", NAME)
    lines = out.splitlines()
    assert lines[0].split() == INSTANCE_HEADERS
    assert len(lines) == 6 and out.count("UpToDate") == 5 and "NODE-NAME is left empty" in err
    out, _ = run(capsys, "rolling-update", "cluster", NAME)
    assert out.splitlines()[0].split() == [
        "NAME",
        "STATUS",
        "NEEDUPDATE",
        "READY",
        "MIN",
        "TARGET",
        "MAX",
        "NODES",
    ]
    assert "No rolling-update required." in out
    # Without the API a real rolling update refuses, pointing at --cloudonly.
    _, err = run(capsys, "rolling-update", "cluster", NAME, "--yes", "--force", expect=1)
    assert "--cloudonly" in err
    asg = boto3.client("autoscaling", region_name=REGION)

    def node_instances() -> set[str]:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"nodes.{NAME}"])[
            "AutoScalingGroups"
        ][0]
        return {i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"}

    code = main(["--state", STATE, "rolling-update", "cluster", NAME, "--yes", "--instance-group", "node"])
    assert code == 2 and "no instance group named 'node'" in capsys.readouterr().err  # not a roll of nothing
    before = node_instances()
    flags = ["--yes", "--force", "--cloudonly", "--instance-group", "nodes", "--node-interval", "0"]
    out, _ = run(capsys, "rolling-update", "cluster", NAME, *flags)
    assert "2 instance(s) replaced" in out
    after = node_instances()
    assert len(after) == 2 and not (after & before)  # the group replaced both
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"nodes.{NAME}"])["AutoScalingGroups"][0]
    assert (group["DesiredCapacity"], group["MaxSize"]) == (2, 2)  # the surge was undone
    victim = sorted(after)[0]
    out, _ = run(capsys, "delete", "instance", victim, "--name", NAME)
    assert "Must specify --yes" in out and victim in node_instances()
    run(capsys, "delete", "instance", victim, "--name", NAME, "--yes", "--cloudonly")
    remaining = node_instances()
    assert victim not in remaining and len(remaining) == 2
