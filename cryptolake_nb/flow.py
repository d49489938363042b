"""Order-flow helpers over trades: buy vs sell volume per bucket, and volume by price level.

Same signature as `analytics.py`: `helper(symbols, interval, *, exchange=None, start=None, end=None,
to="pandas", lake=None, ...)`; a str symbol gives one series, a list a long frame with `symbol`.
`side` is the taker's side; trades without one count in `volume` and `trades` but in neither side.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._sqlargs import check_number, check_to, filters, finish, parse_interval, symbol_list, with_ts
from .lake import Output, active_lake

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["trade_imbalance", "volume_profile"]

_SIDES = ("coalesce(sum(amount) FILTER (WHERE side = 'buy'), 0.0) AS buy_volume,"
          " coalesce(sum(amount) FILTER (WHERE side = 'sell'), 0.0) AS sell_volume")
# floor(round(r, 9)) differs from floor(r) only when r's fraction is within 1e-9 of the next level;
# rounding just those rows gives the same level for a third of the cost
_LEVEL = "CASE WHEN r - floor(r) < 0.9999999 THEN floor(r) ELSE floor(round(r, 9)) END"


def trade_imbalance(symbols: str | list[str], interval: Any = "1min", *, exchange: str | None = None,
                    start: Any = None, end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Taker buy vs sell volume per bucket: `[symbol,] ts, buy_volume, sell_volume, imbalance,
    volume, trades`, imbalance = (buy - sell) / (buy + sell) in [-1, 1] (NULL without sided trades).
    `interval=None`: one row per symbol over the whole range (no `ts`).

    >>> trade_imbalance("BTC-USDT", "5min", exchange="BINANCE")          # doctest: +SKIP
    """
    check_to(to)
    syms, single = symbol_list(symbols)
    f = filters(syms, exchange, start, end)
    params = dict(f.params)
    bucket = ""
    if interval is not None:
        params["step"] = parse_interval(interval)
        bucket = "(epoch_ns(ts) // $step) * $step AS bucket,"
    keys = "symbol, bucket" if bucket else "symbol"
    sym, where, group = f.by_symbol(*(["bucket"] if bucket else []))
    sql = (f"SELECT {keys}, buy_volume, sell_volume, (buy_volume - sell_volume) / nullif(buy_volume + sell_volume, 0)"
           f" AS imbalance, volume, trades FROM (SELECT {sym}, {bucket} {_SIDES}, sum(amount) AS volume,"
           f" count(*) AS trades FROM trades WHERE {where}{group}) ORDER BY {keys}")
    table = active_lake(lake).query_arrow(sql, params, **f.prune)
    return finish(with_ts(table) if bucket else table, single, to)


def volume_profile(symbols: str | list[str], interval: Any = None, *, bin: float, exchange: str | None = None,
                   start: Any = None, end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Traded volume by price level: `[symbol,] [ts,] price, volume, buy_volume, sell_volume, trades`,
    one row per non-empty level, `price` being the level's lower edge floor(price / bin) * bin (the
    ratio is rounded to 9 decimals first, so 0.3 / 0.1 lands in level 3, not 2). Without `interval`
    one profile over the range, with it one per bucket.

    >>> volume_profile("BTC-USDT", bin=10, exchange="BINANCE", start="2024-05-01")   # doctest: +SKIP
    """
    check_to(to)
    params: dict[str, Any] = {"bin": check_number("bin", bin)}
    syms, single = symbol_list(symbols)
    f = filters(syms, exchange, start, end)
    params.update(f.params)
    bucket = ""
    if interval is not None:
        params["step"] = parse_interval(interval)
        bucket = "(epoch_ns(ts) // $step) * $step AS bucket,"
    keys = "symbol, bucket, level" if bucket else "symbol, level"
    sym, where, group = f.by_symbol(*(["bucket", "level"] if bucket else ["level"]))
    shown = f"{sym}, bucket" if bucket else sym
    sql = (f"SELECT {shown}, level * $bin AS price, sum(amount) AS volume, {_SIDES}, count(*) AS trades"
           f" FROM (SELECT symbol, {bucket} {_LEVEL} AS level, amount, side FROM (SELECT symbol, ts,"
           f" price / $bin AS r, amount, side FROM trades WHERE {where})){group} ORDER BY {keys}")
    table = active_lake(lake).query_arrow(sql, params, **f.prune)
    return finish(with_ts(table) if bucket else table, single, to)
