"""Helper arguments -> checked values, SQL placeholders and partition pruning.

Every quant helper goes through here so that a value never becomes SQL text: symbols, exchanges
and times are bound as `$name` parameters, identifiers are accepted only when they are columns of
a known schema, and every other string argument must be one of a fixed set.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError
from .lake import convert
from .partitions import check_value
from .schema import TS

__all__ = ["Filters", "check_choice", "check_number", "check_to", "filters", "finish", "ident", "name_list",
           "order_key", "parse_interval", "quote", "symbol_list", "to_ns", "with_ts"]

_UNITS = {
    "ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "sec": 10**9, "m": 60 * 10**9, "min": 60 * 10**9,
    "h": 3600 * 10**9, "hour": 3600 * 10**9, "d": 86_400 * 10**9, "day": 86_400 * 10**9,
}
_INTERVAL = re.compile(r"^\s*(\d{1,15})\s*([a-z]{1,4})\s*$")
_INT64 = (-(2**63), 2**63 - 1)
_HIGH = "18446744073709551616::HUGEINT"  # 2^64: the time goes in the high 64 bits
_BIAS = "9223372036854775808::HUGEINT"   # 2^63: the tie-break, shifted to 0..2^64-1, in the low ones


def parse_interval(interval: str | int | pd.Timedelta, name: str = "interval") -> int:
    """'1min', '5s', '250ms', '1h', '1d' (or a Timedelta, or ns) -> nanoseconds."""
    if isinstance(interval, pd.Timedelta):
        ns = interval.value
    elif isinstance(interval, int) and not isinstance(interval, bool):
        ns = interval
    elif isinstance(interval, str) and (m := _INTERVAL.match(interval.lower())) and m.group(2) in _UNITS:
        ns = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(f"{name} must look like '1min', '5s', '250ms', '1h' or '1d', got {_short(interval)}")
    if not 0 < ns <= _INT64[1]:
        raise ConfigError(f"{name} must be positive and fit in int64 nanoseconds, got {_short(interval)}")
    return ns


def to_ns(value: Any, name: str) -> int | None:
    """A time bound (str, datetime, Timestamp, ns int) -> ns since the epoch, UTC if naive."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        ns = value
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"{name} must be a time, got {_short(value)}: {exc}") from None
        if ts is pd.NaT:
            raise ConfigError(f"{name} must be a time, got {_short(value)}")
        ns = (ts.tz_localize("UTC") if ts.tzinfo is None else ts).value
    if not _INT64[0] <= ns <= _INT64[1]:
        raise ConfigError(f"{name} is out of the int64 nanosecond range: {value!r}")
    return ns


def symbol_list(symbols: Any, name: str = "symbols") -> tuple[tuple[str, ...], bool]:
    """(distinct symbols in order, whether one str was given). One str gives the one-series shape,
    a list (even of one) the long shape with a `symbol` column."""
    if isinstance(symbols, str):
        return (check_value(name, symbols),), True
    if not isinstance(symbols, (list, tuple)) or not symbols:
        raise ConfigError(f"{name} must be a string or a non-empty list of strings, got {_short(symbols)}")
    return tuple(dict.fromkeys(check_value(name, s) for s in symbols)), False


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` if it is one of `allowed`, else a ConfigError naming both."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {_short(value)}")
    return value


def check_to(to: Any) -> str:
    return check_choice("to", to, ("pandas", "polars", "arrow"))


def check_number(name: str, value: Any) -> float:
    """A finite positive number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite positive number, got {_short(value)}")
    return float(value)


def name_list(name: str, value: Any) -> tuple[str, ...]:
    """A column name or a list of them (not yet checked against a schema)."""
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{name} must be a column name or a list of column names, got {_short(value)}")
    return tuple(dict.fromkeys(names))


def ident(name: str, schema: pa.Schema, arg: str, what: str = "the data") -> str:
    """`name` as a quoted SQL identifier, only if it is a column of `schema`."""
    if not isinstance(name, str) or name not in schema.names:
        raise ConfigError(f"{arg} must name a column of {what} ({', '.join(schema.names)}); got {_short(name)}")
    return quote(name)


def quote(name: str) -> str:
    """A name as a SQL identifier; only for names taken from a schema (checked by `ident`)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Filters:
    """A WHERE clause of placeholders, its parameters, and `Lake.sources` pruning arguments."""

    where: str
    params: dict[str, Any]
    prune: dict[str, Any] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()
    exchange: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    tag: str = ""
    where_others: str = "TRUE"  # `where` without the symbol condition

    @property
    def symbol_index(self) -> tuple[str, tuple[str, ...]]:
        """SQL mapping each filtered symbol to its rank in sorted order, and the symbols in that order:
        partitioning and sorting on a small integer is cheaper than on the string (one symbol: 0)."""
        names = tuple(sorted(self.symbols))
        if len(names) == 1:
            return "0", names
        whens = " ".join(f"WHEN ${self.tag}symbol_{i} THEN {names.index(s)}" for i, s in enumerate(self.symbols))
        return f"CASE symbol {whens} END", names

    def by_symbol(self, *keys: str) -> tuple[str, str, str]:
        """`symbol` for the SELECT list, the WHERE condition and the GROUP BY clause (`symbol` and
        `keys`) of a per-symbol aggregate over a lake table, whose files are pruned to the symbols.

        One symbol is selected as its bound value, not grouped by: hashing a constant string on every
        row cost ~15% of such a query (HAVING keeps an empty input empty when no key is left). Several
        symbols are kept by a HAVING on the groups rather than a WHERE on every row (~20% of a
        10M-row aggregate): the files hold only those symbols, so only live rows of others are grouped
        and dropped; `any_value` keeps DuckDB from pushing the condition back down to the rows."""
        if len(self.symbols) != 1:
            held = ", ".join(f"${self.tag}symbol_{i}" for i in range(len(self.symbols)))
            return ("symbol", self.where_others,
                    " GROUP BY " + ", ".join(["symbol", *keys]) + f" HAVING any_value(symbol) IN ({held})")
        head = f"${self.tag}symbol_0 AS symbol"
        return head, self.where, (" GROUP BY " + ", ".join(keys)) if keys else " HAVING count(*) > 0"

    @property
    def symbol_rows(self) -> str:
        """The symbols as a VALUES body of placeholders: `($symbol_0), ($symbol_1)`."""
        return ", ".join(f"(${self.tag}symbol_{i})" for i in range(len(self.symbols)))


def filters(symbols: tuple[str, ...] | None, exchange: Any, start: Any, end: Any, *, time: str = '"ts"',
            prefix: str = "", tag: str = "") -> Filters:
    """WHERE on symbol (if given), exchange, and `time` in [start, end); `prefix` qualifies columns,
    `tag` prefixes parameter names (two filters in one statement)."""
    if exchange is not None:
        check_value("exchange", exchange)
    others: list[str] = []  # every condition but the symbol one
    params: dict[str, Any] = {}
    prune: dict[str, Any] = {}
    symbol = None
    if symbols:
        params.update({f"{tag}symbol_{i}": s for i, s in enumerate(symbols)})
        holders = ", ".join(f"${tag}symbol_{i}" for i in range(len(symbols)))
        symbol = f"{prefix}symbol = ${tag}symbol_0" if len(symbols) == 1 else f"{prefix}symbol IN ({holders})"
        prune["symbols"] = symbols
    if exchange is not None:
        others.append(f"{prefix}exchange = ${tag}exchange")
        params[f"{tag}exchange"] = prune["exchange"] = exchange
    start_ns, end_ns = to_ns(start, "start"), to_ns(end, "end")
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise ConfigError(f"end must be after start, got start={_short(start)}, end={_short(end)}")
    if start_ns is not None:
        others.append(f"epoch_ns({prefix}{time}) >= ${tag}start")
        params[f"{tag}start"] = start_ns
    if end_ns is not None:
        others.append(f"epoch_ns({prefix}{time}) < ${tag}end")
        params[f"{tag}end"] = end_ns
    if time == '"ts"':  # the manifest knows the ts range of each file, not of other columns
        prune.update({k: v for k, v in (("start_ns", start_ns), ("end_ns", end_ns)) if v is not None})
    where = " AND ".join(([symbol] if symbol else []) + others) or "TRUE"
    return Filters(where, params, prune, tuple(symbols or ()), exchange, start_ns, end_ns, tag,
                   " AND ".join(others) or "TRUE")


def order_key(time_ns: str, tie: str | None = None) -> str:
    """SQL for one number that orders rows as (time_ns, tie) does, both int64 expressions.

    arg_min/arg_max over a HUGEINT cost about half of what they cost over a (ts, receipt_ts) STRUCT
    (DuckDB 2.0), and ORDER BY one key is cheaper than two. A NULL tie sorts first (before any value).
    """
    if tie is None:
        return time_ns
    return f"(({time_ns})::HUGEINT * {_HIGH} + (coalesce({tie}, {_INT64[0]})::HUGEINT + {_BIAS}))"


def with_ts(table: pa.Table, column: str = "bucket", name: str = "ts", type_: pa.DataType = TS) -> pa.Table:
    """Replace the integer ns column `column` by `name` as a timestamp."""
    ts = pc.cast(table.column(column), pa.int64()).cast(type_)
    return table.set_column(table.schema.get_field_index(column), name, ts)


def finish(table: pa.Table, single: bool, to: str) -> Any:
    """The helpers' output shape: one symbol given as a str -> no `symbol` column."""
    if single and "symbol" in table.schema.names:
        table = table.drop_columns(["symbol"])
    return convert(table, to)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
