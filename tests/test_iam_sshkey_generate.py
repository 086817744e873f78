"""``create sshpublickey --generate``: the tutorial's create-key-pair, chmod 400 and ssh-keygen -y."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pykops.cli.main import main
from pykops.state.sshkeys import parse_public_key
from pykops.state.store import open_store

NAME = "keys.k8s.local"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KOPS_CLUSTER_NAME", raising=False)
    url = f"file://{tmp_path / 'state'}"
    assert main(["--state", url, "create", "cluster", f"--name={NAME}", "--zones=eu-west-1a"]) == 0
    capsys.readouterr()
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def test_generate_writes_a_0600_openssh_key_and_stores_its_public_half(
    state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.umask(0o022)  # a usual umask: the private key must be 0600 regardless
    out_path = tmp_path / "keys" / "proyecto"
    out, err = run(
        capsys, "--state", state, "create", "sshpublickey", NAME, "--generate", "--out", str(out_path)
    )
    private_bytes = out_path.read_bytes()
    assert stat.S_IMODE(out_path.stat().st_mode) == 0o600
    assert private_bytes.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(private_bytes, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    # The .pub is ssh-keygen -y of the private key.
    derived = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public_text = (tmp_path / "keys" / "proyecto.pub").read_text()
    assert public_text.split()[:2] == derived.decode().split()
    # Stored in the state store under its fingerprint, printed; the private key is printed nowhere.
    key = parse_public_key(public_text, "pub")
    fp = ":".join(key.fingerprint[i : i + 2] for i in range(0, len(key.fingerprint), 2))
    stored = open_store(state).read(f"{NAME}/pki/ssh/public/admin/{key.fingerprint}")
    assert stored is not None and stored.data.decode().split()[:2] == public_text.split()[:2]
    assert f"Stored SSH public key {fp}" in out and str(out_path) in err
    body = private_bytes.decode().splitlines()[1]
    assert "PRIVATE KEY" not in out + err and body not in out + err
    out, _ = run(capsys, "--state", state, "get", "sshpublickeys", NAME)
    assert fp in out


def test_generate_never_overwrites(state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "id"
    existing.write_text("precious")
    _, err = run(
        capsys,
        "--state",
        state,
        "create",
        "sshpublickey",
        NAME,
        "--generate",
        "--out",
        str(existing),
        expect=2,
    )
    assert "already exists; not overwriting it" in err
    assert existing.read_text() == "precious"
    (tmp_path / "other.pub").write_text("precious too")
    other = str(tmp_path / "other")
    _, err = run(
        capsys, "--state", state, "create", "sshpublickey", NAME, "--generate", "--out", other, expect=2
    )
    assert not (tmp_path / "other").exists() and (tmp_path / "other.pub").read_text() == "precious too"
    assert open_store(state).list(f"{NAME}/pki/ssh/public/admin/") == []


def test_generate_default_path_and_a_second_key_refused(
    state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "--state", state, "create", "sshpublickey", NAME, "--generate")
    default = tmp_path / "home" / ".ssh" / f"pykops-{NAME}"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600 and default.with_name(default.name + ".pub").exists()
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700
    # AWS clusters take exactly one key: a second --generate is refused before writing any file.
    second = tmp_path / "second"
    _, err = run(
        capsys, "--state", state, "create", "sshpublickey", NAME, "--generate", "--out", str(second), expect=1
    )
    assert "already has the SSH public key" in err and not second.exists()


def test_flag_combinations(state: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run(
        capsys, "--state", state, "create", "sshpublickey", NAME, "--generate", "-i", "x.pub", expect=2
    )
    assert "cannot use both --generate and -i" in err
    _, err = run(
        capsys, "--state", state, "create", "sshpublickey", NAME, "--out", str(tmp_path / "k"), expect=2
    )
    assert "--out is for --generate" in err
