"""``make demo``: the tutorial's steps that this pykops version can run, each shown with its real output.

Everything runs against a temporary ``file://`` state store; nothing talks to AWS (applying to the cloud
arrives with ``update cluster``). Every command is the real CLI, run in-process.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from pykops.cli.main import main as pykops

TUTORIAL_FLAGS = [
    "--name",
    "proyecto.k8s.local",
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


def run() -> None:
    with tempfile.TemporaryDirectory(prefix="pykops-demo-") as tmp:
        state = f"file://{Path(tmp) / 'state'}"
        key = Path(tmp) / "proyecto.pub"
        key.write_text(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoKeyOnlyForTheDemoNotARealKey00000000000 demo@pykops\n"
        )
        print(
            _bold("pykops demo: the tutorial's cluster spec, in a temporary state store (no AWS is touched)")
        )
        print(f"export KOPS_STATE_STORE={state}")
        base = ["--state", state]
        step(
            "The tutorial's v1.8.4 is refused with the supported range",
            [*base, "create", "cluster", *TUTORIAL_FLAGS, "--kubernetes-version", "v1.8.4"],
            expect=1,
        )
        step(
            "Two control-plane nodes are refused: etcd needs a majority",
            [
                *base,
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
            "The HA cluster's spec (dry run)",
            [*base, "create", "cluster", *TUTORIAL_FLAGS, "--dry-run", "-o", "yaml"],
        )
        step(
            "Store the spec in the state store",
            [*base, "create", "cluster", *TUTORIAL_FLAGS, "--ssh-public-key", str(key)],
        )
        step("kops get cluster", [*base, "get", "cluster"])
        step(
            "Instance groups: one per control-plane zone, one for nodes",
            [*base, "get", "ig", "--name", "proyecto.k8s.local"],
        )
        step(
            "Scale the node group to 3",
            [
                *base,
                "edit",
                "ig",
                "nodes",
                "--name",
                "proyecto.k8s.local",
                "--set",
                "spec.minSize=3",
                "--set",
                "spec.maxSize=3",
            ],
        )
        step("The result", [*base, "get", "ig", "--name", "proyecto.k8s.local"])
        step("What delete would remove", [*base, "delete", "cluster", "proyecto.k8s.local"])
        step("Delete the cluster's state", [*base, "delete", "cluster", "proyecto.k8s.local", "--yes"])
        step("Nothing left", [*base, "get", "clusters"])
    print()
    print(_bold("Demo finished: the temporary state store was removed."))


if __name__ == "__main__":
    run()
