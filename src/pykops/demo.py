"""``make demo``: the tutorial, end to end, in the local sandbox — a SIMULATION of AWS and of the machines.

What is simulated: AWS (moto's emulator with pykops' fidelity fixes, on 127.0.0.1) and the machines (each
EC2 instance "boots" by running the real ``pykops nodeup --root``; its control-plane machines run real etcd
members and serve a Kubernetes API emulator; a simulated kubelet registers its Node and runs its pods). What
is real: every ``pykops`` command (run in-process, its real output shown), the state store, the plans, the
AWS API calls, the certificates and kubeconfig, and ``kubectl`` (the system's, when installed).
The sandbox is stopped at the end whatever happens, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pykops.cli.main import main as pykops

NAME = "proyecto.k8s.local"
DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@pykops\n"
ZONES = "eu-west-1a,eu-west-1b,eu-west-1c"
TUTORIAL_FLAGS = [
    "--name",
    NAME,
    "--master-count",
    "3",
    "--node-count",
    "1",
    "--node-size",
    "t3.medium",
    "--master-size",
    "t3.medium",
    "--zones",
    ZONES,
    "--master-zones",
    ZONES,
    "--networking",
    "kubenet",
    "--authorization",
    "RBAC",
    "--ingress",
    "nginx",
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BOOT_DELAY = "2"


def _bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def say(text: str) -> None:
    print()
    print(_bold(f"## {text}"))


def step(title: str | None, args: list[str], expect: int | tuple[int, ...] = 0) -> int:
    if title:
        say(title)
    print(_bold(f"$ pykops {shlex.join(args)}"))
    sys.stdout.flush()
    code = pykops(args)
    sys.stdout.flush()
    sys.stderr.flush()
    allowed = (expect,) if isinstance(expect, int) else expect
    if code not in allowed:
        raise SystemExit(f"demo step failed: exit code {code}, expected {expect}")
    if code:
        print(f"(exit code {code}, as expected)")
    return code


def kubectl(title: str | None, args: list[str], env: dict[str, str] | None = None, expect: int = 0) -> str:
    """Run the system's kubectl against the sandbox cluster and show its output."""
    if title:
        say(title)
    prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    print(_bold(f"$ {prefix + ' ' if prefix else ''}kubectl {shlex.join(args)}"))
    sys.stdout.flush()
    exe = shutil.which("kubectl")
    if exe is None and args[:1] == ["apply"] and not env:
        _apply_with_client([a for i, a in enumerate(args) if i and args[i - 1] == "-f"])
        return ""
    if exe is None:
        print(
            "(kubectl is not installed on this machine: step skipped; the checks below use the Python client)"
        )
        return ""
    done = subprocess.run(
        [exe, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(done.stdout, end="")
    print(done.stderr, end="", file=sys.stderr)
    sys.stdout.flush()
    if done.returncode != expect:
        raise SystemExit(f"demo step failed: kubectl exit code {done.returncode}, expected {expect}")
    if done.returncode:
        print(f"(exit code {done.returncode}, as expected)")
    return done.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``check`` until it returns something truthy; show what is awaited and how long it took."""
    start = time.monotonic()
    print(f"... waiting for {what}", end="", flush=True)
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                print(f" done ({time.monotonic() - start:.1f}s)")
                return value
        if time.monotonic() - start > timeout:
            print()
            raise SystemExit(f"demo step failed: {what} did not happen within {timeout:.0f}s")
        time.sleep(1.0)
        print(".", end="", flush=True)


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


def _api() -> Any:
    from pykops.ops.kubeclient import load_api_client

    return load_api_client(NAME)


def _service_hostname(namespace: str, name: str) -> str | None:
    from kubernetes import client

    svc: Any = client.CoreV1Api(_api()).read_namespaced_service(name, namespace)
    ingress = (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []
    return ingress[0].hostname if ingress else None


def _ingress_hostname(namespace: str, name: str) -> str | None:
    from kubernetes import client

    ing: Any = client.NetworkingV1Api(_api()).read_namespaced_ingress(name, namespace)
    ingress = (ing.status.load_balancer.ingress or []) if ing.status and ing.status.load_balancer else []
    return ingress[0].hostname if ingress else None


def _pod_running(namespace: str, name: str) -> str | None:
    from kubernetes import client

    pod: Any = client.CoreV1Api(_api()).read_namespaced_pod(name, namespace)
    return pod.spec.node_name if pod.status and pod.status.phase == "Running" else None


def _claim_volume(namespace: str, name: str) -> str | None:
    from kubernetes import client

    core = client.CoreV1Api(_api())
    claim: Any = core.read_namespaced_persistent_volume_claim(name, namespace)
    if not claim.spec.volume_name:
        return None
    pv: Any = core.read_persistent_volume(claim.spec.volume_name)
    return str(pv.spec.csi.volume_handle) if pv.spec and pv.spec.csi else None


def _apply_with_client(files: list[str]) -> None:
    """Without kubectl: create the files' objects with the Python client instead (later steps need them)."""
    from kubernetes import utils

    from pykops.ops.kubeclient import load_api_client

    api = load_api_client(NAME)
    for path in files:
        created = utils.create_from_yaml(api, path)  # type: ignore[no-untyped-call]
        print(
            f"(kubectl is not installed on this machine: {len(created)} object(s) of {path} created with the "
            "Python client instead)"
        )


def _attached(volume_id: str) -> bool:
    return "attached to" in _volume_state(volume_id)


def _volume_state(volume_id: str) -> str:
    import boto3

    volume = boto3.client("ec2").describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    attached = [a["InstanceId"] for a in volume.get("Attachments") or [] if a.get("State") == "attached"]
    encrypted = "encrypted" if volume.get("Encrypted") else "NOT encrypted"
    where = f"attached to {attached[0]}" if attached else "not attached"
    zone = volume["AvailabilityZone"]
    return f"{volume_id}: {volume['Size']} GiB {volume['VolumeType']} in {zone}, {encrypted}, {where}"


def run() -> None:
    print(
        _bold(
            "pykops demo — the tutorial in the local sandbox: a SIMULATION of AWS and of the machines, on "
            "127.0.0.1 (no AWS account is used)"
        )
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pykops-demo-") as tmp:
        sandbox_dir = Path(tmp) / "sandbox"
        sandbox = ["sandbox", "up", "--dir", str(sandbox_dir), "--boot-delay", BOOT_DELAY]
        print(_bold(f'\n$ eval "$(pykops {shlex.join(sandbox)})"'))
        exports = io.StringIO()
        with contextlib.redirect_stdout(exports):
            code = pykops(sandbox)
        if code != 0:
            raise SystemExit(f"could not start the sandbox (exit {code})")
        print(exports.getvalue(), end="")
        _load_env(exports.getvalue())
        os.environ["HOME"] = tmp  # the demo's kubeconfig, keys and caches stay in the temporary directory
        os.environ["KUBECONFIG"] = str(Path(tmp) / ".kube" / "config")
        try:
            tutorial(Path(tmp))
        finally:
            print(_bold(f"\n$ pykops sandbox down --dir {sandbox_dir}"))
            pykops(["sandbox", "down", "--dir", str(sandbox_dir)])
    print()
    print(
        _bold(
            f"Demo finished in {time.monotonic() - started:.0f}s: the sandbox is stopped, its files removed."
        )
    )


def tutorial(tmp: Path) -> None:
    key = tmp / "proyecto.pub"
    key.write_text(DEMO_KEY)
    step(
        "Two control-plane nodes are refused: etcd needs a majority",
        ["create", "cluster", *TUTORIAL_FLAGS[:2], "--zones", "eu-west-1a,eu-west-1b", "--master-count", "2"],
        expect=1,
    )
    step(
        "Create the HA cluster: 3 control-plane nodes in 3 zones + 1 node, kubenet, RBAC, ingress-nginx",
        ["create", "cluster", *TUTORIAL_FLAGS, "--ssh-public-key", str(key), "--yes"],
    )
    step(
        "Admin credentials for kubectl (kops export kubeconfig --admin)",
        ["export", "kubeconfig", NAME, "--admin"],
    )
    step(
        "The simulated machines boot (nodeup), etcd forms its quorum, the API comes up: wait until valid",
        ["validate", "cluster", "--name", NAME, "--wait", "5m"],
    )
    step("kops get cluster", ["get", "cluster"])
    step("Its instance groups", ["get", "ig", "--name", NAME])
    step("Its instances and the nodes they became", ["get", "instances", "--name", NAME])
    kubectl("The nodes, as kubectl sees them", ["get", "nodes", "-o", "wide"])
    kubectl(
        "The control plane: etcd main/events, apiserver, controller-manager, scheduler, DNS, kube-proxy",
        ["-n", "kube-system", "get", "pods", "-o", "wide"],
    )

    say("Updating an instance group: scale the nodes from 1 to 3")
    step(None, ["edit", "ig", "nodes", "--name", NAME, "--set", "spec.minSize=3", "--set", "spec.maxSize=3"])
    step("The exact plan: only that Auto Scaling group changes", ["update", "cluster", NAME], expect=3)
    step("Apply it", ["update", "cluster", NAME, "--yes"])
    step(
        "Wait until the new nodes joined and the cluster validates",
        ["validate", "cluster", "--name", NAME, "--wait", "5m"],
    )

    say("A test application: Deployment, Service, Ingress, PodDisruptionBudget, and a LoadBalancer Service")
    kubectl(
        None,
        ["apply", "-f", str(EXAMPLES / "test-app.yaml"), "-f", str(EXAMPLES / "test-app-loadbalancer.yaml")],
    )
    host = wait_for(
        "the load balancer of Service demo/hello-lb", lambda: _service_hostname("demo", "hello-lb")
    )
    print(f"Through its own load balancer: http://{host}/ (an ELB created in the AWS emulator)")
    entry = wait_for(
        "the Ingress to get the ingress controller's address", lambda: _ingress_hostname("demo", "hello")
    )
    print(f"Through the ingress controller, by host and path: http://{entry}/ with Host: hello.example.com")
    kubectl(None, ["-n", "demo", "get", "pods,svc,ingress,pdb", "-o", "wide"])

    say("Persistent volumes: create an EBS volume, its PersistentVolume, and claims that request volumes")
    pv_file = tmp / "pv.yaml"
    out = io.StringIO()
    print(_bold(f"$ pykops create volume --name {NAME} --zone eu-west-1a --size 1 -o yaml > {pv_file}"))
    with contextlib.redirect_stdout(out):
        code = pykops(
            ["create", "volume", "--name", NAME, "--zone", "eu-west-1a", "--size", "1", "-o", "yaml"]
        )
    if code:
        raise SystemExit(f"demo step failed: create volume exit code {code}")
    pv_file.write_text(out.getvalue())
    print(out.getvalue(), end="")
    kubectl(None, ["apply", "-f", str(pv_file)])
    kubectl(None, ["apply", "-f", str(EXAMPLES / "volume-claim.yaml")])
    node = wait_for("pod demo/writer to run", lambda: _pod_running("demo", "writer"))
    for claim in ("manual", "data"):
        volume = wait_for(f"claim demo/{claim} to be bound", functools.partial(_claim_volume, "demo", claim))
        wait_for("its volume to be attached", functools.partial(_attached, volume))
        print(f"claim {claim}: {_volume_state(volume)}")
    print(f"(pod demo/writer runs on {node})")
    kubectl(None, ["get", "pv,pvc", "-A"])

    say("Granting access: a user with the view role")
    user_config = tmp / "ana.kubeconfig"
    step(None, ["create", "user", "ana", "--role", "view", "--name", NAME, "--kubeconfig", str(user_config)])
    kubectl(None, ["-n", "demo", "get", "pods"], env={"KUBECONFIG": str(user_config)})
    kubectl(
        "…but ana cannot change anything (RBAC forbids it)",
        ["-n", "demo", "delete", "deployment", "hello"],
        env={"KUBECONFIG": str(user_config)},
        expect=1,
    )

    step(
        "What delete would remove (found by tags); volumes with reclaim policy Retain are kept",
        ["delete", "cluster", NAME],
    )
    step("Delete the cluster", ["delete", "cluster", NAME, "--yes"])
    step("Nothing left", ["get", "clusters"])


if __name__ == "__main__":
    run()
