"""`trades`: one row per trade (cryptofeed `Trade`)."""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, extra_array, extract, partition_reasons,
    positive_reasons, required_reasons, seconds_to_float, strings_array, timestamp_reasons, ts_array,
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

_RAW = ("exchange", "symbol", "side", "amount", "price", "id", "type", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Trade objects (or their `_RAW` fields read already) -> a `trades` batch; invalid rows
    become Rejects."""
    items, receipts, unusable, values = extract(objs, receipts, _FIELDS, "trades")
    exchange, symbol, side, amount, price, ids, kind, times = (list(c) for c in zip(*values)) if values else ([],) * 8
    price = decimals_to_array(price)
    amount = decimals_to_array(amount)
    ts = seconds_to_float(times)
    receipt = seconds_to_float(receipts)
    receipt = np.where(np.isfinite(receipt), receipt, ts)
    reasons: dict[int, str] = {}
    required_reasons({"price": price, "amount": amount}, reasons)
    positive_reasons({"price": price, "amount": amount}, reasons)
    timestamp_reasons(ts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "side": strings_array(side), "amount": amount, "price": price,
        "trade_id": strings_array(ids), "type": strings_array(kind),
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="trades", schema=SCHEMA, convert=convert, fields=_RAW,
    dictionary_columns=("exchange", "symbol", "side", "type", "price", "amount"),
    # the exchange's trade id; trades without one are never deduplicated (two identical fills can be real)
    dedup_key=("exchange", "symbol", "trade_id"),
)
