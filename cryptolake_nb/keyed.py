"""The live rows as DuckDB scans them: the stream key columns dictionary-encoded, once per sealed batch.

A query over one symbol filters the live rows on `exchange` and `symbol`. DuckDB compares a plain
Arrow string column row by row, and a dictionary-encoded one once per distinct value. An encoded
batch shares every other column's buffers with its sealed batch and adds one int32 index per row
and key column; it is kept in the sealed batch's `memo`, so it lives exactly as long as the batch.
DuckDB reads both as VARCHAR, so a view's types and results are the same either way.

DuckDB's Arrow scan gives each record batch to one thread: a large sealed batch (a bulk load, a
merged run) is handed over in slices of at most SCAN_ROWS rows so both threads share it.
"""
from __future__ import annotations

from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .buffer import Sealed
from .partitions import KEYS

__all__ = ["KeyedScan"]

_MEMO = "keyed"
SCAN_ROWS = 16_384  # rows per batch DuckDB is given (zero-copy slices of a larger one)


class KeyedScan:
    """Sealed batches of one table's schema as DuckDB is given them."""

    def __init__(self, schema: pa.Schema) -> None:
        self._keys = {i for i, f in enumerate(schema) if f.name in KEYS
                      and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))}
        self.schema = pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if i in self._keys else f
                                 for i, f in enumerate(schema)], metadata=schema.metadata)

    def table(self, sealed: Sequence[Sealed]) -> pa.Table:
        """The rows of `sealed`, in order, with the key columns encoded (each batch once), in slices."""
        return pa.Table.from_batches([piece for s in sealed for piece in _slices(self._encoded(s))], schema=self.schema)

    def _encoded(self, sealed: Sealed) -> pa.RecordBatch:
        batch = sealed.memo.get(_MEMO)
        if batch is None:  # two readers may both encode a new batch: the same result, either is kept
            batch = pa.RecordBatch.from_arrays(
                [pc.dictionary_encode(c) if i in self._keys else c for i, c in enumerate(sealed.batch.columns)],
                schema=self.schema)
            sealed.memo[_MEMO] = batch
        return batch


def _slices(batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    if batch.num_rows <= SCAN_ROWS:
        return [batch]
    return [batch.slice(at, SCAN_ROWS) for at in range(0, batch.num_rows, SCAN_ROWS)]
