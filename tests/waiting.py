"""Polling for the tests that watch simulated machines and controllers converge; the processes they leave."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Every wait may take this many times its stated timeout: a wait costs only what it needs when things work,
#: and a busy CI machine (or a slower one) should not turn "later" into a failure.
SLACK = float(os.environ.get("PYKOPS_TEST_WAIT_SLACK", "3"))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2) -> Any:
    """``check()``'s first truthy value within ``timeout`` seconds (an exception counts as "not yet");
    fails the test with the last value or error otherwise (``timeout`` is stretched by :data:`SLACK`)."""
    deadline = time.monotonic() + timeout * SLACK
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # not yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def pids_mentioning(text: str, program: str | None = None) -> list[int]:
    """Live processes (not zombies, not this one) whose command line mentions ``text`` (say, a sandbox
    directory), and whose program is ``program`` if given; read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if program is not None and argv[0].decode(errors="replace") != program:
            continue
        if any(text.encode() in arg for arg in argv) and state != "Z":
            found.append(int(entry.name))
    return found
