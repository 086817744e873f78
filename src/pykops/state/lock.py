"""A cluster lock in the state store, so two people never apply to one cluster at once (kops has none).

The lock is an object ``<cluster>/.pykops/lock`` created with the store's create-if-absent write, holding
who took it, when, and until when (a lease). A lock past its lease is stale and is taken over (by a
conditional update, so two takers cannot both win). ``pykops`` releases it when done, also on errors and
Ctrl-C; a crashed holder's lock expires with its lease.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from pykops.errors import ConflictError, PykopsError
from pykops.state.store import StateStore

DEFAULT_LEASE_SECONDS = 3600.0


class LockedError(PykopsError):
    """Another operation holds the cluster's lock."""


@dataclass(frozen=True)
class LockInfo:
    holder: str
    operation: str
    acquired: float
    expires: float
    token: str

    def describe(self, now: float) -> str:
        age = int(now - self.acquired)
        until = time.strftime("%H:%M:%S", time.gmtime(self.expires))
        return f"{self.holder} ({self.operation}, {age}s ago, lease until {until} UTC)"


def lock_key(cluster: str) -> str:
    return f"{cluster}/.pykops/lock"


def _holder() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _parse(data: bytes) -> LockInfo | None:
    try:
        raw = json.loads(data)
        return LockInfo(
            raw["holder"], raw["operation"], float(raw["acquired"]), float(raw["expires"]), raw["token"]
        )
    except (ValueError, KeyError, TypeError):
        return None


@contextmanager
def cluster_lock(
    store: StateStore,
    cluster: str,
    operation: str,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Iterator[LockInfo]:
    """Hold the cluster's lock for the duration of the block; raise LockedError if someone else holds it."""
    now = clock()
    info = LockInfo(_holder(), operation, now, now + lease_seconds, uuid.uuid4().hex)
    body = json.dumps(info.__dict__).encode()
    key = lock_key(cluster)
    try:
        version = store.create(key, body)
    except ConflictError:
        current = store.read(key)
        held = _parse(current.data) if current else None
        if current is not None and held is not None and held.expires > now:
            raise LockedError(
                f"cluster {cluster} is locked by {held.describe(now)}; wait for it to finish, or if that "
                f"operation died, remove the lock with: pykops unlock cluster {cluster}"
            ) from None
        try:  # stale or unreadable: take it over, conditionally
            version = (
                store.update(key, body, expected_version=current.version)
                if current
                else store.create(key, body)
            )
        except ConflictError:
            raise LockedError(f"cluster {cluster} was locked by someone else just now; try again") from None
    try:
        yield info
    finally:
        # If our lease expired and someone else took over, the lock is theirs, not ours to remove.
        with suppress(ConflictError):
            store.delete(key, expected_version=version)


def force_unlock(store: StateStore, cluster: str) -> LockInfo | None:
    """Remove the lock whatever its state; returns what it held."""
    current = store.read(lock_key(cluster))
    if current is None:
        return None
    store.delete(lock_key(cluster), expected_version=current.version)
    return _parse(current.data)
