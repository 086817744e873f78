"""``python -m pykops.sandbox.machines``: the simulator as the sandbox runs it.

A one-control-plane cluster is created against the AWS emulator and the simulator runs as a process. Killed
without warning (SIGKILL), it leaves no etcd behind (parent-death signal); started again on the same sandbox
directory, it boots the machines again, serves the API on the same port, and the Nodes stored before are
still there (the etcd data lives on the volumes' disks). ``delete cluster --yes`` terminates the instances:
the machines stop and ``api.json`` goes away. SIGTERM ends the process cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.kubelet import api_client_from_kubeconfig, request
from pykops.sandbox.seed import seed
from test_sandbox_machines import etcd_pids, running, wait_for

REGION = "eu-west-1"
NAME = "cli.k8s.local"
BUCKET = "pykops-sandbox-machines-cli"
STATE = f"s3://{BUCKET}"


def start(sandbox: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "pykops.sandbox.machines", "--sandbox-dir", str(sandbox),
        "--boot-delay", "0.2", "--poll-interval", "0.3", "--heartbeat-interval", "1",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def nodes(sandbox: Path, scratch: Path) -> list[dict[str, Any]]:
    server = json.loads((sandbox / "clusters" / NAME / "api.json").read_text())["server"]
    api = api_client_from_kubeconfig(
        sandbox / "clusters" / NAME / "simulator.kubeconfig", server, scratch=scratch
    )
    try:
        return list(request(api, "GET", "/api/v1/nodes")["items"])
    finally:
        api.close()


def test_module_survives_a_kill_restarts_on_its_volumes_and_follows_the_cluster_deletion(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws_env.reset()
    seed(aws_env.endpoint_url, REGION, state_bucket=BUCKET)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    create = [
        "--state", STATE, "create", "cluster", f"--name={NAME}", "--zones=eu-west-1a",
        "--master-count=1", "--node-count=1", "--networking=kubenet", "--yes",
    ]  # fmt: skip
    assert main(create) == 0
    sandbox = tmp_path / "sandbox"
    api_json = sandbox / "clusters" / NAME / "api.json"
    log_path = tmp_path / "simulator.log"
    with log_path.open("wb") as log:
        first = start(sandbox, log)
        try:
            wait_for("2 running machines", lambda: len(running(sandbox)) == 2, timeout=120)
            assert {m["role"] for m in running(sandbox)} == {"control-plane", "node"}
            assert etcd_pids(sandbox), "no etcd member runs for the control plane"
            found = wait_for(
                "2 Nodes", lambda: len(n := nodes(sandbox, tmp_path / "c")) == 2 and n, timeout=60
            )
            assert {n["metadata"]["labels"]["kops.k8s.io/instancegroup"] for n in found} == {
                "master-eu-west-1a",
                "nodes",
            }
            uids = {n["metadata"]["uid"] for n in found}
            server = json.loads(api_json.read_text())["server"]
        finally:
            first.kill()
            first.wait()
        wait_for(
            "the killed simulator's etcd processes to end", lambda: etcd_pids(sandbox) == set(), timeout=15
        )

        second = start(sandbox, log)
        code = None
        try:
            wait_for("the machines to boot again", lambda: len(running(sandbox)) == 2, timeout=120)
            assert json.loads(api_json.read_text())["server"] == server
            again = wait_for(
                "the Nodes", lambda: len(n := nodes(sandbox, tmp_path / "c")) == 2 and n, timeout=60
            )
            assert {n["metadata"]["uid"] for n in again} == uids, "the Nodes stored before were not kept"

            assert main(["--state", STATE, "delete", "cluster", NAME, "--yes"]) == 0
            wait_for("the machines to stop", lambda: running(sandbox) == [], timeout=60)
            wait_for("api.json to be removed", lambda: not api_json.exists(), timeout=30)
            assert etcd_pids(sandbox) == set()
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                code = second.wait(30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()
    output = log_path.read_text()
    assert code == 0, output[-3000:]
    assert etcd_pids(sandbox) == set()
    assert "Traceback" not in output, output[-3000:]
