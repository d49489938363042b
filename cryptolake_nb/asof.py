"""As-of join with a tolerance: each left row gets the latest right row at or before it, if fresh enough.

Two lake tables are read apart and matched by polars (`asof_direct.py`). Once a frame is involved,
DuckDB's ASOF JOIN picks the latest right row with `right.on <= left.on`; it has no tolerance, so
the tolerance is applied here on that one candidate (if it is too old, every earlier row is older
still, so NULLs are the right answer). Neither looks ahead: a right row after the left row is never
used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._sources import ROW, Input, Part, as_input, run
from ._sqlargs import Filters, check_to, filters, ident, name_list, parse_interval, quote, symbol_list
from .asof_direct import join_tables
from .errors import ConfigError
from .lake import Output, convert
from .table_read import Read

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["asof_join"]

_KEYS = ("exchange", "symbol")


def asof_join(left: Any, right: Any, symbols: str | list[str] | None = None, *, on: str = "ts",
              by: str | list[str] | None = None, tolerance: Any = None, columns: str | list[str] | None = None,
              exchange: str | None = None, start: Any = None, end: Any = None, to: Output = "pandas",
              lake: "Lake | None" = None) -> Any:
    """Every left row with the right row in effect at its time: `<left columns>, <right columns>,
    staleness`. `left` and `right` are lake table names ("trades", "ticker", ...) or pandas, polars
    or Arrow frames; two tables are read over one snapshot (history + live; Parquet by pyarrow) and
    matched by polars, frames are joined by DuckDB's ASOF in a private in-memory DuckDB.

    - `on`: a timestamp column of both sides; the match is the right row with the latest `on` <= the
      left row's `on` (an equal time matches; on ties between right rows, any one of them).
    - `by`: column(s) that must be equal on both sides; default: those of `exchange, symbol` both have.
    - `tolerance` ('1s', Timedelta, ns): a match older than this is dropped (NULL right columns);
      `staleness` is left `on` - right `on` (a Timedelta, NULL without a match), never negative.
    - `columns`: the right columns to bring (default: all but `on` and `by`); one whose name the left
      side has is suffixed `_right`.
    - `symbols`, `exchange` filter each side that has that column; `start`/`end` bound the left rows'
      `on` and the right rows to `[start - tolerance, end)` (all earlier right rows without a tolerance).

    Rows come in the left frame's order, or for a left table by `by` (NULL last) then `on`, as the
    other helpers put the symbol before the time (ties in the table's order). Beware of bucketed
    frames (`mid(..., "1min")`): labelled by bucket start, they hold the bucket's last value, so a raw
    row joined to them would see later quotes; join raw rows to raw tables, bars to bars.

    >>> asof_join("trades", "ticker", "BTC-USDT", tolerance="5s", columns=["bid", "ask"])   # doctest: +SKIP
    """
    check_to(to)
    lin, rin = as_input(left, "left"), as_input(right, "right")
    on_q = ident(on, lin.schema, "on", lin.what)
    keys, wanted, out_names = _columns(lin, rin, on, by, columns)
    tol = None if tolerance is None else parse_interval(tolerance, "tolerance")
    syms = None if symbols is None else symbol_list(symbols)[0]
    lf = _side_filters(lin, syms, exchange, start, end, on_q, "l_")
    right_start = None if lf.start_ns is None or tol is None else lf.start_ns - tol
    rf = _side_filters(rin, syms, exchange, right_start, lf.end_ns, on_q, "r_")
    params = {**lf.params, **rf.params, **({"tolerance": tol} if tol is not None else {})}

    left_names = [c for c in lin.schema.names if c != ROW]
    key_q = [ident(k, lin.schema, "by") for k in keys]
    # a key both sides are filtered to one value of is equal on every row: leaving it out of the match
    # spares numbering it per row (two tables) or a partition on strings in DuckDB's ASOF (frames)
    pinned = {"symbol": syms is not None and len(syms) == 1, "exchange": exchange is not None}
    free_names = [k for k in keys if not pinned.get(k, False)]
    free = [quote(k) for k in free_names]  # as `ident` quotes them
    tables = bool(lin.table and rin.table)  # both read apart and matched by polars (asof_direct.py)
    lcols = [ident(c, lin.schema, "left") for c in left_names]
    lcols += [ROW] if lin.frame is not None else []
    rcols = key_q + [f"{ident(c, rin.schema, 'columns')} AS __cl_c{i}" for i, c in enumerate(wanted)]
    if tables:  # the left's columns; the right's free keys, wanted columns and time
        read = tuple(left_names)
        renamed = (*free_names, *(f"__cl_c{i}" for i in range(len(wanted))), "__cl_t")
        reads = (Read(lin.table, read, read, lf, on), Read(rin.table, (*free_names, *wanted, on), renamed, rf, on, timed=True))
        return convert(join_tables(reads, on, free_names, out_names, tol, lake), to)
    parts = [Part("l", lin, ", ".join([*lcols, f"epoch_ns({on_q}) AS __cl_t"]), lf.where, lf.prune),
             Part("r", rin, ", ".join([*rcols, f"epoch_ns({on_q}) AS __cl_t"]), f"{rf.where} AND {on_q} IS NOT NULL",
                  rf.prune)]
    # the tolerance DuckDB lacks, applied to the one candidate ASOF returns
    fresh = "r.__cl_t IS NOT NULL" + (" AND l.__cl_t - r.__cl_t <= $tolerance" if tol is not None else "")
    shown = [f"l.{q}" for q in lcols if q != ROW]
    shown += [f"CASE WHEN {fresh} THEN r.__cl_c{i} END AS {quote(n)}" for i, n in enumerate(out_names)]
    shown.append(f"CASE WHEN {fresh} THEN l.__cl_t - r.__cl_t END AS staleness")
    cond = " AND ".join([f"l.{q} = r.{q}" for q in free] + ["l.__cl_t >= r.__cl_t"])
    order = f"l.{ROW}" if lin.frame is not None else ", ".join([*(f"l.{q}" for q in free), "l.__cl_t"])
    table = run(parts, f"SELECT {', '.join(shown)} FROM l ASOF LEFT JOIN r ON {cond} ORDER BY {order}", params, lake)
    stale = pc.cast(table.column("staleness"), pa.int64()).cast(pa.duration("ns"))
    return convert(table.set_column(table.schema.get_field_index("staleness"), "staleness", stale), to)


def _columns(lin: Input, rin: Input, on: str, by: Any, columns: Any) -> tuple[tuple[str, ...], list[str], list[str]]:
    """Checked `by` keys, the right columns to bring, and their output names."""
    ident(on, rin.schema, "on", rin.what)
    for side in (lin, rin):
        if not pa.types.is_timestamp(side.schema.field(on).type):
            raise ConfigError(f"on must name a timestamp column; {on!r} of {side.what} is {side.schema.field(on).type}")
    if by is None:
        keys = tuple(k for k in _KEYS if k in lin.schema.names and k in rin.schema.names)
    else:
        keys = name_list("by", by)
    for k in keys:
        ident(k, lin.schema, "by", lin.what)
        ident(k, rin.schema, "by", rin.what)
    if on in keys:
        raise ConfigError(f"by must not include the time column on={on!r}")
    left_names = [c for c in lin.schema.names if c != ROW]
    if "staleness" in left_names:
        raise ConfigError("the left side already has a column named 'staleness'; rename it")
    if columns is None:
        wanted = [c for c in rin.schema.names if c not in (*keys, on, ROW)]
    else:
        wanted = list(name_list("columns", columns))
    out_names = []
    for c in wanted:
        ident(c, rin.schema, "columns", rin.what)
        name = c + "_right" if c in left_names else c
        if name in left_names or name == "staleness" or c == ROW:
            raise ConfigError(f"columns: the output would have two columns named {name!r}; rename it in the left frame")
        out_names.append(name)
    return keys, wanted, out_names


def _side_filters(side: Input, syms: tuple[str, ...] | None, exchange: Any, start: Any, end: Any, on_q: str,
                  tag: str) -> Filters:
    """The filters of one side: symbol and exchange only where it has those columns."""
    names = side.schema.names
    f = filters(syms if "symbol" in names else None, exchange if "exchange" in names else None, start, end,
                time=on_q, tag=tag)
    if exchange is not None and "exchange" not in names:
        filters(None, exchange, None, None)  # still validated
    return f
