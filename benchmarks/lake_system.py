"""The lake as one of the measured systems: bulk write per flush, and the four workload queries
through its public helpers and SQL (manifest pruning included, as a user gets it)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from cryptolake_nb import Lake

from .workload import SQL, Workload

__all__ = ["LakeSystem"]


class LakeSystem:
    """A lake that flushes once per `write` (one file per partition and write, like a flush policy)."""

    name = "cryptolake_nb"

    def __init__(self, root: Path, workload: Workload) -> None:
        self.lake = Lake(root, autoflush=False, autocompact=False, max_rows=10**12, max_bytes=2**50)
        self.w = workload

    def write(self, table: pa.Table) -> tuple[float, float]:
        """Buffer rows (dedup + journal) and flush them to Parquet (partition, sort, fsync, commit);
        the seconds each part took."""
        t = time.perf_counter()
        self.lake.buffer("trades").append_batch(table)
        buffered = time.perf_counter() - t
        self.lake.flush()
        return buffered, time.perf_counter() - t - buffered

    def buffer(self, table: pa.Table) -> None:
        """Rows that stay live (not flushed)."""
        self.lake.buffer("trades").append_batch(table)

    def files(self) -> list[str]:
        return [str(self.lake.root / e.path) for e in self.lake.committed_files("trades")]

    def disk_bytes(self) -> int:
        return sum(e.bytes for e in self.lake.committed_files("trades"))

    def answer(self, name: str) -> pd.DataFrame:
        w, lake = self.w, self.lake
        if name == "ohlc":  # the product's helper (it also computes `coverage` from the gaps table)
            bars = lake.ohlc(w.symbol, "1min", exchange=w.exchange, start=w.start_ns, end=w.end_ns, to="pandas")
            bars.insert(0, "bucket", bars.pop("ts").astype("int64"))
            return bars
        return lake.query_arrow(SQL[name].format(src="trades"), w.params(), **self.prune(name)).to_pandas()

    def prune(self, name: str) -> dict:
        """What a helper passes to `Lake.sources` for this query (the manifest skips other files)."""
        w = self.w
        if name in ("ohlc", "asof"):
            return {"symbols": (w.symbol,), "start_ns": w.start_ns, "end_ns": w.end_ns}
        if name == "scan":
            return {"start_ns": w.start_ns, "end_ns": w.end_ns}
        return {}

    def sql(self, name: str, *, pruned: bool = True) -> pa.Table:
        """The workload SQL over the unified view, with or without manifest pruning."""
        prune = self.prune(name) if pruned else {}
        return self.lake.query_arrow(SQL[name].format(src="trades"), self.w.params(), **prune)

    def close(self) -> None:
        self.lake.close()
