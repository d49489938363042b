"""Exchange candles checked against bars built from the lake's own trades, window by window."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .analytics import to_ns
from .errors import ConfigError
from .lake import Output, active_lake, convert
from .schema import TS

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["RTOL", "compare_candles"]

RTOL = 1e-9  # relative tolerance for prices and volumes (see compare_candles)

# A candle's window is [start, start + interval): cryptofeed's `stop` is the exchange's last instant
# (Binance start + interval - 1 ms, HITBTC start + interval - 1 s, ...), not an exclusive end. For an
# interval other than <n>s/m/h/d/w (e.g. 1M, a month) the window ends just after `stop`.
_WINDOW_END = """
    CASE WHEN regexp_full_match(interval, '[0-9]+[smhdw]')
         THEN epoch_ns(start) + CAST(regexp_extract(interval, '^([0-9]+)', 1) AS BIGINT) *
              CASE right(interval, 1) WHEN 's' THEN 1000000000 WHEN 'm' THEN 60000000000
                   WHEN 'h' THEN 3600000000000 WHEN 'd' THEN 86400000000000 ELSE 604800000000000 END
         ELSE epoch_ns(stop) + 1 END"""

_DIFFERS = "abs({a} - {b}) > $rtol * greatest(abs({a}), abs({b}))"

_SQL = f"""
WITH updates AS (
    SELECT *,
        count(*) OVER (PARTITION BY exchange, symbol, interval, start) AS updates,
        row_number() OVER (PARTITION BY exchange, symbol, interval, start ORDER BY ts DESC, receipt_ts DESC, volume DESC NULLS LAST) AS rn
    FROM candles WHERE {{where}}
), c AS (
    SELECT *, epoch_ns(start) AS start_ns, {_WINDOW_END} AS window_end_ns FROM updates WHERE rn = 1
), w AS (
    SELECT *, CASE WHEN closed IS TRUE THEN window_end_ns
                   ELSE least(window_end_ns, epoch_ns(ts) + 1) END AS until_ns
    FROM c
), j AS (
    SELECT w.exchange, w.symbol, w.interval, w.start_ns, w.open AS candle_open, w.close AS candle_close,
        t.price, t.amount, t.ts, t.receipt_ts, t.trade_id,
        min(t.ts) OVER k AS first_ts, max(t.ts) OVER k AS last_ts
    FROM w JOIN trades t
      ON t.exchange = w.exchange AND t.symbol = w.symbol
     AND epoch_ns(t.ts) >= w.start_ns AND epoch_ns(t.ts) < w.until_ns
    WINDOW k AS (PARTITION BY w.exchange, w.symbol, w.interval, w.start_ns)
), bars AS (
    SELECT exchange, symbol, interval, start_ns,
        arg_min(price, (ts, receipt_ts, trade_id, price)) AS trade_open, max(price) AS trade_high,
        min(price) AS trade_low, arg_max(price, (ts, receipt_ts, trade_id, price)) AS trade_close,
        sum(amount) AS trade_volume, sum(price * amount) AS trade_notional, count(*) AS trade_count,
        bool_or(ts = first_ts AND NOT {_DIFFERS.format(a="candle_open", b="price")}) AS open_agrees,
        bool_or(ts = last_ts AND NOT {_DIFFERS.format(a="candle_close", b="price")}) AS close_agrees
    FROM j
    GROUP BY exchange, symbol, interval, start_ns
)
SELECT w.exchange, w.symbol, w.interval, w.start, w.window_end_ns AS window_end, w.closed, w.updates,
    w.ts, w.open, w.high, w.low, w.close, w.volume, w.trades,
    b.trade_open, b.trade_high, b.trade_low, b.trade_close, coalesce(b.trade_volume, 0.0) AS trade_volume,
    coalesce(b.trade_notional, 0.0) AS trade_notional, coalesce(b.trade_count, 0) AS trade_count, b.trade_count IS NULL AS no_trades,
    concat_ws(',',
        CASE WHEN NOT b.open_agrees THEN 'open' END,
        CASE WHEN b.trade_high IS NOT NULL AND {_DIFFERS.format(a="w.high", b="b.trade_high")} THEN 'high' END,
        CASE WHEN b.trade_low IS NOT NULL AND {_DIFFERS.format(a="w.low", b="b.trade_low")} THEN 'low' END,
        CASE WHEN NOT b.close_agrees THEN 'close' END,
        CASE WHEN w.volume IS NOT NULL
              AND {_DIFFERS.format(a="w.volume", b="coalesce(b.trade_volume, 0.0)")} THEN 'volume' END,
        CASE WHEN w.trades IS NOT NULL AND w.trades <> coalesce(b.trade_count, 0) THEN 'trades' END
    ) AS mismatch
FROM w LEFT JOIN bars b
  ON b.exchange = w.exchange AND b.symbol = w.symbol AND b.interval = w.interval AND b.start_ns = w.start_ns
ORDER BY w.exchange, w.interval, w.start
"""


def compare_candles(symbol: str, *, exchange: str | None = None, interval: str | None = None, start: Any = None,
                    end: Any = None, to: Output = "pandas", lake: "Lake | None" = None, rtol: float = RTOL) -> Any:
    """The exchange's stored candles of `symbol` next to bars built from the lake's stored trades over
    the same windows: one row per candle (exchange, interval, start), from its latest update.

    Columns: `exchange, symbol, interval, start, window_end, closed, updates` (stored updates of this
    candle), `ts` (of the latest update), the exchange's `open, high, low, close, volume, trades`, the
    trades' `trade_open, trade_high, trade_low, trade_close, trade_volume, trade_notional` (sum of
    price * amount) and `trade_count`, `no_trades` (no stored trade in the window: trade prices NULL)
    and `mismatch`: the names of the fields that differ, comma-separated, '' when all agree.

    The window is [start, start + interval) (cryptofeed's `stop` is the exchange's last instant, not an
    end); for a candle not yet closed only trades up to its latest update (ts inclusive) count. Prices
    and volume differ when |a - b| > rtol * max(|a|, |b|) (default 1e-9: both sides come from the same
    decimal strings, so only float summation can move them); trade counts must be equal; prices are
    compared only when the window has trades, volume and count also when it has none (an exchange
    volume > 0 over no stored trades is a mismatch). Trades sharing a timestamp (one order filling
    several others) have no order the lake can know: `open` agrees when it equals the price of any
    trade at the window's first trade time, `close` likewise at the last; `trade_open`/`trade_close`
    show the first/last by (ts, receipt_ts, trade_id, price), a deterministic pick. Expected
    mismatches, which this check is there to show: windows that opened before the trade capture
    started; `trades` where the trade stream is aggregated (Binance aggTrade); `volume` where the
    exchange counts it in the quote currency (GATEIO: compare `trade_notional`) or where trades are
    stored more than once (until deduplication, e.g. a capture on several connections).
    `start`/`end` select candles by window start, in [start, end).

    >>> compare_candles("BTC-USDT", exchange="BINANCE", interval="1m")     # doctest: +SKIP
    """
    lake = active_lake(lake)
    if not isinstance(symbol, str):
        raise ConfigError(f"symbol must be a string, got {symbol!r}")
    if not isinstance(rtol, (int, float)) or not rtol >= 0:
        raise ConfigError(f"rtol must be a number >= 0, got {rtol!r}")
    where, params = ["symbol = $symbol"], {"symbol": symbol, "rtol": float(rtol)}
    prune: dict[str, Any] = {"symbols": (symbol,)}
    if exchange is not None:
        where.append("exchange = $exchange")
        params["exchange"] = prune["exchange"] = exchange
    if interval is not None:
        where.append("interval = $interval")
        params["interval"] = interval
    start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
    if start_ns is not None:  # a window starting at or after `start` holds rows with ts >= start only
        where.append("epoch_ns(start) >= $start")
        params["start"] = prune["start_ns"] = start_ns
    if end_ns is not None:  # no end pruning: a window starting before `end` may be updated after it
        where.append("epoch_ns(start) < $end")
        params["end"] = end_ns
    table = lake.query_arrow(_SQL.format(where=" AND ".join(where)), params, **prune)
    index = table.schema.get_field_index("window_end")
    table = table.set_column(index, "window_end", pc.cast(table.column(index), pa.int64()).cast(TS))
    return convert(table, to)
