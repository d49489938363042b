"""The manifest: an append-only, checksummed log of committed Parquet files."""
from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ManifestError

__all__ = ["FileEntry", "Manifest"]

log = logging.getLogger(__name__)

MANIFEST_DIR = "_manifest"
LOG_NAME = "log.jsonl"


@dataclass(frozen=True)
class FileEntry:
    """One committed data file and what is known about it without opening it."""

    path: str  # relative to the lake root, POSIX separators
    table: str
    exchange: str
    symbol: str
    date: str  # YYYY-MM-DD (UTC) of every row's ts
    rows: int
    bytes: int
    min_ts: int  # ns since the epoch
    max_ts: int
    crc32: int  # of the whole file


class Manifest:
    """Committed files per table; one line per commit: `<crc32 hex> <json>`.

    A commit is durable once its line is fsynced. On open, a torn or corrupt last line (a crash
    mid-append) is cut off; lines are never rewritten in place.
    """

    def __init__(self, root: Path) -> None:
        self._dir = Path(root) / MANIFEST_DIR
        self._path = self._dir / LOG_NAME
        self._lock = threading.Lock()
        self._files: dict[str, tuple[FileEntry, ...]] = {}
        self._seq = 0
        self._dir.mkdir(parents=True, exist_ok=True)
        self._load()

    @property
    def seq(self) -> int:
        """The sequence number of the last commit (0 for an empty lake)."""
        return self._seq

    def files(self, table: str) -> tuple[FileEntry, ...]:
        """The committed files of `table`, in commit order (an immutable snapshot)."""
        return self._files.get(table, ())

    def tables(self) -> list[str]:
        return sorted(self._files)

    def commit(self, entries: list[FileEntry]) -> int:
        """Durably add `entries`; return the commit's sequence number."""
        with self._lock:
            seq = self._seq + 1
            body = json.dumps({"seq": seq, "add": [asdict(e) for e in entries]}, separators=(",", ":"))
            line = f"{zlib.crc32(body.encode()):08x} {body}\n".encode()
            size = self._path.stat().st_size if self._path.exists() else 0
            try:
                with open(self._path, "ab") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                self._truncate(size)
                raise ManifestError(f"could not commit to {self._path}: {exc}") from exc
            self._apply(seq, entries)
            return seq

    def _apply(self, seq: int, entries: list[FileEntry]) -> None:
        files = dict(self._files)
        for e in entries:
            files[e.table] = files.get(e.table, ()) + (e,)
        self._files = files  # replaced whole: readers keep their snapshot
        self._seq = seq

    def _truncate(self, size: int) -> None:
        try:
            with open(self._path, "ab") as fh:
                fh.truncate(size)
        except OSError:
            log.exception("could not cut a failed commit off %s", self._path)

    def _load(self) -> None:
        if not self._path.exists():
            return
        good = 0
        with open(self._path, "rb") as fh:
            data = fh.read()
        for raw in data.splitlines(keepends=True):
            entry = self._parse(raw)
            if entry is None:
                log.warning("manifest %s: torn or corrupt commit after byte %d cut off", self._path, good)
                self._truncate(good)
                break
            seq, entries = entry
            if seq != self._seq + 1:
                raise ManifestError(f"manifest {self._path}: commit {seq} follows {self._seq}")
            self._apply(seq, entries)
            good += len(raw)

    @staticmethod
    def _parse(raw: bytes) -> tuple[int, list[FileEntry]] | None:
        if not raw.endswith(b"\n") or len(raw) < 10:
            return None
        crc, _, body = raw[:-1].partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
            doc = json.loads(body)
            return doc["seq"], [FileEntry(**e) for e in doc["add"]]
        except (ValueError, KeyError, TypeError):
            return None
