"""One stream's bars and last quotes computed over Arrow columns instead of SQL.

A stream's (one exchange and symbol) rows come sorted by time from its partition files (the sink
sorts each file), so per-bucket answers are segment reductions over contiguous buckets
(`numpy.*.reduceat`, bucket edges by `searchsorted`): one pass, no hash table, no sort. For one
symbol-day (~360k trades) `ohlc` takes about a quarter of the time of DuckDB's grouped aggregate
over the same file, which scans the file's single row group on one thread (docs/benchmarks.md, 09:10
run: 8.7 ms vs 36.8 ms). It reads the same snapshot as a query (`Lake.reading`: files + live rows +
gaps, each row once) and gives the same answers as the SQL path; the helpers fall back to SQL for
several symbols, no exchange, or more rows than `MAX_ROWS` (the columns are held in memory, unlike
DuckDB's stream).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["MAX_ROWS", "buckets", "ordered", "stream_bars", "stream_last"]

MAX_ROWS = 5_000_000  # rows of one call held as 4 float/int columns (~160 MB) before SQL is preferred


@dataclass
class _Stream:
    """One stream's rows of one snapshot, sorted by (ts, receipt_ts) and cut to [start, end)."""

    ts: np.ndarray
    values: dict[str, np.ndarray]  # float64, NULL as NaN
    sources: dict[str, Any]  # the snapshot (for the query log and the gaps table)


def _stream(lake: "Lake", table: str, symbol: str, exchange: str, start_ns: int | None, end_ns: int | None,
            columns: list[str]) -> _Stream | None:
    """The stream's `columns` (float), or None when the SQL path should answer (too many rows, or
    times before 1970, where DuckDB's `//` truncates toward zero and numpy floors)."""
    prune = {"exchange": exchange, "symbols": (symbol,), "start_ns": start_ns, "end_ns": end_ns}
    with lake.reading(tables=[table], **prune) as sources:
        src = sources[table]
        if sum(src.rows) > MAX_ROWS:
            return None
        live = src.live.filter(pc.and_(pc.equal(src.live.column("symbol"), symbol),
                                       pc.equal(src.live.column("exchange"), exchange)))
        live = live.select(["ts", "receipt_ts", *columns])
        # pruned: this stream's files only; parts in time order (then usually sorted as a whole)
        parts = [(f, _read(f, ["ts", *columns])) for f in src.files] + [(None, live)]
        parts = sorted(((f, t) for f, t in parts if t.num_rows), key=lambda p: p[1].column("ts")[0].value)
        ts = _cat([_ns(t.column("ts")) for _, t in parts])
        if len(ts) and ts.min() < 0:
            return None
        values = {c: _cat([_f8(t.column(c)) for _, t in parts], np.float64) for c in columns}
        if not (ts[1:] > ts[:-1]).all():  # ties or disorder: receipt_ts decides, read it now
            receipt = _cat([_ns((t if f is None else _read(f, ["receipt_ts"])).column("receipt_ts"))
                            for f, t in parts])
            if not ordered(ts, receipt):
                order = np.lexsort((receipt, ts))
                ts, values = ts[order], {c: v[order] for c, v in values.items()}
    lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, side="left"))
    hi = len(ts) if end_ns is None else int(np.searchsorted(ts, end_ns, side="left"))
    return _Stream(ts[lo:hi], {c: v[lo:hi] for c, v in values.items()}, sources)


def stream_bars(lake: "Lake", symbol: str, exchange: str, start_ns: int | None, end_ns: int | None,
                step: int) -> tuple[pa.Table, pa.Table] | None:
    """(bars: symbol, bucket, open, high, low, close, volume, trades, vwap; the stream's holes:
    symbol, __cl_a, __cl_z from the gaps table) or None when the SQL path should answer."""
    started = time.perf_counter()
    rows = _stream(lake, "trades", symbol, exchange, start_ns, end_ns, ["price", "amount"])
    if rows is None:
        return None
    bars = _reduce(rows.ts, rows.values["price"], rows.values["amount"], step, symbol)
    holes = _holes(rows.sources["gaps"].live, symbol, exchange)
    _record(lake, f"ohlc({symbol!r}, exchange={exchange!r}, step={step})", started, bars, rows, "trades")
    return bars, holes


def stream_last(lake: "Lake", table: str, symbol: str, exchange: str, start_ns: int | None, end_ns: int | None,
                step: int, columns: list[str]) -> pa.Table | None:
    """`bucket` and, per non-empty bucket of one stream, the last non-NULL value of each of `columns`
    by (ts, receipt_ts) (SQL's arg_max over that order, which skips NULLs); None: use SQL."""
    started = time.perf_counter()
    rows = _stream(lake, table, symbol, exchange, start_ns, end_ns, columns)
    if rows is None:
        return None
    first, bucket = buckets(rows.ts, step)
    out = {"bucket": pa.array(bucket, pa.int64())}
    for c in columns:
        v = rows.values[c]
        where = np.where(np.isnan(v), -1, np.arange(len(v)))  # a row's own index where it has a value
        last = np.maximum.reduceat(where, first) if len(first) else np.empty(0, np.int64)
        out[c] = pa.array(v[np.maximum(last, 0)] if len(v) else np.empty(0), pa.float64(), mask=last < 0)
    result = pa.table(out)
    _record(lake, f"last {columns} of {table}({symbol!r}, exchange={exchange!r}, step={step})", started, result,
            rows, table)
    return result


def _record(lake: "Lake", what: str, started: float, result: pa.Table, rows: _Stream, table: str) -> None:
    ms = (time.perf_counter() - started) * 1e3
    lake.queries.record(f"-- {what} over Arrow columns", ms, result.num_rows,
                        {table: rows.sources[table], "gaps": rows.sources["gaps"]})


def _reduce(ts: np.ndarray, price: np.ndarray, amount: np.ndarray, step: int, symbol: str) -> pa.Table:
    first, bucket = buckets(ts, step)
    last = np.r_[first[1:] - 1, len(ts) - 1] if len(first) else first
    empty = not len(first)
    volume = np.empty(0) if empty else np.add.reduceat(amount, first)
    notional = np.empty(0) if empty else np.add.reduceat(price * amount, first)
    high = np.empty(0) if empty else np.maximum.reduceat(price, first)
    low = np.empty(0) if empty else np.minimum.reduceat(price, first)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.clip(notional / volume, low, high)  # rounding must not leave [low, high] (as in SQL)
    return pa.table({
        "symbol": pa.array([symbol] * len(first), pa.string()),
        "bucket": pa.array(bucket, pa.int64()),
        "open": price[first], "high": high, "low": low, "close": price[last],
        "volume": volume, "trades": pa.array(last - first + 1, pa.int64()),
        "vwap": pa.array(vwap, mask=volume == 0),  # SQL: x / 0 is NULL
    })


def buckets(ts: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(first row, bucket start) of each non-empty bucket of sorted `ts`."""
    if not len(ts):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    lo, hi = int(ts[0]) // step * step, int(ts[-1]) // step * step
    count = (hi - lo) // step + 1
    if count <= len(ts):  # few buckets: find their edges (log n each) instead of dividing every row
        edges = lo + step * np.arange(count + 1, dtype=np.int64)
        at = np.searchsorted(ts, edges)
        used = at[1:] > at[:-1]
        return at[:-1][used], edges[:-1][used]
    bucket = ts // step * step
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    return first, bucket[first]


def _holes(gaps: pa.Table, symbol: str, exchange: str) -> pa.Table:
    """The gaps that can lower this stream's coverage, as the SQL path selects them."""
    def null_or(column: str, value: str) -> pa.ChunkedArray:
        return pc.or_kleene(pc.is_null(gaps.column(column)), pc.equal(gaps.column(column), value))

    timed = pc.and_(pc.is_valid(gaps.column("start_ts")), pc.is_valid(gaps.column("end_ts")))
    keep = pc.and_kleene(pc.and_kleene(null_or("channel", "trades"), null_or("exchange", exchange)),
                         pc.and_kleene(null_or("symbol", symbol), timed))
    kept = gaps.filter(pc.fill_null(keep, False))
    return pa.table({"symbol": pa.array([symbol] * kept.num_rows, pa.string()),
                     "__cl_a": _ns(kept.column("start_ts")), "__cl_z": _ns(kept.column("end_ts"))})


def ordered(ts: np.ndarray, receipt: np.ndarray) -> bool:
    """Whether rows are already in (ts, receipt_ts) order."""
    if not (ts[1:] >= ts[:-1]).all():
        return False
    ties = ts[1:] == ts[:-1]
    return not ties.any() or bool((receipt[1:][ties] >= receipt[:-1][ties]).all())


def _read(path: str, columns: list[str]) -> pa.Table:
    with pq.ParquetFile(path) as pf:  # lighter than pq.read_table's dataset machinery (~0.3 ms a file)
        return pf.read(columns=columns)


def _cat(arrays: list[np.ndarray], dtype: type = np.int64) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays) if arrays else np.empty(0, dtype)


def _ns(column: pa.ChunkedArray) -> np.ndarray:
    return _np(column.cast(pa.int64()))


def _f8(column: pa.ChunkedArray) -> np.ndarray:
    return _np(column).astype(np.float64, copy=False)


def _np(column: pa.ChunkedArray) -> np.ndarray:
    """Without a copy when the column is one chunk without nulls (a file read, or only live rows)."""
    chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return chunk.to_numpy(zero_copy_only=False)
