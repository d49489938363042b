"""Plain DuckDB over the lake's Parquet files (no manifest, no live rows): the engine's own floor."""
from __future__ import annotations

import re

import duckdb
import pandas as pd

from ..workload import SQL, Workload

__all__ = ["PlainDuckDB"]

_PARAM = re.compile(r"\$([a-z_]+)")


class PlainDuckDB:
    """`read_parquet([every file], options)` in a fresh in-memory DuckDB; row-group statistics do the
    skipping. `options` (e.g. the lake's own `union_by_name = true`) helps attribute a difference."""

    name = "duckdb (plain, Parquet)"

    def __init__(self, files: list[str], workload: Workload, options: str = "") -> None:
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET parquet_metadata_cache = true")  # as the lake's own DuckDB
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        self.src = f"read_parquet([{listed}]{', ' + options if options else ''})"
        self.w = workload

    def run(self, name: str) -> pd.DataFrame:
        sql = SQL[name].format(src=self.src)
        params = {k: v for k, v in self.w.params().items() if k in set(_PARAM.findall(sql))}
        return self.con.sql(sql, params=params).to_arrow_table().to_pandas()

    answer = run

    def close(self) -> None:
        self.con.close()
