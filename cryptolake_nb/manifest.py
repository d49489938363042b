"""The manifest: an append-only, checksummed log of committed (and retired) Parquet files."""
from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

import pyarrow as pa

from .errors import ManifestError
from .faults import FAULTS

__all__ = ["FileEntry", "Manifest", "schema_fingerprint"]

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
    schema: str = ""  # schema_fingerprint of its columns; "" in manifests written before it was recorded


def schema_fingerprint(schema) -> str:
    """A short, stable id of an Arrow schema's column names, types and nullability (not its metadata):
    files with equal fingerprints can be read as one dataset without reconciling columns. Strings
    count as one type, whichever offsets an Arrow schema gives them (the sink stores most as
    large_string; SQL reads both as VARCHAR), so a file's own schema and the table's agree."""
    plain = pa.schema([f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in schema])
    return f"{zlib.crc32(str(plain).encode()):08x}"


_ENTRY_FIELDS = frozenset(f.name for f in fields(FileEntry))


class Manifest:
    """Committed files per table; one line per commit: `<crc32 hex> <json>`.

    A commit adds files and may retire others (compaction, quarantine) in one atomic step; it is
    durable once its line is fsynced. A writer cuts a torn or corrupt last line (a crash
    mid-append) on open; a read-only reader ignores it and `refresh()`es to follow the writer.
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self._dir = Path(root) / MANIFEST_DIR
        self._path = self._dir / LOG_NAME
        self._read_only = read_only
        self._lock = threading.Lock()
        self._files: dict[str, tuple[FileEntry, ...]] = {}
        self._seq = 0
        self._offset = 0  # bytes of the log applied so far
        self._journal: list[list[int]] = []  # sorted [lo, hi] journal seq ranges held by commits
        if not read_only:
            self._dir.mkdir(parents=True, exist_ok=True)
        self.refresh()

    @property
    def seq(self) -> int:
        """The sequence number of the last commit (0 for an empty lake)."""
        return self._seq

    def files(self, table: str) -> tuple[FileEntry, ...]:
        """The committed files of `table`, in commit order (an immutable snapshot)."""
        return self._files.get(table, ())

    def tables(self) -> list[str]:
        return sorted(self._files)

    def commit(self, entries: list[FileEntry], retire: list[FileEntry] | tuple = (),
               journal: Iterable[int] = ()) -> int:
        """Durably add `entries` and retire `retire` in one step; return the commit's sequence number.

        `journal`: the journal sequence numbers whose rows these files hold, so that a restart
        between this commit and the journal's release does not replay them twice.
        """
        if self._read_only:
            raise ManifestError("this lake is open read-only")
        jranges = _ranges(journal)
        with self._lock:
            seq = self._seq + 1
            doc: dict = {"seq": seq, "add": [asdict(e) for e in entries]}
            if retire:
                doc["remove"] = [e.path for e in retire]
            if jranges:
                doc["journal"] = jranges
            body = json.dumps(doc, separators=(",", ":"))
            line = f"{zlib.crc32(body.encode()):08x} {body}\n".encode()
            try:
                with open(self._path, "ab") as fh:
                    FAULTS.check("manifest")
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                self._truncate(self._offset)
                raise ManifestError(f"could not commit to {self._path}: {exc}") from exc
            self._apply(seq, entries, [e.path for e in retire], jranges)
            self._offset += len(line)
            return seq

    def journal_committed(self, jseq: int) -> bool:
        """Whether a commit already holds the rows of journal entry `jseq`."""
        i = bisect.bisect_right(self._journal, [jseq, float("inf")]) - 1
        return i >= 0 and self._journal[i][0] <= jseq <= self._journal[i][1]

    def refresh(self) -> bool:
        """Apply commits appended since the last look (another process may be the writer)."""
        with self._lock:
            try:
                with open(self._path, "rb") as fh:
                    fh.seek(self._offset)
                    data = fh.read()
            except FileNotFoundError:
                return False
            changed = False
            for raw in data.splitlines(keepends=True):
                parsed = self._parse(raw)
                if parsed is None:
                    if not self._read_only:
                        log.warning("manifest %s: torn or corrupt commit after byte %d cut off", self._path, self._offset)
                        self._truncate(self._offset)
                    break
                seq, entries, removed, jranges = parsed
                if seq != self._seq + 1:
                    raise ManifestError(f"manifest {self._path}: commit {seq} follows {self._seq}")
                self._apply(seq, entries, removed, jranges)
                self._offset += len(raw)
                changed = True
            return changed

    def _apply(self, seq: int, entries: list[FileEntry], removed: list[str], jranges: list[list[int]] = ()) -> None:
        if jranges:
            self._journal = sorted(self._journal + [list(r) for r in jranges])
        files = dict(self._files)
        gone = set(removed)
        if gone:
            files = {t: tuple(e for e in fs if e.path not in gone) for t, fs in files.items()}
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

    def _parse(self, raw: bytes) -> tuple[int, list[FileEntry], list[str], list[list[int]]] | None:
        """A commit line, or None when it is torn or fails its CRC (only such a line may be cut off).

        A line whose CRC holds was written whole: if it cannot be read it comes from another version
        of this format, and cutting it (with every commit after it) would hide committed files, so
        that raises instead. Fields of a file entry this version does not know are ignored (added
        fields stay readable by older versions from this one on)."""
        if not raw.endswith(b"\n") or len(raw) < 10:
            return None
        crc, _, body = raw[:-1].partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                return None
        except ValueError:
            return None
        try:
            doc = json.loads(body)
            return (doc["seq"], [FileEntry(**{k: v for k, v in e.items() if k in _ENTRY_FIELDS}) for e in doc["add"]],
                    list(doc.get("remove", ())), [list(r) for r in doc.get("journal", ())])
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"manifest {self._path}: commit line at byte {self._offset} has a valid checksum but "
                                f"cannot be read ({type(exc).__name__}: {exc}); written by another version of "
                                "cryptolake_nb? Nothing was changed.") from None


def _ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted integers -> [[lo, hi], ...] runs."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out
