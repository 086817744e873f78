"""The pykops state store: cluster specs, keysets and derived files behind compare-and-swap writes.

Only the backend-neutral interface is imported here; backends (and boto3) load when a URL needs them.
"""

from pykops.state.store import SUPPORTED_SCHEMES, StateStore, Versioned, open_store

__all__ = ["SUPPORTED_SCHEMES", "StateStore", "Versioned", "open_store"]
