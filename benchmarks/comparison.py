"""The lake against its peers on one synthetic market, in one run: write, disk, the four workload
queries (answers cross-checked before any time counts), pruning, and the unified live+history view.

Every system gets the same day tables (Arrow, one per "flush"); the lake, pandas and ArcticDB write
them their own way; plain DuckDB and polars read the lake's Parquet files.
"""
from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .lake_system import LakeSystem
from .peers.arctic import ArcticUnavailable, arctic_answers, ensure_venv, run_driver
from .peers.duckdb_plain import PlainDuckDB
from .peers.pandas_baseline import PandasParquet
from .peers.polars_scan import PolarsScan
from .stats import interleaved, summary
from .synth import market, trades
from .whatif import rollup_whatif
from .workload import QUERIES, Workload, disagreement

__all__ = ["bench_comparison"]


def _raw_sizes(table: pa.Table) -> dict:
    """Bytes per trade of the same rows as JSON lines (epoch-ns times) and as gzipped CSV."""
    df = table.to_pandas()
    for c in ("ts", "receipt_ts"):
        df[c] = df[c].astype("int64")
    df = df.drop(columns=["type", "extra"])
    as_json = df.to_json(orient="records", lines=True).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as gz:
        gz.write(df.to_csv(index=False).encode())
    return {"rows": len(df), "json_bytes_per_trade": len(as_json) / len(df),
            "csv_gz_bytes_per_trade": len(buf.getvalue()) / len(df)}


def bench_comparison(total: int, days: int, live: int, root: Path, repeat: int, *, arctic: bool = True) -> dict:
    """See the module docstring; `total` trades over `days` days, then `live` unflushed rows."""
    w = Workload(day=1 if days > 1 else 0)
    lake = LakeSystem(root / "lake", w)
    pandas_dir = PandasParquet(root / "pandas", w)
    sources, writes = [], {"cryptolake_nb": [], "pandas + Parquet": []}
    rows, raw, split = 0, None, [0.0, 0.0]
    for day, table in market(total, days):
        path = root / "source" / f"day-{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        sources.append(str(path))
        for name, fn in (("cryptolake_nb", lake.write), ("pandas + Parquet", pandas_dir.write)):
            t = time.perf_counter()
            parts = fn(table)
            writes[name].append(time.perf_counter() - t)
            if parts:
                split = [a + b for a, b in zip(split, parts)]
        rows += table.num_rows
        if raw is None:
            raw = _raw_sizes(table.slice(0, min(table.num_rows, 500_000)))
    out: dict = {"trades": rows, "days": days, "workload": w.as_dict(), "raw": raw,
                 "stream_day_trades": None, "systems": {}}
    files = lake.files()
    systems = {"cryptolake_nb": lake, "duckdb (plain, Parquet)": PlainDuckDB(files, w),
               "polars scan_parquet": PolarsScan(files, w), "pandas + Parquet": pandas_dir}
    for name, runs in writes.items():
        out["systems"][name] = {"write": {**summary(runs), "rows_per_s": rows / sum(runs)}}
    out["systems"]["cryptolake_nb"]["disk_bytes_per_trade"] = lake.disk_bytes() / rows
    out["systems"]["cryptolake_nb"]["write_split_s"] = {"buffer (dedup, journal)": split[0], "flush": split[1]}
    out["systems"]["pandas + Parquet"]["disk_bytes_per_trade"] = pandas_dir.disk_bytes() / rows
    out["files"] = len(files)

    want = {q: lake.answer(q) for q in QUERIES}  # the reference every other answer must match
    out["stream_day_trades"] = int(want["ohlc"]["trades"].sum())
    for name in systems:
        out["systems"].setdefault(name, {}).update(queries={}, wrong={})
    for q in QUERIES:  # the systems take turns on each query (fair ratios under outside load)
        times = interleaved({name: (lambda s=system: s.answer(q)) for name, system in systems.items()}, repeat)
        for name, t in times.items():
            entry = out["systems"][name]
            entry["queries"][q] = dict(t)
            if name != "cryptolake_nb":
                bad = disagreement(q, t.value, want[q], rtol=1e-7)
                if bad:
                    entry["wrong"][q] = bad
    _unpruned(out, lake, systems, repeat)
    day_files = [str(lake.lake.root / e.path) for e in lake.lake.committed_files("trades")
                 if (e.exchange, e.symbol, e.date) == (w.exchange, w.symbol, w.date)]
    out["whatif_rollup"] = rollup_whatif(day_files, w, want["ohlc"], root / "rollup", repeat)
    out["systems"]["ArcticDB (LMDB)"] = _arctic(root, sources, w, repeat, want) if arctic else {"unavailable": "not run (--no-arctic)"}
    out["unified"] = _unified(lake, systems["duckdb (plain, Parquet)"], live, days, repeat)
    for s in systems.values():
        s.close()
    return out


def _unpruned(out: dict, lake: LakeSystem, systems: dict, repeat: int) -> None:
    """The day scan without partition pruning: the lake's SQL with no manifest pruning (DuckDB's
    row-group statistics only), pandas reading everything then filtering."""
    t = interleaved({"cryptolake_nb": lambda: lake.sql("scan", pruned=False),
                     "pandas + Parquet": lambda: systems["pandas + Parquet"].scan(pruned=False)}, repeat)
    for name, x in t.items():
        out["systems"][name]["scan_unpruned"] = dict(x)


def _arctic(root: Path, sources: list[str], w: Workload, repeat: int, want: dict) -> dict:
    try:
        python = ensure_venv()
        result = run_driver({"store": str(root / "arctic"), "sources": sources, "workload": w.as_dict(),
                             "repeat": repeat}, python=python)
    except (ArcticUnavailable, OSError) as exc:
        return {"unavailable": str(exc)}
    got = arctic_answers(result)
    wrong = {q: bad for q in QUERIES if (bad := disagreement(q, got[q], want[q], rtol=1e-7))}
    runs = result["write"]["runs"]
    return {"versions": result["versions"], "write": {**summary(runs), "rows_per_s": result["write"]["rows"] / sum(runs)},
            "disk_bytes_per_trade": result["disk_bytes"] / result["write"]["rows"],
            "queries": {q: result["timings"][q] for q in QUERIES}, "read_day": result["timings"]["read_day"],
            "read_day_rows": result["read_day_rows"], "wrong": wrong}


def _unified(lake: LakeSystem, plain: PlainDuckDB, live: int, days: int, repeat: int) -> dict:
    """Each workload statement (and count(*)) on the lake with `live` unflushed rows next to plain
    DuckDB over the Parquet files alone: the cost of uniting the live buffer with history."""
    from .synth import DAY_NS, T0_NS

    lake.buffer(trades(live, symbol=lake.w.symbol, exchange=lake.w.exchange, seed=99, start_ns=T0_NS + days * DAY_NS))
    out = {"live_rows": live}
    # how the lake's view read files before it recorded schema fingerprints (union_by_name, no hive
    # partitions): kept as a reference for what that change bought
    same_options = PlainDuckDB(lake.files(), lake.w, "hive_partitioning = false, union_by_name = true")
    for q in (*QUERIES, "count"):
        t = interleaved({"lake": lambda: lake.sql(q), "parquet_only": lambda: plain.run(q),
                         "parquet_lake_read_options": lambda: same_options.run(q)}, repeat)
        out[q] = {k: dict(v) for k, v in t.items()}
        out[q]["ratio"] = t["lake"].median / t["parquet_only"].median
    same_options.close()
    return out
