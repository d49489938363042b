"""Trade-price helpers computed inside DuckDB over the unified view: ohlc, vwap, twap, returns, realized_volatility.

One signature for all: `helper(symbols, interval, *, exchange=None, start=None, end=None, to="pandas",
lake=None, ...)`. `symbols` is a str (one series, no `symbol` column) or a list of str (a tidy long
frame with `symbol` first, sorted by symbol then time). `exchange=None` pools every exchange's trades
of a symbol. Buckets are `[ts, ts + interval)` in UTC, empty buckets have no row (`resample` fills them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._sqlargs import Filters, check_choice, check_to, filters, finish, parse_interval, symbol_list, to_ns, with_ts
from .errors import ConfigError
from .lake import Output, active_lake

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["ohlc", "parse_interval", "realized_volatility", "returns", "to_ns", "twap", "vwap"]

_BUCKET = "(epoch_ns(ts) // $step) * $step"
_LAST = "arg_max(price, (ts, receipt_ts))"  # deterministic on equal ts: the later receipt wins


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
        sql = f"SELECT symbol, {cols} FROM trades WHERE {f.where} GROUP BY symbol ORDER BY symbol"
        return _scalar(lake.query_arrow(sql, f.params, **f.prune), "vwap", single, to)
    params = {**f.params, "step": parse_interval(interval)}
    sql = (f"SELECT symbol, {_BUCKET} AS bucket, {cols} FROM trades WHERE {f.where}"
           " GROUP BY symbol, bucket ORDER BY symbol, bucket")
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
    params = dict(f.params)
    if interval is None:
        bucket, until = "0", "$end" if f.end_ns is not None else "max(t) OVER (PARTITION BY symbol)"
    else:
        params["step"] = parse_interval(interval)
        bucket = "(t // $step) * $step"
        until = "least(bucket + $step, $end)" if f.end_ns is not None else "bucket + $step"
    sql = (
        f"WITH p AS (SELECT symbol, price, epoch_ns(ts) AS t, receipt_ts FROM trades WHERE {f.where}),"
        f" b AS (SELECT *, {bucket} AS bucket FROM p),"
        " w AS (SELECT symbol, bucket, price, coalesce(lead(t) OVER (PARTITION BY symbol, bucket ORDER BY t, receipt_ts),"
        f" {until}) - t AS w FROM b)"
        " SELECT symbol, bucket, CASE WHEN sum(w) > 0 THEN sum(price * w) / sum(w) ELSE avg(price) END AS twap,"
        " count(*) AS trades FROM w GROUP BY symbol, bucket ORDER BY symbol, bucket"
    )
    table = lake.query_arrow(sql, params, **f.prune)
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
    bars = (
        f"SELECT symbol, {_BUCKET} AS bucket,"
        " arg_min(price, (ts, receipt_ts)) AS open, max(price) AS high, min(price) AS low,"
        f" {_LAST} AS close, sum(amount) AS volume, count(*) AS trades,"
        " sum(price * amount) / sum(amount) AS vwap"
        f" FROM trades WHERE {f.where} GROUP BY symbol, bucket"
    )
    gap_filter = "(g.channel IS NULL OR g.channel = 'trades')"
    if f.exchange is not None:
        gap_filter += " AND (g.exchange IS NULL OR g.exchange = $exchange)"
    sql = (
        f"WITH bars AS ({bars}), wanted(symbol) AS (VALUES {f.symbol_rows}),"
        " holes AS (SELECT w.symbol, epoch_ns(g.start_ts) AS a, epoch_ns(g.end_ts) AS b FROM gaps g"
        " JOIN wanted w ON g.symbol IS NULL OR g.symbol = w.symbol"
        f" WHERE {gap_filter} AND g.start_ts IS NOT NULL AND g.end_ts IS NOT NULL),"
        # overlapping gaps are merged first, so a second or counted twice cannot lower coverage
        " ordered AS (SELECT symbol, a, b, max(b) OVER (PARTITION BY symbol ORDER BY a, b"
        " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach FROM holes),"
        " islands AS (SELECT symbol, a, b, sum(CASE WHEN reach IS NULL OR a > reach THEN 1 ELSE 0 END)"
        " OVER (PARTITION BY symbol ORDER BY a, b) AS island FROM ordered),"
        " merged AS (SELECT symbol, min(a) AS a, max(b) AS b FROM islands GROUP BY symbol, island)"
        " SELECT bars.*, 1.0 - coalesce((SELECT sum(greatest(0, least(h.b, bars.bucket + $step)"
        " - greatest(h.a, bars.bucket))) FROM merged h WHERE h.symbol = bars.symbol), 0) / $step AS coverage"
        " FROM bars ORDER BY symbol, bucket"
    )
    return finish(with_ts(lake.query_arrow(sql, params, **f.prune)), single, to)


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
    sql = (f"WITH bars AS (SELECT symbol, {_BUCKET} AS bucket, {_LAST} AS close FROM trades WHERE {f.where}"
           f" GROUP BY symbol, bucket) SELECT symbol, bucket, close, {ret} AS \"return\" FROM bars ORDER BY symbol, bucket")
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
    sql = (
        f"WITH bars AS (SELECT symbol, (epoch_ns(ts) // $sample) * $sample AS sb, {_LAST} AS close FROM trades"
        f" WHERE {f.where} GROUP BY symbol, sb),"
        " r AS (SELECT symbol, sb, ln(close / lag(close) OVER (PARTITION BY symbol ORDER BY sb)) AS r FROM bars)"
        f" SELECT symbol, {bucket} AS bucket, sqrt(sum(r * r)) AS realized_volatility, count(*) AS returns FROM r"
        " WHERE r IS NOT NULL GROUP BY symbol, bucket ORDER BY symbol, bucket"
    )
    table = lake.query_arrow(sql, params, **f.prune)
    if interval is None:
        return _scalar(table.drop_columns(["bucket"]), "realized_volatility", single, to)
    return finish(with_ts(table), single, to)
