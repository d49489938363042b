"""`resample` of one stream of a lake table (one exchange, one symbol) over Arrow columns.

The stream's rows are read over one snapshot (`table_read.py`: pyarrow, files then live rows); they
come sorted by time from its partition files, so each bucket's last row is the one before the next
bucket's first (`columnar_bars.buckets`: one searchsorted per bucket edge), and those rows are taken
whole. The SQL path's answer for a stream is the same (its `arg_max` of each bucket's row, ties on
time broken by the later receipt); the SQL path still answers for several streams, other keys, more
rows than `MAX_ROWS`, or times before 1970 (where SQL's `//` truncates toward zero and this floors).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ._sqlargs import Filters
from .columnar_bars import MAX_ROWS, buckets, ordered
from .runs import gathered
from .table_read import Read, read_each

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["last_rows"]


def last_rows(lake: "Lake | None", table: str, names: list[str], consts: dict[str, str], f: Filters, on: str,
              tie: str | None, step: int) -> pa.Table | None:
    """Per non-empty bucket `[b, b + step)` of the stream's `on`, in time order: `consts` (the
    stream's key columns, one value each), its last row's other columns but `on` (by `on`, then
    `tie`), `__cl_b` (b) and `__cl_g` (the group: 1). None: let SQL answer."""
    read = tuple(c for c in names if c not in consts)
    got = read_each([Read(table, read, read, f, on, timed=True)], lake, limit=MAX_ROWS)
    if got is None:
        return None
    rows = got[0].table
    t = _ns(rows.column(on))
    if len(t) and t.min() < 0:
        return None
    order, ties = None, None if tie is None else _ns(rows.column(tie))
    if not (t[1:] >= t[:-1]).all() or (ties is not None and not ordered(t, ties)):
        order = np.lexsort((ties, t)) if ties is not None else np.argsort(t, kind="stable")
        t = t[order]
    first, bucket = buckets(t, step)
    last = np.r_[first[1:] - 1, len(t) - 1] if len(first) else first
    taken = gathered(rows, last if order is None else order[last])
    out = {c: pa.repeat(pa.scalar(v, pa.large_string()), len(last)) for c, v in consts.items()}
    out.update({c: taken.column(c) for c in names if c not in consts and c != on})
    out["__cl_b"] = pa.array(bucket, pa.int64())
    out["__cl_g"] = pa.array(np.ones(len(last), np.int64))
    return pa.table(out)


def _ns(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp column as int64 ns, NULL as the smallest (SQL's order key puts a NULL tie first)."""
    ns = column.cast(pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
    return (ns.fill_null(np.iinfo(np.int64).min) if ns.null_count else ns).to_numpy()
