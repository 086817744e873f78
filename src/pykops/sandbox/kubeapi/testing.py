"""Helpers to run the emulator outside the sandbox (tests, scripts): a one-member etcd and a TLS emulator with
client certificates from ``pykops.pki.ca``.

    with EtcdProcess(tmp / "etcd") as etcd, start_kube_api([etcd.client_url], tmp / "api") as kube:
        core = kubernetes.client.CoreV1Api(kube.admin_client())
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from pykops.errors import PykopsError
from pykops.pki import ca as pki
from pykops.pki.kubeconfig import build_kubeconfig, dump_kubeconfig
from pykops.sandbox.kubeapi.server import KubeApiServer, free_port

ETCD_BINARY = "/usr/bin/etcd"


class EtcdNotAvailable(PykopsError):
    """No etcd binary, or it did not start."""


def etcd_binary() -> str | None:
    if os.path.exists(ETCD_BINARY):
        return ETCD_BINARY
    return shutil.which("etcd")


class EtcdProcess:
    """One etcd member on 127.0.0.1 free ports, data in ``data_dir``; ``stop()`` ends it."""

    def __init__(
        self,
        data_dir: Path,
        *,
        name: str = "sandbox-test",
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
    ) -> None:
        """``initial_cluster`` (``name=http://host:peerport,...``) makes this one member of a larger cluster;
        ``start(wait_healthy=False)`` then, as a member cannot be healthy before a quorum of them runs."""
        self.data_dir = data_dir
        self.name = name
        self.host = host
        self.client_port = client_port or free_port(host)
        self.peer_port = peer_port or free_port(host)
        self.initial_cluster = initial_cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self, timeout: float = 20.0, *, wait_healthy: bool = True) -> EtcdProcess:
        binary = etcd_binary()
        if binary is None:
            raise EtcdNotAvailable("etcd is not installed (/usr/bin/etcd; Debian package etcd-server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        peer = f"http://{self.host}:{self.peer_port}"
        args = [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir / 'data'}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.initial_cluster or f'{self.name}={peer}'}",
            "--initial-cluster-state=new",
            "--log-level=error",
            "--logger=zap",
        ]
        log = (self.data_dir / "etcd.log").open("ab")
        env = {**os.environ, "ETCD_UNSUPPORTED_ARCH": os.environ.get("ETCD_UNSUPPORTED_ARCH", "")}
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        log.close()
        if wait_healthy:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until the member answers /health with true (it has a leader); stop it and raise if not."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EtcdNotAvailable(
                    f"etcd exited with {self.proc.returncode}; see {self.data_dir / 'etcd.log'}"
                )
            try:
                if requests.get(self.client_url + "/health", timeout=1).json().get("health") == "true":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.05)
        self.stop()
        raise EtcdNotAvailable(
            f"etcd did not become healthy in {timeout:.0f}s; see {self.data_dir / 'etcd.log'}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> EtcdProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- certificates (made once per process: RSA keys are slow) -----------------------------------------------

_lock = threading.Lock()
_ca: pki.Keypair | None = None
_server_cert: pki.Keypair | None = None
_clients: dict[tuple[str, tuple[str, ...]], pki.Keypair] = {}


def sandbox_ca() -> pki.Keypair:
    global _ca
    with _lock:
        if _ca is None:
            _ca = pki.new_ca("kubernetes-ca")
        return _ca


def server_keypair() -> pki.Keypair:
    global _server_cert
    ca = sandbox_ca()
    with _lock:
        if _server_cert is None:
            _server_cert = pki.issue(
                ca,
                common_name="kubernetes-master",
                dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
                ip_addresses=["127.0.0.1"],
                usage="server",
            )
        return _server_cert


def client_keypair(user: str, groups: Sequence[str] = ()) -> pki.Keypair:
    ca = sandbox_ca()
    key = (user, tuple(groups))
    with _lock:
        if key not in _clients:
            _clients[key] = pki.issue(ca, common_name=user, organization=list(groups), usage="client")
        return _clients[key]


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


@dataclass
class KubeApiHandle:
    """A running TLS emulator and the means to talk to it."""

    server: KubeApiServer
    workdir: Path
    ca_file: str
    _clients: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def cert_files(self, user: str, groups: Sequence[str]) -> tuple[str, str]:
        pair = client_keypair(user, groups)
        stem = f"client-{user}-{'-'.join(groups)}".replace(":", "_").replace("/", "_")
        cert = _write(self.workdir / f"{stem}.crt", pair.cert_pem)
        key = _write(self.workdir / f"{stem}.key", pair.key_pem)
        return str(cert), str(key)

    def client_for(self, user: str, groups: Sequence[str] = ()) -> Any:
        """A ``kubernetes.client.ApiClient`` authenticated as ``user`` (CN) in ``groups`` (O)."""
        import kubernetes.client

        cert, key = self.cert_files(user, groups)
        config = kubernetes.client.Configuration()
        config.host = self.url
        config.ssl_ca_cert = self.ca_file
        config.cert_file = cert
        config.key_file = key
        config.verify_ssl = True
        client = kubernetes.client.ApiClient(config)
        self._clients.append(client)
        return client

    def admin_client(self) -> Any:
        return self.client_for("admin", ("system:masters",))

    def write_kubeconfig(
        self, path: Path, user: str = "admin", groups: Sequence[str] = ("system:masters",)
    ) -> Path:
        pair = client_keypair(user, groups)
        config = build_kubeconfig(
            "sandbox",
            self.url,
            sandbox_ca().cert_pem,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
            user=user,
        )
        return _write(path, dump_kubeconfig(config).encode())

    def close_clients(self) -> None:
        for client in self._clients:
            with suppress(Exception):
                client.close()
        self._clients.clear()


@contextmanager
def start_kube_api(
    etcd_endpoints: Sequence[str], workdir: Path, *, prefix: str | None = None, version: str | None = None
) -> Iterator[KubeApiHandle]:
    """A TLS emulator with client-certificate auth on a unique (or given) etcd prefix, stopped on exit."""
    ca = sandbox_ca()
    server_pair = server_keypair()
    ca_file = _write(workdir / "ca.crt", ca.cert_pem, 0o644)
    cert_file = _write(workdir / "apiserver.crt", server_pair.cert_pem, 0o644)
    key_file = _write(workdir / "apiserver.key", server_pair.key_pem)
    endpoints = list(etcd_endpoints)
    server = KubeApiServer(
        lambda: endpoints,
        certfile=str(cert_file),
        keyfile=str(key_file),
        client_ca_file=str(ca_file),
        prefix=prefix or f"/registry-{uuid.uuid4().hex[:12]}",
        version=version,
    )
    server.start()
    handle = KubeApiHandle(server=server, workdir=workdir, ca_file=str(ca_file))
    try:
        yield handle
    finally:
        handle.close_clients()
        server.stop()
