"""`index`: one row per index-price update (cryptofeed `Index`, e.g. the spot index behind a swap).

The price must be a finite positive number. `ts` is the receipt time when the exchange sends no time.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, event_times, extra_array, partition_reasons,
    positive_reasons, required_reasons, ts_array, usable,
)
from ..schema import make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("index", [
    pa.field("price", pa.float64(), nullable=False),  # the index price
    EXTRA_FIELD,                                      # unmapped Index attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "price", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Index objects -> an `index` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "index")
    exchange = [x.exchange for x in items]
    symbol = [x.symbol for x in items]
    price = decimals_to_array([x.price for x in items])
    reasons: dict[int, str] = {}
    required_reasons({"price": price}, reasons)
    positive_reasons({"price": price}, reasons)
    ts, receipt = event_times([x.timestamp for x in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "price": price,
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="index", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "price"),  # index prices are re-sent unchanged between moves
)
