"""Lake table names or in-memory frames as the inputs of `asof_join` and `resample`.

A statement whose inputs are all lake tables runs through `Lake.query_arrow` (history + live, with
partition pruning). As soon as one input is a frame, each lake table input is first read through
`Lake.query_arrow` with its filters, and the statement runs in a private in-memory DuckDB that sees
only those Arrow tables: the lake's own engine never registers user objects, and the private one has
no file access.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa

from .errors import ConfigError, QueryError
from .lake import active_lake
from .pruning import weakest
from .tables import TABLES
from .view import used_parameters

if TYPE_CHECKING:
    from .lake import Lake

__all__ = ["Input", "Part", "RESERVED", "as_input", "run"]

RESERVED = "__cl_"  # prefix of the helpers' internal column names
ROW = RESERVED + "row"  # input order of a frame's rows, for deterministic ties


@dataclass(frozen=True)
class Input:
    """One input: a lake table (by name) or an Arrow table made from the user's frame."""

    arg: str
    schema: pa.Schema
    table: str | None = None
    frame: pa.Table | None = None

    @property
    def what(self) -> str:
        return f"table {self.table!r}" if self.table else f"the {self.arg} frame"


@dataclass(frozen=True)
class Part:
    """A CTE `key AS (SELECT columns FROM <input> WHERE where)` of the statement."""

    key: str
    input: Input
    columns: str
    where: str
    prune: Mapping[str, Any]


def as_input(obj: Any, arg: str) -> Input:
    """A lake table name (checked against the registry) or a pandas/polars/Arrow frame."""
    if isinstance(obj, str):
        if obj not in TABLES:
            raise ConfigError(f"{arg} must be a lake table ({', '.join(TABLES)}) or a frame; got {obj[:60]!r}")
        return Input(arg, TABLES[obj].schema, table=obj)
    if isinstance(obj, pd.DataFrame):
        if any(n is not None for n in obj.index.names):
            obj = obj.reset_index()  # a named index (e.g. ts) is a column like any other
        try:
            frame = pa.Table.from_pandas(obj, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise ConfigError(f"{arg}: this pandas frame cannot become Arrow: {exc}") from None
    elif isinstance(obj, pl.DataFrame):
        frame = obj.to_arrow()
    elif isinstance(obj, pa.Table):
        frame = obj
    else:
        raise ConfigError(f"{arg} must be a lake table name or a pandas/polars/Arrow frame, got {type(obj).__name__}")
    names = frame.schema.names
    if len(set(names)) != len(names) or any(n.startswith(RESERVED) for n in names):
        raise ConfigError(f"{arg} has duplicate column names or names starting with {RESERVED!r}: {names}")
    frame = frame.replace_schema_metadata(None)
    return Input(arg, frame.schema, frame=frame.append_column(ROW, pa.array(range(frame.num_rows), pa.int64())))


def run(parts: list[Part], body: str, params: Mapping[str, Any], lake: "Lake | None") -> pa.Table:
    """`WITH <parts> <body>`, in the lake when every part is a lake table, else in a private DuckDB."""
    if all(p.input.table for p in parts):
        prune = weakest([p.prune for p in parts])
        return active_lake(lake).query_arrow(f"WITH {_ctes(parts)} {body}", params, **prune)
    tables: dict[str, pa.Table] = {}
    ctes = []
    for p in parts:
        name = RESERVED + p.key
        if p.input.table:
            sql = f"SELECT {p.columns} FROM {p.input.table} WHERE {p.where}"
            tables[name] = active_lake(lake).query_arrow(sql, params, **p.prune)
            ctes.append(f"{p.key} AS (SELECT * FROM {name})")
        else:
            tables[name] = p.input.frame
            ctes.append(f"{p.key} AS (SELECT {p.columns} FROM {name} WHERE {p.where})")
    return _local(f"WITH {', '.join(ctes)} {body}", params, tables)


def _ctes(parts: list[Part]) -> str:
    return ", ".join(f"{p.key} AS (SELECT {p.columns} FROM {p.input.table} WHERE {p.where})" for p in parts)


def _local(sql: str, params: Mapping[str, Any], tables: Mapping[str, pa.Table]) -> pa.Table:
    """Run one SELECT over in-memory Arrow tables in a throwaway DuckDB with no file access."""
    con = duckdb.connect(":memory:", config={"enable_external_access": False, "autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False, "arrow_large_buffer_size": True})
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in tables.items():
            con.register(name, table)
        bound = {n: params[n] for n in used_parameters(sql)}
        result = (con.sql(sql, params=bound) if bound else con.sql(sql)).to_arrow_table()
    except duckdb.Error as exc:
        lines = str(exc).strip().splitlines()
        raise QueryError(lines[0] if lines else type(exc).__name__) from None
    finally:
        con.close()
    fields = [f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz == "Etc/UTC"
              else f for f in result.schema]
    return result.cast(pa.schema(fields))
