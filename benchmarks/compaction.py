"""The small-files effect: one partition as many per-flush files, after `lake.compact()`, and as the
fully compacted layout (the same rows flushed at once), with `ohlc` timed over each."""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cryptolake_nb import Lake
from cryptolake_nb.manifest import FileEntry
from cryptolake_nb.partitions import new_file_name, partition_dir
from cryptolake_nb.sink import file_crc32

from .stats import interleaved, timed
from .synth import trades

__all__ = ["bench_compaction"]


def _small_files_lake(root: Path, data: pa.Table, rows_per_file: int) -> tuple[Lake, list[str]]:
    """A lake whose one partition holds `data` as files of `rows_per_file` rows (as many flushes
    would leave it), committed through its manifest."""
    lake = Lake(root, autoflush=False, autocompact=False, compact_min_files=2, max_rows=10**9, max_bytes=2**40)
    key = ("BINANCE", "BTC-USDT")
    entries, paths = [], []
    for i, part in enumerate(data.to_batches(max_chunksize=rows_per_file)):
        t = pa.Table.from_batches([part])
        ts = t.column("ts").cast(pa.int64())
        day = dt.date(1970, 1, 1) + dt.timedelta(days=ts[0].as_py() // 86_400_000_000_000)
        rel = partition_dir("trades", key[0], key[1], day) / new_file_name(i)
        (lake.root / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, lake.root / rel, compression="zstd")
        paths.append(str(lake.root / rel))
        entries.append(FileEntry(rel.as_posix(), "trades", key[0], key[1], day.isoformat(), t.num_rows,
                                 (lake.root / rel).stat().st_size, ts[0].as_py(), ts[-1].as_py(),
                                 file_crc32(lake.root / rel)))
    lake._manifest.commit(entries)
    return lake, paths


def bench_compaction(n_files: int, rows_per_file: int, root: Path, repeat: int) -> dict:
    """`ohlc` over the small files and over the fully compacted layout in turns, then the same after
    `lake.compact()`: each ratio comes from interleaved runs (fair under outside load)."""
    data = trades(n_files * rows_per_file, seed=5)
    lake, paths = _small_files_lake(root / "small", data, rows_per_file)
    full = Lake(root / "full", autoflush=False, max_rows=10**9, max_bytes=2**40)
    full.buffer("trades").append_batch(data)
    full.flush()
    ohlc = lambda lk: (lambda: lk.ohlc("BTC-USDT", "1min", to="arrow"))  # noqa: E731
    before = interleaved({"small": ohlc(lake), "full": ohlc(full)}, repeat)
    base = timed(lambda: pq.write_table(ds.dataset(paths, format="parquet").to_table(), root / "one.parquet"), 1, warmup=0)
    t = time.perf_counter()
    done = lake.compact()
    compact_s = time.perf_counter() - t
    after = interleaved({"compacted": ohlc(lake), "full": ohlc(full)}, repeat)
    files_after, files_full = len(lake.committed_files("trades")), len(full.committed_files("trades"))
    lake.close()
    full.close()
    rows = data.num_rows
    return {"files_before": n_files, "files_after": files_after, "files_fully_compacted": files_full, "rows": rows,
            "groups": len(done), "compact_rows_per_s": rows / compact_s,
            "pyarrow_rewrite_rows_per_s": rows / base.median, "ratio_vs_pyarrow_rewrite": base.median / compact_s,
            "ohlc_before": dict(before["small"]), "ohlc_after": dict(after["compacted"]),
            "ohlc_fully_compacted": dict(after["full"]),
            "slowdown_before": before["small"].median / before["full"].median,
            "after_vs_fully": after["compacted"].median / after["full"].median}
