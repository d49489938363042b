"""Shared by the book tables (l2_book, l3_book): the schema, the copy made inside the cryptofeed
callback (BookCapture) and the conversion of copied updates into one row per level at seal time.
The design is described in tables/l2_book.py."""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from ..records import Converted, Reject, decimals_to_array, partition_reasons, plain, seconds_to_float, ts_array
from ..schema import make_schema

__all__ = ["KEEP", "KINDS", "SIDES", "BookCapture", "BookLayout", "book_schema", "make_converter"]

log = logging.getLogger(__name__)

KINDS = ("snapshot", "delta", "checkpoint")
_SNAPSHOT, _DELTA, _CHECKPOINT = 0, 1, 2
SIDES = ("bid", "ask")  # cryptofeed's BID and ASK
_DAY = 86_400.0
KEEP = 2  # full books keep KEEP * book_depth levels a side; book_depth are served exactly


def book_schema(table: str, level_fields: list[pa.Field]) -> pa.Schema:
    return make_schema(table, [
        pa.field("update_id", pa.int64(), nullable=False),  # groups the rows of one cryptofeed callback
        # (a checkpoint carries the id of the update it follows); grows in arrival order, sessions included
        pa.field("kind", pa.string(), nullable=False),      # snapshot (a full book from the exchange) |
        # delta (what one update changed) | checkpoint (a full book the lake wrote)
        pa.field("side", pa.string()),                      # bid | ask; NULL on an empty group's row
        *level_fields,
        pa.field("sequence_number", pa.int64()),            # the update's sequence number from the
        # exchange (cryptofeed's `sequence_number`), on each row of its group; NULL when it sends none
        pa.field("checksum", pa.int64()),                   # the book checksum the exchange sent with
        # the update (cryptofeed's `checksum`: Kraken, OKX); NULL when it sends none
    ])


@dataclass(frozen=True)
class BookLayout:
    """What differs between L2 and L3. Rows travel as tuples shaped like cryptofeed's delta entries:
    L2 (price, size), L3 (order id, price, size); the first element is the key within a side."""

    table: str
    schema: pa.Schema
    level_columns: tuple[str, ...]   # the row tuple's columns, in order
    key_columns: tuple[str, ...]     # what a row updates in a book: a level or an order
    price_index: int                 # where the price is in a row tuple
    copy: Callable[[Any, int], tuple[tuple, Sequence]]  # (book side, levels) -> (rows, level prices)
    touched: Callable[[tuple, Any], Any]  # (delta rows, book side) -> (price, level still there?) pairs


# -- in the cryptofeed callback ------------------------------------------------------------------

class BookCapture:
    """Copies a book update inside the callback: cryptofeed mutates its OrderBook afterwards.

    A delta costs a tuple of its entries; a full book, its top `KEEP * depth` levels a side. Per
    (exchange, symbol) it keeps the *horizon*: the deepest level of the last full book stored, and
    the set of prices at or above it that the stored rows know. Every level at or above the horizon
    is known, so the stored book is exact to `depth` while that set holds the book's top `depth`
    levels; when it holds fewer, a deeper level could surface and the capture writes a checkpoint.
    Keeping twice the served depth leaves room for `depth` levels to go before that happens. It also
    writes one with the first update of a key, every `interval` seconds of data time, and whenever an
    update's UTC day is not the previous update's: then every day's file of a key can begin with a
    full book.

    Data time is the exchange's `timestamp`, else `receipt` when the caller passes it, else the wall
    clock (the lake's callback passes only the book today).
    """

    def __init__(self, layout: BookLayout, depth: int, interval: float, first_id: int) -> None:
        self._layout = layout
        self._depth = depth
        self._keep = KEEP * depth
        self._interval = interval
        self._ids = itertools.count(first_id)
        # key -> [time of the last full book, bid horizon, bid known, ask horizon, ask known, day start, day end]
        self._state: dict[tuple[str, str], list] = {}

    def __call__(self, book: Any, receipt: float | None = None) -> Any:
        try:
            return self._capture(book, receipt)
        except Exception:  # not a book we understand: the converter rejects it, with the reason
            self._state.pop((getattr(book, "exchange", None), getattr(book, "symbol", None)), None)
            return book

    def _capture(self, book: Any, receipt: float | None) -> tuple:
        exchange, symbol, ts = book.exchange, book.symbol, book.timestamp
        now = ts if ts is not None else receipt if receipt is not None else time.time()
        uid = next(self._ids)
        delta = book.delta
        if delta is None:
            b, a = self._full(exchange, symbol, now, book.book)
            return (uid, exchange, symbol, ts, book.sequence_number, book.checksum, _SNAPSHOT, b, a, None, None)
        db, da = delta.get("bid"), delta.get("ask")
        db, da = tuple(db) if db else (), tuple(da) if da else ()
        state = self._state.get((exchange, symbol))
        if (state is None or now - state[0] >= self._interval or not state[5] <= now < state[6]
                or not self._holds(state, book.book, db, da)):
            cb, ca = self._full(exchange, symbol, now, book.book)
        else:
            cb = ca = None
        return (uid, exchange, symbol, ts, book.sequence_number, book.checksum, _DELTA, db, da, cb, ca)

    def _full(self, exchange: str, symbol: str, now: float, levels: Any) -> tuple[tuple, tuple]:
        keep, copy = self._keep, self._layout.copy
        b, b_levels = copy(levels.bids, keep)
        a, a_levels = copy(levels.asks, keep)
        day = now // _DAY * _DAY
        self._state[(exchange, symbol)] = [
            now, b_levels[-1] if len(b_levels) >= keep else None, set(b_levels),
            a_levels[-1] if len(a_levels) >= keep else None, set(a_levels), day, day + _DAY,
        ]
        return b, a

    def _holds(self, state: list, levels: Any, db: tuple, da: tuple) -> bool:
        """Update the known sets with a delta; False if a side's top `depth` may now hold unknown levels."""
        touched = self._layout.touched
        for horizon, known, side, rows, bid in ((state[1], state[2], levels.bids, db, True),
                                                (state[3], state[4], levels.asks, da, False)):
            if horizon is None:  # the last full book held the whole side: every level is known
                continue
            for price, present in touched(rows, side):
                try:
                    inside = price >= horizon if bid else price <= horizon
                except Exception:  # NaN and junk: rejected at seal time, never a level
                    continue
                if inside:
                    if present:
                        known.add(price)
                    else:
                        known.discard(price)
            if len(known) < min(self._depth, len(side)):
                return False
        return True


# -- at seal time ---------------------------------------------------------------------------------

def _ints(values: list[Any]) -> pa.Array:
    """Sequence numbers and checksums as int64; anything that is not an integer becomes NULL."""
    if all(v is None or type(v) is int for v in values):
        try:
            return pa.array(values, pa.int64())
        except (pa.ArrowException, OverflowError):
            pass
    out = []
    for v in values:
        try:
            out.append(None if v is None or isinstance(v, bool) else int(v))
        except (TypeError, ValueError):
            out.append(None)
    return pa.array([v if v is None or -2**63 <= v < 2**63 else None for v in out], pa.int64())


def _dict_array(codes: np.ndarray, words: Sequence[str], null_code: int | None = None) -> pa.Array:
    mask = codes == null_code if null_code is not None else None
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8), mask=mask), pa.array(words)).dictionary_decode()


def make_converter(layout: BookLayout) -> Callable[[Sequence[Any], Sequence[Any]], Converted]:
    """The converter of a book table: captured updates -> one row per level, bad rows rejected."""
    table = layout.table
    width = len(layout.level_columns)
    empty = (None,) * width

    def convert(objs: Sequence[Any], receipts: Sequence[Any]) -> Converted:
        items, item_receipts, rejects = [], [], []
        for obj, receipt in zip(objs, receipts):
            if type(obj) is tuple and len(obj) == 11 and type(obj[1]) is str and type(obj[2]) is str:
                items.append(obj)
                item_receipts.append(receipt)
            else:
                rejects.append(_malformed(table, obj, receipt))
        segs: list[tuple[int, int, int, int]] = []  # (item, kind, side, rows): a run of rows alike
        flat: list[tuple] = []
        crossed = []
        for i, o in enumerate(items):
            groups = ((o[6], o[7], o[8]),) if o[9] is None else ((o[6], o[7], o[8]), (_CHECKPOINT, o[9], o[10]))
            for kind, b, a in groups:
                if not b and not a:  # an empty book or delta still leaves its row
                    flat.append(empty)
                    segs.append((i, kind, 2, 1))
                    continue
                for side, rows in ((0, b), (1, a)):
                    if rows:
                        if kind == _DELTA and len(rows) > 1:
                            rows = _last_per_key(rows)
                        flat.extend(rows)
                        segs.append((i, kind, side, len(rows)))
                if kind != _DELTA and b and a and _crossed(layout, b, a):
                    crossed.append(o)
        if crossed:
            o = crossed[0]
            log.warning("%d crossed %s book(s) (best bid >= best ask) kept as delivered, e.g. %s %s update %d",
                        len(crossed), table, o[1], o[2], o[0])
        try:
            cols = [[r[j] for r in flat] for j in range(width)]
        except (IndexError, TypeError):  # rows of another shape: only a hand-made object carries them
            good = [_well_formed(o, width) for o in items]
            done = convert([o for o, g in zip(items, good) if g], [r for r, g in zip(item_receipts, good) if g])
            bad = [_malformed(table, o, r) for o, r, g in zip(items, item_receipts, good) if not g]
            return Converted(done.batch, rejects + bad + done.rejects)
        seg = np.asarray(segs, dtype=np.int64).reshape(-1, 4)
        row_obj = np.repeat(seg[:, 0], seg[:, 3])
        kind_codes = np.repeat(seg[:, 1], seg[:, 3])
        side_codes = np.repeat(seg[:, 2], seg[:, 3])
        ts = _seconds([o[3] for o in items])
        receipt = _seconds(item_receipts)
        ts = np.where(np.isfinite(ts), ts, receipt)
        receipt = np.where(np.isfinite(receipt), receipt, ts)
        take = pa.array(row_obj, pa.int64())
        columns: dict[str, Any] = {
            "exchange": pa.array([o[1] for o in items], pa.string()).take(take),
            "symbol": pa.array([o[2] for o in items], pa.string()).take(take),
            "update_id": pa.array(np.asarray([o[0] for o in items], dtype=np.int64)[row_obj], pa.int64()),
            "kind": _dict_array(kind_codes, KINDS),
            "side": _dict_array(side_codes, SIDES, null_code=2),
            "sequence_number": _ints([o[4] for o in items]).take(take),
            "checksum": _ints([o[5] for o in items]).take(take),
            "ts": ts_array(ts).take(take), "receipt_ts": ts_array(receipt).take(take),
        }
        for name, values in zip(layout.level_columns, cols):
            columns[name] = (decimals_to_array(list(values)) if name in ("price", "size")
                             else pa.array([None if v is None else str(v) for v in values], pa.string()))
        reasons = _reasons(columns, side_codes != 2, items, ts, row_obj)
        for r, reason in sorted(reasons.items()):
            o = items[row_obj[r]]
            raw = {"exchange": plain(o[1]), "symbol": plain(o[2]), "update_id": o[0],
                   "kind": KINDS[kind_codes[r]], "side": None if side_codes[r] == 2 else SIDES[side_codes[r]]}
            raw.update({name: plain(c[r]) for name, c in zip(layout.level_columns, cols)})
            raw.update({"timestamp": plain(o[3]), "receipt_timestamp": plain(item_receipts[row_obj[r]])})
            rejects.append(Reject(table, reason, raw))
        batch = pa.RecordBatch.from_arrays([columns[f.name] for f in layout.schema], schema=layout.schema)
        if reasons:
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[list(reasons)] = False
            batch = batch.filter(pa.array(keep))
        return Converted(batch, rejects)

    return convert


def _last_per_key(rows: tuple) -> tuple:
    """A delta's rows, one per level (L2) or order (L3): where one repeats, its last row wins."""
    try:
        return rows if len({r[0] for r in rows}) == len(rows) else tuple({r[0]: r for r in rows}.values())
    except TypeError:  # an unhashable key: the row is rejected at seal time anyway
        return rows


def _malformed(table: str, obj: Any, receipt: Any) -> Reject:
    return Reject(table, f"not a captured {table} update: {type(obj).__name__} (append through the lake's "
                  f"{table} callback)", {"object": repr(obj)[:500], "exchange": plain(getattr(obj, "exchange", None)),
                                         "receipt_timestamp": plain(receipt)})


def _well_formed(obj: Any, width: int) -> bool:
    """A tuple BookCapture made, with rows of the layout's width (anything else is rejected)."""
    if type(obj) is not tuple or len(obj) != 11 or type(obj[1]) is not str or type(obj[2]) is not str:
        return False
    try:
        return all(len(r) == width for rows in obj[7:] if rows for r in rows)
    except TypeError:
        return False


def _seconds(values: list[Any]) -> np.ndarray:
    """Float seconds (None -> NaN), fast when they are floats."""
    try:
        return pa.array(values, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowException, TypeError, ValueError):
        return seconds_to_float(values)


def _crossed(layout: BookLayout, bids: tuple, asks: tuple) -> bool:
    """Whether a full book's best bid (its first row) is at or above its best ask."""
    try:
        return bids[0][layout.price_index] >= asks[0][layout.price_index]
    except Exception:
        return False


def _reasons(columns: dict[str, pa.Array], level: np.ndarray, items: list, ts: np.ndarray,
             row_obj: np.ndarray) -> dict[int, str]:
    """Row -> why it cannot be stored: bad price or size, missing key, no time, unusable partition."""
    out: dict[int, str] = {}
    price = columns["price"].to_numpy(zero_copy_only=False).astype(np.float64)
    size = columns["size"].to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad_price = level & ~(np.isfinite(price) & (price > 0))
        bad_size = level & ~(np.isfinite(size) & (size >= 0))
    for r in np.flatnonzero(bad_price):
        out[int(r)] = f"price must be a finite positive number, got {float(price[r])!r}"
    for r in np.flatnonzero(bad_size):
        out.setdefault(int(r), f"size must be a finite number >= 0, got {float(size[r])!r}")
    if "order_id" in columns:
        for r in np.flatnonzero(level & columns["order_id"].is_null().to_numpy(zero_copy_only=False)):
            out.setdefault(int(r), "order_id is missing")
    bad_obj: dict[int, str] = {}
    for i in np.flatnonzero(~np.isfinite(ts)):
        bad_obj[int(i)] = "neither an exchange timestamp nor a receipt timestamp"
    partition_reasons([o[1] for o in items], [o[2] for o in items], bad_obj)
    if bad_obj:
        for r in np.flatnonzero(np.isin(row_obj, list(bad_obj))):
            out.setdefault(int(r), bad_obj[int(row_obj[r])])
    return out


