"""The recent queries of a lake: timing, rows returned, files and live rows read per table.

A quant tuning a notebook asks "why was that slow?": how long, how many Parquet files the view
read (pruning at work or not), how many rows came from the live buffer. Every query through
`Lake.query_arrow` is recorded here; only the last `maxlen` are kept, so a kernel that runs
queries for days holds a bounded log. Percentiles are over the kept window.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any, Iterator, Mapping

from .errors import ConfigError
from .view import Source

__all__ = ["QueryLog"]


class QueryLog:
    """The last `maxlen` queries, newest last; each a dict.

    Keys of a record: `sql`, `at` (wall-clock epoch seconds at the end), `ms`, `rows` (returned),
    `files` and `live_rows` (per table the statement read: committed files handed to DuckDB after
    pruning, and rows of the live-buffer snapshot), `files_total`, `live_rows_total`.
    """

    def __init__(self, maxlen: int = 100) -> None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ConfigError(f"maxlen must be a positive integer, got {maxlen!r}")
        self._records: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.total = 0  # every query recorded since the lake opened, kept or not

    @property
    def maxlen(self) -> int:
        return self._records.maxlen or 0

    def record(self, sql: str, ms: float, rows: int, sources: Mapping[str, Source],
               read: set[str] | None = None) -> dict[str, Any]:
        """Keep one finished query; `read` is the tables the statement names (None: every source)."""
        used = {t: s for t, s in sources.items() if read is None or t in read}
        files = {t: len(s.files) for t, s in used.items()}
        live = {t: s.live.num_rows for t, s in used.items()}
        entry = {"sql": sql, "at": time.time(), "ms": ms, "rows": rows, "files": files, "live_rows": live,
                 "files_total": sum(files.values()), "live_rows_total": sum(live.values())}
        with self._lock:
            self._records.append(entry)
            self.total += 1
        return entry

    def summary(self, recent: int = 10) -> dict[str, Any]:
        """count (all time), kept, p50_ms / p99_ms / max_ms over the kept ones, and the `recent` newest first."""
        with self._lock:
            kept = list(self._records)
            total = self.total
        times = sorted(r["ms"] for r in kept)
        latest = kept[::-1][:max(recent, 0)]
        return {"count": total, "kept": len(kept), "p50_ms": _percentile(times, 50), "p99_ms": _percentile(times, 99),
                "max_ms": times[-1] if times else None, "recent": latest}

    def clear(self) -> None:
        """Forget the kept queries (the all-time count stays)."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        with self._lock:
            return self._records[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            return iter(list(self._records))

    def __repr__(self) -> str:
        return f"QueryLog({len(self)} kept of {self.total}, maxlen={self.maxlen})"


def _percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list: a time some query really took."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
