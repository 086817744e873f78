"""upgrade cluster: the version proposal (patch first, next minor, never skipping or downgrading), the
version-skew checks, and the CLI writing the spec (file:// state store, no Kubernetes API reachable)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pykops.api.channel import load_channel
from pykops.cli.main import main
from pykops.errors import SpecError
from pykops.ops.upgrade import propose_version, skew_problems

NAME = "proyecto.k8s.local"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@pykops\n"
CREATE = [
    f"--name={NAME}",
    "--zones=eu-west-1a,eu-west-1b,eu-west-1c",
    "--master-count=3",
    "--node-count=1",
    "--networking=kubenet",
]


def test_proposal_patch_first_then_next_minor() -> None:
    stable = load_channel("stable")
    assert propose_version("1.34.0", stable) == "1.34.2"
    assert propose_version("1.34.2", stable) == "1.35.0"
    assert propose_version("1.36.0", stable) is None
    assert propose_version("1.34.0", stable, "1.35.0") == "1.35.0"
    assert propose_version("1.35.0", stable, "1.35.0") is None


def test_requested_versions_never_skip_a_minor_or_downgrade() -> None:
    stable = load_channel("stable")
    with pytest.raises(SpecError, match="skips a minor"):
        propose_version("1.33.5", stable, "1.35.0")
    with pytest.raises(SpecError, match="cannot downgrade"):
        propose_version("1.35.0", stable, "1.34.2")


def test_skew_rules() -> None:
    assert skew_problems("1.35.0", ["v1.34.2"], {"n1": "v1.34.2", "n2": "v1.32.9"}) == []
    problems = skew_problems("1.36.0", ["v1.34.2"], {"n1": "v1.32.9"})
    assert len(problems) == 2
    assert "one minor version only" in problems[0] and "node n1 runs kubelet v1.32.9" in problems[1]


def run(state: str, capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> str:
    code = main(["--state", state, *args])
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\n{out}\n{err}"
    return out + err


def test_upgrade_cluster_cli_shows_then_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))  # none: skew checked only when reachable
    state = f"file://{tmp_path / 'state'}"
    key = tmp_path / "k.pub"
    key.write_text(PUBKEY)
    run(state, capsys, "create", "cluster", *CREATE, f"--ssh-public-key={key}")
    run(state, capsys, "edit", "cluster", NAME, "--set", "spec.kubernetesVersion=1.34.0")
    shown = run(state, capsys, "upgrade", "cluster", NAME)
    assert "KubernetesVersion" in shown and "1.34.0" in shown and "1.34.2" in shown
    assert "Must specify --yes" in shown and "version skew not checked" in shown
    config = yaml.safe_load((tmp_path / "state" / NAME / "config").read_text())
    assert config["spec"]["kubernetesVersion"] == "1.34.0"
    run(state, capsys, "upgrade", "cluster", NAME, "--yes")
    config = yaml.safe_load((tmp_path / "state" / NAME / "config").read_text())
    assert config["spec"]["kubernetesVersion"] == "1.34.2"
    run(state, capsys, "upgrade", "cluster", NAME, "--yes")
    config = yaml.safe_load((tmp_path / "state" / NAME / "config").read_text())
    assert config["spec"]["kubernetesVersion"] == "1.35.0"
    out = run(state, capsys, "upgrade", "cluster", NAME, "--kubernetes-version", "1.33.5", expect=1)
    assert "cannot downgrade" in out
