"""Deferred deletion of retired files: never under a query that may still read them."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from .clock import Clock, SystemClock

__all__ = ["Retirer"]

log = logging.getLogger(__name__)


class Retirer:
    """Files leave the manifest at once but leave the disk only when no query that started before
    their retirement is still running here, and `grace_s` has passed (for readers in other processes,
    which follow the manifest on their next query)."""

    def __init__(self, root: Path, *, clock: Clock | None = None, grace_s: float = 60.0) -> None:
        self.root = Path(root)
        self._clock = clock or SystemClock()
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._ticket = 0
        self._active: set[int] = set()
        self._pending: list[tuple[int, float, list[str]]] = []  # (ticket at retirement, time, paths)
        self.deleted = 0

    def begin_query(self) -> int:
        with self._lock:
            self._ticket += 1
            self._active.add(self._ticket)
            return self._ticket

    def end_query(self, ticket: int) -> None:
        with self._lock:
            self._active.discard(ticket)

    def retire(self, paths: list[str]) -> None:
        """`paths` (relative to the root) are no longer committed: delete them when safe."""
        with self._lock:
            self._pending.append((self._ticket, self._clock.monotonic(), list(paths)))

    def pending(self) -> int:
        with self._lock:
            return sum(len(p) for _, _, p in self._pending)

    def purge(self, *, force: bool = False) -> int:
        """Delete what is safe to delete now; return how many files were removed."""
        with self._lock:
            oldest = min(self._active, default=None)
            now = self._clock.monotonic()
            due, keep = [], []
            for item in self._pending:
                ticket, at, paths = item
                safe = oldest is None or oldest > ticket
                (due if safe and (force or now - at >= self.grace_s) else keep).append(item)
            self._pending = keep
        removed = 0
        for _, _, paths in due:
            for rel in paths:
                try:
                    (self.root / rel).unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
                except OSError:
                    log.exception("could not delete retired file %s", rel)
        self.deleted += removed
        return removed
