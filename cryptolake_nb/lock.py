"""One writer per lake: an exclusive advisory lock on `ROOT/_writer.lock`; readers take none."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import LakeLockedError

__all__ = ["WriterLock"]


class WriterLock:
    """Held for the life of a writable Lake; a second writer (any process, or this one) is refused."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "_writer.lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LakeLockedError(
                f"the lake at {root} is already open for writing (holder: {holder}); "
                "open it with Lake(root, read_only=True) to query it meanwhile"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
