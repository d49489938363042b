"""`l2_book`: price-level order books stored so they can be replayed (cryptofeed `OrderBook`, L2).

One row per level. `update_id` groups the rows of one cryptofeed callback; ids grow in arrival order
across the lake (a counter seeded from the wall clock in ns and above every committed id, so a
reopened lake continues above them). `kind` says what a group is:

- `snapshot`: a book cryptofeed delivered without a delta (the exchange's snapshot);
- `delta`: the levels one update changed, `size` 0 = level removed (a level repeated within one
  update keeps its last row);
- `checkpoint`: a full book written by us, with the `update_id` of the update it follows. The
  callback writes one with a key's first update in a session, every `book_snapshot_interval` seconds
  of data time, on every change of UTC day, and when a level deeper than those stored could reach the
  top `book_depth`; the flush writes one at the start of every file whose first update is a delta.

Full books (snapshots, checkpoints) hold the top 2 x `book_depth` levels a side; an empty group (an
empty book or delta) is one row with side/price/size NULL. The book after update U: the last full
group with id B <= U, then the deltas with B < id <= U, a level taking the size of its last row (0 or
absent: no level). That is exact to `book_depth` levels a side: the capture (BookCapture) writes a
checkpoint before an unknown deeper level could enter them. Files are sorted by `update_id`, so each
one, read alone, replays from its first rows.

`ts` is the exchange's time, or the receipt time when the exchange sends none (BitMEX, Kraken,
Kraken Futures, dYdX, Gemini, Bitfinex, and the REST snapshots of Binance, Binance US, Gate.io).
Validation (records.py policy): a NaN, infinite or non-positive price, or a NaN, infinite or negative
size, rejects that row with its reason (counted per exchange; the update's other rows are kept).
A crossed full book (best bid >= best ask) is kept as delivered and logged, and `top_of_book` flags
it (`crossed`): dropping it would make every later delta of the key apply to the wrong book.
"""
from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from . import TableSpec
from ._book_capture import BookCapture, BookLayout, book_schema, make_converter
from ._book_flush import FlushCheckpoints, first_update_id

__all__ = ["LAYOUT", "SCHEMA", "SPEC", "convert"]


def _copy(side: Any, depth: int) -> tuple[tuple, Sequence]:
    """The top `depth` levels of a side of cryptofeed's book (price -> size), best first."""
    levels = side.keys()[:depth]
    return tuple([(p, side[p]) for p in levels]), levels


SCHEMA = book_schema("l2_book", [
    pa.field("price", pa.float64()),  # the level's price; NULL on an empty group's row
    pa.field("size", pa.float64()),   # the level's new size, 0 = removed; NULL on an empty group's row
])

LAYOUT = BookLayout(
    table="l2_book", schema=SCHEMA, level_columns=("price", "size"), key_columns=("side", "price"),
    price_index=0, copy=_copy, touched=lambda rows, side: rows,  # (price, size): a size of 0 removes
)

convert = make_converter(LAYOUT)

SPEC = TableSpec(
    name="l2_book", schema=SCHEMA, convert=convert,
    make_capture=lambda config: BookCapture(LAYOUT, config.book_depth, config.book_snapshot_interval,
                                            first_update_id(config.root, "l2_book")),
    dictionary_columns=("exchange", "symbol", "kind", "side", "price"),
    delta_columns=("ts", "receipt_ts", "update_id"),
    sort_columns=("update_id",),
    dedup_key=None,  # book integrity comes from sequence numbers and snapshots, not from keys
    make_flush_transform=lambda root, config: FlushCheckpoints(root, LAYOUT),
)
