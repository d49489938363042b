"""Column conventions every table shares, and look-up of a table's explicit Arrow schema."""
from __future__ import annotations

import pyarrow as pa

from .errors import ConfigError

__all__ = ["COMMON_FIELDS", "PARTITION_COLUMNS", "SCHEMA_VERSION", "TS", "make_schema", "schema_for"]

SCHEMA_VERSION = "1"
TS = pa.timestamp("ns", tz="UTC")
PARTITION_COLUMNS = ("exchange", "symbol", "date")

# every table starts with exchange and symbol and ends with ts (the exchange's) and receipt_ts (ours)
COMMON_FIELDS = (
    pa.field("exchange", pa.string(), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
)
TIME_FIELDS = (
    pa.field("ts", TS, nullable=False),
    pa.field("receipt_ts", TS, nullable=False),
)


def make_schema(table: str, fields: list[pa.Field]) -> pa.Schema:
    """exchange, symbol, <fields>, ts, receipt_ts, with the table name and schema version as metadata."""
    return pa.schema(
        [*COMMON_FIELDS, *fields, *TIME_FIELDS],
        metadata={"cryptolake.table": table, "cryptolake.schema_version": SCHEMA_VERSION},
    )


def schema_for(table: str) -> pa.Schema:
    """The Arrow schema of `table`; ConfigError for an unknown table."""
    from .tables import TABLES

    try:
        return TABLES[table].schema
    except KeyError:
        raise ConfigError(f"unknown table {table!r}; tables are {sorted(TABLES)}") from None
