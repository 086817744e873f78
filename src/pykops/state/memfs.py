"""An in-memory state store (``memfs://name``) for tests.

Stores are process-wide and keyed by name: every ``open_store("memfs://x")`` sees the same data. All
operations hold one lock per store, so compare-and-swap writes are atomic across threads.
"""

from __future__ import annotations

import builtins
import hashlib
import threading
from dataclasses import dataclass, field

from pykops.errors import ConflictError, NotFoundError, StateStoreError
from pykops.state.store import StateStore, Versioned, check_key, child_dirs, dir_prefix


@dataclass
class _Entry:
    data: bytes
    version: str
    secret: bool


@dataclass
class _Space:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[str, _Entry] = field(default_factory=dict)


_spaces: dict[str, _Space] = {}
_spaces_lock = threading.Lock()


def _space(name: str) -> _Space:
    with _spaces_lock:
        space = _spaces.get(name)
        if space is None:
            space = _spaces[name] = _Space()
        return space


def reset_memfs(name: str | None = None) -> None:
    """Forget the in-memory store ``name`` (or all of them)."""
    with _spaces_lock:
        if name is None:
            _spaces.clear()
        else:
            _spaces.pop(name, None)


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MemFsStore(StateStore):
    """A process-wide in-memory store; see the module docstring."""

    def __init__(self, url: str) -> None:
        if not url.startswith("memfs://"):
            raise StateStoreError(f"not a memfs:// state store URL: {url!r}")
        name = url[len("memfs://") :].strip("/")
        if not name:
            raise StateStoreError(f"state store URL {url!r} needs a name, e.g. memfs://test")
        self.name = name
        self.url = f"memfs://{name}"
        self._space = _space(name)

    def read(self, key: str) -> Versioned | None:
        check_key(key)
        with self._space.lock:
            entry = self._space.entries.get(key)
            return None if entry is None else Versioned(entry.data, entry.version)

    def create(self, key: str, data: bytes, *, secret: bool = False) -> str:
        check_key(key)
        with self._space.lock:
            if key in self._space.entries:
                raise ConflictError(self._exists_message(key))
            return self._write(key, data, secret)

    def update(self, key: str, data: bytes, *, expected_version: str, secret: bool = False) -> str:
        check_key(key)
        with self._space.lock:
            entry = self._space.entries.get(key)
            if entry is None:
                raise NotFoundError(self._missing_message(key))
            if entry.version != expected_version:
                raise ConflictError(self._changed_message(key))
            return self._write(key, data, secret)

    def put(self, key: str, data: bytes, *, secret: bool = False) -> str:
        check_key(key)
        with self._space.lock:
            return self._write(key, data, secret)

    def delete(self, key: str, *, expected_version: str | None = None) -> None:
        check_key(key)
        with self._space.lock:
            entry = self._space.entries.get(key)
            if entry is None:
                return
            if expected_version is not None and entry.version != expected_version:
                raise ConflictError(self._changed_message(key))
            del self._space.entries[key]

    def delete_prefix(self, prefix: str) -> int:
        base = dir_prefix(prefix)
        if not base:
            raise StateStoreError(f"refusing to delete everything in the state store {self.url}")
        with self._space.lock:
            doomed = [k for k in self._space.entries if k.startswith(base)]
            for key in doomed:
                del self._space.entries[key]
            return len(doomed)

    def list(self, prefix: str) -> builtins.list[str]:
        base = dir_prefix(prefix)
        with self._space.lock:
            return sorted(k for k in self._space.entries if k.startswith(base))

    def list_dirs(self, prefix: str) -> builtins.list[str]:
        return child_dirs(self.list(prefix), prefix)

    def is_secret(self, key: str) -> bool:
        """Whether ``key`` was last written with ``secret=True`` (for tests)."""
        with self._space.lock:
            entry = self._space.entries.get(key)
            return entry is not None and entry.secret

    def _write(self, key: str, data: bytes, secret: bool) -> str:
        data = bytes(data)
        version = _version(data)
        self._space.entries[key] = _Entry(data, version, secret)
        return version
