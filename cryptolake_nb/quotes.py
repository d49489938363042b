"""Quote helpers: bid/ask spread and mid per bucket, from the exchanges' ticker or the L2 book.

Same signature as the trade helpers (`analytics.py`): `helper(symbols, interval, *, source=...,
exchange=None, start=None, end=None, to="pandas", lake=None)`. Each bucket shows the quote as of its
last update (the last non-NULL bid and ask of the bucket); buckets without an update have no row
(`resample(..., fill="previous")` carries quotes forward). Quotes from two exchanges are never mixed:
a symbol quoted on several exchanges needs `exchange=`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._sqlargs import check_choice, check_to, filters, finish, order_key, parse_interval, symbol_list, with_ts
from .books import top_of_book
from .columnar_bars import stream_last
from .errors import ConfigError
from .lake import Output, active_lake
from .schema import TS

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["mid", "spread"]

_SOURCES = ("ticker", "book")
_QUOTES = pa.schema([("symbol", pa.string()), ("ts", TS), ("bid", pa.float64()), ("ask", pa.float64())])
_KEY = order_key("epoch_ns(ts)", "epoch_ns(receipt_ts)")  # the last update: latest ts, then latest receipt


def spread(symbols: str | list[str], interval: Any = "1s", *, source: str = "ticker", exchange: str | None = None,
           start: Any = None, end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Bid/ask spread per bucket: `[symbol,] ts, bid, ask, spread, spread_bps` with spread = ask - bid
    and spread_bps = spread / mid * 10^4, as of each bucket's last quote. `source="ticker"` reads the
    `ticker` table, `source="book"` the best levels rebuilt from `l2_book` (`top_of_book`).

    >>> spread("BTC-USDT", "1min", exchange="BINANCE", start="2024-05-01")   # doctest: +SKIP
    """
    q = _quotes(symbols, interval, source, exchange, start, end, to, lake)
    bid, ask = q.column("bid"), q.column("ask")
    width = pc.subtract(ask, bid)
    q = q.append_column("spread", width)
    q = q.append_column("spread_bps", pc.multiply(pc.divide(width, pc.divide(pc.add(bid, ask), 2.0)), 1e4))
    return finish(q, isinstance(symbols, str), to)


def mid(symbols: str | list[str], interval: Any = "1s", *, source: str = "ticker", exchange: str | None = None,
        start: Any = None, end: Any = None, to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """Mid price per bucket: `[symbol,] ts, bid, ask, mid` with mid = (bid + ask) / 2, as of each
    bucket's last quote; `source` as in `spread`.

    >>> mid(["BTC-USDT", "ETH-USDT"], "1s", source="book", exchange="BINANCE")   # doctest: +SKIP
    """
    q = _quotes(symbols, interval, source, exchange, start, end, to, lake)
    q = q.append_column("mid", pc.divide(pc.add(q.column("bid"), q.column("ask")), 2.0))
    return finish(q, isinstance(symbols, str), to)


def _quotes(symbols: Any, interval: Any, source: Any, exchange: Any, start: Any, end: Any, to: Any,
            lake: "Lake | None") -> pa.Table:
    """`symbol, ts, bid, ask` per symbol and non-empty bucket, sorted by symbol and time."""
    check_to(to)
    check_choice("source", source, _SOURCES)
    syms, _ = symbol_list(symbols)
    step = parse_interval(interval)
    f = filters(syms, exchange, start, end)
    lake = active_lake(lake)
    if source == "book":
        parts = [_QUOTES.empty_table()]
        for sym in sorted(syms):
            top = top_of_book(sym, step, exchange=exchange, start=start, end=end, source="l2_book", to="arrow", lake=lake)
            parts.append(pa.table({"symbol": pa.array([sym] * top.num_rows, pa.string()), "ts": top.column("ts"),
                                   "bid": top.column("bid"), "ask": top.column("ask")}, schema=_QUOTES))
        return pa.concat_tables(parts)
    if exchange is not None and len(syms) == 1:  # one stream: the last quote of each bucket over columns
        last = stream_last(lake, "ticker", syms[0], exchange, f.start_ns, f.end_ns, step, ["bid", "ask"])
        if last is not None:
            last = last.add_column(0, "symbol", pa.array([syms[0]] * last.num_rows, pa.string()))
            return with_ts(last).cast(_QUOTES)
    sym, where, group = f.by_symbol("bucket") if exchange is not None else f.by_symbol("exchange", "bucket")
    venue = "$exchange AS exchange" if exchange is not None else "exchange"
    sql = (f"SELECT {sym}, (epoch_ns(ts) // $step) * $step AS bucket, arg_max(bid, {_KEY}) AS bid,"
           f" arg_max(ask, {_KEY}) AS ask, {venue} FROM ticker WHERE {where}{group} ORDER BY symbol, bucket")
    table = lake.query_arrow(sql, {**f.params, "step": step}, **f.prune)
    # venues counted on the (small) result: a DISTINCT window in the query cost more than the rest
    venues = table.group_by("symbol").aggregate([("exchange", "count_distinct")])
    several = venues.filter(pc.greater(venues.column("exchange_count_distinct"), 1)).column("symbol").to_pylist()
    if several:
        raise ConfigError(f"{sorted(several)} quoted on several exchanges: pass exchange= (quotes of two venues never mix)")
    return with_ts(table.drop_columns(["exchange"])).cast(_QUOTES)
