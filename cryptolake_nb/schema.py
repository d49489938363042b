"""One explicit Arrow schema per table: the only place column names live."""
from __future__ import annotations

import pyarrow as pa

from .errors import ConfigError

__all__ = ["PARTITION_COLUMNS", "SCHEMA_VERSION", "TABLES", "TS", "schema_for"]

SCHEMA_VERSION = "1"
TS = pa.timestamp("ns", tz="UTC")
PARTITION_COLUMNS = ("exchange", "symbol", "date")

TRADES = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("side", pa.string()),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),
        pa.field("trade_id", pa.string()),
        pa.field("type", pa.string()),
        pa.field("ts", TS, nullable=False),
        pa.field("receipt_ts", TS, nullable=False),
    ],
    metadata={"cryptolake.table": "trades", "cryptolake.schema_version": SCHEMA_VERSION},
)

TABLES: dict[str, pa.Schema] = {"trades": TRADES}


def schema_for(table: str) -> pa.Schema:
    """The Arrow schema of `table`; ConfigError for an unknown table."""
    try:
        return TABLES[table]
    except KeyError:
        raise ConfigError(f"unknown table {table!r}; tables are {sorted(TABLES)}") from None
