"""The pinned pykops release in the state store, so that machines install pykops without PyPI.

``update cluster --yes`` uploads, under ``<cluster>/releases/<version>/``:

* ``pykops-<version>-py3-none-any.whl``, built from the running installation (:func:`build_pykops_wheel`);
* every wheel of the *wheelhouse* of each architecture the cluster's machines use: pykops' dependencies
  for the machines' platform (Ubuntu 24.04: CPython 3.12, manylinux x86_64/aarch64), downloaded once by
  the operator with ``pykops release prepare [--arch amd64|arm64]`` into
  ``~/.cache/pykops/wheelhouse/<version>/<arch>`` (``$XDG_CACHE_HOME`` is honoured);
* ``manifest.json``: every file's name, SHA-256, size and architectures, and per architecture whether its
  dependencies are there. The machines' bootstrap (``model/data/bootstrap.py``) downloads what the manifest
  lists for its architecture, checks each SHA-256 and unpacks the wheels.

Uploads are idempotent: a file already in the store with the SHA-256 the stored manifest records is not
sent again, and the manifest is written only when it changes, so a second ``update`` uploads nothing.
Files of an earlier manifest are left in place (a machine may be bootstrapping from it).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib
import importlib.metadata as md
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykops
from pykops import __version__
from pykops.errors import PykopsError
from pykops.model.bootstrap import release_key
from pykops.state.store import StateStore

MANIFEST = "manifest.json"
NODE_PYTHON = "3.12"  # Ubuntu 24.04's python3, which runs the bootstrap and pykops on the machines
NODE_PYTHON_FULL = "3.12.3"
NODE_GLIBC_MINOR = 39  # Ubuntu 24.04's glibc 2.39: the newest manylinux_2_X its machines can run
ARCHES = ("amd64", "arm64")
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files always make the same wheel


class ReleaseError(PykopsError):
    """The release cannot be built, prepared or uploaded."""


# --- the pykops wheel ------------------------------------------------------------------------------------
#
# Written by hand with zipfile instead of with a build backend (setuptools, ``pip wheel``, ``python -m
# build``): ``update cluster`` runs on the operator's machine, which may be offline and need not have a
# build backend installed, and it must also work for an editable install (``pip install -e .``), whose
# site-packages holds no copy of the package to re-zip. A wheel is only a zip of the install tree plus a
# ``.dist-info`` directory (METADATA, WHEEL, RECORD with each file's hash): see
# https://packaging.python.org/en/latest/specifications/binary-distribution-format/


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _escape(name: str) -> str:
    """A distribution name as a wheel file name component: lower case, runs of ``-_.`` become ``_``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_filename(name: str, version: str) -> str:
    return f"{_escape(name)}-{version.replace('-', '_')}-py3-none-any.whl"


def make_wheel(
    name: str,
    version: str,
    files: Iterable[tuple[str, bytes]],
    *,
    requires: Sequence[str] = (),
    requires_python: str | None = None,
    summary: str | None = None,
    entry_points: str | None = None,
) -> tuple[str, bytes]:
    """A pure-Python wheel (file name, content) of ``files`` (path inside the wheel, content).

    Deterministic: entries sorted, fixed timestamps and modes, so the same files make the same bytes.
    """
    dist_info = f"{_escape(name)}-{version.replace('-', '_')}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Summary: {summary}"] if summary else []
    metadata += [f"Requires-Python: {requires_python}"] if requires_python else []
    metadata += [f"Requires-Dist: {r}" for r in requires]
    wheel = [
        "Wheel-Version: 1.0",
        "Generator: pykops.release (hand-written)",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
    ]
    entries = sorted(files)
    for path, _ in entries:
        if path.startswith("/") or ".." in path.split("/") or path.startswith(dist_info + "/"):
            raise ReleaseError(f"cannot put {path!r} in a wheel")
    entries.append((f"{dist_info}/METADATA", ("\n".join(metadata) + "\n").encode()))
    entries.append((f"{dist_info}/WHEEL", ("\n".join(wheel) + "\n").encode()))
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in entries:
        writer.writerow([path, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in entries:
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel_filename(name, version), out.getvalue()


def _runtime_requires(requires: Iterable[str]) -> list[str]:
    return [r for r in requires if not re.search(r"\bextra\s*==", r)]


def build_pykops_wheel() -> tuple[str, bytes]:
    """The running pykops as a wheel: the files of its package directory (no ``__pycache__``, compiled or
    hidden files), and the metadata of its installation (Name, Version, Requires-Dist, entry points)."""
    package = Path(pykops.__file__).parent
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        skipped = any(part == "__pycache__" or part.startswith(".") for part in rel.parts)
        if path.is_file() and not skipped and path.suffix not in (".pyc", ".pyo"):
            files.append((f"pykops/{rel.as_posix()}", path.read_bytes()))
    try:
        dist = md.distribution("pykops")
    except md.PackageNotFoundError as exc:
        raise ReleaseError(
            "pykops is not installed (no package metadata)", hint="install it: pip install -e ."
        ) from exc
    meta = dist.metadata
    # The version is the package's own (pykops.__version__), which is also what the user data pins: with
    # an editable install the metadata can lag behind the source until the next `pip install -e .`.
    return make_wheel(
        "pykops",
        __version__,
        files,
        requires=_runtime_requires(meta.get_all("Requires-Dist") or []),
        requires_python=str(meta.json.get("requires_python") or "") or None,
        summary=str(meta.json.get("summary") or "") or None,
        entry_points=dist.read_text("entry_points.txt"),
    )


# --- the wheelhouse: pykops' dependencies for the machines ------------------------------------------------


def default_wheelhouse(arch: str, version: str = __version__) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pykops" / "wheelhouse" / version / arch


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_evaluator(arch: str) -> Callable[[str], bool] | None:
    """Marker text → whether it holds on the machines (with packaging, or pip's copy of it; else None)."""
    module: Any = None
    for name in ("packaging.markers", "pip._vendor.packaging.markers"):
        try:
            module = importlib.import_module(name)
            break
        except ImportError:
            continue
    environment = {
        "python_version": NODE_PYTHON,
        "python_full_version": NODE_PYTHON_FULL,
        "implementation_name": "cpython",
        "implementation_version": NODE_PYTHON_FULL,
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": MACHINES[arch],
        "extra": "",
    }
    if module is None:
        return None
    return lambda marker: bool(module.Marker(marker).evaluate(environment))


def dependency_pins(arch: str = "amd64") -> list[str]:
    """pykops' runtime dependencies, transitively, each pinned to the version installed here (``name==v``).

    Requirements whose markers exclude the machines (Linux, CPython 3.12) are left out; one that applies
    there but is not installed here is listed unpinned, for pip to resolve.
    """
    evaluate = _marker_evaluator(arch)
    pins: dict[str, str] = {}
    queue = ["pykops"]
    while queue:
        try:
            dist = md.distribution(queue.pop(0))
        except md.PackageNotFoundError as exc:
            raise ReleaseError(f"{exc.name} is not installed", hint="pip install -e .") from exc
        for requirement in dist.requires or []:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
            if match is None:
                continue
            name = match.group(1)
            marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
            key = _canonical(name)
            if key in pins or key == "pykops":
                continue
            try:
                installed = md.distribution(name)
            except md.PackageNotFoundError:
                installed = None
            if marker:
                # Without packaging: keep what is installed here, unless it is an extra's.
                applies = evaluate(marker) if evaluate else (installed is not None and "extra" not in marker)
                if not applies:
                    continue
            if installed is None:
                pins[key] = name
                continue
            pins[key] = f"{installed.metadata['Name']}=={installed.version}"
            queue.append(name)
    return [pins[k] for k in sorted(pins)]


def platform_tags(arch: str) -> list[str]:
    """pip ``--platform`` values for the machines, most preferred first: manylinux_2_39 down to 2_17, and
    manylinux2014 (which pip widens to manylinux2010 and manylinux1). pip does not widen ``manylinux_2_X``
    by itself, and many wheels (cryptography's, pydantic-core's) are tagged manylinux_2_28 or newer."""
    machine = MACHINES[arch]
    return [f"manylinux_2_{m}_{machine}" for m in range(NODE_GLIBC_MINOR, 16, -1)] + [
        f"manylinux2014_{machine}"
    ]


def prepare_command(arch: str, directory: Path, *, python: str = sys.executable) -> list[str]:
    """The ``pip download`` that fills a wheelhouse for ``arch`` (uses PyPI, or pip's configured index)."""
    if arch not in MACHINES:
        raise ReleaseError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHES)}")
    cmd = [python, "-m", "pip", "download", "--only-binary=:all:", "--python-version", NODE_PYTHON]
    cmd += ["--implementation", "cp"]
    for tag in platform_tags(arch):
        cmd += ["--platform", tag]
    return [*cmd, "-d", str(directory), *dependency_pins(arch)]


# --- the upload -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseUpload:
    """What :func:`upload_release` did."""

    version: str
    prefix: str  # store key of the release directory
    uploaded: tuple[str, ...]  # file names sent this time (manifest.json included when it changed)
    unchanged: tuple[str, ...]  # file names already in the store with the same SHA-256
    missing_wheelhouses: dict[str, Path]  # arch → the wheelhouse directory that has no wheels

    @property
    def wheelhouse_missing(self) -> bool:
        return bool(self.missing_wheelhouses)

    def warning(self) -> str | None:
        """One line for ``update cluster`` when an architecture's wheelhouse is missing."""
        if not self.missing_wheelhouses:
            return None
        arches = sorted(self.missing_wheelhouses)
        where = ", ".join(str(self.missing_wheelhouses[a]) for a in arches)
        run = " and ".join(f"pykops release prepare --arch {a}" for a in arches)
        return (
            f"no dependency wheels for {'/'.join(arches)} in {where}: machines on real AWS will not "
            f"bootstrap without them; run: {run}, then pykops update cluster --yes"
        )


@dataclass
class _File:
    name: str
    sha256: str
    size: int
    arches: set[str]
    source: Path | bytes


def wheel_arch(filename: str) -> str | None:
    """``amd64``/``arm64`` for a Linux platform wheel, None for a pure one (``any``); error otherwise."""
    platform = filename[: -len(".whl")].split("-")[-1]
    if platform == "any":
        return None
    for arch, machine in MACHINES.items():
        if platform.startswith("manylinux") and platform.endswith(machine):
            return arch
    raise ReleaseError(f"{filename} is not a manylinux x86_64/aarch64 or pure-Python wheel")


def _sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _wheelhouse_files(directory: Path, arch: str) -> list[_File]:
    files: list[_File] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.whl")):
        other = wheel_arch(path.name)
        if other not in (None, arch):
            raise ReleaseError(
                f"{path} is a wheel for {other}, not {arch}",
                hint=f"re-run pykops release prepare --arch {arch}",
            )
        dist = _canonical(path.name.split("-", 1)[0])
        if dist in seen:
            raise ReleaseError(
                f"{directory} has two wheels of {dist}: {seen[dist]} and {path.name}",
                hint=f"remove the stale one or re-run pykops release prepare --arch {arch}",
            )
        seen[dist] = path.name
        digest, size = _sha256_file(path)
        files.append(_File(path.name, digest, size, {arch}, path))
    return files


def upload_release(
    store: StateStore,
    cluster_name: str,
    *,
    wheelhouse: Path | None = None,
    arches: Iterable[str] = ("amd64",),
    version: str = __version__,
) -> ReleaseUpload:
    """Upload the pinned release of ``cluster_name``; see the module docstring.

    ``wheelhouse`` is the dependency directory for every architecture in ``arches`` (default: each
    architecture's :func:`default_wheelhouse`).
    """
    arch_list = sorted(set(arches))
    for arch in arch_list:
        if arch not in MACHINES:
            raise ReleaseError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHES)}")
    name, data = build_pykops_wheel()
    files: dict[str, _File] = {
        name: _File(name, hashlib.sha256(data).hexdigest(), len(data), set(arch_list), data)
    }
    missing: dict[str, Path] = {}
    for arch in arch_list:
        directory = wheelhouse if wheelhouse is not None else default_wheelhouse(arch, version)
        found = _wheelhouse_files(directory, arch) if directory.is_dir() else []
        if not found:
            missing[arch] = directory
        for f in found:
            known = files.setdefault(f.name, f)
            if known.sha256 != f.sha256:
                raise ReleaseError(f"two different files named {f.name} (in {directory} and elsewhere)")
            known.arches.add(arch)
    manifest = {
        "version": version,
        "python": NODE_PYTHON,
        "arches": {arch: arch not in missing for arch in arch_list},
        "files": [
            {"name": f.name, "sha256": f.sha256, "size": f.size, "arches": sorted(f.arches)}
            for f in sorted(files.values(), key=lambda f: f.name)
        ],
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()

    prefix = release_key(cluster_name, version)
    present = set(store.list(prefix))
    stored = store.read(f"{prefix}/{MANIFEST}")
    known_hashes: dict[str, str] = {}
    if stored is not None:
        try:
            known_hashes = {e["name"]: e["sha256"] for e in json.loads(stored.data)["files"]}
        except (ValueError, KeyError, TypeError):
            known_hashes = {}  # unreadable: upload everything again
    uploaded: list[str] = []
    unchanged: list[str] = []
    for f in sorted(files.values(), key=lambda f: f.name):
        key = f"{prefix}/{f.name}"
        if key in present and known_hashes.get(f.name) == f.sha256:
            unchanged.append(f.name)
            continue
        store.put(key, f.source if isinstance(f.source, bytes) else f.source.read_bytes())
        uploaded.append(f.name)
    if stored is not None and stored.data == manifest_bytes:
        unchanged.append(MANIFEST)
    else:
        store.put(f"{prefix}/{MANIFEST}", manifest_bytes)  # last: it points at files already uploaded
        uploaded.append(MANIFEST)
    return ReleaseUpload(version, prefix, tuple(uploaded), tuple(unchanged), missing)
