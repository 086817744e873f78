"""Polling for the tests that watch simulated machines and controllers converge."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
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
