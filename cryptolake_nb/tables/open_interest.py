"""`open_interest`: one row per open-interest update of a derivative (cryptofeed `OpenInterest`).

Open interest can be zero (a new or expiring contract); NaN, infinite or negative values are
rejected. `ts` is the receipt time when the exchange sends no time.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

import pyarrow as pa

from ..records import (
    EXTRA_FIELD, Converted, build_batch, decimals_to_array, event_times, extra_array, nonnegative_reasons,
    partition_reasons, required_reasons, ts_array, usable,
)
from ..schema import make_schema
from . import TableSpec

__all__ = ["SCHEMA", "SPEC", "convert"]

SCHEMA = make_schema("open_interest", [
    pa.field("open_interest", pa.float64(), nullable=False),  # open contracts, in the exchange's unit
    #                                                           (contracts or base currency), >= 0
    EXTRA_FIELD,                                              # unmapped OpenInterest attributes as JSON, NULL when none
])

_RAW = ("exchange", "symbol", "open_interest", "timestamp")
_FIELDS = operator.attrgetter(*_RAW)
_MAPPED = frozenset(_RAW)


def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
    """cryptofeed OpenInterest objects -> an `open_interest` batch; invalid rows become Rejects."""
    items, receipts, unusable = usable(objs, receipts, _FIELDS, "open_interest")
    exchange = [o.exchange for o in items]
    symbol = [o.symbol for o in items]
    oi = decimals_to_array([o.open_interest for o in items])
    reasons: dict[int, str] = {}
    required_reasons({"open_interest": oi}, reasons)
    nonnegative_reasons({"open_interest": oi}, reasons)
    ts, receipt = event_times([o.timestamp for o in items], receipts, reasons)
    partition_reasons(exchange, symbol, reasons)
    columns = {
        "exchange": exchange, "symbol": symbol, "open_interest": oi,
        "extra": extra_array(items, _MAPPED), "ts": ts_array(ts), "receipt_ts": ts_array(receipt),
    }
    return build_batch(SCHEMA, columns, reasons, items, receipts, _RAW, unusable)


SPEC = TableSpec(
    name="open_interest", schema=SCHEMA, convert=convert,
    dictionary_columns=("exchange", "symbol", "open_interest"),  # often re-sent unchanged
)
