"""A state store in a local directory (``file:///abs/path``).

Writes are atomic: the new content goes to a temporary file in the target's directory and is fsynced, then
``os.link`` (create: fails if the target exists) or ``os.replace`` (update, put) moves it into place, and the
directory is fsynced. Every mutation holds an exclusive ``fcntl.flock`` on ``<root>/.pykops-lock``; a flock
belongs to an open file description, so it excludes other threads of this process as well as other
processes, and the compare-then-replace of ``update`` can never be won by two writers.

Readers take no lock: a rename is atomic, so they see the old or the new content, never a mix.
Names starting with ``.pykops-`` are the store's own (lock and temporary files) and are never listed.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pykops.errors import ConflictError, NotFoundError, StateStoreError
from pykops.state.store import StateStore, Versioned, check_key, child_dirs, dir_prefix

_RESERVED = ".pykops-"
_LOCK_NAME = ".pykops-lock"
_SECRET_FILE_MODE = 0o600
_PUBLIC_FILE_MODE = 0o644
_SECRET_DIR_MODE = 0o700
_PUBLIC_DIR_MODE = 0o755


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore(StateStore):
    """A state store rooted at a local directory; see the module docstring."""

    def __init__(self, url: str) -> None:
        if not url.startswith("file://"):
            raise StateStoreError(f"not a file:// state store URL: {url!r}")
        path = url[len("file://") :]
        if not path.startswith("/"):
            raise StateStoreError(
                f"state store URL {url!r} must hold an absolute path, e.g. file:///var/lib/pykops "
                "(three slashes: file:// followed by /var/...)"
            )
        self.root = Path(os.path.normpath(path))
        self.url = f"file://{self.root}"

    # -- reads ---------------------------------------------------------------------------------------------

    def read(self, key: str) -> Versioned | None:
        path = self._path(key)
        data = self._read_bytes(key, path)
        return None if data is None else Versioned(data, _version(data))

    def list(self, prefix: str) -> builtins.list[str]:
        base = dir_prefix(prefix)
        top = self.root.joinpath(*base.strip("/").split("/")) if base else self.root
        if not top.is_dir():
            return []
        keys: builtins.list[str] = []
        with self._os_errors("list", base or "/"):
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if not d.startswith(_RESERVED)]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if not name.startswith(_RESERVED):
                        keys.append(name if rel == "." else f"{rel}/{name}")
        return sorted(keys)

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        return child_dirs(self.list(prefix), prefix)

    # -- writes --------------------------------------------------------------------------------------------

    def create(self, key: str, data: bytes, *, secret: bool = False) -> str:
        path = self._path(key)
        with self._locked(), self._os_errors("write", key):
            tmp = self._write_temp(path, data, secret=secret)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConflictError(self._exists_message(key)) from None
            finally:
                os.unlink(tmp)
            _fsync_dir(path.parent)
        return _version(data)

    def update(self, key: str, data: bytes, *, expected_version: str, secret: bool = False) -> str:
        path = self._path(key)
        with self._locked(), self._os_errors("write", key):
            current = self._read_bytes(key, path)
            if current is None:
                raise NotFoundError(self._missing_message(key))
            if _version(current) != expected_version:
                raise ConflictError(self._changed_message(key))
            self._replace(path, data, secret=secret)
        return _version(data)

    def put(self, key: str, data: bytes, *, secret: bool = False) -> str:
        path = self._path(key)
        with self._locked(), self._os_errors("write", key):
            self._replace(path, data, secret=secret)
        return _version(data)

    def delete(self, key: str, *, expected_version: str | None = None) -> None:
        path = self._path(key)
        with self._locked(), self._os_errors("delete", key):
            if expected_version is not None:
                current = self._read_bytes(key, path)
                if current is None:
                    return
                if _version(current) != expected_version:
                    raise ConflictError(self._changed_message(key))
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return
            self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        base = dir_prefix(prefix)
        if not base:
            raise StateStoreError(f"refusing to delete everything in the state store {self.url}")
        top = self._path(base.rstrip("/"))
        with self._locked(), self._os_errors("delete", base):
            if not top.is_dir():
                return 0
            count = len(self.list(base))
            shutil.rmtree(top)
            self._prune(top.parent)
            return count

    # -- helpers -------------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        parts = check_key(key).split("/")
        if any(part.startswith(_RESERVED) for part in parts):
            raise StateStoreError(
                f"invalid state store key {key!r}: names starting with {_RESERVED!r} are reserved"
            )
        return self.root.joinpath(*parts)

    def _read_bytes(self, key: str, path: Path) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            raise StateStoreError(f"cannot read {key} in the state store {self.url}: {err.strerror}") from err

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._os_errors("lock", _LOCK_NAME):
            self._makedirs(self.root, secret=False)
            fd = os.open(self.root / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _SECRET_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def _os_errors(self, action: str, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as err:
            if err.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
                detail = "a file and a directory of the same name are in the way"
            else:
                detail = err.strerror or str(err)
            raise StateStoreError(f"cannot {action} {key} in the state store {self.url}: {detail}") from err

    def _makedirs(self, directory: Path, *, secret: bool) -> None:
        """Create ``directory`` and its missing parents; new ones get 0700 for secrets (0755 otherwise)."""
        missing: builtins.list[Path] = []
        probe = directory
        while not probe.is_dir():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        mode = _SECRET_DIR_MODE if secret else _PUBLIC_DIR_MODE
        for new_dir in reversed(missing):
            try:
                os.mkdir(new_dir, mode)
            except FileExistsError:
                if not new_dir.is_dir():
                    raise
                continue
            if secret or new_dir == self.root:
                os.chmod(new_dir, _SECRET_DIR_MODE)  # exact mode, whatever the umask

    def _write_temp(self, path: Path, data: bytes, *, secret: bool) -> str:
        """Write ``data`` to a fsynced temporary file next to ``path``; return its name."""
        self._makedirs(path.parent, secret=secret)
        fd, tmp = tempfile.mkstemp(prefix=f"{_RESERVED}tmp-", dir=path.parent)
        try:
            os.fchmod(fd, _SECRET_FILE_MODE if secret else _PUBLIC_FILE_MODE)
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp

    def _replace(self, path: Path, data: bytes, *, secret: bool) -> None:
        # Never loosen an existing private file: keep 0600 if the current file has no group/other bits.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0:
                secret = True
        tmp = self._write_temp(path, data, secret=secret)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents while they are empty, up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = directory.parent
