"""Named points in the commit protocol where tests can kill the process (`CRYPTOLAKE_CRASH_AT`).

`CRYPTOLAKE_CRASH_AT=after_rename` makes the process SIGKILL itself the first time it reaches that
point; `CRYPTOLAKE_CRASH_AT=after_rename:3` the third time. Read once at import; costs one
comparison per point when unset. Points, in protocol order:

    journal_appended    a sealed batch is in the journal (acknowledged)
    temp_written        the Parquet temp file is written, not yet fsynced
    temp_fsynced        ... fsynced, not yet renamed
    renamed             ... renamed to its final name, directory not yet fsynced
    dir_fsynced         the directory entry is durable, not yet in the manifest
    manifest_committed  the manifest line is durable, batches not yet dropped
    dropped             batches dropped from the buffer, journal not yet released
    journal_released    journal entries released
"""
from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "crash_point"]

POINTS = (
    "journal_appended", "temp_written", "temp_fsynced", "renamed", "dir_fsynced",
    "manifest_committed", "dropped", "journal_released",
)

_spec = os.environ.get("CRYPTOLAKE_CRASH_AT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _name else 0


def crash_point(name: str) -> None:
    """SIGKILL this process here if the environment asks for it."""
    global _remaining
    if _remaining and name == _name:
        _remaining -= 1
        if _remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
