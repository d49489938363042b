"""Compaction: merge a partition's small files into one, proven lossless before the inputs retire."""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from itertools import groupby
from typing import Callable

import pyarrow.dataset as ds

from .errors import StorageError
from .manifest import FileEntry, Manifest
from .retire import Retirer
from .sink import ParquetSink
from .tables import TABLES

__all__ = ["Compacted", "Compactor"]

log = logging.getLogger(__name__)

Fingerprint = Callable[[str, list[FileEntry]], tuple[int, int]]


@dataclass(frozen=True)
class Compacted:
    """One partition's merge: how many files and rows went in, and the file that came out."""

    table: str
    partition: tuple[str, str, str]
    files_in: int
    rows: int
    output: str


class Compactor:
    """Merges small files per (table, exchange, symbol, date).

    Protocol: write the merged file (temp -> fsync -> rename), compare row count and an
    order-independent content checksum of inputs and output (`fingerprint`, computed by DuckDB over
    every column), then in one manifest commit add the output and retire the inputs; the inputs are
    deleted later by the Retirer, once no query may still read them.
    """

    def __init__(self, manifest: Manifest, sink: ParquetSink, commit_lock: threading.RLock, retirer: Retirer,
                 fingerprint: Fingerprint, *, min_files: int = 8, target_rows: int = 5_000_000) -> None:
        self._manifest = manifest
        self._sink = sink
        self._commit_lock = commit_lock
        self._retirer = retirer
        self._fingerprint = fingerprint
        self.min_files = min_files
        self.target_rows = target_rows
        self._lock = threading.Lock()

    def candidates(self, table: str) -> list[list[FileEntry]]:
        """Groups of small files worth merging, one group per partition (at most target_rows each)."""
        small = [e for e in self._manifest.files(table) if e.rows < self.target_rows // 2]
        key = lambda e: (e.exchange, e.symbol, e.date)  # noqa: E731
        groups = []
        for _, files in groupby(sorted(small, key=key), key=key):
            batch: list[FileEntry] = []
            rows = 0
            for e in sorted(files, key=lambda e: e.min_ts):
                if batch and rows + e.rows > self.target_rows:
                    groups.append(batch)
                    batch, rows = [], 0
                batch.append(e)
                rows += e.rows
            groups.append(batch)
        return [g for g in groups if len(g) >= self.min_files]

    def compact(self, tables: list[str] | None = None, progress: Callable[[int, int], None] | None = None) -> list[Compacted]:
        """Merge every candidate group of the given tables (all by default)."""
        done: list[Compacted] = []
        with self._lock:
            work = [(t, g) for t in (tables or list(TABLES)) for g in self.candidates(t)]
            for i, (table, group) in enumerate(work):
                done.append(self._merge(table, group))
                if progress is not None:
                    progress(i + 1, len(work))
        return done

    def _merge(self, table: str, group: list[FileEntry]) -> Compacted:
        spec = TABLES[table]
        root = self._sink.root
        files = [str(root / e.path) for e in group]  # read in parallel: thousands of small files
        rows = ds.dataset(files, schema=spec.schema, format="parquet").to_table()
        rows = rows.sort_by([(c, "ascending") for c in spec.sort_columns])
        first = group[0]
        key = (first.exchange, first.symbol, dt.date.fromisoformat(first.date))
        out = self._sink.write_partition(table, key, rows, self._manifest.seq + 1)
        expected = self._fingerprint(table, group)
        got = self._fingerprint(table, [out])
        if got != expected or out.rows != sum(e.rows for e in group):
            self._sink.discard([out])
            raise StorageError(f"compaction of {table} {key} is not lossless (rows, checksum {expected} -> {got}); "
                               "inputs kept")
        with self._commit_lock:
            self._manifest.commit([out], retire=group)
        self._retirer.retire([e.path for e in group])
        log.info("compacted %d %s files (%d rows) into %s", len(group), table, out.rows, out.path)
        return Compacted(table, (first.exchange, first.symbol, first.date), len(group), out.rows, out.path)
