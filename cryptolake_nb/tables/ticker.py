"""`ticker`: one row per top-of-book update (cryptofeed `Ticker`: best bid and ask prices).

Some exchanges (Kraken, Kraken Futures, Bitfinex) send no time with a ticker: `ts` is then the
receipt time, so `ts = receipt_ts` on those rows. A row with neither bid nor ask is rejected.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, event_times, extra_array, partition_reasons,
    positive_reasons, ts_array, usable,
)
from ..schema import make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("ticker", [
    pa.field("bid", pa.float64()),  # best bid price; NULL when the exchange sends no bid
    pa.field("ask", pa.float64()),  # best ask price; NULL when the exchange sends no ask
    EXTRA_FIELD,                    # unmapped Ticker attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "bid", "ask", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Ticker objects -> a `ticker` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "ticker")
    exchange = [t.exchange for t in items]
    symbol = [t.symbol for t in items]
    bid = decimals_to_array([t.bid for t in items])
    ask = decimals_to_array([t.ask for t in items])
    reasons: dict[int, str] = {}
    both_null = pc.and_(bid.is_null(), ask.is_null()).to_numpy(zero_copy_only=False)
    for i in both_null.nonzero()[0]:
        reasons[int(i)] = "a ticker with neither bid nor ask"
    positive_reasons({"bid": bid, "ask": ask}, reasons)
    ts, receipt = event_times([t.timestamp for t in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "bid": bid, "ask": ask,
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="ticker", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "bid", "ask"),  # quotes repeat while the top of book rests
)
