"""Small append-only tables kept beside the market data: JSON lines on disk, Arrow in memory."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["SideLog"]

log = logging.getLogger(__name__)


class SideLog:
    """Rows appended to `path` (one JSON object a line) and served as an Arrow table with `schema`.

    For bookkeeping tables (quarantine, gaps): low volume, must survive restarts, must be queryable
    next to the market data. Timestamp columns are stored as integer ns in the file.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.schema = schema
        self._read_only = read_only
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._table: pa.Table | None = None
        self._load()

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Keep `rows` (dicts with the schema's column names; timestamps as int ns)."""
        if not rows:
            return
        lines = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in rows)
        with self._lock:
            self._rows.extend(rows)
            self._table = None
            if self._read_only:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(lines)
            except OSError:
                log.exception("could not record %d row(s) in %s (kept in memory)", len(rows), self.path)

    def table(self) -> pa.Table:
        """Every row so far, as an Arrow table with the log's schema."""
        with self._lock:
            if self._table is None:
                cols = {f.name: [r.get(f.name) for r in self._rows] for f in self.schema}
                arrays = [pa.array(cols[f.name], pa.int64()).cast(f.type) if pa.types.is_timestamp(f.type)
                          else pa.array(cols[f.name], f.type) for f in self.schema]
                self._table = pa.Table.from_arrays(arrays, schema=self.schema)
            return self._table

    def __len__(self) -> int:
        return len(self._rows)

    def _load(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    self._rows.append(json.loads(line))
                except ValueError:
                    log.warning("%s line %d is not JSON (a torn write?): skipped", self.path, n)
