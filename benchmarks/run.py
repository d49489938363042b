"""`make bench` / `make bench-quick`: the lake's costs, each next to a baseline run in the same process."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from cryptofeed.types import Trade

import cryptolake_nb
from cryptolake_nb import Lake, TradeLake

from .book import bench_book
from .journal import bench_journal
from .synth import T0_NS, trades

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cryptofeed-captures"
RESULTS = Path(__file__).resolve().parent / "results"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def timed(fn, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "runs": repeat}


def bench_callback(n: int, root: Path) -> dict:
    """Backend callback cost per trade (append only) and the deferred conversion cost per row."""
    objs = [Trade("BINANCE", "BTC-USDT", "buy" if i % 2 else "sell", Decimal("0.0123"), Decimal(f"{30000 + i % 500}.25"),
                  1.7e9 + i * 1e-3, id=str(i)) for i in range(n)]
    lake = Lake(root, autoflush=False, max_rows=10**9, max_bytes=2**40)
    cb = TradeLake(lake)

    async def noop(obj, receipt):
        return None

    async def drive(fn):
        for o in objs:
            await fn(o, 1.7e9)

    loop = asyncio.new_event_loop()
    t = time.perf_counter(); loop.run_until_complete(drive(noop)); base = time.perf_counter() - t
    t = time.perf_counter(); loop.run_until_complete(drive(cb)); total = time.perf_counter() - t
    loop.close()
    t = time.perf_counter(); lake.buffer("trades").seal(); seal = time.perf_counter() - t
    lake.close()
    return {"trades": n, "callback_us": (total - base) / n * 1e6, "await_noop_us": base / n * 1e6,
            "seal_us_per_row": seal / n * 1e6}


def bench_parse() -> dict:
    """cryptofeed's own per-message cost: its parsers re-driven over the real captures, no-op callbacks."""
    from cryptofeed.defines import CANDLES, L2_BOOK, L3_BOOK, TICKER, TRADES

    from cryptolake_nb.replay import capture_sets, replay_capture

    async def noop(obj, receipt):
        return None

    messages, seconds, per = 0, 0.0, {}
    for name, files in sorted(capture_sets(CAPTURES).items()):
        try:
            r = replay_capture(files, {c: noop for c in (TRADES, L2_BOOK, L3_BOOK, TICKER, CANDLES)})
        except cryptolake_nb.ReplayError:
            continue
        messages += r.messages
        seconds += r.duration
        per[name] = round(r.duration / max(r.messages, 1) * 1e6, 2)
    return {"messages": messages, "parse_us_per_message": seconds / messages * 1e6, "per_exchange_us": per}


def bench_flush(n: int, root: Path, repeat: int) -> dict:
    """Buffer -> committed Parquet rows/s, against pyarrow's default write_table of the same rows."""
    data = pa.concat_tables([trades(n // 4, symbol=s, seed=i) for i, s in enumerate(["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"])])
    counter = iter(range(10**6))

    def lake_flush():
        with Lake(root / f"flush{next(counter)}", autoflush=False, max_rows=10**9, max_bytes=2**40) as lake:
            lake.buffer("trades").append_batch(data)
            t = time.perf_counter()
            lake.flush()
            lake_flush.last = time.perf_counter() - t
            lake_flush.bytes = sum(e.bytes for e in lake._manifest.files("trades"))

    flush_runs = []
    for _ in range(repeat):
        lake_flush()
        flush_runs.append(lake_flush.last)
    base = timed(lambda: pq.write_table(data, root / "baseline.parquet"), repeat)
    med = statistics.median(flush_runs)
    return {"rows": n, "lake_rows_per_s": n / med, "lake_min_s": min(flush_runs), "lake_max_s": max(flush_runs),
            "pyarrow_default_rows_per_s": n / base["median_s"], "ratio_vs_pyarrow_default": base["median_s"] / med,
            "lake_bytes_per_trade": lake_flush.bytes / n,
            "pyarrow_default_bytes_per_trade": (root / "baseline.parquet").stat().st_size / n}


def bench_ohlc(n_hist: int, n_live: int, root: Path, repeat: int) -> dict:
    """ohlc() over history + live rows, against the same SQL in plain DuckDB over the Parquet files alone."""
    lake = Lake(root / "ohlc", autoflush=False, max_rows=10**9, max_bytes=2**40)
    chunk = 1_000_000
    end = T0_NS
    for i in range(0, n_hist, chunk):
        part = trades(min(chunk, n_hist - i), seed=100 + i // chunk, start_ns=end + 1)
        end = part.column("ts").cast(pa.int64())[-1].as_py()
        lake.buffer("trades").append_batch(part)
        lake.flush()
    lake.buffer("trades").append_batch(trades(n_live, seed=99, start_ns=end + 1))
    files = [str(lake.root / e.path) for e in lake._manifest.files("trades")]
    step = 60 * 10**9
    sql = ("SELECT (epoch_ns(ts) // {s}) * {s} AS bucket, arg_min(price, (ts, receipt_ts)) AS open, max(price) AS high,"
           " min(price) AS low, arg_max(price, (ts, receipt_ts)) AS close, sum(amount) AS volume, count(*) AS trades,"
           " sum(price * amount) / sum(amount) AS vwap FROM {src} WHERE symbol = 'BTC-USDT' GROUP BY bucket ORDER BY bucket")
    plain = duckdb.connect()
    src = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"
    parquet_only = timed(lambda: plain.sql(sql.format(s=step, src=src)).to_arrow_table(), repeat)
    lake.ohlc("BTC-USDT", "1min")  # warm the metadata cache as the baseline's first run did
    plain.sql(sql.format(s=step, src=src)).to_arrow_table()
    unified = timed(lambda: lake.ohlc("BTC-USDT", "1min", to="arrow"), repeat)
    parquet_only = timed(lambda: plain.sql(sql.format(s=step, src=src)).to_arrow_table(), repeat)
    bars = len(lake.ohlc("BTC-USDT", "1min"))
    lake.close()
    return {"history_rows": n_hist, "live_rows": n_live, "files": len(files), "bars": bars,
            "unified_ms": unified["median_s"] * 1e3, "unified_min_ms": unified["min_s"] * 1e3,
            "unified_max_ms": unified["max_s"] * 1e3, "parquet_only_ms": parquet_only["median_s"] * 1e3,
            "parquet_only_min_ms": parquet_only["min_s"] * 1e3, "parquet_only_max_ms": parquet_only["max_s"] * 1e3,
            "overhead_ratio": unified["median_s"] / parquet_only["median_s"]}


def bench_compaction(n_files: int, rows_per_file: int, root: Path, repeat: int) -> dict:
    """Compaction throughput on one partition of small files, and ohlc over it before and after.

    Baseline for throughput: pyarrow reading the same files and writing them as one file (defaults).
    """
    import datetime as dt

    import pyarrow.dataset as ds

    from cryptolake_nb.manifest import FileEntry
    from cryptolake_nb.partitions import new_file_name, partition_dir
    from cryptolake_nb.sink import file_crc32

    lake = Lake(root / "compact", autoflush=False, autocompact=False, compact_min_files=2,
                max_rows=10**9, max_bytes=2**40)
    data = trades(n_files * rows_per_file, seed=5)
    key = ("BINANCE", "BTC-USDT", None)
    entries, paths = [], []
    for i, part in enumerate(data.to_batches(max_chunksize=rows_per_file)):  # one flush's worth each
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
    rows = data.num_rows
    lake.ohlc("BTC-USDT", "1min")
    before = timed(lambda: lake.ohlc("BTC-USDT", "1min", to="arrow"), repeat)
    base = timed(lambda: pq.write_table(ds.dataset(paths, format="parquet").to_table(), root / "one.parquet"), 1)
    t = time.perf_counter()
    done = lake.compact()
    compact_s = time.perf_counter() - t
    lake.ohlc("BTC-USDT", "1min")
    after = timed(lambda: lake.ohlc("BTC-USDT", "1min", to="arrow"), repeat)
    files_after = len(lake.committed_files("trades"))
    lake.close()
    return {"files_before": n_files, "files_after": files_after, "rows": rows, "groups": len(done),
            "compact_rows_per_s": rows / compact_s, "pyarrow_rewrite_rows_per_s": rows / base["median_s"],
            "ratio_vs_pyarrow_rewrite": base["median_s"] / compact_s,
            "ohlc_before_ms": before["median_s"] * 1e3, "ohlc_after_ms": after["median_s"] * 1e3,
            "ohlc_speedup": before["median_s"] / after["median_s"]}


def machine() -> dict:
    import pandas, polars, cryptofeed  # noqa: E401

    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "duckdb": duckdb.__version__, "pyarrow": pa.__version__, "pandas": pandas.__version__,
            "polars": polars.__version__, "cryptofeed": getattr(cryptofeed, "__version__", "2.4.1")}


METHOD = """\
Each figure is the median of several runs (min and max beside it in the JSON), and each comparison
is a ratio against a baseline measured in the same process, on the same data, in the same run:

- **backend callback per trade**: `await TradeLake(lake)(trade, receipt)` over pre-built cryptofeed
  `Trade` objects, minus the cost of awaiting a no-op coroutine the same way. Baseline: cryptofeed's own
  per-message cost, its parsers re-driven over every playable real capture in `../shared/data`
  (`cryptolake_nb.replay`, no-op callbacks). The deferred conversion to Arrow (at seal time, off the
  callback path) is reported per row.
- **flush throughput**: rows/s from a buffer of synthetic trades (4 symbols) to committed Parquet
  (partition split, sort, ZSTD write, fsync, rename, manifest commit). Baseline: `pyarrow.parquet.write_table`
  of the same rows with pyarrow's defaults (one file, no fsync, no partitioning).
- **ohlc**: `lake.ohlc(symbol, "1min")` over N synthetic historical rows in Parquet plus 200k live rows,
  against the same SQL in a plain DuckDB connection over the same Parquet files alone (the lake's
  query also computes the `coverage` column from `gaps`).
- **L2 book** (`benchmarks/book.py`): a synthetic day of one symbol's book; our callback's cost per
  update over cryptofeed's own `OrderBook` update; `book_at` over the day against the same
  reconstruction SQL in plain DuckDB over every file of the day.
- **journal** (`benchmarks/journal.py`): appending sealed 1k-row trade batches per durability level,
  next to no journal.
- **compaction**: one partition of small per-flush files merged; throughput against pyarrow reading
  and rewriting the same files as one; `ohlc` over the partition before and after.
"""


def report(result: dict, table: list[str]) -> str:
    m = result["machine"]
    sizes = ", ".join(f"{k}={v:,}" for k, v in result["sizes"].items())
    versions = ", ".join(f"{k} {m[k]}" for k in ("python", "duckdb", "pyarrow", "pandas", "polars", "cryptofeed"))
    return (
        "# Benchmarks\n\nGenerated by `make bench` (`python -m benchmarks.run --full`); do not edit by hand.\n\n"
        f"Machine: {m['platform']}, {m['cpus']} CPUs. Versions: {versions}. Sizes: {sizes}.\n\n"
        + "\n".join(table) + "\n\n## Method\n\n" + METHOD
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, CI-sized time")
    ap.add_argument("--full", action="store_true", help="issue-sized runs (10M history rows)")
    args = ap.parse_args(argv)
    quick = args.quick and not args.full
    sizes = dict(cb=100_000, flush=500_000, hist=1_000_000, live=200_000, book=100_000, journal=200_000,
                 compact_files=100, repeat=3) if quick else \
        dict(cb=300_000, flush=2_000_000, hist=10_000_000, live=200_000, book=5_000_000, journal=1_000_000,
             compact_files=1_000, repeat=5)
    with tempfile.TemporaryDirectory(prefix="cryptolake-bench-") as tmp:
        root = Path(tmp)
        result = {"machine": machine(), "mode": "quick" if quick else "full", "sizes": sizes}
        result["callback"] = bench_callback(sizes["cb"], root / "cb")
        result["parse"] = bench_parse()
        result["flush"] = bench_flush(sizes["flush"], root, sizes["repeat"])
        result["ohlc"] = bench_ohlc(sizes["hist"], sizes["live"], root, sizes["repeat"])
        result["book"] = bench_book(sizes["book"], root / "book", sizes["repeat"])
        result["journal"] = bench_journal(sizes["journal"], root / "journal", repeat=sizes["repeat"])
        result["compaction"] = bench_compaction(sizes["compact_files"], 2_000, root, sizes["repeat"])
    cb, parse, fl, oh = result["callback"], result["parse"], result["flush"], result["ohlc"]
    checks = [
        ("backend callback per trade", f"{cb['callback_us']:.2f} us", f"cryptofeed parse {parse['parse_us_per_message']:.2f} us/msg "
         f"(ratio {cb['callback_us'] / parse['parse_us_per_message']:.2f})", cb["callback_us"] <= 1.5, "<= 1.5 us"),
        ("deferred conversion per row (at seal)", f"{cb['seal_us_per_row']:.2f} us", "-", None, "-"),
        ("flush throughput", f"{fl['lake_rows_per_s'] / 1e6:.2f} M rows/s",
         f"pyarrow default write {fl['pyarrow_default_rows_per_s'] / 1e6:.2f} M rows/s (ratio {fl['ratio_vs_pyarrow_default']:.2f})",
         fl["lake_rows_per_s"] >= 1.5e6, ">= 1.5 M rows/s"),
        ("bytes per trade on disk", f"{fl['lake_bytes_per_trade']:.1f} B", f"pyarrow default {fl['pyarrow_default_bytes_per_trade']:.1f} B", None, "-"),
        (f"ohlc 1min, {oh['history_rows'] / 1e6:g}M hist + {oh['live_rows'] / 1e3:g}k live", f"{oh['unified_ms']:.1f} ms",
         f"Parquet alone {oh['parquet_only_ms']:.1f} ms (ratio {oh['overhead_ratio']:.2f})", oh["overhead_ratio"] <= 1.3, "<= 1.3x"),
    ]
    bk, jr, cp = result["book"], result["journal"], result["compaction"]
    checks += [
        (f"L2 callback per book update ({bk['updates'] / 1e6:g}M updates)", f"{bk['lake_callback_us']:.2f} us",
         f"cryptofeed's own book update {bk['cryptofeed_book_update_us']:.2f} us "
         f"(ratio {bk['lake_callback_us'] / bk['cryptofeed_book_update_us']:.2f})", None, "-"),
        ("L2 seal + flush per stored row", f"{bk['seal_us_per_row'] + bk['flush_us_per_row']:.2f} us",
         f"{bk['rows_per_update']:.2f} rows/update, {bk['bytes_per_update_on_disk']:.1f} B/update on disk", None, "-"),
        ("book_at (depth 10) over the day", f"{bk['book_at_ms_median']:.1f} ms",
         f"plain DuckDB over all files {bk['plain_duckdb_all_files_ms_median']:.1f} ms "
         f"(ratio {bk['book_at_ms_median'] / bk['plain_duckdb_all_files_ms_median']:.2f})", None, "-"),
        ("journal per trade, durability batch", f"{jr['overhead_us_per_trade']['batch']:.3f} us",
         f"no journal {jr['levels']['none']['us_per_trade']:.4f} us", None, "-"),
        ("journal per trade, durability strict", f"{jr['overhead_us_per_trade']['strict']:.3f} us",
         f"no journal {jr['levels']['none']['us_per_trade']:.4f} us", None, "-"),
        (f"compaction, {cp['files_before']} files -> {cp['files_after']}", f"{cp['compact_rows_per_s'] / 1e6:.2f} M rows/s",
         f"pyarrow read+rewrite {cp['pyarrow_rewrite_rows_per_s'] / 1e6:.2f} M rows/s (ratio {cp['ratio_vs_pyarrow_rewrite']:.2f})",
         None, "-"),
        ("ohlc over that partition after compaction", f"{cp['ohlc_after_ms']:.1f} ms",
         f"before compaction {cp['ohlc_before_ms']:.1f} ms (speed-up {cp['ohlc_speedup']:.1f}x)", None, "-"),
    ]
    result["checks"] = [dict(zip(("what", "lake", "baseline", "met", "target"), c)) for c in checks]
    lines = ["| measure | lake | baseline (same run) | target | met |", "|---|---|---|---|---|"]
    lines += [f"| {w} | {v} | {b} | {t} | {'-' if m is None else 'yes' if m else 'NO'} |" for w, v, b, m, t in checks]
    print("\n".join(lines))
    if not quick:
        DOC.write_text(report(result, lines))
        print(f"wrote {DOC}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{result['mode']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
