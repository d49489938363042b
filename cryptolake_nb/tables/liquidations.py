"""`liquidations`: one row per liquidation order the exchange reports (cryptofeed `Liquidation`).

Quantity and price must be finite positive numbers. BitMEX sends no time: `ts` is then the receipt
time. Binance and OKX send no order id.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, event_times, extra_array, partition_reasons,
    positive_reasons, required_reasons, str_or_none, ts_array, usable,
)
from ..schema import make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("liquidations", [
    pa.field("side", pa.string()),                        # buy | sell, the liquidation order's side; NULL when unknown
    pa.field("quantity", pa.float64(), nullable=False),   # quantity of the order (the exchange's unit)
    pa.field("price", pa.float64(), nullable=False),      # the order's price (bankruptcy price on OKX)
    pa.field("liquidation_id", pa.string()),              # the exchange's order id; NULL when it sends none
    pa.field("status", pa.string()),                      # filled | unfilled (cryptofeed's words); NULL when unknown
    EXTRA_FIELD,                                          # unmapped Liquidation attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "side", "quantity", "price", "id", "status", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Liquidation objects -> a `liquidations` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "liquidations")
    exchange = [x.exchange for x in items]
    symbol = [x.symbol for x in items]
    quantity = decimals_to_array([x.quantity for x in items])
    price = decimals_to_array([x.price for x in items])
    reasons: dict[int, str] = {}
    required_reasons({"quantity": quantity, "price": price}, reasons)
    positive_reasons({"quantity": quantity, "price": price}, reasons)
    ts, receipt = event_times([x.timestamp for x in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "side": [str_or_none(x.side) for x in items],
        "quantity": quantity, "price": price, "liquidation_id": [str_or_none(x.id) for x in items],
        "status": [str_or_none(x.status) for x in items],
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="liquidations", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "side", "status"),
)
