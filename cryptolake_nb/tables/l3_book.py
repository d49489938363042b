"""`l3_book`: order-level books (cryptofeed `OrderBook`, L3), stored like `l2_book` but one row per order.

A row is an order: `order_id`, side, price, size; a delta's size 0 removes the order. Snapshots and
checkpoints hold every order of the top 2 x `book_depth` price levels a side; `update_id`, `kind`, the
checkpoints in the callback and at the start of every file, validation and the horizon rule are
those of l2_book (see its docstring), with price levels made of orders. Only INDEPENDENT_RESERVE's
capture has L3 data.
"""
from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from . import TableSpec
from ._book_capture import BookCapture, BookLayout, book_schema, make_converter
from ._book_flush import FlushCheckpoints, first_update_id

__all__ = ["LAYOUT", "SCHEMA", "SPEC", "convert"]


def _copy(side: Any, depth: int) -> tuple[tuple, Sequence]:
    """The orders of the top `depth` price levels (price -> {order id: size} in cryptofeed's book)."""
    levels = side.keys()[:depth]
    return tuple([(oid, p, size) for p in levels for oid, size in side[p].items()]), levels


SCHEMA = book_schema("l3_book", [
    pa.field("order_id", pa.string()),  # the exchange's order id, as a string; NULL on an empty group's row
    pa.field("price", pa.float64()),    # the order's price; NULL on an empty group's row
    pa.field("size", pa.float64()),     # the order's new size, 0 = removed; NULL on an empty group's row
])

LAYOUT = BookLayout(
    table="l3_book", schema=SCHEMA, level_columns=("order_id", "price", "size"), key_columns=("side", "order_id"),
    price_index=1, copy=_copy,
    touched=lambda rows, side: [(p, p in side) for _, p, _ in rows],  # a level goes with its last order
)

convert = make_converter(LAYOUT)

SPEC = TableSpec(
    name="l3_book", schema=SCHEMA, convert=convert,
    make_capture=lambda config: BookCapture(LAYOUT, config.book_depth, config.book_snapshot_interval,
                                            first_update_id(config.root, "l3_book")),
    dictionary_columns=("exchange", "symbol", "kind", "side", "price"),
    delta_columns=("ts", "receipt_ts", "update_id"),
    sort_columns=("update_id",),
    dedup_key=None,  # book integrity comes from sequence numbers and snapshots, not from keys
    make_flush_transform=lambda root, config: FlushCheckpoints(root, LAYOUT),
)
