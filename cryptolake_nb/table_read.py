"""Rows of lake tables, over one snapshot, read straight from their Parquet files by pyarrow.

A helper that returns rows rather than aggregates (an as-of join of two tables returns every left
row) spends most of its time getting the rows out of the files. DuckDB decodes them into its own
vectors, then copies every string once more into Arrow's buffers; pyarrow's reader decodes straight
into Arrow. `read_each` gives the rows a SELECT over the lake's views gives, with the same types:
- the same snapshot (`Lake.reading`: committed files, none deleted before the read ends, and the
  live rows; each row in exactly one);
- the same filters (symbols, exchange, a time range, rows with a time), checked on each row unless a
  file's own statistics show every row of it meets them;
- files in the snapshot's order, then the live rows.
When a file was written with another schema than the live rows' (schema evolution: the view matches
columns by name), the reads run as those SELECTs through the lake's DuckDB instead.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import TYPE_CHECKING, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._sqlargs import Filters, quote
from .errors import QueryError
from .lake import active_lake
from .pruning import weakest
from .view import Source, by_schema

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["Read", "Rows", "read_each"]


@dataclass(frozen=True)
class Read:
    """`SELECT <columns> AS <names> FROM <table> WHERE <filters> [AND <on> IS NOT NULL]`: `filters`
    bound `on` (its start_ns/end_ns), `timed` leaves out rows without an `on`."""

    table: str
    columns: tuple[str, ...]
    names: tuple[str, ...]
    filters: Filters
    on: str
    timed: bool = False

    def sql(self) -> str:
        shown = ", ".join(quote(c) if c == n else f"{quote(c)} AS {quote(n)}" for c, n in zip(self.columns, self.names))
        where = self.filters.where + (f" AND {quote(self.on)} IS NOT NULL" if self.timed else "")
        return f"SELECT {shown} FROM {self.table} WHERE {where}"


@dataclass(frozen=True)
class Rows:
    """A read's rows (`table`, under the read's names) and, when they were read by pyarrow, `steady`:
    for each stretch of them in order (one per file that gave rows, then the live rows if any), its
    row count and the columns that have one value, not NULL, in all of it (a file's exchange and
    symbol, say). Empty when not known (read through DuckDB, or no rows)."""

    table: pa.Table
    steady: tuple[tuple[int, frozenset[str]], ...] = ()


def read_each(reads: Sequence[Read], lake: "Lake | None" = None, *, limit: int | None = None) -> list[Rows] | None:
    """Each read's rows, all over one snapshot of the lake; None (nothing read) if the files and live
    rows they could come from hold more than `limit` rows."""
    lake = active_lake(lake)
    prune = weakest([r.filters.prune for r in reads])
    started = time.perf_counter()
    with lake.reading(tables=sorted({r.table for r in reads}), **prune) as sources:
        held = sum(sum(sources[t].rows) + sources[t].live.num_rows for t in {r.table for r in reads})
        if limit is not None and held > limit:
            return None
        if all(not by_schema(sources[r.table])[1] for r in reads):
            pool = _pool()  # files read side by side (pyarrow decodes without the GIL), each on one thread
            targets = [_target(r, sources[r.table]) for r in reads]
            made = _Made(max((n for r in reads for n in sources[r.table].rows), default=0))
            files = [[pool.submit(_file_rows, path, r, t, made) for path in sources[r.table].files]
                     for r, t in zip(reads, targets)]
            try:  # the live rows are filtered here while the pool reads the files
                lives = [_live(r, sources[r.table], t) for r, t in zip(reads, targets)]
            finally:
                wait([f for fs in files for f in fs])  # all done (or failed) before the files may be retired
            out = [_joined([f.result() for f in fs], live) for fs, live in zip(files, lives)]
            ms = (time.perf_counter() - started) * 1e3 / len(reads)  # read together: each logged with a share
            for r, rows in zip(reads, out):
                lake.queries.record(f"-- read by pyarrow\n{r.sql()}", ms, rows.table.num_rows, {r.table: sources[r.table]})
            return out
    params = {k: v for r in reads for k, v in r.filters.params.items()}
    return [Rows(t) for t in lake.query_each([r.sql() for r in reads], params, **prune)]


def _target(r: Read, source: Source) -> pa.Schema:
    """The types DuckDB gives `r.columns` of the live rows' schema (the files' when `by_schema` finds
    none other), under `r.names`."""
    types = _result_schema(pa.schema([source.live.schema.field(c) for c in r.columns]))
    return pa.schema([f.with_name(n) for f, n in zip(types, r.names)])


def _live(r: Read, source: Source, target: pa.Schema) -> pa.Table:
    """`r`'s rows of the live rows, as `target`."""
    return _kept(source.live, r, _tests(r)).select(list(r.columns)).rename_columns(list(r.names)).cast(target)


def _joined(files: list[tuple[pa.Table, frozenset[str]]], live: pa.Table) -> Rows:
    """A read's rows of its files (read, already as the live rows' `target` type, with their
    one-valued columns) and of the live rows, as one table."""
    parts = [p for p in [*files, (live, frozenset())] if p[0].num_rows]
    table = pa.concat_tables([t for t, _ in parts] or [live])
    return Rows(table, tuple((t.num_rows, steady) for t, steady in parts))


def _file_rows(path: str, r: Read, target: pa.Schema, made: "_Made") -> tuple[pa.Table, frozenset[str]]:
    """The file's rows that pass `r`'s filters as `target` (`r.columns` under `r.names`, in DuckDB's
    types; a damaged or missing file: QueryError, as DuckDB's), and the names of those with one
    value, not NULL, in all of them."""
    try:
        return _passing(path, r, target, made)
    except (OSError, pa.ArrowException) as exc:
        raise QueryError(f"{path}: {exc} (lake.verify() checks every file and moves damaged ones aside)") from None


def _passing(path: str, r: Read, target: pa.Schema, made: "_Made") -> tuple[pa.Table, frozenset[str]]:
    """Its row groups' statistics decide what they can: a group none of whose rows can pass is not
    read, a test every row of a group passes is not checked row by row. A string column with one
    value in the whole file (its exchange and symbol, say) or only NULLs is made rather than decoded,
    from buffers shared by the read's files (`_Made`).
    The cast to `target` (e.g. strings' offsets widened to large_string) is done here, on the reading
    thread. The file is memory-mapped: pages are decoded from the page cache instead of first copied
    into freshly allocated buffers. A committed file never changes (written aside, then renamed in;
    compaction deletes only files no query holds), so the mapping cannot shrink under the read."""
    with pq.ParquetFile(path, memory_map=True) as pf:
        footer = _Footer.of(pf)
        tests = _tests(r)
        groups = [[_verdict(footer, i, t) for t in tests] for i in range(footer.meta.num_row_groups)]
        kept = [i for i, verdicts in enumerate(groups) if False not in verdicts]
        if not kept:
            return pa.table({}), frozenset()  # no row can pass: nothing read
        unsure = [t for j, t in enumerate(tests) if any(groups[i][j] is None for i in kept)]
        checked = {t[0] for t in unsure}
        ones = {c: v for c in r.columns if c not in checked and (v := _one_value(footer, c)) is not _VARIES}
        wanted = [c for c in dict.fromkeys([*r.columns, *checked]) if c not in ones]
        if wanted:
            every = len(kept) == len(groups)
            read = (pf.read(columns=wanted, use_threads=False) if every
                    else pf.read_row_groups(kept, columns=wanted, use_threads=False))
            table = _kept(read, r, unsure)
        rows = table.num_rows if wanted else sum(footer.meta.row_group(i).num_rows for i in kept)
        columns = []
        for c, kind in zip(r.columns, target.types):
            value = ones.get(c, _VARIES)
            columns.append(table.column(c).cast(kind) if value is _VARIES else made.column(value, kind, rows))
        steady = frozenset(n for c, n in zip(r.columns, r.names) if ones.get(c) not in (None, _VARIES))
        return pa.Table.from_arrays(columns, schema=target), steady


class _Made:
    """Columns of one value (or only NULLs) made for the files of one read, without bytes per row: a
    large_string column of a value of length L is the first n + 1 offsets of one shared 0, L, 2L, ...
    and the first n * L bytes of one shared run of the value, both as long as the read's longest file
    needs. A file's exchange and symbol, made for every row, would otherwise be allocated afresh per
    file and read (about 15 bytes a row each, more than some decoded columns). Shared by the reading
    threads (a lock)."""

    def __init__(self, rows: int) -> None:
        self._rows = rows  # the most rows any file of the read holds (0: unknown, grown on demand)
        self._lock = threading.Lock()
        self._offsets: dict[int, pa.Buffer] = {}
        self._data: dict[str, pa.Buffer] = {}

    def column(self, value: str | None, kind: pa.DataType, rows: int) -> pa.Array:
        """`value` (None: NULL) in each of `rows` rows, as `kind`."""
        if not pa.types.is_large_string(kind):  # DuckDB's type for strings is large_string: not expected
            return pa.nulls(rows, kind) if value is None else pa.repeat(pa.scalar(value, kind), rows)
        data = b"" if value is None else value.encode()
        with self._lock:
            if rows > self._rows:
                self._rows, self._offsets, self._data = max(rows, 2 * self._rows), {}, {}
            if len(data) not in self._offsets:
                self._offsets[len(data)] = pa.py_buffer(np.arange(self._rows + 1, dtype=np.int64) * len(data))
            if value is not None and value not in self._data:
                self._data[value] = pa.py_buffer(data * self._rows)
            offsets = self._offsets[len(data)].slice(0, (rows + 1) * 8)
            if value is None:  # the offsets of "" are all zeros: so is a validity bitmap of no valid row
                return pa.Array.from_buffers(kind, rows, [self._offsets[0].slice(0, (rows + 7) // 8), offsets,
                                                          pa.py_buffer(b"")], null_count=rows)
            return pa.Array.from_buffers(kind, rows, [None, offsets, self._data[value].slice(0, rows * len(data))])


def _tests(r: Read) -> list[tuple[str, str, object]]:
    """`r`'s filters as (column, test, value): test "in" (a tuple), "=", ">=", "<" (ns) or "valid"."""
    f, out = r.filters, []
    if f.symbols:
        out.append(("symbol", "in", tuple(f.symbols)))
    if f.exchange is not None:
        out.append(("exchange", "=", f.exchange))
    if f.start_ns is not None:
        out.append((r.on, ">=", f.start_ns))
    if f.end_ns is not None:
        out.append((r.on, "<", f.end_ns))
    if r.timed:
        out.append((r.on, "valid", None))
    return out


def _kept(table: pa.Table, r: Read, tests: list[tuple[str, str, object]]) -> pa.Table:
    if not tests or not table.num_rows:
        return table
    masks = []
    for column, test, value in tests:
        col = table.column(column)
        if test in (">=", "<"):  # as `epoch_ns(on)` in SQL: any unit, compared in ns
            col = col.cast(pa.timestamp("ns", tz=col.type.tz)).cast(pa.int64())
        masks.append(pc.is_in(col, value_set=pa.array(value, col.type)) if test == "in"
                     else pc.equal(col, value) if test == "=" else pc.greater_equal(col, value) if test == ">="
                     else pc.less(col, value) if test == "<" else pc.is_valid(col))
    return table.filter(reduce(pc.and_kleene, masks))  # NULL (e.g. no time) drops the row, as WHERE does


@dataclass(frozen=True)
class _Footer:
    """A file's metadata, Arrow schema and column positions, worked out once per read."""

    meta: pq.FileMetaData
    schema: pa.Schema
    at: dict[str, int]

    @classmethod
    def of(cls, pf: pq.ParquetFile) -> "_Footer":
        meta = pf.metadata
        return cls(meta, pf.schema_arrow, {meta.schema.column(j).path: j for j in range(meta.num_columns)})

    def chunk(self, group: int, column: str) -> pq.ColumnChunkMetaData | None:
        """Row group `group`'s metadata of a top-level column, None if the file has no such column."""
        j = self.at.get(column)
        return None if j is None else self.meta.row_group(group).column(j)


def _verdict(footer: _Footer, group: int, test: tuple[str, str, object]) -> bool | None:
    """By row group `group`'s statistics: True if every row passes `test`, False if none does, None
    if the rows must tell (no statistics, or some may pass). NULL passes no test but "valid"."""
    column, kind, value = test
    chunk = footer.chunk(group, column)
    stats = None if chunk is None else chunk.statistics
    if stats is None or stats.null_count is None:
        return None
    if kind in (">=", "<") and (getattr(footer.schema.field(column).type, "unit", None) != "ns"
                                or stats.physical_type != "INT64"):
        return None  # statistics in another unit or form than the bounds'
    nulls, everything = stats.null_count, chunk.num_values
    if nulls == everything:  # only NULLs, which pass no test, or an empty group: nothing to check
        return not everything
    if kind == "valid":
        return True if nulls == 0 else None
    if not stats.has_min_max:
        return None
    lo, hi = (stats.min_raw, stats.max_raw) if kind in (">=", "<") else (stats.min, stats.max)
    values = value if kind == "in" else (value,)
    if kind == ">=":
        every, none = lo >= value, hi < value
    elif kind == "<":
        every, none = hi < value, lo >= value
    else:
        every, none = lo == hi and lo in values, all(v < lo or v > hi for v in values)
    return False if none else True if every and nulls == 0 else None


_VARIES = object()


def _one_value(footer: _Footer, column: str) -> object:
    """The one value of a string column in every row of the file, None if every row is NULL, else `_VARIES`."""
    at = footer.schema.get_field_index(column)
    kind = footer.schema.field(at).type if at >= 0 else None
    if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return _VARIES
    values = set()
    for i in range(footer.meta.num_row_groups):
        chunk = footer.chunk(i, column)
        stats = None if chunk is None else chunk.statistics
        if stats is None or stats.null_count is None:
            return _VARIES
        if stats.null_count == chunk.num_values:
            values.add(None)
        elif stats.null_count == 0 and stats.has_min_max and stats.min == stats.max:
            values.add(stats.min)
        else:
            return _VARIES
    return values.pop() if len(values) == 1 else _VARIES


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="cryptolake-read")


@lru_cache(maxsize=64)
def _result_schema(schema: pa.Schema) -> pa.Schema:
    """The types a SELECT of `schema`'s columns returns from the lake's DuckDB (strings as large_string)."""
    con = duckdb.connect(":memory:", config={"enable_external_access": False, "autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False, "arrow_large_buffer_size": True})
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__cl_types", schema.empty_table())
        return con.sql("SELECT * FROM __cl_types").to_arrow_table().schema
    finally:
        con.close()
