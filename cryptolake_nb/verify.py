"""Verification of committed files: presence, size, checksum, footer, row count, page checksums."""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import FileEntry, Manifest
from .sink import file_crc32

__all__ = ["VerifyReport", "check_file", "verify"]

log = logging.getLogger(__name__)

QUARANTINE_DIR = Path("_quarantine") / "files"


@dataclass
class VerifyReport:
    """What `verify` checked and what it moved out of the query path."""

    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    quarantined: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad


def check_file(root: Path, entry: FileEntry) -> str | None:
    """Why a committed file is bad, or None if it is intact."""
    path = root / entry.path
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != entry.bytes:
        return f"size {size} != {entry.bytes} committed"
    crc = file_crc32(path)
    if crc != entry.crc32:
        return f"checksum {crc:08x} != {entry.crc32:08x} committed"
    try:
        meta = pq.ParquetFile(path).metadata
        if meta.num_rows != entry.rows:
            return f"footer says {meta.num_rows} rows, {entry.rows} committed"
        pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable: {exc}"
    return None


def verify(root: Path, manifest: Manifest, commit_lock: threading.RLock, tables: list[str]) -> VerifyReport:
    """Check every committed file; move bad ones to `_quarantine/files/` and retire them."""
    report = VerifyReport()
    bad: list[FileEntry] = []
    for table in tables:
        for entry in manifest.files(table):
            report.checked += 1
            reason = check_file(root, entry)
            if reason is not None:
                log.error("verify: %s is bad (%s): moved out of the query path", entry.path, reason)
                report.bad.append((entry.path, reason))
                bad.append(entry)
    if bad:
        with commit_lock:
            manifest.commit([], retire=bad)
        for entry in bad:
            src = root / entry.path
            dst = root / QUARANTINE_DIR / entry.path
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                report.quarantined.append(str(dst.relative_to(root)))
    return report
