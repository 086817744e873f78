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


# --- loopback only ------------------------------------------------------------------------------------------
# Every test's traffic stays on this machine: a name lookup of anything but localhost, or a connection to a
# non-loopback address, from this process fails at once and fails the test that made it (the brief's rule,
# enforced rather than hoped for; a lookup would otherwise reach the resolver, and a connection the network).

_OUTSIDE: list[str] = []


def _loopback(host: object) -> bool:
    import ipaddress

    if host is None:
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    if text in ("localhost", "") or text.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _guard_sockets() -> None:
    import socket

    lookup = socket.getaddrinfo
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if not _loopback(host):
            _OUTSIDE.append(f"name lookup of {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"tests stay on loopback: no lookup of {host}")
        return lookup(host, *args, **kwargs)  # type: ignore[arg-type]

    def _check(sock: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(host):
            _OUTSIDE.append(f"connection to {host}")
            raise ConnectionRefusedError(f"tests stay on loopback: no connection to {host}")

    def guarded_connect(self: socket.socket, address: object) -> None:
        _check(self, address)
        connect(self, address)  # type: ignore[arg-type]

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        _check(self, address)
        return connect_ex(self, address)  # type: ignore[arg-type]

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]


_guard_sockets()


@pytest.fixture(autouse=True)
def _stays_on_loopback() -> Iterator[None]:
    """Fails the test that tried to reach beyond loopback (even when the code under test swallowed it)."""
    del _OUTSIDE[:]
    yield
    tried = sorted(set(_OUTSIDE))
    del _OUTSIDE[:]
    assert not tried, f"this test tried to leave loopback: {', '.join(tried)}"
