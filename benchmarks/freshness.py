"""Freshness: how long after its receipt a row is visible to a query, measured with a poller.

A poller runs `SELECT max(receipt_ts) FROM trades` through `Lake.sql` (what `%%lakesql` runs) over
the live rows (`source="live"`) with a pause between polls (50 ms in the benchmarks), recording when each answer arrived and the newest
receipt it saw. Afterwards every stored row's receipt time r gets its visibility time: the arrival
of the first answer whose newest receipt is >= r (rows arrive in receipt order from one feed loop).
p50/p99 are over all rows.

Why the live rows only: when an answer shows a live row received at r, every row received before
it is, at that instant, either still live or committed, so visible to any query over the whole
table; the answer is a lower bound of what a full query sees (an empty live buffer, just after a
flush, gives no answer: rows are then credited later, never earlier). Asking the same of the whole
table makes the instrument scan all history each time (`max` has no Parquet shortcut), so its cost
and its CPU use grow with the run: the first full runs measured that, see docs/benchmarks.md.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from cryptolake_nb import Lake

__all__ = ["Poller", "visibility_latency"]


class Poller:
    """Polls the lake from its own thread until `stop()`; `answers` = [(arrived_ns, newest receipt ns)]."""

    def __init__(self, lake: Lake, pause_s: float = 0.0, source: str = "live") -> None:
        self.lake = lake
        self.pause_s = pause_s
        self.source = source
        self.answers: list[tuple[int, int]] = []
        self.query_s: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)

    def start(self) -> "Poller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        sql = "SELECT epoch_ns(max(receipt_ts)) AS r FROM trades"
        while not self._stop.is_set():
            t = time.perf_counter()
            r = self.lake.sql(sql, to="arrow", source=self.source).column("r")[0].as_py()
            self.query_s.append(time.perf_counter() - t)
            if r is not None:
                self.answers.append((time.time_ns(), r))
            if self.pause_s:
                time.sleep(self.pause_s)


def visibility_latency(receipts_ns: np.ndarray, answers: list[tuple[int, int]]) -> dict:
    """p50/p99/max of (visible - receipt) in ms over `receipts_ns` seen by some answer."""
    if not answers or not len(receipts_ns):
        return {"rows": 0}
    arrived = np.array([a for a, _ in answers], dtype=np.int64)
    newest = np.maximum.accumulate(np.array([r for _, r in answers], dtype=np.int64))
    r = np.sort(receipts_ns)
    idx = np.searchsorted(newest, r, side="left")  # first answer whose newest receipt >= r
    seen = idx < len(newest)
    lat = (arrived[idx[seen]] - r[seen]) / 1e6
    return {"rows": int(seen.sum()), "unseen_rows": int((~seen).sum()), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}
