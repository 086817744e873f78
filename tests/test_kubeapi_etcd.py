"""The emulator over a three-member etcd cluster: quorum loss and recovery are etcd's own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from pykops.sandbox.kubeapi import KubeApiServer
from pykops.sandbox.kubeapi.server import free_port
from pykops.sandbox.kubeapi.testing import EtcdProcess, etcd_binary

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed")


def test_writes_fail_without_quorum_and_objects_survive_recovery(tmp_path: Path) -> None:
    peers = {f"m{i}": free_port() for i in range(3)}
    initial = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in peers.items())
    members = [
        EtcdProcess(tmp_path / name, name=name, peer_port=port, initial_cluster=initial)
        for name, port in peers.items()
    ]
    try:
        for member in members:
            member.start(wait_healthy=False)
        for member in members:
            member.wait_healthy()
        running = list(members)
        with KubeApiServer(lambda: [m.client_url for m in running], prefix="/quorum") as server:
            url = server.url + "/api/v1/namespaces/default/configmaps"
            created = requests.post(url, json={"metadata": {"name": "kept"}, "data": {"a": "1"}}, timeout=10)
            assert created.status_code == 201

            members[0].stop()  # 2 of 3: etcd still has a quorum
            running.remove(members[0])
            time.sleep(1.1)  # the emulator caches the endpoint list for up to a second
            assert (
                requests.post(url, json={"metadata": {"name": "two-of-three"}}, timeout=10).status_code == 201
            )

            members[1].stop()  # 1 of 3: no quorum
            running.remove(members[1])
            time.sleep(1.1)
            started = time.monotonic()
            failed = requests.post(url, json={"metadata": {"name": "lost"}}, timeout=15)
            assert failed.status_code in (500, 503, 504), failed.text
            status = failed.json()
            assert status["kind"] == "Status" and status["status"] == "Failure"
            assert "etcd" in status["message"]
            assert time.monotonic() - started < 8  # short client timeouts: never hang
            assert requests.get(url + "/kept", timeout=15).status_code in (
                500,
                503,
                504,
            )  # linearizable reads

            for member in members[:2]:
                member.start(wait_healthy=False)  # same data directories: the same members rejoin
            running[:] = members
            members[2].wait_healthy()
            time.sleep(1.1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                got = requests.get(url + "/kept", timeout=15)
                if got.status_code == 200:
                    break
                time.sleep(0.2)
            assert got.status_code == 200 and got.json()["data"] == {"a": "1"}
            names = {i["metadata"]["name"] for i in requests.get(url, timeout=10).json()["items"]}
            assert names == {"kept", "two-of-three"}
    finally:
        for member in members:
            member.stop()
