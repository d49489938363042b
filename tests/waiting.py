"""Polling with a deadline, for tests that wait on background threads."""
from __future__ import annotations

import time
from typing import Callable


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02) -> bool:
    """True as soon as `predicate()` is truthy, False if it is still falsy after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
