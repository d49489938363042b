"""Time-weighted average prices per (symbol, bucket) over trades in any order, in bounded memory.

Each trade's price holds from its `ts` until the next trade of the same symbol and bucket (ties on
`ts` ordered by receipt time), the bucket's last until the bucket ends (or `end`). The weights need
each trade's successor, i.e. an order: one stable argsort of an int64 key that packs the symbol above
the time (numpy's timsort runs in near-linear time on the query's output, which arrives as the files'
time-sorted runs; a DuckDB window `lead() OVER (PARTITION BY .. ORDER BY ts, receipt_ts)` sorted the
same rows four times slower). Everything after the sort walks the sorted rows in chunks of `CHUNK`
and keeps per-bucket partial sums, merged at the end: no temporary as long as the rows but the key,
the order and the prices (a dozen whole-length temporaries, ~1 GB for 10M trades, were the slowest and
most variable part of a call, the more so right after another large computation had freed its memory).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CHUNK", "time_weighted"]

CHUNK = 1 << 18  # sorted rows per step: small arrays, reused by the allocator from step to step

# (sorted positions) -> (symbol codes, times) of the rows at those positions
Lookup = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def time_weighted(rows: pa.Table, step: int | None, end_ns: int | None) -> pa.Table:
    """`s, bucket, twap, trades` from the trades' `s` (int32 code), `t`, `r` (ns) and `price`, sorted by
    (s, bucket). `step` None: one bucket (0) per symbol, whose last trade holds until `end_ns` (no
    weight without it). A bucket whose trades all share one instant gets their plain mean."""
    n = rows.num_rows
    if not n:
        return _table([np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)])
    order, lookup = _ordered(rows)
    price = _numpy(rows.column("price"), np.float64)
    parts = [_chunk(order[a:a + CHUNK + 1], min(CHUNK, n - a), lookup, price, step, end_ns)
             for a in range(0, n, CHUNK)]
    s, bucket, weight, weighted, plain, trades = (np.concatenate(c) for c in zip(*parts))
    first = np.ones(len(s), bool)  # a bucket cut by a chunk boundary: its partial sums are added up
    first[1:] = (s[1:] != s[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(first)
    weight, weighted, plain, trades = (np.add.reduceat(x, starts) for x in (weight, weighted, plain, trades))
    value = np.where(weight > 0, weighted / np.where(weight > 0, weight, 1), plain / trades)
    return _table([s[starts], bucket[starts], value, trades])


def _table(cols: list[np.ndarray]) -> pa.Table:
    return pa.table({"s": pa.array(cols[0], pa.int32()), "bucket": pa.array(cols[1], pa.int64()),
                     "twap": pa.array(cols[2], pa.float64()), "trades": pa.array(cols[3], pa.int64())})


def _numpy(col: pa.ChunkedArray, dtype: type) -> np.ndarray:
    return col.to_numpy().astype(dtype, copy=False)


def _ordered(rows: pa.Table) -> tuple[np.ndarray, Lookup]:
    """The stable order of the rows by (s, t, r), and how to read s and t at sorted positions."""
    low, high = (int(v.as_py()) for v in pc.min_max(rows.column("t")).values())
    bits = (high - low).bit_length()
    if bits + int(pc.max(rows.column("s")).as_py()).bit_length() > 62:  # centuries of ns: no packed key
        s, t = _numpy(rows.column("s"), np.int64), _numpy(rows.column("t"), np.int64)
        order = np.lexsort((_numpy(rows.column("r"), np.int64), t, s))
        return order, lambda idx: (s[idx], t[idx])
    key = np.empty(rows.num_rows, np.int64)
    at = 0
    for batch in rows.select(["s", "t"]).to_batches():  # per batch: no whole-length temporaries
        part = key[at:at + batch.num_rows]
        np.left_shift(batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64), bits, out=part)
        np.bitwise_or(part, batch.column(1).to_numpy(zero_copy_only=False) - low, out=part)
        at += batch.num_rows
    order = np.argsort(key, kind="stable")
    _break_ties(order, key, rows.column("r"))
    mask = (1 << bits) - 1

    def lookup(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = key[idx]
        return k >> bits, (k & mask) + low
    return order, lookup


def _break_ties(order: np.ndarray, key: np.ndarray, receipts: pa.ChunkedArray) -> None:
    """Rows with equal (s, t) keep their place as a group; within each, ordered by receipt time."""
    tied = []
    for a in range(0, len(order), CHUNK):
        k = key[order[a:a + CHUNK + 1]]
        same = np.flatnonzero(k[1:] == k[:-1]) + a
        if len(same):
            tied.append(same)
            tied.append(same + 1)
    if not tied:
        return
    positions = np.unique(np.concatenate(tied))
    inside = order[positions]
    r = pc.take(receipts, pa.array(inside)).to_numpy(zero_copy_only=False).astype(np.int64)
    order[positions] = inside[np.lexsort((r, key[inside]))]


def _chunk(idx: np.ndarray, m: int, lookup: Lookup, price: np.ndarray, step: int | None,
           end_ns: int | None) -> tuple[np.ndarray, ...]:
    """Partial sums of the `m` sorted rows at `idx[:m]` (`idx[m]`, if present, is the next row):
    per (s, bucket) run, its s and bucket, sum of weights, of price * weight, of prices, and count."""
    s, t = lookup(idx)
    bucket = np.zeros(len(t), np.int64) if step is None else t // step * step
    change = (s[1:] != s[:-1]) | (bucket[1:] != bucket[:-1])  # row j+1 starts a new bucket
    last = np.ones(m, bool)  # the last row of a bucket holds until the bucket ends; the next chunk's
    last[:len(change)] = change  # first row (when there is one) decides for this chunk's last row
    weight = np.empty(m, np.int64)  # each row holds until the next one...
    np.subtract(t[1:], t[:-1], out=weight[:len(t) - 1])
    ends = np.flatnonzero(last)
    if step is None:
        until = t[ends] if end_ns is None else np.full(len(ends), end_ns, np.int64)
    else:
        until = bucket[ends] + step if end_ns is None else np.minimum(bucket[ends] + step, end_ns)
    weight[ends] = until - t[ends]  # ...except the last of its bucket
    starts = np.r_[0, ends[:-1] + 1] if len(ends) and ends[-1] == m - 1 else np.r_[0, ends + 1]
    p = price[idx[:m]]
    trades = np.diff(np.append(starts, m))
    return (s[starts].astype(np.int32), bucket[starts], np.add.reduceat(weight, starts),
            np.add.reduceat(p * weight, starts), np.add.reduceat(p, starts), trades)
