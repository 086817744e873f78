"""Error types shared by every layer.

A ``PykopsError`` carries a one-line, user-facing message that says what is wrong and how to fix it.
The CLI prints it on stderr without a traceback (``--debug`` shows one) and exits with ``exit_code``.
"""

from __future__ import annotations


class PykopsError(Exception):
    """A failure the user can act on. ``str(err)`` is the one line shown to the user."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}; {hint}")


class UsageError(PykopsError):
    """Bad flags or arguments (exit code 2, as click and kubectl use)."""

    exit_code = 2


class SpecError(PykopsError):
    """A cluster or instance-group spec that cannot be loaded or fails validation."""


class NotFoundError(PykopsError):
    """Something asked for (a cluster, an instance group, a state-store key) does not exist."""


class ConflictError(PykopsError):
    """A concurrent writer changed the state store first; nothing of ours was written."""


class StateStoreError(PykopsError):
    """The state store cannot be reached or used (missing bucket, permissions, bad URL)."""
