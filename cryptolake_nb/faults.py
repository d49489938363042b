"""Injected I/O faults, for tests of the storage-failure paths (EIO on fsync, ENOSPC on write).

    from cryptolake_nb.faults import FAULTS
    FAULTS.arm("fsync", errno.EIO, times=3)   # the next 3 data-file fsyncs fail with EIO

Sites: "write" (a Parquet temp file), "fsync" (its fsync), "manifest" (a manifest append),
"journal" (a journal append). Unarmed, a check is one dict lookup.
"""
from __future__ import annotations

import errno as errno_mod
import os
import threading

__all__ = ["FAULTS", "FaultPlan"]


class FaultPlan:
    """Which I/O sites fail next, with which errno, how many times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[str, list[int]] = {}  # site -> [errno, remaining]

    def arm(self, site: str, errno: int = errno_mod.EIO, times: int = 1) -> None:
        with self._lock:
            self._armed[site] = [errno, times]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def check(self, site: str) -> None:
        """Raise the armed OSError for `site`, if any."""
        if not self._armed:
            return
        with self._lock:
            plan = self._armed.get(site)
            if plan is None:
                return
            plan[1] -= 1
            if plan[1] <= 0:
                del self._armed[site]
            code = plan[0]
        raise OSError(code, f"{os.strerror(code)} (injected at {site})")


FAULTS = FaultPlan()
