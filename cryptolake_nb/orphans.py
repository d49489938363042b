"""Start-up clean-up: files a crash left behind outside the commit protocol."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .manifest import Manifest
from .sink import TEMP_SUFFIX

__all__ = ["sweep_orphans"]

log = logging.getLogger(__name__)

ORPHAN_DIR = Path("_quarantine") / "orphans"


def sweep_orphans(root: Path, manifest: Manifest, tables: list[str]) -> dict[str, int]:
    """Delete temp files; move Parquet files no commit lists to `_quarantine/orphans/`.

    A Parquet file outside the manifest was renamed but never committed: its rows are still in the
    journal (released only after a commit), so recovery re-adds them; keeping the file in the query
    path would count them twice. It is moved aside rather than deleted, for inspection.
    """
    committed = {e.path for t in tables for e in manifest.files(t)}
    temps = orphans = 0
    for table in tables:
        base = root / table
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if path.name.endswith(TEMP_SUFFIX):
                path.unlink(missing_ok=True)
                temps += 1
            elif path.suffix == ".parquet" and path.relative_to(root).as_posix() not in committed:
                dst = root / ORPHAN_DIR / path.relative_to(root)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dst)
                orphans += 1
    if temps or orphans:
        log.warning("start-up sweep of %s: %d temp file(s) deleted, %d uncommitted file(s) moved to %s",
                    root, temps, orphans, ORPHAN_DIR)
    return {"temp_files": temps, "orphans": orphans}
