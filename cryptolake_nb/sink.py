"""Parquet writer: split rows by partition, write temp -> fsync -> rename -> fsync dir."""
from __future__ import annotations

import datetime as dt
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .crashpoints import crash_point
from .fsutil import fsync_dir
from .errors import StorageError
from .faults import FAULTS
from .manifest import FileEntry, schema_fingerprint
from .partitions import KEYS, new_file_name, partition_dir
from .tables import TABLES, FlushTransform, TableSpec

__all__ = ["ParquetSink", "TEMP_SUFFIX", "file_crc32"]

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".inprogress"  # no `*.parquet` glob matches a file being written
_NS_PER_DAY = 86_400 * 10**9


class ParquetSink:
    """Writes one table's rows as ZSTD Parquet files, one or more per partition."""

    def __init__(self, root: Path, *, compression_level: int = 3, row_group_size: int = 1_000_000) -> None:
        self.root = Path(root)
        self.compression_level = compression_level
        self.row_group_size = row_group_size

    def write(self, table: str, rows: pa.Table, seq: int, transform: FlushTransform | None = None) -> list[FileEntry]:
        """Publish `rows` as files, one per partition (not yet committed); on failure none is left.

        `transform`, if given, sees each partition's rows (sorted by ts) and returns what to write.
        """
        entries: list[FileEntry] = []
        try:
            for key, part in _partitions(rows):
                if transform is not None:
                    part = transform(key, part)
                entries.append(self.write_partition(table, key, part, seq))
        except StorageError:
            self.discard(entries)
            raise
        return entries

    def write_partition(self, table: str, key: tuple[str, str, dt.date], part: pa.Table, seq: int) -> FileEntry:
        """Publish the rows of one partition as one file (not yet committed)."""
        exchange, symbol, day = key
        rel = partition_dir(table, exchange, symbol, day) / new_file_name(seq)
        path = self.root / rel
        try:
            self._publish(part, path, TABLES[table])
            ts = part.column("ts").cast(pa.int64())
            return FileEntry(
                path=rel.as_posix(), table=table, exchange=exchange, symbol=symbol,
                date=day.isoformat(), rows=part.num_rows, bytes=path.stat().st_size,
                min_ts=pc.min(ts).as_py(), max_ts=pc.max(ts).as_py(), crc32=file_crc32(path),
                schema=schema_fingerprint(part.schema),
            )
        except (OSError, pa.ArrowException) as exc:
            _unlink(path)
            raise StorageError(f"could not write {table} to {self.root}: {exc}") from exc

    def discard(self, entries: list[FileEntry]) -> None:
        """Remove files that were written but never committed."""
        for e in entries:
            _unlink(self.root / e.path)

    def _publish(self, part: pa.Table, path: Path, spec: TableSpec) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + TEMP_SUFFIX)
        names = set(part.schema.names)
        try:
            FAULTS.check("write")
            pq.write_table(
                _stored(part), tmp,
                compression="zstd", compression_level=self.compression_level,
                use_dictionary=[c for c in spec.dictionary_columns if c in names],
                column_encoding={c: "DELTA_BINARY_PACKED" for c in spec.delta_columns if c in names},
                row_group_size=self.row_group_size, write_page_checksum=True,
            )
            crash_point("temp_written")
            with open(tmp, "rb+") as fh:
                FAULTS.check("fsync")
                os.fsync(fh.fileno())
            crash_point("temp_fsynced")
            os.replace(tmp, path)
            crash_point("renamed")
        except BaseException:
            _unlink(tmp)
            raise
        fsync_dir(path.parent)
        crash_point("dir_fsynced")


def _partitions(rows: pa.Table):
    """Yield ((exchange, symbol, date), rows sorted by ts) for each partition present."""
    if rows.num_rows == 0:
        return
    ex = pc.dictionary_encode(rows.column("exchange")).combine_chunks()
    sy = pc.dictionary_encode(rows.column("symbol")).combine_chunks()
    ts = rows.column("ts").cast(pa.int64()).to_numpy()
    day = ts // _NS_PER_DAY
    ex_i = ex.indices.to_numpy().astype(np.int64)
    sy_i = sy.indices.to_numpy().astype(np.int64)
    key = (ex_i * len(sy.dictionary) + sy_i) * 1_000_000 + (day - day.min())
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    bounds = np.flatnonzero(np.diff(sorted_key)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)]):
        idx = order[lo:hi]
        part_ts = ts[idx]
        if np.any(np.diff(part_ts) < 0):
            idx = idx[np.argsort(part_ts, kind="stable")]
        first = idx[0]
        exchange = ex.dictionary[ex_i[first]].as_py()
        symbol = sy.dictionary[sy_i[first]].as_py()
        date = dt.date(1970, 1, 1) + dt.timedelta(days=int(day[first]))
        yield (exchange, symbol, date), rows.take(pa.array(idx))


def file_crc32(path: Path) -> int:
    """CRC32 of a whole file, as recorded in the manifest."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc



def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("could not remove %s", path)


def _stored(part: pa.Table) -> pa.Table:
    """`part` as written: its string columns typed large_string, the type every query returns them in,
    but for the partition keys (exchange, symbol: a reader of the hive directories infers those as
    string, and they are one value per file, never decoded by the lake). Only the Arrow schema the
    file carries (a hint to Arrow readers) changes, not the Parquet data, its statistics or
    `schema_fingerprint`: pyarrow then decodes them straight into large_string instead of into
    string and copying every offset wider (DuckDB reads both alike)."""
    fields = [f.with_type(pa.large_string()) if pa.types.is_string(f.type) and f.name not in KEYS else f
              for f in part.schema]
    schema = pa.schema(fields, metadata=part.schema.metadata)
    return part if schema.equals(part.schema) else part.cast(schema)
