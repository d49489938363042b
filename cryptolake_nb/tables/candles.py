"""`candles`: one row per candle update the exchange sends (cryptofeed `Candle`, OHLCV of a window).

An exchange updates a candle many times while its window is open (`closed` false) and may send it
again once it is final: every update is a row; the latest one of a window is the most complete
(`cryptolake_nb.candles.compare_candles` uses that one). HITBTC sends no update time: `ts` is then the
receipt time. Rejected: non-positive or non-finite prices, a negative volume or trade count,
`low`/`high` that do not bound `open` and `close`, a window that ends before it starts.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, bools_to_array, build_batch, decimals_to_array, event_times, extra_array,
    nonnegative_reasons, partition_reasons, positive_reasons, required_reasons, seconds_to_float, str_or_none,
    ts_array, usable,
)
from ..schema import TS, make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("candles", [
    pa.field("start", TS, nullable=False),    # first instant of the candle's window
    pa.field("stop", TS, nullable=False),     # last instant of the window as the exchange gives it:
    #                                           Binance start + interval - 1 ms, HITBTC and DELTA - 1 s,
    #                                           FMFW and GATEIO - 0.1 s (so the window is [start, start + interval))
    pa.field("interval", pa.string(), nullable=False),  # cryptofeed's interval name: 1m, 5m, 1h, 1d, 1M, ...
    pa.field("trades", pa.int64()),           # number of trades in the window; NULL when the exchange sends no count
    pa.field("open", pa.float64(), nullable=False),   # price of the window's first trade
    pa.field("high", pa.float64(), nullable=False),   # highest trade price in the window
    pa.field("low", pa.float64(), nullable=False),    # lowest trade price in the window
    pa.field("close", pa.float64(), nullable=False),  # price of the last trade so far (final once closed)
    pa.field("volume", pa.float64()),         # traded volume as the exchange counts it: base currency or
    #                                           contracts like the trades' amount (Binance, HITBTC), the
    #                                           quote currency on GATEIO; NULL when the exchange sends none
    pa.field("closed", pa.bool_()),           # true: the window is final; NULL when not given (cryptofeed
    #                                           2.4.1's Candle turns a missing value into false, so never)
    EXTRA_FIELD,                              # unmapped Candle attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "start", "stop", "interval", "trades", "open", "close", "high", "low", "volume",
        "closed", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Candle objects -> a `candles` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "candles")
    exchange = [c.exchange for c in items]
    symbol = [c.symbol for c in items]
    prices = {name: decimals_to_array([getattr(c, name) for c in items]) for name in ("open", "high", "low", "close")}
    volume = decimals_to_array([c.volume for c in items])
    count = decimals_to_array([c.trades for c in items])
    start, stop = seconds_to_float([c.start for c in items]), seconds_to_float([c.stop for c in items])
    interval = [str_or_none(c.interval) for c in items]
    reasons: dict[int, str] = {}
    required_reasons(prices, reasons)
    positive_reasons(prices, reasons)
    nonnegative_reasons({"volume": volume, "trades": count}, reasons)
    counts = count.to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(counts) & (counts == np.floor(counts))
    for i in np.flatnonzero(~whole & ~np.isnan(counts)):
        reasons.setdefault(int(i), f"trades must be a whole number, got {counts[i]!r}")
    required_reasons({"start": pa.array(start), "stop": pa.array(stop)}, reasons)
    o, h, lo, c = (prices[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        unbounded = (lo > np.minimum(o, c)) | (h < np.maximum(o, c))
        backwards = stop < start
    for i in np.flatnonzero(unbounded):
        reasons.setdefault(int(i), f"low {lo[i]!r} and high {h[i]!r} do not bound open {o[i]!r} and close {c[i]!r}")
    for i in np.flatnonzero(backwards):
        reasons.setdefault(int(i), "the candle's stop is before its start")
    for i, name in enumerate(interval):
        if not name:
            reasons.setdefault(i, "a candle without an interval")
    closed = bools_to_array([c.closed for c in items], "closed", reasons)
    ts, receipt = event_times([c.timestamp for c in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "start": ts_array(start), "stop": ts_array(stop),
        "interval": interval, "trades": pa.array(np.where(whole, counts, 0).astype(np.int64), pa.int64(), mask=~whole),
        **prices, "volume": volume, "closed": closed,
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="candles", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "interval", "open", "high", "low", "close"),
    delta_columns=("ts", "receipt_ts", "start", "stop"),
)
