"""The memory cap: flush early; if storage fails, spill journaled rows to disk; drop only as a last resort."""
from __future__ import annotations

import logging
import threading
from typing import Mapping

import pyarrow as pa

from .buffer import LiveBuffer
from .gaps import GapLog
from .journal import Journal

__all__ = ["MemoryGuard"]

log = logging.getLogger(__name__)


class MemoryGuard:
    """Keeps the live buffers under `cap_bytes`.

    Over the cap the flusher flushes every table at once (`over()`). When storage fails and the
    buffers are still over the cap, sealed batches that are safe in the journal leave memory
    ("spilled": on disk, not queryable until storage heals, then reloaded from the journal). Rows
    that are in no journal (durability "none", or the journal's disk failing too) are dropped only
    when nothing else frees memory, each drop recorded as a `dropped` row in `gaps`.
    """

    def __init__(self, buffers: Mapping[str, LiveBuffer], journal: Journal | None, gaps: GapLog, cap_bytes: int) -> None:
        self._buffers = buffers
        self._journal = journal
        self._gaps = gaps
        self.cap = cap_bytes
        self._spilled: list[int] = []  # journal seqs out of memory
        self._lock = threading.Lock()
        self.spilled_rows = 0
        self.dropped_rows = 0
        self.alerts = 0

    def used(self) -> int:
        return sum(b.stats()["bytes"] for b in self._buffers.values())

    def over(self) -> bool:
        return self.used() >= self.cap

    def relieve(self) -> None:
        """Storage failed: bring memory under the cap by spilling, then (last resort) dropping."""
        if not self.over():
            return
        with self._lock:
            freed = 0
            for buf in self._buffers.values():
                for s in buf.spill(journaled=True):
                    self._spilled.append(s.jseq)
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
        """Storage works again: put spilled rows back in memory (at most half the cap at a time)."""
        with self._lock:
            if not self._spilled or self._journal is None:
                return 0
            back = 0
            budget = self.cap // 2 - self.used()
            for entry in self._journal.read(self._spilled):
                if budget <= 0:
                    break
                self._buffers[entry.table].restore(entry.batch, entry.seq, reload=True)
                self._spilled.remove(entry.seq)
                budget -= entry.batch.nbytes
                back += entry.batch.num_rows
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
        return {"cap_bytes": self.cap, "used_bytes": self.used(), "spilled_rows": self.spilled_rows,
                "dropped_rows": self.dropped_rows, "alerts": self.alerts}
