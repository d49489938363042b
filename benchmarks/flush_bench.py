"""Flush throughput and latency: buffer -> committed Parquet, against pyarrow's default write."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cryptolake_nb import Lake

from .stats import timed
from .synth import trades

__all__ = ["bench_flush"]


def bench_flush(n: int, root: Path, repeat: int) -> dict:
    """`n` synthetic trades over 4 symbols flushed in one `lake.flush()` (partition split, sort, ZSTD,
    fsync, rename, manifest commit), on a fresh lake each run. Baseline: `pq.write_table` of the same
    rows with pyarrow's defaults (one file, no fsync, no partitioning)."""
    data = pa.concat_tables([trades(n // 4, symbol=s, seed=i) for i, s in enumerate(["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"])])
    runs, size = [], 0
    for i in range(repeat):
        with Lake(root / f"flush{i}", autoflush=False, max_rows=10**9, max_bytes=2**40) as lake:
            lake.buffer("trades").append_batch(data)
            t = time.perf_counter()
            lake.flush()
            runs.append(time.perf_counter() - t)
            size = sum(e.bytes for e in lake.committed_files("trades"))
    base = timed(lambda: pq.write_table(data, root / "baseline.parquet"), repeat, warmup=0)
    med = statistics.median(runs)
    return {"rows": data.num_rows, "lake_rows_per_s": data.num_rows / med, "latency_s": med,
            "latency_min_s": min(runs), "latency_max_s": max(runs),
            "pyarrow_default_rows_per_s": data.num_rows / base.median, "ratio_vs_pyarrow_default": base.median / med,
            "lake_bytes_per_trade": size / data.num_rows,
            "pyarrow_default_bytes_per_trade": (root / "baseline.parquet").stat().st_size / data.num_rows}
