"""CLI happy paths against a file:// state store, run in-process through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pykops.api.serialize import load_documents
from pykops.cli.main import main
from pykops.sandbox.aws_emulator import AwsEmulator

NAME = "proyecto.k8s.local"
TUTORIAL = [
    f"--name={NAME}",
    "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
    "--master-count=3",
    "--node-count=1",
    "--node-size=t2.small",
    "--master-size=t2.small",
    "--networking=kubenet",
]
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@pykops\n"


class Cli:
    def __init__(self, state: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.state = state
        self.capsys = capsys

    def __call__(self, *args: str, expect: int = 0) -> tuple[str, str]:
        code = main(["--state", self.state, *args])
        out, err = self.capsys.readouterr()
        assert code == expect, f"exit {code}, stdout={out!r} stderr={err!r}"
        return out, err


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def cli(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(f"file://{state_dir}", capsys)


@pytest.fixture
def created(cli: Cli, tmp_path: Path) -> Cli:
    key = tmp_path / "proyecto.pub"
    key.write_text(PUBKEY)
    cli("create", "cluster", *TUTORIAL, f"--ssh-public-key={key}")
    return cli


def test_create_writes_kops_layout(created: Cli, state_dir: Path) -> None:
    files = sorted(str(p.relative_to(state_dir)) for p in state_dir.rglob("*") if p.is_file())
    assert f"{NAME}/config" in files
    for ig in ("master-eu-west-1a", "master-eu-west-1b", "master-eu-west-1c", "nodes"):
        assert f"{NAME}/instancegroup/{ig}" in files
    keys = [f for f in files if f.startswith(f"{NAME}/pki/ssh/public/admin/")]
    assert len(keys) == 1 and len(keys[0].rsplit("/", 1)[1]) == 32  # md5 fingerprint, hex
    config = yaml.safe_load((state_dir / NAME / "config").read_text())
    assert config["kind"] == "Cluster" and config["spec"]["configBase"] == f"file://{state_dir}/{NAME}"


def test_get_tables_and_formats(created: Cli) -> None:
    out, _ = created("get", "clusters")
    assert out.splitlines()[0].split() == ["NAME", "CLOUD", "ZONES"]
    assert out.splitlines()[1].split() == [NAME, "aws", "eu-west-1a,eu-west-1b,eu-west-1c"]
    out, _ = created("get", "ig", "--name", NAME)
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "ZONES"]
    assert rows[1] == ["master-eu-west-1a", "Master", "t2.small", "1", "1", "eu-west-1a"]
    assert rows[4] == ["nodes", "Node", "t2.small", "1", "1", "eu-west-1a,eu-west-1b,eu-west-1c"]
    out, _ = created("get", "all", "--name", NAME, "-o", "yaml")
    objects = load_documents(out)
    assert [o.kind for o in objects] == ["Cluster"] + ["InstanceGroup"] * 4
    out, _ = created("get", "instancegroups", "nodes", "--name", NAME, "-o", "json")
    assert json.loads(out)["spec"]["maxSize"] == 1
    out, _ = created("get", "ig", "--name", NAME, "-o", "wide")
    assert "IMAGE" in out.splitlines()[0]


def test_env_vars_give_state_and_name(created: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOPS_STATE_STORE", created.state)
    monkeypatch.setenv("KOPS_CLUSTER_NAME", NAME)
    assert main(["get", "ig", "nodes"]) == 0
    assert "nodes" in created.capsys.readouterr().out


def test_edit_set_and_unset(created: Cli) -> None:
    created("edit", "ig", "nodes", "--name", NAME, "--set", "spec.minSize=3", "--set", "spec.maxSize=3")
    created("edit", "ig", "nodes", "--name", NAME, "--set", "spec.nodeLabels[kops.k8s.io/spot]=false")
    created("edit", "ig", "nodes", "--name", NAME, "--set", "spec.taints=dedicated=gpu:NoSchedule")
    out, _ = created("get", "ig", "nodes", "--name", NAME, "-o", "yaml")
    spec = yaml.safe_load(out)["spec"]
    assert (spec["minSize"], spec["maxSize"]) == (3, 3)
    assert spec["nodeLabels"] == {"kops.k8s.io/spot": "false"}
    assert spec["taints"] == ["dedicated=gpu:NoSchedule"]
    created("edit", "ig", "nodes", "--name", NAME, "--unset", "spec.nodeLabels")
    out, _ = created("get", "ig", "nodes", "--name", NAME, "-o", "yaml")
    assert "nodeLabels" not in yaml.safe_load(out)["spec"]
    created("edit", "cluster", NAME, "--set", "spec.kubernetesVersion=1.35.0")
    out, _ = created("get", "cluster", NAME, "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["kubernetesVersion"] == "1.35.0"
    out, _ = created("edit", "cluster", NAME, "--set", "spec.kubernetesVersion=1.35.0")
    assert "unchanged" in out


def _fake_editor(tmp_path: Path, script: str) -> str:
    """An $EDITOR that edits the file it is given with a Python snippet (variable `text`)."""
    path = tmp_path / "editor.py"
    path.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[1]); text = p.read_text()\n"
        + textwrap.dedent(script)
        + "\np.write_text(text)\n"
    )
    return f"{sys.executable} {path}"


def test_edit_in_editor(created: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", _fake_editor(tmp_path, "text = text.replace('maxSize: 1', 'maxSize: 5')"))
    created("edit", "ig", "nodes", "--name", NAME)
    out, _ = created("get", "ig", "nodes", "--name", NAME, "-o", "json")
    assert json.loads(out)["spec"]["maxSize"] == 5


def test_edit_reopens_on_error_then_accepts_fix(
    created: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # First save is invalid (unknown field); the editor sees the error at the top and fixes it.
    script = """
if '# error:' in text:
    assert 'machineTyp: unknown field' in text, text
    text = text.replace('machineTyp:', 'machineType:')
else:
    text = text.replace('machineType: t2.small', 'machineTyp: t3.large')
"""
    monkeypatch.setenv("EDITOR", _fake_editor(tmp_path, script))
    created("edit", "ig", "nodes", "--name", NAME)
    out, _ = created("get", "ig", "nodes", "--name", NAME, "-o", "json")
    assert json.loads(out)["spec"]["machineType"] == "t3.large"


def test_edit_gives_up_on_same_invalid_text(
    created: Cli, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (state_dir / NAME / "instancegroup" / "nodes").read_bytes()
    monkeypatch.setenv("EDITOR", _fake_editor(tmp_path, "text = text.replace('minSize: 1', 'minSize: 9')"))
    _, err = created("edit", "ig", "nodes", "--name", NAME, expect=1)
    assert "no valid changes were saved" in err and "minSize 9 is larger than spec.maxSize 1" in err
    assert (state_dir / NAME / "instancegroup" / "nodes").read_bytes() == before


def test_edit_cancel_when_unchanged(created: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITOR", _fake_editor(tmp_path, "pass"))
    _, err = created("edit", "cluster", NAME)
    assert "Edit cancelled, no changes made." in err


def test_replace_and_create_from_file(created: Cli, tmp_path: Path) -> None:
    out, _ = created("get", "all", "--name", NAME, "-o", "yaml")
    path = tmp_path / "cluster.yaml"
    path.write_text(
        out.replace("maxSize: 1\n  minSize: 1\n  role: Node", "maxSize: 4\n  minSize: 2\n  role: Node")
    )
    created("replace", "-f", str(path))
    out, _ = created("get", "ig", "nodes", "--name", NAME, "-o", "json")
    assert (json.loads(out)["spec"]["minSize"], json.loads(out)["spec"]["maxSize"]) == (2, 4)
    # The same file under another name creates a second cluster with create -f.
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace(NAME, "other.k8s.local"))
    created("create", "-f", str(other))
    out, _ = created("get", "clusters")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["other.k8s.local", NAME]


def test_create_and_delete_instancegroup(created: Cli) -> None:
    out, _ = created("create", "ig", "spot", "--name", NAME, "--subnet", "eu-west-1a", "--max-size", "4")
    assert "Created instancegroup/spot" in out
    out, _ = created("get", "ig", "spot", "--name", NAME, "-o", "json")
    spec = json.loads(out)["spec"]
    assert (spec["role"], spec["minSize"], spec["maxSize"], spec["subnets"]) == ("Node", 4, 4, ["eu-west-1a"])
    out, _ = created("delete", "ig", "spot", "--name", NAME)
    assert "Must specify --yes" in out
    created("delete", "ig", "spot", "--name", NAME, "--yes")
    created("get", "ig", "spot", "--name", NAME, expect=1)


def test_delete_cluster_lists_then_deletes(created: Cli, state_dir: Path, aws_env: AwsEmulator) -> None:
    # Never applied: delete finds no cloud resources (it asks the AWS emulator) and removes the state.
    out, _ = created("delete", "cluster", NAME)
    assert out.splitlines()[0].split() == ["TYPE", "ID", "NAME"]
    assert "instancegroup/nodes" in out and "Must specify --yes" in out
    assert (state_dir / NAME / "config").exists()
    created("delete", "cluster", NAME, "--yes")
    assert not (state_dir / NAME).exists() or not any((state_dir / NAME).rglob("*"))
    out, err = created("get", "clusters")
    assert out == "" and "No clusters found" in err


def test_dry_run_writes_nothing(cli: Cli, state_dir: Path) -> None:
    out, _ = cli("create", "cluster", *TUTORIAL, "--dry-run", "-o", "yaml")
    assert "kind: Cluster" in out
    assert not state_dir.exists() or not any(state_dir.rglob("*"))


def test_update_without_yes_exits_3_when_changes_are_pending(created: Cli, aws_env: AwsEmulator) -> None:
    from pykops.sandbox.seed import seed

    seed(aws_env.endpoint_url, "eu-west-1")
    out, _ = created("update", "cluster", NAME, expect=3)
    assert "Will create resources:" in out and "Must specify --yes" in out
    assert "Plan: 63 to create, 0 to modify, 0 to replace, 0 to delete." in out


def test_warning_for_small_control_plane(cli: Cli) -> None:
    _, err = cli("create", "cluster", *TUTORIAL[:-2], "--master-size=t2.micro", "--dry-run", "-o", "yaml")
    assert "too small for the control plane" in err


def test_debug_shows_traceback(cli: Cli) -> None:
    _, err = cli(
        "--debug",
        "create",
        "cluster",
        "--name=bad_name",
        "--zones=eu-west-1a",
        "--dry-run",
        "-o",
        "yaml",
        expect=1,
    )
    assert "Traceback" in err and "invalid cluster name" in err
    _, err = cli(
        "create", "cluster", "--name=bad_name", "--zones=eu-west-1a", "--dry-run", "-o", "yaml", expect=1
    )
    assert "Traceback" not in err


def test_version_and_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("pykops 0.1.0")
    assert main(["completion", "bash"]) == 0
    assert "_PYKOPS_COMPLETE" in capsys.readouterr().out


def test_help_and_version_do_not_import_heavy_modules() -> None:
    """`pykops --help` and `pykops version` must start fast: no pydantic, boto3 or yaml at import."""
    code = (
        "import sys; from pykops.cli.main import main; rc = main(['version']);"
        "heavy = [m for m in ('pydantic', 'boto3', 'botocore', 'yaml') if m in sys.modules];"
        "print(heavy); sys.exit(rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip().endswith("[]"), out.stdout
