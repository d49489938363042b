"""The as-of join of two lake tables: both sides read by the lake's DuckDB over one snapshot, then
matched by polars' as-of join on the time columns (and an integer per key combination).

DuckDB's ASOF JOIN sorts the left rows with all their columns for its own partitions, then the
ORDER BY sorts them again. Here each side is read by its own statement over one snapshot
(`Lake.query_each`: the same live rows and files for both), already in the output's order, and only
the times (plus one int64 group per row when keys are to match) go into the match; polars merges
them in one pass and gathers the right columns. Used by `asof.asof_join` for two tables; frames go
through DuckDB's ASOF in a private connection.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ._sources import Part, run_each
from ._sqlargs import quote

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["join_tables"]

_DENSE = 2**31  # key combinations beyond this are renumbered densely before the next key is added


def join_tables(parts: list[Part], on: str, keys: list[str], left_names: list[str], consts: dict[str, str],
                out_names: list[str], tol: int | None, params: dict[str, Any], lake: "Lake | None") -> pa.Table:
    """`<left columns>, <right columns as out_names>, staleness` for the parts `l` (the left table's
    columns but `consts`) and `r` (`keys`, `__cl_c0..n`, `__cl_t`: its `on`), rows by `on` then
    `keys`. `consts`: left columns that hold one value, made here rather than read (DuckDB would
    copy the same string into the result for every row).

    With no key (one stream each side) the sides are read in the files' order, usually already by
    time (a side that is not gets sorted); with keys, DuckDB returns the left rows by `on` then keys
    (the output's order) and the right rows by time, and each row's key combination becomes one
    int64 for polars' `by`.
    """
    quoted = [quote(k) for k in keys]
    picked = "".join(f"{q}, " for q in quoted) + "".join(f"__cl_c{i}, " for i in range(len(out_names)))
    left_sql = "SELECT * FROM l" + (f" ORDER BY {', '.join([quote(on), *quoted])}" if keys else "")
    right_sql = f"SELECT {picked}__cl_t FROM r" + (" ORDER BY __cl_t" if keys else "")
    left, right = run_each([([parts[0]], left_sql), ([parts[1]], right_sql)], params, lake)
    left, lt, unknown = _by_time(left, on)
    right, rt, _ = _by_time(right, "__cl_t")  # its WHERE keeps only rows with a time
    groups = _groups(left, right, keys) if keys else None
    values = right.select([f"__cl_c{i}" for i in range(len(out_names))])
    matched = _match(lt, unknown, values, rt, tol, groups)
    out = {c: pa.repeat(pa.scalar(consts[c], pa.large_string()), len(lt)) if c in consts else left.column(c)
           for c in left_names}
    for i, name in enumerate(out_names):
        column, kind = matched.column(f"__cl_c{i}"), values.schema.field(f"__cl_c{i}").type
        out[name] = column if column.type == kind else column.cast(kind)  # polars' own types back to the read ones
    out["staleness"] = matched.column("staleness").cast(pa.duration("ns"))
    return pa.table(out)


def _match(lt: np.ndarray, unknown: np.ndarray | bool, right: pa.Table, rt: np.ndarray, tol: int | None,
           groups: tuple[np.ndarray, np.ndarray] | None) -> pa.Table:
    """For each sorted left time `lt` (`unknown`: those that have none), the row of `right` (times
    `rt`, sorted) of the same group with the latest time <= it, if at most `tol` older: `right`'s
    columns and `staleness` (int64 ns), NULL where there is no such row. polars' backward as-of
    join: equal times match, and its tolerance is inclusive."""
    times = pa.array(lt, mask=unknown) if unknown is not False else lt  # no time: no match
    by = [] if groups is None else [pl.Series("__cl_g", groups[0])]
    left = pl.DataFrame([pl.Series("__cl_t", times).set_sorted(), *by])
    right_times = pl.Series("__cl_t", rt).set_sorted()
    columns = pl.from_arrow(right).get_columns() if right.num_columns else []  # columns=[]: staleness only
    by_right = [] if groups is None else [pl.Series("__cl_g", groups[1])]
    frame = pl.DataFrame([*columns, right_times, right_times.alias("__cl_r"), *by_right])
    joined = left.lazy().join_asof(frame.lazy(), on="__cl_t", by="__cl_g" if groups else None, strategy="backward",
                                   tolerance=tol, check_sortedness=False)
    staleness = (pl.col("__cl_t") - pl.col("__cl_r")).alias("staleness")
    return joined.select([*right.column_names, staleness]).collect().to_arrow()


def _groups(left: pa.Table, right: pa.Table, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per row for its combination of the `keys` columns, equal across the two sides for
    equal values. Values are numbered by the left side's: a right row with a value the left lacks,
    or with a NULL key, gets -2 and a left row with a NULL key -1, so neither matches anything (NULL =
    NULL is not true in SQL)."""
    lg, rg = np.zeros(left.num_rows, np.int64), np.zeros(right.num_rows, np.int64)
    lnull, rnull = np.zeros(left.num_rows, bool), np.zeros(right.num_rows, bool)
    size = 1
    for key in keys:
        lk, rk = left.column(key), right.column(key)
        rk = rk if rk.type == lk.type else rk.cast(lk.type)
        values = pc.drop_null(pc.unique(lk))
        count = max(len(values), 1)
        if size * count >= _DENSE:  # keep the combined number small: renumber densely
            _, dense = np.unique(np.concatenate([lg, rg]), return_inverse=True)
            lg, rg, size = dense[:len(lg)].astype(np.int64), dense[len(lg):].astype(np.int64), int(dense.max(initial=0)) + 1
        for g, nulls, column in ((lg, lnull, lk), (rg, rnull, rk)):
            at = pc.index_in(column, value_set=values, skip_nulls=True)
            if at.null_count:
                nulls |= at.is_null().to_numpy(zero_copy_only=False)
                at = at.fill_null(0)
            g *= count
            g += at.to_numpy()
        size *= count
    lg[lnull], rg[rnull] = -1, -2
    return lg, rg


def _by_time(table: pa.Table, name: str) -> tuple[pa.Table, np.ndarray, np.ndarray | bool]:
    """`table` in the order of its time column `name` (stable; untouched when it already is; rows
    without a time last, as ORDER BY puts them), those times as int64 ns, and which rows have none
    (False when every row has one)."""
    col = table.column(name)
    if pa.types.is_timestamp(col.type):  # a view of the same buffers, in the unit the filters use
        col = col.cast(pa.timestamp("ns", tz=col.type.tz)).cast(pa.int64())
    unknown: np.ndarray | bool = False
    if col.null_count:
        unknown = col.is_null().to_numpy(zero_copy_only=False)
        col = col.fill_null(np.iinfo(np.int64).max)  # sorts last; `unknown` keeps it from matching
    t = col.to_numpy()
    if len(t) > 1 and not (t[1:] >= t[:-1]).all():
        order = np.argsort(t, kind="stable")
        table, t = table.take(order), t[order]
        unknown = unknown if unknown is False else unknown[order]
    return table, t, unknown
