"""Rows put in (group, time) order by their runs, not one by one.

A lake table read in its files' order comes as a few long runs per key combination (the files are by
exchange/symbol/date), each already by time; live rows of several streams come interleaved. `runs`
finds where a run of equal keys (`key_changes`, also used by `resample`) and non-decreasing times
starts, `order` sorts the runs by (group, first time) into a `Plan` of pieces, each of one group and
by time (rows are sorted one by one only when two runs of a group overlap in time), and
`arranged`/`moved` apply a plan to a table (long runs as zero-copy slices, the rows between them
gathered) or to a numpy array.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Plan", "arranged", "gathered", "key_changes", "moved", "order", "runs"]

Plan = tuple[np.ndarray, np.ndarray]  # (first row, length) of each run of rows, in their new order


def key_changes(table: pa.Table, keys: Sequence[str], *, nulls_equal: bool) -> np.ndarray:
    """For each row but the first, whether its `keys` differ from the row before's (adjacent-row
    comparisons, no hashing). `nulls_equal`: two NULLs in a row are the same key (as GROUP BY has
    them), else a NULL always starts anew (as a join has them: NULL = NULL is not true)."""
    n = table.num_rows
    change = np.zeros(max(n - 1, 0), bool)
    for key in keys if n > 1 else ():
        column = table.column(key)
        a, b = column.slice(1), column.slice(0, n - 1)
        differ = pc.not_equal(a, b).fill_null(True).to_numpy()
        if nulls_equal:
            differ &= ~pc.and_(a.is_null(), b.is_null()).to_numpy()
        change |= differ
    return change


def runs(table: pa.Table, keys: list[str], t: np.ndarray,
         steady: Sequence[tuple[int, frozenset[str]]] = ()) -> np.ndarray:
    """The first row of each run of rows with the same keys and times not decreasing (a row with a
    NULL key starts a run of its own). The lake's files make a few long runs per key combination.
    `steady` (as `table_read.Rows` has it): stretches of rows in order, each with the columns known to
    have one value in all of it; keys are compared row by row only in stretches where some key is
    not among them, and each stretch starts a run."""
    n = table.num_rows
    if n == 0:
        return np.zeros(0, np.int64)
    change = t[1:] < t[:-1]
    at = 0
    for rows, same in steady or ((n, frozenset()),):
        if keys and not same.issuperset(keys):
            change[at:at + rows - 1] |= key_changes(table.slice(at, rows), keys, nulls_equal=False)
        if at:
            change[at - 1] = True
        at += rows
    return np.concatenate([[0], np.flatnonzero(change) + 1])


def order(heads: np.ndarray, codes: np.ndarray, t: np.ndarray) -> tuple[Plan, np.ndarray]:
    """How to put rows in (group, time) order, stably: a plan of pieces, each of one group and by
    time, and the group of each piece. `heads` start runs of one group (`codes`) each already by
    time. Runs are sorted by (group, first time); only when two runs of a group overlap in time are
    the rows themselves sorted."""
    n = len(t)
    lengths = np.diff(np.append(heads, n))
    first, last = t[heads], t[heads + lengths - 1]
    by = np.lexsort((first, codes))
    codes_by, lengths_by = codes[by], lengths[by]
    if ((codes_by[1:] == codes_by[:-1]) & (last[by][:-1] > first[by][1:])).any():
        g = np.repeat(codes, lengths)
        rows = np.lexsort((t, g))
        sorted_g = g[rows]
        cuts = np.flatnonzero((np.diff(rows) != 1) | (sorted_g[1:] != sorted_g[:-1])) + 1
        bounds = np.concatenate([[0], cuts, [n]])
        return (rows[bounds[:-1]], np.diff(bounds)), sorted_g[bounds[:-1]]
    return (heads[by], lengths_by), codes_by


def _rows(plan: Plan) -> np.ndarray:
    """The row numbers a plan lists, one by one."""
    starts, lengths = plan
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


def _keeps(plan: Plan) -> bool:
    """Whether the plan leaves every row where it is."""
    starts, lengths = plan
    return bool((starts == np.cumsum(lengths) - lengths).all())


def moved(values: np.ndarray, plan: Plan) -> np.ndarray:
    """`values` in the plan's order (`values` itself when the plan moves no row)."""
    starts, lengths = plan
    if _keeps(plan):
        return values
    if len(starts) > 64:
        return values[_rows(plan)]
    return np.concatenate([values[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())])


def arranged(table: pa.Table, plan: Plan, run: int = 4096) -> pa.Table:
    """`table`'s rows in the plan's order: every run of at least `run` rows a zero-copy slice, only
    the rows between such runs gathered (`table` itself when the plan moves no row)."""
    starts, lengths = plan
    if _keeps(plan):
        return table
    chunks, done = [], 0
    for r in np.flatnonzero(lengths >= run).tolist():
        if done < r:
            chunks.append(gathered(table, _rows((starts[done:r], lengths[done:r]))))
        chunks.append(table.slice(int(starts[r]), int(lengths[r])))
        done = r + 1
    if done < len(starts):
        chunks.append(gathered(table, _rows((starts[done:], lengths[done:]))))
    return pa.concat_tables(chunks) if len(chunks) > 1 else chunks[0]


def gathered(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """`table.take(rows)` (one chunk), gathering from each chunk the rows it holds. Arrow's take of
    a table in many chunks (one per file read) first concatenates every chunk, even for one row."""
    batches = table.to_batches()  # one chunking for all columns, zero-copy
    if len(batches) < 2:
        return table.take(rows)
    starts = np.cumsum([0] + [b.num_rows for b in batches[:-1]])
    which = np.searchsorted(starts, rows, side="right") - 1
    by = np.argsort(which, kind="stable")
    cuts = np.flatnonzero(np.diff(which[by])) + 1
    pieces = []
    for part in np.split(by, cuts):  # the rows of one chunk each, in their order
        if len(part):
            chunk = which[part[0]]
            pieces.append(batches[chunk].take(rows[part] - starts[chunk]))
    got = pa.Table.from_batches(pieces, table.schema).combine_chunks()
    return got if (np.diff(which) >= 0).all() else got.take(np.argsort(by))
