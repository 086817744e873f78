"""``make demo``: the tutorial's cluster, created, inspected, changed and deleted in the local sandbox.

The sandbox is a simulation of AWS (moto's emulator with pykops' fidelity fixes) on 127.0.0.1; every step
is the real ``pykops`` command, run in-process, and shows its real output. The sandbox is stopped at the
end whatever happens, so nothing is left running.

Not in this version (so not in the demo): machines booting with nodeup, the Kubernetes API, validate.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
import tempfile
from pathlib import Path

from pykops.cli.main import main as pykops

NAME = "proyecto.k8s.local"
DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@pykops\n"
TUTORIAL_FLAGS = [
    "--name",
    NAME,
    "--master-count",
    "3",
    "--node-count",
    "1",
    "--node-size",
    "t2.small",
    "--master-size",
    "t2.small",
    "--zones",
    "eu-west-1a,eu-west-1b,eu-west-1c",
    "--master-zones",
    "eu-west-1a,eu-west-1b,eu-west-1c",
    "--networking",
    "kubenet",
    "--authorization",
    "RBAC",
]


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def step(title: str, args: list[str], expect: int = 0) -> None:
    print()
    print(_bold(f"## {title}"))
    print(_bold(f"$ pykops {shlex.join(args)}"))
    sys.stdout.flush()
    code = pykops(args)
    sys.stdout.flush()
    sys.stderr.flush()
    if code != expect:
        raise SystemExit(f"demo step failed: exit code {code}, expected {expect}")
    if code:
        print(f"(exit code {code}, as expected)")


def _load_env(exports: str) -> None:
    """Apply the ``export K=V`` / ``unset K`` lines that ``pykops sandbox up`` prints."""
    for line in exports.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            for word in words[1:]:
                key, _, value = word.partition("=")
                os.environ[key] = value
        elif words[:1] == ["unset"]:
            for word in words[1:]:
                os.environ.pop(word, None)


def run() -> None:
    print(
        _bold("pykops demo — in the local sandbox: a SIMULATION of AWS on 127.0.0.1 (no AWS account is used)")
    )
    with tempfile.TemporaryDirectory(prefix="pykops-demo-") as tmp:
        sandbox = ["sandbox", "up", "--dir", str(Path(tmp) / "sandbox")]
        print(_bold(f'\n$ eval "$(pykops {shlex.join(sandbox)})"'))
        exports = io.StringIO()
        with contextlib.redirect_stdout(exports):
            code = pykops(sandbox)
        if code != 0:
            raise SystemExit(f"could not start the sandbox (exit {code})")
        print(exports.getvalue(), end="")
        _load_env(exports.getvalue())
        os.environ["HOME"] = tmp  # the demo's kubeconfig, keys and caches stay in the temporary directory
        try:
            key = Path(tmp) / "proyecto.pub"
            key.write_text(DEMO_KEY)
            step(
                "The tutorial's v1.8.4 is refused with the supported range",
                ["create", "cluster", *TUTORIAL_FLAGS, "--kubernetes-version", "v1.8.4"],
                expect=1,
            )
            step(
                "Two control-plane nodes are refused: etcd needs a majority",
                [
                    "create",
                    "cluster",
                    *TUTORIAL_FLAGS[:2],
                    "--zones",
                    "eu-west-1a,eu-west-1b",
                    "--master-count",
                    "2",
                ],
                expect=1,
            )
            step(
                "The HA cluster's spec, before anything is created (dry run)",
                ["create", "cluster", *TUTORIAL_FLAGS, "--dry-run", "-o", "yaml"],
            )
            step(
                "Create the HA cluster: 3 control-plane nodes in 3 zones, kubenet, RBAC",
                ["create", "cluster", *TUTORIAL_FLAGS, "--ssh-public-key", str(key), "--yes"],
            )
            step("kops get cluster", ["get", "cluster"])
            step("Its instance groups", ["get", "ig", "--name", NAME])
            step(
                "A second update has nothing to do (and makes no AWS change)",
                ["update", "cluster", NAME, "--yes"],
            )
            step(
                "Scale the node group to 3",
                ["edit", "ig", "nodes", "--name", NAME, "--set", "spec.minSize=3", "--set", "spec.maxSize=3"],
            )
            step(
                "The exact plan: only that Auto Scaling group changes", ["update", "cluster", NAME], expect=3
            )
            step("Apply it", ["update", "cluster", NAME, "--yes"])
            step("What delete would remove (found by tags)", ["delete", "cluster", NAME])
            step("Delete the cluster", ["delete", "cluster", NAME, "--yes"])
            step("Nothing left", ["get", "clusters"])
        finally:
            print(_bold(f"\n$ pykops sandbox down --dir {Path(tmp) / 'sandbox'}"))
            pykops(["sandbox", "down", "--dir", str(Path(tmp) / "sandbox")])
    print()
    print(_bold("Demo finished: the sandbox is stopped and its files are removed."))


if __name__ == "__main__":
    run()
