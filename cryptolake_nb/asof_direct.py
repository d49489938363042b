"""The as-of join of two lake tables: both sides read over one snapshot (`table_read.py`: pyarrow
straight from the Parquet files, plus the live rows), then matched by polars' as-of join on the
time columns (and an integer per key combination).

DuckDB's ASOF JOIN sorts the left rows with all their columns for its own partitions, and an ORDER
BY sorts them again. Here each side is read on its own, over one snapshot, in the files' order,
which the lake's partitions already make runs of one exchange/symbol by time; only the times (plus
one int64 group per row when keys are to match) are sorted and go into the match, polars merges them
and gathers the right columns, and the wide left rows are rearranged as zero-copy slices of their
runs. Used by `asof.asof_join` for two tables; frames go through DuckDB's ASOF in a private connection.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .runs import Plan, arranged, gathered, moved, order, runs
from .table_read import Read, read_each

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["join_tables"]

_DENSE = 2**31  # key combinations beyond this are renumbered densely before the next key is added


def join_tables(reads: tuple[Read, Read], on: str, keys: list[str], out_names: list[str], tol: int | None,
                lake: "Lake | None") -> pa.Table:
    """`<left columns>, <right columns as out_names>, staleness` for the reads of the left table (its
    columns) and of the right (`keys`, `__cl_c0..n`, `__cl_t`: its `on`), rows by `keys` (NULL last)
    then `on`. A column with one value in a file (its exchange and symbol) is made by the reader,
    not decoded, and the reader says so (`Rows.steady`): keys are compared row by row only where a
    file's are not one-valued and among the live rows.

    Both sides are read in the files' order: the lake's files are already by exchange/symbol/date, so
    a side is usually a few long runs per key combination (with no key, one stream: usually one run),
    each already by time. Each row's key combination becomes one int64 (numbered in key order, once
    per run), the runs are sorted into (keys, time) order (`runs.py`), and the output is assembled
    from zero-copy slices of them; only rows out of place (e.g. live rows of several streams
    interleaved) are gathered.
    """
    lrows, rrows = read_each(reads, lake)
    left, right = lrows.table, rrows.table
    lt, unknown = _times(left, on)
    rt, _ = _times(right, "__cl_t")  # its WHERE keeps only rows with a time
    lheads, rheads = runs(left, keys, lt, lrows.steady), runs(right, keys, rt, rrows.steady)
    if keys:
        lcodes, rcodes = _dense(*_groups(gathered(left.select(keys), lheads), gathered(right.select(keys), rheads), keys))
    else:  # one stream each side: its runs are only where the time goes back
        lcodes, rcodes = np.zeros(len(lheads), np.int64), np.zeros(len(rheads), np.int64)
    lplan, lcodes = order(lheads, lcodes, lt)
    rplan, rcodes = order(rheads, rcodes, rt)
    folded = _folded(lt, unknown, lplan, lcodes, rt, rplan, rcodes) if keys else None
    left, right = arranged(left, lplan), arranged(right, rplan)
    groups = None
    if folded is None:
        lt, rt, span = moved(lt, lplan), moved(rt, rplan), None
        unknown = unknown if unknown is False else moved(unknown, lplan)
        if keys:
            groups = np.repeat(lcodes, lplan[1]), np.repeat(rcodes, rplan[1])
    else:  # rows without a time are already placed where nothing matches them
        (lt, rt, span), unknown = folded, False
    values = right.select([f"__cl_c{i}" for i in range(len(out_names))])
    matched = _match(lt, unknown, values, rt, tol, groups, span)
    out = {c: left.column(c) for c in left.column_names}
    for i, name in enumerate(out_names):
        column, kind = matched.column(f"__cl_c{i}"), values.schema.field(f"__cl_c{i}").type
        out[name] = column if column.type == kind else column.cast(kind)  # polars' own types back to the read ones
    out["staleness"] = matched.column("staleness").cast(pa.duration("ns"))
    return pa.table(out)


def _match(lt: np.ndarray, unknown: np.ndarray | bool, right: pa.Table, rt: np.ndarray, tol: int | None,
           groups: tuple[np.ndarray, np.ndarray] | None, span: int | None) -> pa.Table:
    """For each left time `lt` (`unknown`: those that have none), the row of `right` (times `rt`) of
    the same group with the latest time <= it, if at most `tol` older: `right`'s columns and
    `staleness` (int64 ns), NULL where there is no such row. polars' backward as-of join: equal
    times match, and its tolerance is inclusive. Rows come sorted by time, or by (group, time) with
    `groups` (dense numbers; -1 on the right matches nothing); or, with `span`, the times are group
    and time folded into one sorted int64 (`_folded`), two of which are never within `span` unless
    they are of one group."""
    if span is not None:  # farther apart than `span`: another group, or a left row without a time
        tol = span if tol is None else min(tol, span)
    times = pa.array(lt, mask=unknown) if unknown is not False else lt  # no time: no match
    by = [] if groups is None else [pl.Series("__cl_g", groups[0])]
    left_times, right_times = pl.Series("__cl_t", times), pl.Series("__cl_t", rt)
    if not by:  # sorted as a whole; with `by` only within each group (all polars needs then)
        left_times, right_times = left_times.set_sorted(), right_times.set_sorted()
    left = pl.DataFrame([left_times, *by])
    columns = pl.from_arrow(right).get_columns() if right.num_columns else []  # columns=[]: staleness only
    frame = pl.DataFrame([*columns, right_times, right_times.alias("__cl_r"),
                          *([pl.Series("__cl_g", groups[1])] if by else [])])
    joined = left.lazy().join_asof(frame.lazy(), on="__cl_t", by="__cl_g" if by else None, strategy="backward",
                                   tolerance=tol, check_sortedness=False)
    staleness = (pl.col("__cl_t") - pl.col("__cl_r")).alias("staleness")
    return joined.select([*right.column_names, staleness]).collect().to_arrow()


def _folded(lt: np.ndarray, unknown: np.ndarray | bool, lplan: Plan, lcodes: np.ndarray, rt: np.ndarray,
            rplan: Plan, rcodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Each side's rows in its plan's order (pieces of one group, each by time; `lcodes`/`rcodes`:
    their groups) as one int64 of group and time, `(group + 1) * step + (time - earliest)`, sorted as
    (group, time) is, and `span`, the most two times of one group can differ; None when that does
    not fit in int64. `step` > 2 * span, so two rows of different groups always differ by more than
    `span`, and a left row without a time, put at `step - 1` in its group, by more than `span` from
    any right row of it: neither is ever within the tolerance of a match."""
    if not len(rt) or unknown is not False and unknown.all() or not len(lt):
        return None
    if unknown is False:  # each piece is by time: its ends are its extremes
        lo, hi = _ends(lt, lplan)
    else:
        known = lt[~unknown]
        lo, hi = int(known.min()), int(known.max())
    rlo, rhi = _ends(rt, rplan)
    lo, hi = min(lo, rlo), max(hi, rhi)
    span = hi - lo
    step = 2 * span + 2
    if (max(int(lcodes.max()), int(rcodes.max())) + 2) * step >= 2**62:
        return None
    if unknown is not False:
        lt = np.where(unknown, lo + step - 1, lt)
    return _pieces(lt, lplan, lcodes, step, lo), _pieces(rt, rplan, rcodes, step, lo), span


def _ends(t: np.ndarray, plan: Plan) -> tuple[int, int]:
    """The earliest and latest of `t`, whose plan's pieces are each by time."""
    starts, lengths = plan
    return int(t[starts].min()), int(t[starts + lengths - 1].max())


def _pieces(t: np.ndarray, plan: Plan, codes: np.ndarray, step: int, lo: int) -> np.ndarray:
    """`(code + 1) * step + (t - lo)` for the rows of each piece of `plan`, in the plan's order: piece
    by piece into one array when there are few (no copy of `t` moved, no group per row), else by
    whole arrays. The sum fits in int64 (checked by the caller); wrapping in between does not matter."""
    starts, lengths = plan
    add = (codes + 1) * step - lo
    if len(starts) > 256:
        return moved(t, plan) + np.repeat(add, lengths)
    out = np.empty(len(t), np.int64)
    at = 0
    for s, n, a in zip(starts.tolist(), lengths.tolist(), add.tolist()):
        np.add(t[s:s + n], a, out=out[at:at + n])
        at += n
    return out


def _groups(left: pa.Table, right: pa.Table, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per row for its combination of the `keys` columns, equal across the two sides for
    equal values and numbered in the keys' order (a NULL after every value, as ORDER BY puts it).
    Values are those of the left side: a right row with a value the left lacks, or with a NULL key,
    gets -1 and matches nothing; a left row with a NULL key has a number no right row has (NULL = NULL
    is not true in SQL)."""
    lg, rg = np.zeros(left.num_rows, np.int64), np.zeros(right.num_rows, np.int64)
    rmiss = np.zeros(right.num_rows, bool)
    size = 1
    for key in keys:
        lk, rk = left.column(key), right.column(key)
        rk = rk if rk.type == lk.type else rk.cast(lk.type)
        values = pc.drop_null(pc.unique(lk))
        values = values.take(pc.sort_indices(values))
        base = len(values) + 1  # the last number is NULL's
        if size * base >= _DENSE:  # keep the combined number small: renumber densely (np.unique keeps the order)
            _, dense = np.unique(np.concatenate([lg, rg]), return_inverse=True)
            lg, rg, size = dense[:len(lg)].astype(np.int64), dense[len(lg):].astype(np.int64), int(dense.max(initial=0)) + 1
        at = pc.index_in(lk, value_set=values, skip_nulls=True)
        lg *= base
        lg += (at.fill_null(len(values)) if at.null_count else at).to_numpy()
        at = pc.index_in(rk, value_set=values, skip_nulls=True)
        if at.null_count:
            rmiss |= at.is_null().to_numpy(zero_copy_only=False)
            at = at.fill_null(0)
        rg *= base
        rg += at.to_numpy()
        size *= base
    rg[rmiss] = -1
    return lg, rg


def _dense(lcodes: np.ndarray, rcodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group numbers made dense over the left side's (order kept); a right number the left lacks is -1."""
    present = np.unique(lcodes)
    at = np.minimum(np.searchsorted(present, rcodes), max(len(present) - 1, 0))
    found = (present[at] == rcodes) if len(present) else np.zeros(len(rcodes), bool)
    return np.searchsorted(present, lcodes), np.where(found, at, -1)


def _times(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray | bool]:
    """The time column `name` as int64 ns (a view of the same buffers when it can be; a row without
    one gets the largest value, after every time) and which rows have none (False when all do)."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type):  # a view of the same buffers, in the unit the filters use
        col = col.cast(pa.timestamp("ns", tz=col.type.tz)).cast(pa.int64())
    unknown: np.ndarray | bool = False
    if col.null_count:
        unknown = col.is_null().to_numpy(zero_copy_only=False)
        col = col.fill_null(np.iinfo(np.int64).max)  # sorts last; `unknown` keeps it from matching
    return col.to_numpy(), unknown
