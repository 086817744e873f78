"""``state create-bucket`` against the AWS emulator, and ``create cluster`` on a missing bucket."""

from __future__ import annotations

import uuid

import boto3
import pytest

from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def statuses(out: str) -> dict[str, str]:
    return {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in out.splitlines()[1:]}


def unique() -> str:
    return f"pykops-state-{uuid.uuid4().hex[:10]}"


def assert_hardened(bucket: str, region: str) -> None:
    s3 = boto3.client("s3", region_name=region)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def test_create_bucket_is_hardened_and_idempotent(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = unique()
    out, err = run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-west-1")
    assert statuses(out) == {
        "bucket": "created",
        "versioning": "updated",
        "default encryption": "updated",
        "public access block": "updated",
    }
    assert f"export KOPS_STATE_STORE=s3://{bucket}" in err
    s3 = boto3.client("s3", region_name="eu-west-1")
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    assert_hardened(bucket, "eu-west-1")

    out, err = run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-west-1")
    assert set(statuses(out).values()) == {"exists"}
    assert err.startswith("Kept")

    # The bucket works as a state store at once.
    _, err = run(capsys, "--state", f"s3://{bucket}", "get", "clusters")
    assert "No clusters found" in err


def test_us_east_1_has_no_location_constraint(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = unique()
    run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "us-east-1")
    location = boto3.client("s3", region_name="us-east-1").get_bucket_location(Bucket=bucket)
    assert location.get("LocationConstraint") is None
    assert_hardened(bucket, "us-east-1")


def test_an_existing_bare_bucket_is_completed(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = unique()
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    out, _ = run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-west-1")
    assert statuses(out) == {
        "bucket": "exists",
        "versioning": "updated",
        "default encryption": "updated",
        "public access block": "updated",
    }
    assert_hardened(bucket, "eu-west-1")


@pytest.mark.parametrize("url", ["s3://", "s3://bucket/prefix", "gs://bucket", "s3://Bad_Name", "s3://ab"])
def test_bad_bucket_urls_are_usage_errors(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    _, err = run(capsys, "state", "create-bucket", url, "--region", "eu-west-1", expect=2)
    assert err.count("\n") == 1


def test_create_cluster_on_a_missing_bucket_says_to_create_it(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = unique()
    args = ["--state", f"s3://{bucket}", "create", "cluster", "--name", "missing.k8s.local"]
    _, err = run(capsys, *args, "--zones", "eu-west-1a", expect=1)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0] == (
        f"Error: state store bucket {bucket} does not exist; create it with: pykops state create-bucket s3://{bucket}"
    )
    # ...and after running it, the same command works.
    run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-west-1")
    run(capsys, *args, "--zones", "eu-west-1a")


def test_an_existing_bucket_stays_in_its_region(
    aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = unique()
    run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-central-1")
    out, err = run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "us-east-1")
    assert set(statuses(out).values()) == {"exists"} and "in eu-central-1" in err
    location = boto3.client("s3", region_name="eu-central-1").get_bucket_location(Bucket=bucket)
    assert location["LocationConstraint"] == "eu-central-1"


def test_kms_encryption_on_request(aws_env: AwsEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = unique()
    run(capsys, "state", "create-bucket", f"s3://{bucket}", "--region", "eu-west-1")
    args = ["state", "create-bucket", f"s3://{bucket}", "--kms-key", "alias/kops-state"]
    out, _ = run(capsys, *args)
    assert statuses(out)["default encryption"] == "updated"
    s3 = boto3.client("s3", region_name="eu-west-1")
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/kops-state",
    }
    out, _ = run(capsys, *args)
    assert set(statuses(out).values()) == {"exists"}
    # Without --kms-key, the owner's KMS key is kept.
    out, _ = run(capsys, "state", "create-bucket", f"s3://{bucket}")
    assert statuses(out)["default encryption"] == "exists"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
