"""The live rows as DuckDB scans them: the stream key columns dictionary-encoded, once per sealed batch.

A query over one symbol filters the live rows on `exchange` and `symbol`. DuckDB compares a plain
Arrow string column row by row, and a dictionary-encoded one once per distinct value. An encoded
batch shares every other column's buffers with its sealed batch and adds one int32 index per row
and key column; it is kept in the sealed batch's `memo`, so it lives exactly as long as the batch.
DuckDB reads both as VARCHAR, so a view's types and results are the same either way.
"""
from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .buffer import Sealed
from .partitions import KEYS

__all__ = ["KeyedScan"]

_MEMO = "keyed"


class KeyedScan:
    """Sealed batches of one table's schema as DuckDB is given them."""

    def __init__(self, schema: pa.Schema) -> None:
        self._keys = {i for i, f in enumerate(schema) if f.name in KEYS
                      and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))}
        self.schema = pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if i in self._keys else f
                                 for i, f in enumerate(schema)], metadata=schema.metadata)

    def table(self, sealed: Sequence[Sealed]) -> pa.Table:
        """The rows of `sealed`, in order, with the key columns encoded (each batch once)."""
        return pa.Table.from_batches([self._encoded(s) for s in sealed], schema=self.schema)

    def _encoded(self, sealed: Sealed) -> pa.RecordBatch:
        batch = sealed.memo.get(_MEMO)
        if batch is None:  # two readers may both encode a new batch: the same result, either is kept
            batch = pa.RecordBatch.from_arrays(
                [pc.dictionary_encode(c) if i in self._keys else c for i, c in enumerate(sealed.batch.columns)],
                schema=self.schema)
            sealed.memo[_MEMO] = batch
        return batch
