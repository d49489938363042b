"""Quant helpers computed inside DuckDB over the unified view: vwap, ohlc."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError
from .lake import Output, active_lake, convert
from .schema import TS

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["ohlc", "parse_interval", "to_ns", "vwap"]

_UNITS = {
    "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "sec": 10**9, "m": 60 * 10**9, "min": 60 * 10**9,
    "h": 3600 * 10**9, "hour": 3600 * 10**9, "d": 86_400 * 10**9, "day": 86_400 * 10**9,
}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")


def parse_interval(interval: str | int | pd.Timedelta) -> int:
    """'1min', '5s', '250ms', '1h', '1d' (or a Timedelta, or ns) -> nanoseconds."""
    if isinstance(interval, pd.Timedelta):
        ns = interval.value
    elif isinstance(interval, int) and not isinstance(interval, bool):
        ns = interval
    elif isinstance(interval, str) and (m := _INTERVAL.match(interval.lower())) and m.group(2) in _UNITS:
        ns = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(f"interval must look like '1min', '5s', '250ms', '1h' or '1d', got {interval!r}")
    if ns <= 0:
        raise ConfigError(f"interval must be positive, got {interval!r}")
    return ns


def to_ns(value: Any, name: str) -> int | None:
    """A time bound (str, datetime, Timestamp, ns int) -> ns since the epoch, UTC if naive."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} must be a time, got {value!r}: {exc}") from None
    if ts is pd.NaT:
        raise ConfigError(f"{name} must be a time, got {value!r}")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).value


def _filters(symbol: str, exchange: str | None, start: Any, end: Any) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """WHERE clause (placeholders only), its parameters, and the partition pruning arguments."""
    if not isinstance(symbol, str):
        raise ConfigError(f"symbol must be a string, got {symbol!r}")
    where, params = ["symbol = $symbol"], {"symbol": symbol}
    prune: dict[str, Any] = {"symbols": (symbol,)}
    if exchange is not None:
        where.append("exchange = $exchange")
        params["exchange"] = prune["exchange"] = exchange
    start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
    if start_ns is not None:
        where.append("epoch_ns(ts) >= $start")
        params["start"] = prune["start_ns"] = start_ns
    if end_ns is not None:
        where.append("epoch_ns(ts) < $end")
        params["end"] = prune["end_ns"] = end_ns
    return " AND ".join(where), params, prune


def _bucketed(table: pa.Table) -> pa.Table:
    """Turn the integer `bucket` column (ns) into `ts` as timestamp[ns, UTC]."""
    ts = pc.cast(table.column("bucket"), pa.int64()).cast(TS)
    return table.set_column(table.schema.get_field_index("bucket"), "ts", ts)


def vwap(symbol: str, *, exchange: str | None = None, start: Any = None, end: Any = None,
         interval: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Volume-weighted average price of `symbol`'s trades: one float (None if no trades), or,
    with `interval`, one row per non-empty bucket: `ts, vwap, volume, trades`.

    >>> vwap("BTC-USDT", exchange="BINANCE", interval="1min")   # doctest: +SKIP
    """
    lake = active_lake(lake)
    where, params, prune = _filters(symbol, exchange, start, end)
    if interval is None:
        sql = f"SELECT sum(price * amount) / sum(amount) AS vwap FROM trades WHERE {where}"
        return lake.query_arrow(sql, params, **prune).column("vwap")[0].as_py()
    params["step"] = parse_interval(interval)
    sql = (
        "SELECT (epoch_ns(ts) // $step) * $step AS bucket, sum(price * amount) / sum(amount) AS vwap,"
        f" sum(amount) AS volume, count(*) AS trades FROM trades WHERE {where} GROUP BY bucket ORDER BY bucket"
    )
    return convert(_bucketed(lake.query_arrow(sql, params, **prune)), to)


def ohlc(symbol: str, interval: Any = "1min", *, exchange: str | None = None, start: Any = None,
         end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Bars of `symbol`'s trades: `ts, open, high, low, close, volume, trades, vwap, coverage`, one
    row per non-empty bucket. Open and close are the first and last trades by (ts, receipt_ts).
    `coverage` is the share of the bucket not inside a known gap of this symbol's trades (the
    `gaps` table: reconnects, silences, sequence breaks, quarantined rows, ...): 1.0 means no known hole.

    >>> ohlc("BTC-USDT", "5min", exchange="BINANCE")            # doctest: +SKIP
    """
    lake = active_lake(lake)
    where, params, prune = _filters(symbol, exchange, start, end)
    params["step"] = parse_interval(interval)
    sql = (
        "SELECT (epoch_ns(ts) // $step) * $step AS bucket,"
        " arg_min(price, (ts, receipt_ts)) AS open, max(price) AS high, min(price) AS low,"
        " arg_max(price, (ts, receipt_ts)) AS close, sum(amount) AS volume, count(*) AS trades,"
        " sum(price * amount) / sum(amount) AS vwap"
        f" FROM trades WHERE {where} GROUP BY bucket"
    )
    gap_filter = "(g.symbol IS NULL OR g.symbol = $symbol) AND (g.channel IS NULL OR g.channel = 'trades')"
    if exchange is not None:
        gap_filter += " AND (g.exchange IS NULL OR g.exchange = $exchange)"
    sql = (
        f"WITH bars AS ({sql}), holes AS (SELECT epoch_ns(g.start_ts) AS a, epoch_ns(g.end_ts) AS b FROM gaps g"
        f" WHERE {gap_filter} AND g.start_ts IS NOT NULL AND g.end_ts IS NOT NULL),"
        # overlapping gaps are merged first, so a second or counted twice cannot lower coverage
        " ordered AS (SELECT a, b, max(b) OVER (ORDER BY a, b ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
        " AS reach FROM holes), islands AS (SELECT a, b, sum(CASE WHEN reach IS NULL OR a > reach THEN 1 ELSE 0 END)"
        " OVER (ORDER BY a, b) AS island FROM ordered), merged AS (SELECT min(a) AS a, max(b) AS b FROM islands"
        " GROUP BY island)"
        " SELECT bars.*, 1.0 - coalesce((SELECT sum(greatest(0, least(h.b, bars.bucket + $step)"
        " - greatest(h.a, bars.bucket))) FROM merged h), 0) / $step AS coverage FROM bars ORDER BY bucket"
    )
    return convert(_bucketed(lake.query_arrow(sql, params, **prune)), to)
