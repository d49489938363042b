"""Put a series on a regular time grid: the last row of each bucket, and a rule for empty buckets.

Two steps: the last row per (group, bucket) is found by DuckDB where the data lives (the lake for a
table, a private in-memory DuckDB for a frame), as one hash aggregate (`arg_max` of the row as a
struct: no window, no sort of the input); the grid and the fill are then index arithmetic over that
already small result (numpy searchsorted + Arrow take), so no grid is ever joined in SQL.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ._sources import ROW, Part, as_input, run
from ._sqlargs import check_choice, check_to, filters, ident, name_list, order_key, parse_interval, symbol_list
from .errors import ConfigError
from .lake import Output, convert
from .resample_stream import last_rows
from .runs import key_changes

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["resample"]

FILLS = ("none", "previous", "null")
MAX_BUCKETS = 10_000_000  # a grid larger than this is almost surely a wrong interval: refuse it
_KEYS = ("exchange", "symbol")


def resample(data: Any, interval: Any, fill: str = "none", *, symbols: str | list[str] | None = None, on: str = "ts",
             by: str | list[str] | None = None, exchange: str | None = None, start: Any = None, end: Any = None,
             to: Output = "pandas", lake: "Lake | None" = None) -> Any:
    """`data` (a lake table name or a pandas/polars/Arrow frame, e.g. the output of `mid` or `ohlc`)
    on an `interval` grid: per group of `by` and bucket `[t, t + interval)`, the bucket's last row
    (by `on`, ties: the later receipt for a table, the later row for a frame), with `on` set to the
    bucket start and a `filled` column. Empty buckets between a group's first and last bucket (or
    the buckets of `[start, end)` when given):

    - `fill="none"`: no row;  `"null"`: a row of NULLs (`filled` True);
    - `"previous"`: the last row before it carried forward (`filled` True), NULLs before the first.

    `by` defaults to those of `exchange, symbol` that `data` has. `symbols`/`exchange` filter on those
    columns when present, `start`/`end` on `on`. Nothing after a bucket is ever used for it.

    >>> resample(mid("BTC-USDT", "1s"), "1s", fill="previous")             # doctest: +SKIP
    >>> resample("ticker", "1min", "previous", symbols="BTC-USDT", exchange="BINANCE")   # doctest: +SKIP
    """
    check_to(to)
    check_choice("fill", fill, FILLS)
    step = parse_interval(interval)
    inp = as_input(data, "data")
    on_q = ident(on, inp.schema, "on", inp.what)
    on_type = inp.schema.field(on).type
    if not pa.types.is_timestamp(on_type):
        raise ConfigError(f"on must name a timestamp column; {on!r} of {inp.what} is {on_type}")
    names = [c for c in inp.schema.names if c != ROW]
    keys = tuple(k for k in _KEYS if k in names) if by is None else name_list("by", by)
    key_q = [ident(k, inp.schema, "by", inp.what) for k in keys]
    if on in keys:
        raise ConfigError(f"by must not include the time column on={on!r}")
    if "filled" in names:
        raise ConfigError(f"{inp.what} already has a column named 'filled'; rename it")
    syms = None if symbols is None else symbol_list(symbols)[0]
    f = filters(syms if "symbol" in names else None, exchange if "exchange" in names else None, start, end, time=on_q)
    if exchange is not None:
        filters(None, exchange, None, None)  # validated even when it filters nothing

    cols = [ident(c, inp.schema, "data") for c in names] + ([ROW] if inp.frame is not None else [])
    tie = ROW if inp.frame is not None else "epoch_ns(receipt_ts)" if "receipt_ts" in names and on != "receipt_ts" else None
    values = [c for c in names if c not in keys and c != on]
    row = ", ".join(f"'v{i}': {ident(c, inp.schema, 'data')}" for i, c in enumerate(values))
    last_row = f", arg_max({{{row}}}, {order_key('__cl_t', tie)}) AS __cl_r" if values else ""
    # a lake table's key filtered to one value is selected as that value, not grouped by (cheaper)
    pinned = {"symbol": "$symbol_0" if syms is not None and len(syms) == 1 else None,
              "exchange": "$exchange" if exchange is not None else None}
    fixed = {k: pinned.get(k) for k in keys if inp.table is not None and pinned.get(k) and k in names}
    group = ", ".join([*(q for k, q in zip(keys, key_q) if k not in fixed), "__cl_b"])
    shown = ", ".join([*(f"{fixed[k]} AS {q}" if k in fixed else q for k, q in zip(keys, key_q)), "__cl_b"])
    body = (f"SELECT {shown}{last_row} FROM (SELECT *, (__cl_t // $step) * $step AS __cl_b FROM s)"
            f" GROUP BY {group} ORDER BY {group}")
    last = None
    if inp.table is not None and len(fixed) == len(keys) > 0:  # one stream of a table: over Arrow columns
        consts = {"symbol": syms[0] if syms else None, "exchange": exchange}
        last = last_rows(lake, inp.table, names, {k: consts[k] for k in keys}, f, on,
                         "receipt_ts" if tie else None, step)
    if last is None:
        part = Part("s", inp, f"{', '.join(cols)}, epoch_ns({on_q}) AS __cl_t", f"{f.where} AND {on_q} IS NOT NULL",
                    f.prune)
        last = _unpacked(run([part], body, {**f.params, "step": step}, lake), values, keys)
    lo = None if f.start_ns is None else f.start_ns // step * step
    hi = None if f.end_ns is None else (f.end_ns - 1) // step * step
    return convert(_fill(last, names, on, keys, step, fill, lo, hi, on_type), to)


def _unpacked(result: pa.Table, values: list[str], keys: tuple[str, ...]) -> pa.Table:
    """The query's rows as `keys, values, __cl_b, __cl_g`: the struct of the last row opened into
    columns, and a group number that changes with the keys (the rows come sorted by keys)."""
    out = {k: result.column(k) for k in keys}
    if values:
        row = result.column("__cl_r").combine_chunks()
        for i, name in enumerate(values):
            col = row.field(i)
            if pa.types.is_timestamp(col.type) and col.type.tz == "Etc/UTC":  # as top-level columns come back
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
            out[name] = col
    out["__cl_b"] = result.column("__cl_b")
    change = np.concatenate([[True], key_changes(result, keys, nulls_equal=True)])[:result.num_rows]
    out["__cl_g"] = pa.array(np.cumsum(change), pa.int64())
    return pa.table(out)


def _fill(last: pa.Table, names: list[str], on: str, keys: tuple[str, ...], step: int, fill: str,
          lo: int | None, hi: int | None, on_type: pa.DataType) -> pa.Table:
    """The grid rows, taken from `last` (sorted by group then bucket) by index; -1 takes NULLs."""
    b = last.column("__cl_b").to_numpy().astype(np.int64)
    g = last.column("__cl_g").to_numpy().astype(np.int64)
    if fill == "none":
        take, grid, first = np.arange(len(b)), b, np.arange(len(b))
    else:
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.array([], np.int64)
        ends = np.r_[starts[1:], len(g)]
        spans = [((b[s] if lo is None else lo), (b[e - 1] if hi is None else hi)) for s, e in zip(starts, ends)]
        total = sum(max(0, (h - low) // step + 1) for low, h in spans)
        if total > MAX_BUCKETS:
            raise ConfigError(f"interval gives {total} buckets (more than {MAX_BUCKETS}); use a coarser interval"
                              " or start/end")
        takes, grids, firsts = [np.array([], np.int64)], [np.array([], np.int64)], [np.array([], np.int64)]
        for (s, e), (low, h) in zip(zip(starts, ends), spans):
            gb = np.arange(low, h + 1, step, dtype=np.int64)
            pos = np.searchsorted(b[s:e], gb, side="right") - 1
            ok = pos >= 0
            if fill == "null":
                ok &= b[s:e][np.maximum(pos, 0)] == gb
            takes.append(np.where(ok, s + pos, -1))
            grids.append(gb)
            firsts.append(np.full(len(gb), s, np.int64))
        take, grid, first = np.concatenate(takes), np.concatenate(grids), np.concatenate(firsts)
    missing = take < 0
    rows = last.take(pa.array(np.maximum(take, 0), pa.int64(), mask=missing))
    group_rows = last.take(pa.array(first, pa.int64()))
    tz = "UTC" if on_type.tz else None  # DuckDB gives every aware time back in UTC
    out = {}
    for c in names:
        if c == on:
            out[c] = pa.array(grid, pa.int64()).cast(pa.timestamp("ns", tz=tz))
        else:
            out[c] = (group_rows if c in keys else rows).column(c)
    out["filled"] = pa.array(missing | (b[np.maximum(take, 0)] != grid) if len(b) else missing, pa.bool_())
    return pa.table(out)
