"""Gap accounting: every known hole in the data, as rows of the queryable `gaps` table."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .clock import Clock, SystemClock
from .records import Reject
from .schema import TS
from .sidelog import SideLog

__all__ = ["CAUSES", "GAPS_SCHEMA", "GapLog"]

log = logging.getLogger(__name__)

CAUSES = ("reconnect", "sequence_break", "checksum", "silence", "journal_tail_lost", "quarantined", "dropped",
          "feed_failed")

GAPS_SCHEMA = pa.schema([
    pa.field("cause", pa.string()),       # one of CAUSES
    pa.field("exchange", pa.string()),    # NULL when the gap is not about one exchange
    pa.field("symbol", pa.string()),      # NULL when it covers every symbol of the exchange
    pa.field("channel", pa.string()),     # the table/channel affected, NULL for all
    pa.field("start_ts", TS),             # the hole: [start_ts, end_ts), exchange time where known
    pa.field("end_ts", TS),
    pa.field("count", pa.int64()),        # rows or messages involved, when known
    pa.field("detail", pa.string()),
    pa.field("recorded_ts", TS),          # when the lake recorded it
])


class GapLog:
    """Records gaps under `<root>/_gaps/gaps.jsonl` and detects silent streams in sealed batches."""

    def __init__(self, root: Path, *, silence_s: Mapping[str, float] | float = 60.0, clock: Clock | None = None,
                 read_only: bool = False) -> None:
        self._clock = clock or SystemClock()
        self.log = SideLog(Path(root) / "_gaps" / "gaps.jsonl", GAPS_SCHEMA, read_only=read_only)
        self._silence = silence_s
        self._last: dict[tuple[str, str, str], int] = {}  # (table, exchange, symbol) -> last receipt ns
        self._lock = threading.Lock()
        self._batches = threading.local()  # .rows: this thread's gaps held by `batch()`, else absent

    def record(self, cause: str, *, exchange: str | None = None, symbol: str | None = None,
               channel: str | None = None, start_ns: int | None = None, end_ns: int | None = None,
               count: int | None = None, detail: str = "") -> None:
        """Add one gap row (and log it at WARNING; inside `batch()`, when the batch ends)."""
        if cause not in CAUSES:
            raise ValueError(f"unknown gap cause {cause!r}; causes are {CAUSES}")
        row = {"cause": cause, "exchange": exchange, "symbol": symbol, "channel": channel,
               "start_ts": start_ns, "end_ts": end_ns, "count": count, "detail": detail,
               "recorded_ts": self._clock.time_ns()}
        held = getattr(self._batches, "rows", None)
        if held is not None:
            held.append(row)
            return
        self.log.append([row])
        _warn([row])

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gaps this thread records inside the block are written in one append and logged in one
        line per cause at its end: a stream whose every trade breaks the sequence records a gap per
        trade, and a file open and a log line per gap cost far more than sealing the trade."""
        if getattr(self._batches, "rows", None) is not None:
            yield  # nested: the outer block writes them
            return
        self._batches.rows = []
        try:
            yield
        finally:
            rows, self._batches.rows = self._batches.rows, None
            if rows:
                self.log.append(rows)
                _warn(rows)

    def table(self) -> pa.Table:
        return self.log.table()

    def threshold_ns(self, table: str) -> int | None:
        s = self._silence.get(table) if isinstance(self._silence, Mapping) else self._silence
        return None if s is None else int(s * 1e9)

    def observe(self, table: str, batch: pa.RecordBatch) -> None:
        """Record a `silence` gap wherever a stream's receipt times jump by more than the threshold."""
        limit = self.threshold_ns(table)
        if limit is None or batch.num_rows == 0:
            return
        ex = pc.dictionary_encode(batch.column("exchange"))
        sy = pc.dictionary_encode(batch.column("symbol"))
        code = ex.indices.to_numpy().astype(np.int64) * len(sy.dictionary) + sy.indices.to_numpy()
        receipt = batch.column("receipt_ts").cast(pa.int64()).to_numpy()
        order = np.lexsort((receipt, code))
        code, receipt = code[order], receipt[order]
        starts = np.r_[0, np.flatnonzero(np.diff(code)) + 1]
        ends = np.r_[starts[1:], len(code)]
        with self._lock:
            for lo, hi in zip(starts, ends):
                i = order[lo]
                key = (table, ex.dictionary[ex.indices[i].as_py()].as_py(), sy.dictionary[sy.indices[i].as_py()].as_py())
                times = receipt[lo:hi]
                prev = self._last.get(key)
                if prev is not None:
                    times = np.r_[prev, times]
                self._last[key] = int(receipt[hi - 1])
                for j in np.flatnonzero(np.diff(times) > limit):
                    a, b = int(times[j]), int(times[j + 1])
                    self.record("silence", exchange=key[1], symbol=key[2], channel=table, start_ns=a, end_ns=b,
                                detail=f"no {table} message for {(b - a) / 1e9:.1f} s")

    def quarantined(self, rejects: list[Reject]) -> None:
        """One `quarantined` row per (table, exchange, symbol) of a batch of rejected rows."""
        groups: dict[tuple[Any, Any, Any], list[float]] = {}
        for r in rejects:
            key = (r.table, r.values.get("exchange"), r.values.get("symbol"))
            t = r.values.get("timestamp", r.values.get("receipt_timestamp"))
            groups.setdefault(key, []).append(t if isinstance(t, (int, float)) else float("nan"))
        for (table, exchange, symbol), times in groups.items():
            finite = [t for t in times if t == t]
            self.record("quarantined", exchange=None if exchange is None else str(exchange),
                        symbol=None if symbol is None else str(symbol), channel=table,
                        start_ns=int(min(finite) * 1e9) if finite else None,
                        end_ns=int(max(finite) * 1e9) if finite else None, count=len(times),
                        detail=f"{len(times)} row(s) kept aside in quarantine")


def _warn(rows: list[dict[str, Any]]) -> None:
    """One WARNING per cause: the first gap's details, and how many more there were."""
    first: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for r in rows:
        first.setdefault(r["cause"], r)
        counts[r["cause"]] = counts.get(r["cause"], 0) + 1
    for cause, r in first.items():
        more = f" (and {counts[cause] - 1} more {cause} gap(s) in this batch)" if counts[cause] > 1 else ""
        log.warning("gap: %s %s/%s/%s %s%s", cause, r["exchange"], r["symbol"], r["channel"], r["detail"], more)
