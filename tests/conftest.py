"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kube_fixtures import *  # noqa: F403  (the Kubernetes API fixtures)
from pykops.sandbox.aws_emulator import AwsEmulator

# --- AWS emulator -----------------------------------------------------------------------------------------
# One moto server (with pykops' fidelity fixes) per test session, in a child process on 127.0.0.1. Tests talk
# to it over HTTP with boto3, never with in-process mock_aws. Use unique bucket names: the data is shared by
# every test in the session.

# Variables that could point boto3 at real AWS or at other configuration; aws_env removes them.
_AWS_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


@pytest.fixture(scope="session")
def aws_emulator() -> Iterator[AwsEmulator]:
    """The session's AWS emulator (moto + fidelity fixes) on a free port of 127.0.0.1."""
    emulator = AwsEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def plain_moto() -> Iterator[AwsEmulator]:
    """moto without any fidelity fix (for the "..._without_fix" twins of the fidelity-fix tests)."""
    with AwsEmulator(fixes=()) as emulator:
        yield emulator


@pytest.fixture
def aws_env(
    aws_emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> AwsEmulator:
    """Point boto3 (and pykops) at the emulator for one test: endpoint, region, fake credentials."""
    for name in _AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path_factory.mktemp("aws-config") / "none"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))  # ignore ~/.aws/config and ~/.aws/credentials
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in aws_emulator.env().items():
        monkeypatch.setenv(name, value)
    return aws_emulator


def pytest_configure(config: pytest.Config) -> None:
    """No test may send traffic beyond 127.0.0.1: keep boto3 away from the instance metadata service."""
    import os

    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
