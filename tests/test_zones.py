"""``get zones`` against the AWS emulator: the tutorial's describe-availability-zones and ZONES export."""

from __future__ import annotations

import json

import boto3
import pytest

from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def expected(region: str) -> list[dict[str, str]]:
    """The region's zones straight from boto3, without pykops."""
    zones = boto3.client("ec2", region_name=region).describe_availability_zones()["AvailabilityZones"]
    return sorted(
        (
            {"name": z["ZoneName"], "state": z["State"], "id": z["ZoneId"], "region": z["RegionName"]}
            for z in zones
        ),
        key=lambda z: z["name"],
    )


def test_csv_is_the_tutorials_zones_variable(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run(capsys, "get", "zones", "--region", "eu-west-1", "-o", "csv")
    assert out == "eu-west-1a,eu-west-1b,eu-west-1c\n"
    assert out.strip() == ",".join(z["name"] for z in expected("eu-west-1"))


def test_table_and_json(aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run(capsys, "get", "zones", "--region", "us-east-1")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "ID"]
    want = expected("us-east-1")
    assert [line.split() for line in lines[1:]] == [[z["name"], "available", z["id"]] for z in want]
    assert len(want) >= 6  # us-east-1 has six zones
    out, _ = run(capsys, "get", "zones", "--region", "us-east-1", "-o", "json")
    assert json.loads(out) == want


def test_region_from_the_environment_and_none_at_all(
    aws_env: AwsEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    out, _ = run(capsys, "get", "zones", "-o", "csv")
    assert out.strip().split(",") == [z["name"] for z in expected("eu-central-1")]
    assert all(z.startswith("eu-central-1") for z in out.strip().split(","))
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    _, err = run(capsys, "get", "zones", expect=2)
    assert err.count("\n") == 1 and "no AWS region" in err and "--region" in err


def test_the_sandbox_says_it_is_a_simulation_on_stderr_only(
    aws_env: AwsEmulator,
    tmp_path: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PYKOPS_SANDBOX_DIR", str(tmp_path))
    out, err = run(capsys, "get", "zones", "--region", "eu-west-1", "-o", "csv")
    assert out == "eu-west-1a,eu-west-1b,eu-west-1c\n"
    assert "local simulation" in err
    monkeypatch.delenv("PYKOPS_SANDBOX_DIR")
    _, err = run(capsys, "get", "zones", "--region", "eu-west-1", "-o", "csv")
    assert err == ""
