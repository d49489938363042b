"""`funding`: one row per funding update of a perpetual swap (cryptofeed `Funding`).

A funding rate may be negative or zero; NaN or infinite rates are rejected, as are non-positive or
non-finite mark prices and a row with none of mark_price, rate and predicted_rate. Exchanges differ
in what they send: Binance leaves the rate NULL between funding times, OKX/Huobi/BitMEX send no mark
price, most send no next funding time. `ts` is the receipt time when the exchange sends no time.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, event_times, extra_array, finite_reasons,
    optional_times, partition_reasons, positive_reasons, ts_array, usable,
)
from ..schema import TS, make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("funding", [
    pa.field("mark_price", pa.float64()),     # the exchange's mark price; NULL when it sends none
    pa.field("rate", pa.float64()),           # funding rate for the current period (a fraction, may be
    #                                           negative or zero); NULL when the exchange sends none
    pa.field("next_funding_time", TS),        # when the next funding payment happens; NULL when not sent
    pa.field("predicted_rate", pa.float64()),  # the exchange's estimate of the next rate; NULL when not sent
    EXTRA_FIELD,                              # unmapped Funding attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "mark_price", "rate", "next_funding_time", "predicted_rate", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed Funding objects -> a `funding` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "funding")
    exchange = [f.exchange for f in items]
    symbol = [f.symbol for f in items]
    mark = decimals_to_array([f.mark_price for f in items])
    rate = decimals_to_array([f.rate for f in items])
    predicted = decimals_to_array([f.predicted_rate for f in items])
    reasons: dict[int, str] = {}
    empty = np.logical_and.reduce([a.is_null().to_numpy(zero_copy_only=False) for a in (mark, rate, predicted)])
    for i in np.flatnonzero(empty):
        reasons[int(i)] = "a funding update with none of mark_price, rate, predicted_rate"
    positive_reasons({"mark_price": mark}, reasons)
    finite_reasons({"rate": rate, "predicted_rate": predicted}, reasons)
    next_time = optional_times([f.next_funding_time for f in items], "next_funding_time", reasons)
    ts, receipt = event_times([f.timestamp for f in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "mark_price": mark, "rate": rate,
        "next_funding_time": ts_array(next_time, nullable=True), "predicted_rate": predicted,
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="funding", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "rate", "predicted_rate"),  # rates change once per period
    delta_columns=("ts", "receipt_ts", "next_funding_time"),
)
