"""The local AWS emulator: lifecycle, and the AWS behaviours its fidelity fixes restore (over HTTP)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from pykops.sandbox.aws_emulator import FIX_NAMES, AwsEmulator, AwsEmulatorError, main

REGION = "eu-west-1"


def _client(endpoint_url: str | None = None, region: str = REGION) -> Any:
    """An S3 client; without endpoint_url it finds the emulator through AWS_ENDPOINT_URL (aws_env)."""
    kwargs: dict[str, Any] = {"region_name": region}
    if endpoint_url is not None:
        kwargs.update(endpoint_url=endpoint_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    return boto3.session.Session().client("s3", **kwargs)


def _bucket(s3: Any, region: str = REGION) -> str:
    name = f"pykops-emu-{uuid.uuid4().hex[:16]}"
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    return name


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = err.value.response
    return int(response["ResponseMetadata"]["HTTPStatusCode"]), str(response["Error"]["Code"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# --- lifecycle ----------------------------------------------------------------------------------------------


def test_start_env_and_stop() -> None:
    emulator = AwsEmulator().start()
    try:
        assert emulator.running
        assert emulator.endpoint_url.startswith("http://127.0.0.1:")
        env = emulator.env()
        assert env["AWS_ENDPOINT_URL"] == emulator.endpoint_url
        assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "eu-west-1"
        assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
        assert "127.0.0.1" in env["NO_PROXY"].split(",")
        assert emulator.health() == {"status": "ok", "fixes": list(FIX_NAMES)}
        s3 = _client(emulator.endpoint_url)
        assert s3.list_buckets()["Buckets"] == []
        pid = emulator._proc.pid if emulator._proc else 0
    finally:
        emulator.stop()
    assert not emulator.running
    assert not _alive(pid)
    with pytest.raises(AwsEmulatorError, match="not started"):
        _ = emulator.endpoint_url
    emulator.stop()  # idempotent


def test_context_manager_and_explicit_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with AwsEmulator().start(port=port) as emulator:
        assert emulator.endpoint_url == f"http://127.0.0.1:{port}"
        assert emulator.health()["status"] == "ok"
    assert not emulator.running


def test_start_fails_clearly_when_the_child_dies() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        emulator = AwsEmulator()
        with pytest.raises(AwsEmulatorError) as err:
            emulator.start(port=port)
    message = str(err.value)
    assert "the AWS emulator exited with code" in message
    assert "Address already in use" in message  # the child's stderr tail
    assert not emulator.running


def test_only_loopback_addresses() -> None:
    with pytest.raises(AwsEmulatorError, match="only binds a loopback address"):
        AwsEmulator(host="0.0.0.0")
    assert main(["--host", "10.1.2.3", "--port", "0"]) == 2


def test_unknown_fix_is_refused() -> None:
    with pytest.raises(AwsEmulatorError, match="unknown fidelity fix 'nope'"):
        AwsEmulator(fixes=["nope"])


def test_child_exits_when_its_parent_goes_away() -> None:
    emulator = AwsEmulator().start()
    try:
        assert emulator._proc is not None and emulator._proc.stdin is not None
        emulator._proc.stdin.close()  # what the kernel does when our process dies
        emulator._proc.wait(timeout=10)
    finally:
        emulator.stop()


def test_reset_forgets_everything() -> None:
    with AwsEmulator() as emulator:
        s3 = _client(emulator.endpoint_url)
        _bucket(s3)
        emulator.reset()
        assert s3.list_buckets()["Buckets"] == []


# --- S3 behaviour pykops relies on (plain moto already gets these right; they guard against regressions) ----


def test_create_with_if_none_match_gets_412_the_second_time(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert _error(err) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"1"


def test_update_with_if_match(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["ETag"]
    new_etag = s3.put_object(Bucket=bucket, Key="k", Body=b"2", IfMatch=etag)["ETag"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k", Body=b"3", IfMatch=etag)
    assert _error(err) == (412, "PreconditionFailed")
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == new_etag
    with pytest.raises(ClientError) as err:  # AWS: If-Match on a missing key is 404 NoSuchKey
        s3.put_object(Bucket=bucket, Key="absent", Body=b"1", IfMatch=etag)
    assert _error(err) == (404, "NoSuchKey")


def test_delete_with_stale_if_match_gets_412(aws_env: AwsEmulator) -> None:
    s3 = _client()
    bucket = _bucket(s3)
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=etag)
    assert _error(err) == (412, "PreconditionFailed")


def test_bucket_location(aws_env: AwsEmulator) -> None:
    s3 = _client()
    us_east_1 = _bucket(_client(region="us-east-1"), "us-east-1")
    assert s3.get_bucket_location(Bucket=us_east_1)["LocationConstraint"] is None  # not "us-east-1"
    assert s3.get_bucket_location(Bucket=_bucket(s3))["LocationConstraint"] == REGION
    with pytest.raises(ClientError) as err:
        s3.get_bucket_location(Bucket="pykops-no-such-bucket-4711")
    assert _error(err) == (404, "NoSuchBucket")


# --- fidelity fixes: each test shows the AWS behaviour, and what plain moto does without the fix -----------


@pytest.fixture(scope="module")
def slow_writes_fixed() -> Iterator[AwsEmulator]:
    """All fixes, with a sleep between PutObject's precondition check and its write (fault injection)."""
    with AwsEmulator(s3_write_delay=0.2) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def slow_writes_plain_moto() -> Iterator[AwsEmulator]:
    """No fixes at all, and the same injected delay."""
    with AwsEmulator(fixes=(), s3_write_delay=0.2) as emulator:
        yield emulator


def _race_puts(endpoint_url: str, writers: int, **condition: str) -> tuple[list[str], Any, str]:
    """``writers`` clients put the same key at once with ``condition``; return outcomes, client, bucket."""
    s3 = _client(endpoint_url)
    bucket = _bucket(s3)
    if "IfMatch" in condition:
        condition = {"IfMatch": s3.put_object(Bucket=bucket, Key="k", Body=b"base")["ETag"]}
    clients = [_client(endpoint_url) for _ in range(writers)]
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def put(n: int) -> None:
        barrier.wait()
        try:
            clients[n].put_object(Bucket=bucket, Key="k", Body=f"writer {n}".encode(), **condition)
            outcome = f"win:{n}"
        except ClientError as err:
            outcome = str(err.response["Error"]["Code"])
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes, s3, bucket


@pytest.mark.parametrize("condition", [{"IfNoneMatch": "*"}, {"IfMatch": "<etag of base>"}])
def test_racing_conditional_writes_are_atomic(
    slow_writes_fixed: AwsEmulator, condition: dict[str, str]
) -> None:
    """AWS: of concurrent conditional PutObjects, exactly one succeeds; the others get 412 (or 409)."""
    started = time.monotonic()
    outcomes, s3, bucket = _race_puts(slow_writes_fixed.endpoint_url, 4, **condition)
    winners = [o for o in outcomes if o.startswith("win:")]
    assert len(winners) == 1, outcomes
    assert sorted(o for o in outcomes if not o.startswith("win:")) == ["PreconditionFailed"] * 3
    body = s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    assert body == f"writer {winners[0][4:]}".encode()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("condition", [{"IfNoneMatch": "*"}, {"IfMatch": "<etag of base>"}])
def test_racing_conditional_writes_without_fix_can_both_succeed(
    slow_writes_plain_moto: AwsEmulator, condition: dict[str, str]
) -> None:
    """Plain moto checks the precondition and writes in two unsynchronised steps: several writers win.

    If this starts failing, moto has fixed the race and the s3-atomic-requests fix can be retired.
    """
    outcomes, _, _ = _race_puts(slow_writes_plain_moto.endpoint_url, 4, **condition)
    assert len([o for o in outcomes if o.startswith("win:")]) > 1, outcomes


def test_delete_if_match_star(aws_env: AwsEmulator) -> None:
    """AWS: DeleteObject with If-Match: * deletes an existing object; 404 NoSuchKey if there is none."""
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    assert s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert _error(err) == (404, "NoSuchKey")


def test_delete_if_match_star_without_fix(slow_writes_plain_moto: AwsEmulator) -> None:
    s3 = _client(slow_writes_plain_moto.endpoint_url)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch="*")
    assert _error(err) == (412, "PreconditionFailed")  # plain moto treats '*' as an ETag


def _deny_objects(s3: Any, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_bucket_policy_denial_is_access_denied(aws_env: AwsEmulator) -> None:
    """AWS: a request denied by the bucket policy is 403 with error code AccessDenied."""
    s3 = _client()
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    _deny_objects(s3, bucket)
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key="k"),
        lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"2"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert _error(err) == (403, "AccessDenied")


def test_bucket_policy_denial_without_fix(slow_writes_plain_moto: AwsEmulator) -> None:
    s3 = _client(slow_writes_plain_moto.endpoint_url)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    _deny_objects(s3, bucket)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k")
    assert _error(err) == (403, "403")  # plain moto: empty body, so no error code
