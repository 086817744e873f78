"""The state store: where pykops keeps cluster specs, keysets and derived files.

A store is addressed by a URL (``s3://bucket/prefix``, ``file:///abs/path`` or ``memfs://name``) and holds
opaque byte strings under ``/``-separated keys relative to the store root, e.g.
``proyecto.k8s.local/config``. Every write returns an opaque *version* token (the S3 ETag, or the sha256 of
the content for the file and in-memory backends) which later conditional writes compare against, so that two
people running pykops against the same cluster never silently overwrite each other's changes:

* ``create`` only writes a key that does not exist yet;
* ``update`` only writes if the key still has the version the caller read;
* ``put`` writes unconditionally (for files derived from the spec, which are safe to regenerate).

Losing a race raises :class:`~pykops.errors.ConflictError`; nothing of the loser's is written.
"""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass

from pykops.errors import StateStoreError

SUPPORTED_SCHEMES = ("s3://", "file://", "memfs://")


@dataclass(frozen=True)
class Versioned:
    """The content of one key and the version token it was read at."""

    data: bytes
    version: str


class StateStore(abc.ABC):
    """A key/value store with compare-and-swap writes. See the module docstring."""

    url: str

    @abc.abstractmethod
    def read(self, key: str) -> Versioned | None:
        """The content and version of ``key``, or ``None`` if it does not exist."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes, *, secret: bool = False) -> str:
        """Write ``key`` only if it does not exist yet; return the new version.

        Raises ConflictError if the key exists (whoever created it first wins).
        """

    @abc.abstractmethod
    def update(self, key: str, data: bytes, *, expected_version: str, secret: bool = False) -> str:
        """Overwrite ``key`` only if its current version is ``expected_version``; return the new version.

        Raises ConflictError if someone changed (or deleted and re-created) the key since it was read, and
        NotFoundError if the key does not exist.
        """

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, secret: bool = False) -> str:
        """Write ``key`` unconditionally; return the new version."""

    @abc.abstractmethod
    def delete(self, key: str, *, expected_version: str | None = None) -> None:
        """Delete ``key``; a missing key is not an error.

        With ``expected_version``, delete only if the key still has that version, else ConflictError.
        """

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under the directory ``prefix``; return how many were deleted.

        An empty prefix (the whole store) is refused with StateStoreError.
        """

    @abc.abstractmethod
    def list(self, prefix: str) -> builtins.list[str]:
        """Sorted keys (relative to the store root) under the directory ``prefix``, recursively.

        ``prefix`` names a directory: ``"a"`` and ``"a/"`` both list ``a/x`` and ``a/b/y`` but not ``ab/z``;
        ``""`` lists the whole store.
        """

    @abc.abstractmethod
    def list_dirs(self, prefix: str) -> builtins.list[str]:
        """Sorted names (not paths) of the immediate child directories of ``prefix``.

        A directory exists while it contains at least one key; ``list_dirs("")`` gives the cluster names.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- messages shared by the backends, so every backend words its conflicts the same way --------------

    def _exists_message(self, key: str) -> str:
        return f"{key} already exists in the state store {self.url}; someone else created it"

    def _changed_message(self, key: str) -> str:
        return (
            f"{key} in the state store {self.url} was changed by someone else since it was read; "
            "re-run the command"
        )

    def _missing_message(self, key: str) -> str:
        return f"{key} does not exist in the state store {self.url}"


def check_key(key: str) -> str:
    """Validate a store key and return it. Keys are relative '/'-separated paths without '.' or '..'."""
    if not isinstance(key, str) or not key:
        raise StateStoreError("invalid state store key: the key is empty")
    if key.startswith("/") or key.endswith("/"):
        raise StateStoreError(f"invalid state store key {key!r}: it must not start or end with '/'")
    if "\\" in key or "\x00" in key:
        raise StateStoreError(f"invalid state store key {key!r}: it must not contain '\\' or NUL")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StateStoreError(
                f"invalid state store key {key!r}: empty, '.' and '..' path parts are not allowed"
            )
    return key


def dir_prefix(prefix: str) -> str:
    """Normalise a directory prefix: ``""`` stays ``""``, anything else ends with exactly one '/'."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    check_key(stripped)
    return stripped + "/"


def child_dirs(keys: builtins.list[str], prefix: str) -> builtins.list[str]:
    """Immediate child directory names of ``prefix`` given the keys under it."""
    base = dir_prefix(prefix)
    names = set()
    for key in keys:
        rest = key[len(base) :]
        if "/" in rest:
            names.add(rest.split("/", 1)[0])
    return sorted(names)


def open_store(url: str) -> StateStore:
    """Open the state store at ``url`` (``s3://bucket[/prefix]``, ``file:///abs/path``, ``memfs://name``).

    Backends are imported lazily, so that importing this module does not import boto3.
    """
    if url.startswith("s3://"):
        from pykops.state.s3 import S3Store

        return S3Store(url)
    if url.startswith("file://"):
        from pykops.state.file import FileStore

        return FileStore(url)
    if url.startswith("memfs://"):
        from pykops.state.memfs import MemFsStore

        return MemFsStore(url)
    scheme = url.split("://", 1)[0] + "://" if "://" in url else None
    supported = ", ".join(f"{s}..." for s in SUPPORTED_SCHEMES)
    if scheme is None:
        raise StateStoreError(
            f"state store URL {url!r} has no scheme; supported state stores are {supported} "
            "(for a local directory use file:///absolute/path)"
        )
    raise StateStoreError(f"unsupported state store scheme {scheme} in {url!r}; supported: {supported}")
