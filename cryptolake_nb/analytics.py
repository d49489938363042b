"""Trade-price helpers computed inside DuckDB over the unified view: ohlc, vwap, twap, returns, realized_volatility.

One signature for all: `helper(symbols, interval, *, exchange=None, start=None, end=None, to="pandas",
lake=None, ...)`. `symbols` is a str (one series, no `symbol` column) or a list of str (a tidy long
frame with `symbol` first, sorted by symbol then time). `exchange=None` pools every exchange's trades
of a symbol. Buckets are `[ts, ts + interval)` in UTC, empty buckets have no row (`resample` fills them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._sqlargs import (Filters, check_choice, check_to, filters, finish, order_key, parse_interval, symbol_list, to_ns,
                       with_ts)
from .columnar_bars import stream_bars
from .errors import ConfigError
from .lake import Output, active_lake
from .time_weighted import time_weighted

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["ohlc", "parse_interval", "realized_volatility", "returns", "to_ns", "twap", "vwap"]

_BUCKET = "(epoch_ns(ts) // $step) * $step"
_KEY = order_key("epoch_ns(ts)", "epoch_ns(receipt_ts)")  # (ts, receipt_ts) as one number
_FIRST = f"arg_min(price, {_KEY})"
_LAST = f"arg_max(price, {_KEY})"  # deterministic on equal ts: the later receipt wins


def _setup(symbols: Any, exchange: Any, start: Any, end: Any, to: Any, lake: "Lake | None") -> tuple["Lake", Filters, bool]:
    check_to(to)
    syms, single = symbol_list(symbols)
    f = filters(syms, exchange, start, end)
    return active_lake(lake), f, single


def _scalar(table: pa.Table, column: str, single: bool, to: Output) -> Any:
    """interval=None: one number for one symbol (None without trades), else a frame per symbol."""
    if single:
        return table.column(column)[0].as_py() if table.num_rows else None
    return finish(table, False, to)


def vwap(symbols: str | list[str], interval: Any = None, *, exchange: str | None = None, start: Any = None,
         end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Volume-weighted average price: sum(price * amount) / sum(amount) of the trades.

    Without `interval`: one float for one symbol (None if no trades), or for a list a frame
    `symbol, vwap, volume, trades`. With `interval`: one row per non-empty bucket, `[symbol,] ts,
    vwap, volume, trades`.

    >>> vwap("BTC-USDT", "1min", exchange="BINANCE", start="2024-05-01")   # doctest: +SKIP
    """
    lake, f, single = _setup(symbols, exchange, start, end, to, lake)
    cols = "sum(price * amount) / sum(amount) AS vwap, sum(amount) AS volume, count(*) AS trades"
    if interval is None:
        sym, where, group = f.by_symbol()
        sql = f"SELECT {sym}, {cols} FROM trades WHERE {where}{group} ORDER BY symbol"
        return _scalar(lake.query_arrow(sql, f.params, **f.prune), "vwap", single, to)
    params = {**f.params, "step": parse_interval(interval)}
    sym, where, group = f.by_symbol("bucket")
    sql = f"SELECT {sym}, {_BUCKET} AS bucket, {cols} FROM trades WHERE {where}{group} ORDER BY symbol, bucket"
    return finish(with_ts(lake.query_arrow(sql, params, **f.prune)), single, to)


def twap(symbols: str | list[str], interval: Any = None, *, exchange: str | None = None, start: Any = None,
         end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Time-weighted average price: each trade's price holds from its `ts` until the next trade of
    the same bucket, the last one until the bucket ends (or `end`, if earlier). Without `interval`
    the whole range is one bucket whose last trade holds until `end` (no weight without `end`); a
    bucket whose trades all share one instant gets their plain mean. Ties on `ts` are ordered by
    `receipt_ts`. Columns as `vwap`: `[symbol,] ts, twap, trades` (a float for one symbol and no interval).

    >>> twap("BTC-USDT", "5min", exchange="BINANCE")                      # doctest: +SKIP
    """
    lake, f, single = _setup(symbols, exchange, start, end, to, lake)
    step = None if interval is None else parse_interval(interval)
    index, names = f.symbol_index
    rows = lake.query_arrow(f"SELECT {index} AS s, epoch_ns(ts) AS t, epoch_ns(receipt_ts) AS r, price FROM trades"
                            f" WHERE {f.where}", f.params, **f.prune)
    table = time_weighted(rows, step, f.end_ns)
    table = table.set_column(0, "symbol", pc.take(pa.array(names, pa.string()), table.column("s")))
    if interval is None:
        return _scalar(table.drop_columns(["bucket"]), "twap", single, to)
    return finish(with_ts(table), single, to)


def ohlc(symbols: str | list[str], interval: Any = "1min", *, exchange: str | None = None, start: Any = None,
         end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Bars: `[symbol,] ts, open, high, low, close, volume, trades, vwap, coverage`, one row per
    non-empty bucket. Open and close are the first and last trades by (ts, receipt_ts).
    `coverage` is the share of the bucket not inside a known gap of this symbol's trades (the
    `gaps` table: reconnects, silences, sequence breaks, quarantined rows, ...): 1.0 means no known hole.

    >>> ohlc("BTC-USDT", "5min", exchange="BINANCE")                      # doctest: +SKIP
    >>> ohlc(["BTC-USDT", "ETH-USDT"], "1h", start="2024-05-01", to="polars")   # doctest: +SKIP
    """
    lake, f, single = _setup(symbols, exchange, start, end, to, lake)
    params = {**f.params, "step": parse_interval(interval)}
    if f.exchange is not None and len(f.symbols) == 1:  # one stream: reductions over sorted columns
        found = stream_bars(lake, f.symbols[0], f.exchange, f.start_ns, f.end_ns, params["step"])
        if found is not None:
            return finish(_with_coverage(*found, params["step"]), single, to)
    sym, where, group = f.by_symbol("bucket")
    bars = (
        f"SELECT {sym}, {_BUCKET} AS bucket,"
        f" {_FIRST} AS open, max(price) AS high, min(price) AS low,"
        f" {_LAST} AS close, sum(amount) AS volume, count(*) AS trades,"
        # the exact VWAP lies in [low, high]; the rounded quotient may not (by an ulp): clamped.
        # x / 0 stays NULL (greatest/least would skip a NULL)
        " CASE WHEN sum(amount) <> 0 THEN least(greatest(sum(price * amount) / sum(amount), min(price)),"
        " max(price)) END AS vwap"
        f" FROM trades WHERE {where}{group}"
    )
    gap_filter = "(g.channel IS NULL OR g.channel = 'trades')"
    if f.exchange is not None:
        gap_filter += " AND (g.exchange IS NULL OR g.exchange = $exchange)"
    # one statement (one snapshot, after the seal that may record gaps): the bars, then the holes
    # that can touch them; coverage is measured in numpy (a correlated subquery per bar cost more)
    sql = (
        f"WITH bars AS ({bars}), wanted(symbol) AS (VALUES {f.symbol_rows}),"
        " holes AS (SELECT w.symbol, epoch_ns(g.start_ts) AS __cl_a, epoch_ns(g.end_ts) AS __cl_z FROM gaps g"
        " JOIN wanted w ON g.symbol IS NULL OR g.symbol = w.symbol"
        f" WHERE {gap_filter} AND g.start_ts IS NOT NULL AND g.end_ts IS NOT NULL)"
        " SELECT * FROM bars UNION ALL BY NAME SELECT * FROM holes ORDER BY bucket IS NOT NULL, symbol, bucket"
    )
    both = lake.query_arrow(sql, params, **f.prune)
    n_holes = both.column("bucket").null_count  # the holes (no bucket) come first
    table = both.slice(n_holes).drop_columns(["__cl_a", "__cl_z"])
    return finish(_with_coverage(table, both.slice(0, n_holes), params["step"]), single, to)


def _with_coverage(bars: pa.Table, holes: pa.Table, step: int) -> pa.Table:
    """Bars (with an int `bucket`) given their `coverage` and a `ts` in place of `bucket`."""
    return with_ts(bars.append_column("coverage", pa.array(_coverage(bars, holes, step), pa.float64())))


def _coverage(bars: pa.Table, holes: pa.Table, step: int) -> np.ndarray:
    """Per bar, 1 - (time of [bucket, bucket + step) inside the union of its symbol's holes) / step.

    The union is measured through F(x) = time of the union before x (sorted starts, cumulative
    lengths), so overlapping or repeated gaps never count twice."""
    out = np.ones(bars.num_rows)
    if not holes.num_rows:
        return out
    symbols = bars.column("symbol").to_numpy(zero_copy_only=False)
    buckets = bars.column("bucket").to_numpy()
    hole_symbols = holes.column("symbol").to_numpy(zero_copy_only=False)
    for symbol in np.unique(hole_symbols):
        mine = hole_symbols == symbol
        starts, ends = _merged(holes.column("__cl_a").to_numpy()[mine], holes.column("__cl_z").to_numpy()[mine])
        rows = symbols == symbol
        covered = _before(buckets[rows] + step, starts, ends) - _before(buckets[rows], starts, ends)
        out[rows] = 1.0 - covered / step
    return out


def _merged(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intervals [start, end) merged into disjoint ones, sorted."""
    order = np.lexsort((ends, starts))
    starts, ends = starts[order], np.maximum(ends[order], starts[order])
    reach = np.maximum.accumulate(ends)
    new = np.ones(len(starts), bool)
    new[1:] = starts[1:] > reach[:-1]
    first = np.flatnonzero(new)
    return starts[first], np.maximum.reduceat(ends, first)


def _before(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Time of the disjoint sorted intervals before each x."""
    done = np.concatenate([[0], np.cumsum(ends - starts)])  # time of the first k intervals
    k = np.searchsorted(starts, x, side="right")  # intervals starting at or before x
    last = np.maximum(k - 1, 0)
    partial = np.where(k > 0, np.minimum(x, ends[last]) - starts[last], 0)
    return done[last] + np.maximum(partial, 0)


def returns(symbols: str | list[str], interval: Any = "1min", *, how: str = "simple", exchange: str | None = None,
            start: Any = None, end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Close-to-close returns per bucket: `[symbol,] ts, close, return`, where `return` is
    close / previous close - 1 (`how="simple"`) or ln(close / previous close) (`how="log"`). The
    previous close is that of the previous non-empty bucket in the range; the first bucket's return
    is NULL (nothing before `start` is read).

    >>> returns("BTC-USDT", "1h", how="log", exchange="BINANCE")          # doctest: +SKIP
    """
    check_choice("how", how, ("simple", "log"))
    lake, f, single = _setup(symbols, exchange, start, end, to, lake)
    params = {**f.params, "step": parse_interval(interval)}
    prev = "lag(close) OVER (PARTITION BY symbol ORDER BY bucket)"
    ret = f"close / {prev} - 1" if how == "simple" else f"ln(close / {prev})"
    sym, where, group = f.by_symbol("bucket")
    sql = (f"WITH bars AS (SELECT {sym}, {_BUCKET} AS bucket, {_LAST} AS close FROM trades WHERE {where}{group})"
           f" SELECT symbol, bucket, close, {ret} AS \"return\" FROM bars ORDER BY symbol, bucket")
    return finish(with_ts(lake.query_arrow(sql, params, **f.prune)), single, to)


def realized_volatility(symbols: str | list[str], interval: Any = None, *, sample: Any = "1min",
                        exchange: str | None = None, start: Any = None, end: Any = None, to: Output = "pandas",
                        lake: "Lake | None" = None) -> Any:
    """Realized volatility: sqrt(sum of squared log returns) of the `sample`-bar closes, not
    annualized. Each return (close over the previous non-empty sample bar's close) counts in the
    bucket of its later bar. Without `interval`: one float for one symbol (None with fewer than two
    sample bars), or a frame per symbol; with it, `[symbol,] ts, realized_volatility, returns` per
    bucket. `interval` must be a multiple of `sample`.

    >>> realized_volatility("BTC-USDT", "1d", sample="5min", exchange="BINANCE")   # doctest: +SKIP
    """
    sample_ns = parse_interval(sample, "sample")
    lake, f, single = _setup(symbols, exchange, start, end, to, lake)
    params = {**f.params, "sample": sample_ns}
    bucket = "0"
    if interval is not None:
        params["step"] = step = parse_interval(interval)
        if step % sample_ns:
            raise ConfigError(f"interval must be a multiple of sample ({sample!r}), got {interval!r}")
        bucket = "(sb // $step) * $step"
    sym, where, group = f.by_symbol("sb")
    sql = (
        f"WITH bars AS (SELECT {sym}, (epoch_ns(ts) // $sample) * $sample AS sb, {_LAST} AS close FROM trades"
        f" WHERE {where}{group}),"
        " r AS (SELECT symbol, sb, ln(close / lag(close) OVER (PARTITION BY symbol ORDER BY sb)) AS r FROM bars)"
        f" SELECT symbol, {bucket} AS bucket, sqrt(sum(r * r)) AS realized_volatility, count(*) AS returns FROM r"
        " WHERE r IS NOT NULL GROUP BY symbol, bucket ORDER BY symbol, bucket"
    )
    table = lake.query_arrow(sql, params, **f.prune)
    if interval is None:
        return _scalar(table.drop_columns(["bucket"]), "realized_volatility", single, to)
    return finish(with_ts(table), single, to)
