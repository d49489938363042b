"""The memory cap: flush early; if storage fails, spill journaled rows to disk; drop only as a last resort."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Mapping

import pyarrow as pa

from .buffer import LiveBuffer
from .gaps import GapLog
from .journal import Journal

__all__ = ["MemoryGuard"]

log = logging.getLogger(__name__)


RELOAD_ENTRIES = 8  # journal entries read back per step after storage heals
FILL = 0.25  # the guard acts when what it counts reaches this share of the cap


class MemoryGuard:
    """Keeps the memory that ingest holds under `cap_bytes`.

    It counts the live buffers (sealed Arrow bytes, an estimate per pending object) and the
    dedup key store, and acts at `FILL` of the cap: the rest is headroom for what it cannot
    count cheaply, measured in tests/test_burst.py (the flush's sorted copy of the rows, about
    their size again; allocator slack; the query snapshot). At that point the flusher flushes every table at once (`over()`). When storage fails and the
    buffers are still over the cap, sealed batches that are safe in the journal leave memory
    ("spilled": on disk, not queryable until storage heals, then reloaded from the journal). Rows
    that are in no journal (durability "none", or the journal's disk failing too) are dropped only
    when nothing else frees memory, each drop recorded as a `dropped` row in `gaps`.
    """

    def __init__(self, buffers: Mapping[str, LiveBuffer], journal: Journal | None, gaps: GapLog, cap_bytes: int,
                 *, other: Callable[[], int] | None = None) -> None:
        self._buffers = buffers
        self._other = other  # bytes held elsewhere for ingest (the dedup key store)
        self._journal = journal
        self._gaps = gaps
        self.cap = cap_bytes
        self._spilled: list[int] = []  # journal seqs out of memory
        self._lock = threading.Lock()
        self.spilled_rows = 0
        self.dropped_rows = 0
        self.alerts = 0

    def used(self) -> int:
        """Bytes counted against the cap: buffered rows and the dedup key store."""
        held = sum(b.stats()["bytes"] for b in self._buffers.values())
        return held + (self._other() if self._other is not None else 0)

    @property
    def limit(self) -> int:
        """What `used()` may reach before the guard acts."""
        return int(self.cap * FILL)

    def over(self) -> bool:
        return self.used() >= self.limit

    def relieve(self) -> None:
        """Storage failed: bring memory under the cap by spilling, then (last resort) dropping."""
        if not self.over():
            return
        with self._lock:
            freed = 0
            for buf in self._buffers.values():
                for s in buf.spill(journaled=True):
                    self._spilled.extend(s.jseqs)
                    self.spilled_rows += s.batch.num_rows
                    freed += s.batch.num_rows
            if freed:
                self.alerts += 1
                log.warning("memory cap reached while storage fails: %d rows spilled to the journal (safe on "
                            "disk, not queryable until storage heals)", freed)
            if not self.over():
                return
            for name, buf in self._buffers.items():
                for s in buf.spill(journaled=False):
                    self._drop(name, s.batch)

    def reload(self) -> int:
        """Storage works again: put spilled rows back in memory (up to half the limit at a time),
        reading the journal a few entries at a time so the reload itself stays small."""
        with self._lock:
            if not self._spilled or self._journal is None:
                return 0
            back = 0
            # buffered bytes only (the key store does not shrink by waiting); one piece at least per
            # round, so the reload always progresses
            budget = self.limit // 2 - sum(b.stats()["bytes"] for b in self._buffers.values())
            while self._spilled and (budget > 0 or not back):
                piece = self._spilled[:RELOAD_ENTRIES]
                for entry in self._journal.read(piece):
                    self._buffers[entry.table].restore(entry.batch, entry.seq, reload=True)
                    budget -= entry.batch.nbytes
                    back += entry.batch.num_rows
                del self._spilled[:len(piece)]
            self.spilled_rows -= back
            if back:
                log.warning("storage healed: %d spilled rows reloaded from the journal", back)
            return back

    def _drop(self, table: str, batch: pa.RecordBatch) -> None:
        ts = batch.column("ts").cast(pa.int64())
        ex = batch.column("exchange")
        self.dropped_rows += batch.num_rows
        self._gaps.record("dropped", exchange=ex[0].as_py() if len(set(ex.to_pylist())) == 1 else None,
                          channel=table, start_ns=min(ts.to_pylist()), end_ns=max(ts.to_pylist()) + 1,
                          count=batch.num_rows, detail="memory cap reached with storage failing and no journal copy")
        log.error("memory cap reached with storage failing: %d %s rows dropped (see gaps)", batch.num_rows, table)

    def stats(self) -> dict:
        return {"cap_bytes": self.cap, "limit_bytes": self.limit, "used_bytes": self.used(), "spilled_rows": self.spilled_rows,
                "dropped_rows": self.dropped_rows, "alerts": self.alerts}
