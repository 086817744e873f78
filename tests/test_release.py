"""The pinned pykops release: the hand-written wheel, the wheelhouse command, the idempotent upload."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as md
import io
import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from pykops import __version__
from pykops.cli.main import main
from pykops.errors import PykopsError
from pykops.ops.update import apply_plan, plan_cluster
from pykops.release import (
    MANIFEST,
    ReleaseError,
    build_pykops_wheel,
    default_wheelhouse,
    dependency_pins,
    make_wheel,
    upload_release,
    wheel_arch,
)
from pykops.sandbox.aws_emulator import AwsEmulator
from pykops.sandbox.seed import seed
from pykops.state.registry import ClusterRegistry
from pykops.state.store import StateStore, open_store

WHEEL = f"pykops-{__version__}-py3-none-any.whl"
DIST_INFO = f"pykops-{__version__}.dist-info"


@pytest.fixture(scope="module")
def wheel() -> bytes:
    name, data = build_pykops_wheel()
    assert name == WHEEL
    return data


def _entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_the_wheel_installs_with_pip_and_runs_pykops(wheel: bytes, tmp_path: Path) -> None:
    path = tmp_path / WHEEL
    path.write_bytes(wheel)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target)]
    subprocess.run([*pip, str(path), "--quiet", "--disable-pip-version-check"], check=True, timeout=120)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pykops; "
        "assert pykops.__file__.startswith(sys.argv[1]), pykops.__file__; "
        "from pykops.cli.main import main; sys.exit(main(['version']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"pykops {__version__} (API kops.k8s.io/v1alpha2)\n"
    assert (target / "pykops" / "model" / "data" / "bootstrap.py").is_file()
    assert md.Distribution.at(target / DIST_INFO).version == __version__  # pip kept a valid dist-info


def test_record_lists_every_file_with_its_sha256_and_size(wheel: bytes) -> None:
    entries = _entries(wheel)
    rows = list(csv.reader(io.StringIO(entries[f"{DIST_INFO}/RECORD"].decode())))
    assert sorted(r[0] for r in rows) == sorted(entries)  # every file once, nothing else
    for path, digest, size in rows:
        if path == f"{DIST_INFO}/RECORD":
            assert (digest, size) == ("", "")
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(entries[path]).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}" and int(size) == len(entries[path]), path
    assert list(entries)[-1] == f"{DIST_INFO}/RECORD"  # .dist-info last, RECORD last of all


def test_wheel_content_and_metadata(wheel: bytes) -> None:
    entries = _entries(wheel)
    assert not [p for p in entries if "__pycache__" in p or p.endswith(".pyc")]
    for needed in ("pykops/__init__.py", "pykops/cli/main.py", "pykops/api/data/channel-stable.yaml"):
        assert needed in entries
    assert (
        entries["pykops/model/data/bootstrap.py"]
        == (Path(__file__).parents[1] / "src/pykops/model/data/bootstrap.py").read_bytes()
    )
    metadata = entries[f"{DIST_INFO}/METADATA"].decode().splitlines()
    assert metadata[:3] == ["Metadata-Version: 2.1", "Name: pykops", f"Version: {__version__}"]
    requires = [line.split(": ", 1)[1] for line in metadata if line.startswith("Requires-Dist: ")]
    assert any(r.startswith("click") for r in requires) and any(r.startswith("boto3") for r in requires)
    assert not [r for r in requires if "extra" in r]  # the test extra stays out
    wheel_file = entries[f"{DIST_INFO}/WHEEL"].decode()
    assert "Root-Is-Purelib: true" in wheel_file and "Tag: py3-none-any" in wheel_file
    assert "pykops = pykops.cli.main:main" in entries[f"{DIST_INFO}/entry_points.txt"].decode()


def test_the_wheel_is_deterministic(wheel: bytes) -> None:
    assert build_pykops_wheel()[1] == wheel


def test_make_wheel_refuses_paths_outside_the_tree() -> None:
    for bad in ("/etc/passwd", "a/../../b", "x-1.dist-info/METADATA"):
        with pytest.raises(ReleaseError):
            make_wheel("x", "1", [(bad, b"")])


def test_wheel_arch() -> None:
    assert wheel_arch("click-8.1.7-py3-none-any.whl") is None
    assert wheel_arch("PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == "amd64"
    assert wheel_arch("cryptography-44.0.0-cp39-abi3-manylinux_2_28_aarch64.whl") == "arm64"
    with pytest.raises(ReleaseError, match="not a manylinux"):
        wheel_arch("PyYAML-6.0.2-cp312-cp312-macosx_11_0_arm64.whl")


# --- release prepare -----------------------------------------------------------------------------------


def test_prepare_dry_run_prints_the_pip_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "prepare", "--arch", "arm64", "--dir", str(tmp_path / "wh"), "--dry-run"]) == 0
    cmd = shlex.split(capsys.readouterr().out)
    assert cmd[:6] == [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version"]
    assert cmd[6:9] == ["3.12", "--implementation", "cp"]
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert platforms[0] == "manylinux_2_39_aarch64" and platforms[-1] == "manylinux2014_aarch64"
    assert "manylinux_2_28_aarch64" in platforms and not [p for p in platforms if "x86_64" in p]
    assert cmd[cmd.index("-d") + 1] == str(tmp_path / "wh")
    pins = cmd[cmd.index("-d") + 2 :]
    assert pins == dependency_pins("arm64")
    assert f"click=={md.version('click')}" in pins and f"boto3=={md.version('boto3')}" in pins
    assert f"botocore=={md.version('botocore')}" in pins  # transitive dependencies are pinned too
    names = {p.split("==")[0].lower() for p in pins}
    assert not names & {"pykops", "pytest", "moto", "mypy", "ruff"}  # neither pykops nor the test extra
    assert not (tmp_path / "wh").exists()  # a dry run changes nothing


def test_prepare_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_wheelhouse("amd64") == tmp_path / "pykops" / "wheelhouse" / __version__ / "amd64"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_wheelhouse("arm64") == tmp_path / ".cache/pykops/wheelhouse" / __version__ / "arm64"


# --- upload --------------------------------------------------------------------------------------------


def _wheelhouse(directory: Path, *names: str) -> Path:
    """A wheelhouse of small, valid wheels named like real ones."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist, version = name.split("-")[:2]
        _, data = make_wheel(dist, version, [(f"{dist.lower()}/__init__.py", f"V = {version!r}\n".encode())])
        (directory / name).write_bytes(data)
    return directory


def _manifest(store: StateStore, cluster: str) -> dict[str, object]:
    found = store.read(f"{cluster}/releases/{__version__}/{MANIFEST}")
    assert found is not None
    doc: dict[str, object] = json.loads(found.data)
    return doc


def _check_idempotent_upload(store: StateStore, tmp_path: Path) -> None:
    cluster = "proyecto.k8s.local"
    house = _wheelhouse(
        tmp_path / "wh",
        "click-8.1.7-py3-none-any.whl",
        "PyYAML-6.0.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    )
    first = upload_release(store, cluster, wheelhouse=house)
    assert first.prefix == f"{cluster}/releases/{__version__}"
    assert sorted(first.uploaded) == sorted([WHEEL, *(p.name for p in house.iterdir()), MANIFEST])
    assert not first.wheelhouse_missing and first.warning() is None
    keys = store.list(first.prefix)
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(first.uploaded)
    manifest = _manifest(store, cluster)
    assert manifest["version"] == __version__ and manifest["arches"] == {"amd64": True}
    files = {f["name"]: f for f in manifest["files"]}  # type: ignore[attr-defined]
    for path in house.iterdir():
        assert files[path.name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert files[path.name]["arches"] == ["amd64"]
        stored = store.read(f"{first.prefix}/{path.name}")
        assert stored is not None and stored.data == path.read_bytes()

    versions = {k: store.read(k).version for k in keys}  # type: ignore[union-attr]
    second = upload_release(store, cluster, wheelhouse=house)
    assert second.uploaded == () and sorted(second.unchanged) == sorted(first.uploaded)
    assert {k: store.read(k).version for k in keys} == versions  # type: ignore[union-attr]

    _wheelhouse(house, "six-1.17.0-py2.py3-none-any.whl")
    third = upload_release(store, cluster, wheelhouse=house)
    assert third.uploaded == ("six-1.17.0-py2.py3-none-any.whl", MANIFEST)


def test_upload_is_idempotent_in_a_file_store(tmp_path: Path) -> None:
    _check_idempotent_upload(open_store(f"file://{tmp_path / 'state'}"), tmp_path)


def test_upload_is_idempotent_in_an_s3_store(aws_env: AwsEmulator, tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(
        Bucket="pykops-release-test", CreateBucketConfiguration={"LocationConstraint": aws_env.region}
    )
    _check_idempotent_upload(open_store("s3://pykops-release-test/team"), tmp_path)


def test_upload_without_wheelhouse_says_how_to_prepare_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = open_store(f"file://{tmp_path / 'state'}")
    done = upload_release(store, "c.k8s.local", arches=["amd64", "arm64"])
    assert done.uploaded == (WHEEL, MANIFEST)
    assert done.missing_wheelhouses == {
        "amd64": default_wheelhouse("amd64"),
        "arm64": default_wheelhouse("arm64"),
    }
    warning = done.warning()
    assert warning is not None and "\n" not in warning
    assert "will not bootstrap" in warning and "pykops release prepare --arch arm64" in warning
    manifest = _manifest(store, "c.k8s.local")
    assert manifest["arches"] == {"amd64": False, "arm64": False}
    # With the default directories of both architectures: a pure wheel serves both, a platform wheel one.
    six = "six-1.17.0-py2.py3-none-any.whl"
    _wheelhouse(default_wheelhouse("amd64"), six, "a-1-cp312-cp312-manylinux_2_17_x86_64.whl")
    _wheelhouse(default_wheelhouse("arm64"), six, "a-1-cp312-cp312-manylinux_2_17_aarch64.whl")
    done = upload_release(store, "c.k8s.local", arches=["amd64", "arm64"])
    assert not done.wheelhouse_missing
    manifest = _manifest(store, "c.k8s.local")
    files = {f["name"]: f["arches"] for f in manifest["files"]}  # type: ignore[attr-defined]
    assert files == {
        WHEEL: ["amd64", "arm64"],
        "six-1.17.0-py2.py3-none-any.whl": ["amd64", "arm64"],
        "a-1-cp312-cp312-manylinux_2_17_x86_64.whl": ["amd64"],
        "a-1-cp312-cp312-manylinux_2_17_aarch64.whl": ["arm64"],
    }


def test_a_wheelhouse_with_two_versions_or_another_arch_is_refused(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'state'}")
    house = _wheelhouse(
        tmp_path / "two", "six-1.16.0-py2.py3-none-any.whl", "six-1.17.0-py2.py3-none-any.whl"
    )
    with pytest.raises(ReleaseError, match="two wheels of six"):
        upload_release(store, "c.k8s.local", wheelhouse=house)
    house = _wheelhouse(tmp_path / "arm", "a-1-cp312-cp312-manylinux_2_17_aarch64.whl")
    with pytest.raises(PykopsError, match="for arm64, not amd64"):
        upload_release(store, "c.k8s.local", wheelhouse=house)
    assert store.list("c.k8s.local") == []  # refused before anything was written


# --- update cluster ------------------------------------------------------------------------------------


def test_update_cluster_uploads_the_release_once_and_warns_without_wheelhouse(
    aws_env: AwsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aws_env.reset()
    bucket, name = "pykops-release-update", "release.k8s.local"
    seed(aws_env.endpoint_url, aws_env.region, state_bucket=bucket)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    create = [
        "--state", f"s3://{bucket}", "create", "cluster", f"--name={name}", "--zones=eu-west-1a",
        "--master-count=1", "--node-count=1", "--networking=kubenet", "--yes",
    ]  # fmt: skip
    assert main(create) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "release prepare" in line]
    assert len(warnings) == 1 and warnings[0].startswith("Warning: no dependency wheels for amd64")
    store = open_store(f"s3://{bucket}")
    keys = store.list(f"{name}/releases")
    assert keys == [f"{name}/releases/{__version__}/{MANIFEST}", f"{name}/releases/{__version__}/{WHEEL}"]

    registry = ClusterRegistry(store)
    plan = plan_cluster(registry, name)
    apply_plan(registry, plan)
    assert plan.release is not None and plan.release.uploaded == ()  # a second update uploads nothing
