"""`trades`: one row per trade (cryptofeed `Trade`)."""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, extra_array, partition_reasons, positive_reasons,
    required_reasons, seconds_to_float, str_or_none, timestamp_reasons, ts_array, usable,
)
from ..schema import make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("trades", [
    pa.field("side", pa.string()),                   # buy | sell, the taker's side; NULL when not given
    pa.field("amount", pa.float64(), nullable=False),  # base-currency quantity
    pa.field("price", pa.float64(), nullable=False),  # quote-currency price of one unit of amount
    pa.field("trade_id", pa.string()),               # the exchange's id, NULL when it sends none
    pa.field("type", pa.string()),                   # e.g. liquidation/block, NULL when unknown
    EXTRA_FIELD,                                     # unmapped Trade attributes as JSON, NULL when none
])

_FIELDS = operator.attrgetter("exchange", "symbol", "side", "amount", "price", "id", "type", "timestamp")
_RAW = ("exchange", "symbol", "side", "amount", "price", "id", "type", "timestamp")
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Trade objects -> a `trades` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "trades")
    exchange = [t.exchange for t in items]
    symbol = [t.symbol for t in items]
    price = decimals_to_array([t.price for t in items])
    amount = decimals_to_array([t.amount for t in items])
    ts = seconds_to_float([t.timestamp for t in items])
    receipt = seconds_to_float(receipts)
    receipt = np.where(np.isfinite(receipt), receipt, ts)
    reasons: dict[int, str] = {}
    required_reasons({"price": price, "amount": amount}, reasons)
    positive_reasons({"price": price, "amount": amount}, reasons)
    timestamp_reasons(ts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol,
        "side": [str_or_none(t.side) for t in items], "amount": amount, "price": price,
        "trade_id": [str_or_none(t.id) for t in items], "type": [str_or_none(t.type) for t in items],
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="trades", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "side", "type", "price", "amount"),
    # the exchange's trade id; trades without one are never deduplicated (two identical fills can be real)
    dedup_key=("exchange", "symbol", "trade_id"),
)
