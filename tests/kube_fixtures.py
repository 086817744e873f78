"""Fixtures for tests that need a Kubernetes API (the sandbox's emulator backed by a real etcd).

* ``etcd_server`` (session): one real etcd member (``/usr/bin/etcd``) on free 127.0.0.1 ports; the tests that
  use it are skipped when etcd is not installed.
* ``kube_api`` (function): a TLS ``KubeApiServer`` with client-certificate authentication on a unique etcd
  prefix; a ``pykops.sandbox.kubeapi.testing.KubeApiHandle`` (``.url``, ``.server``, ``.ca_file``,
  ``.admin_client()``, ``.client_for(user, groups)``, ``.write_kubeconfig(path, user, groups)``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pykops.sandbox.kubeapi.testing import (
    EtcdNotAvailable,
    EtcdProcess,
    KubeApiHandle,
    etcd_binary,
    start_kube_api,
)

__all__ = ["etcd_server", "kube_api"]


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    """One etcd member for the test session (skips the test when etcd is absent)."""
    if etcd_binary() is None:
        pytest.skip(
            "etcd is not installed (/usr/bin/etcd from Debian's etcd-server); `make install` installs it"
        )
    etcd = EtcdProcess(tmp_path_factory.mktemp("etcd"))
    try:
        etcd.start()
    except EtcdNotAvailable as exc:
        pytest.skip(f"etcd did not start: {exc}")
    try:
        yield etcd
    finally:
        etcd.stop()


@pytest.fixture
def kube_api(etcd_server: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiHandle]:
    """A TLS Kubernetes API emulator on its own etcd prefix, stopped after the test."""
    with start_kube_api([etcd_server.client_url], tmp_path_factory.mktemp("kube-api")) as handle:
        yield handle
