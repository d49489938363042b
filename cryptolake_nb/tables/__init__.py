"""The table registry: one module per table, each defining its schema, converter and storage hints.

To add a table: write `tables/<name>.py` with a module-level `SPEC = TableSpec(...)` and add the
module to `_MODULES` below. The table name is the cryptofeed channel it stores.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa

from ..records import Converter

__all__ = ["FlushTransform", "ORDER", "TABLES", "TableSpec"]


class FlushTransform(Protocol):
    """Called by the sink for each partition's rows, in commit order, before they are written."""

    def __call__(self, key: tuple[str, str, Any], rows: pa.Table) -> pa.Table: ...


@dataclass(frozen=True)
class TableSpec:
    """Everything the lake needs to know about one table."""

    name: str
    schema: pa.Schema
    convert: Converter
    # make_capture(config) -> a function (obj, receipt_timestamp) -> obj run inside the cryptofeed
    # callback (one per lake), e.g. to copy what cryptofeed mutates after the callback returns;
    # None: the object is stored as is
    make_capture: Callable[[Any], Callable[[Any, float], Any]] | None = None
    # the attributes `convert` reads, in the order its getter returns them: when set, the live buffer
    # stores an object whose public attributes are all among these as the tuple of their values, and
    # lets the object go at once (see pending.py); `convert` must then read rows with records.extract
    fields: tuple[str, ...] = ()
    # Parquet hints: dictionary-encode these (low cardinality), delta-encode these (monotone ints)
    dictionary_columns: tuple[str, ...] = ("exchange", "symbol")
    delta_columns: tuple[str, ...] = ("ts", "receipt_ts")
    # rows are sorted by these within a partition file
    sort_columns: tuple[str, ...] = ("ts",)
    # make_flush_transform(root, config) -> a per-lake hook applied at flush, e.g. an order-book
    # snapshot at the start of each file; config is the lake's LakeConfig
    make_flush_transform: Callable[[Path, Any], FlushTransform] | None = None
    # the natural key deduplication uses (None: no deduplication, e.g. order-book deltas). Rows whose
    # key has NULLs are never treated as duplicates. "*" means every column but receipt_ts: the same
    # message received twice (for tables whose rows have no id).
    dedup_key: tuple[str, ...] | None = ("*",)


def _load() -> dict[str, TableSpec]:
    from . import candles, funding, index, l2_book, l3_book, liquidations, open_interest, ticker, trades

    _MODULES = (trades, ticker, candles, funding, open_interest, liquidations, index, l2_book, l3_book)
    return {m.SPEC.name: m.SPEC for m in _MODULES}


TABLES: dict[str, TableSpec] = _load()
ORDER: tuple[str, ...] = tuple(TABLES)  # registration order, for documents that must not depend on dict state
