"""`make demo`'s program as a user runs it: the whole tutorial in a sandbox of its own, then nothing left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from waiting import pids_mentioning


def test_the_demo_runs_the_tutorial_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's own temporary directory goes in here
    done = subprocess.run(
        [sys.executable, "-m", "pykops.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out[-3000:]}\n{done.stderr[-3000:]}"
    assert "a SIMULATION of AWS and of the machines" in out  # said before anything else
    for said in (
        "Your cluster proyecto.k8s.local is ready",
        "etcd members up: 3 of 3 (quorum 2)",
        "claim manual: vol-",  # the pre-provisioned volume, bound and attached
        "claim data: vol-",  # the dynamically provisioned one
        "Deleted cluster: proyecto.k8s.local",
        "Demo finished in",
    ):
        assert said in out, said
    assert out.count("attached to i-") >= 2
    assert pids_mentioning(str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []  # its files removed too
