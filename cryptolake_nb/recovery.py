"""Start-up recovery: journaled rows that no commit holds go back into the live buffers."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from .buffer import LiveBuffer
from .gaps import GapLog
from .journal import Journal
from .manifest import Manifest

__all__ = ["restore_from_journal"]

log = logging.getLogger(__name__)


def restore_from_journal(journal: Journal, manifest: Manifest, buffers: Mapping[str, LiveBuffer],
                         gaps: GapLog, root: Path) -> dict[str, int]:
    """Replay the journal's unreleased entries into `buffers`; return the rows restored per table.

    Entries a manifest commit already holds (a crash between commit and release) are released, not
    replayed; a damaged tail the journal had to cut becomes a `journal_tail_lost` row in `gaps`.
    """
    restored: dict[str, int] = {}
    settled = []
    for entry in journal.recover():
        if manifest.journal_committed(entry.seq) or entry.table not in buffers:
            settled.append(entry.seq)
            continue
        buffers[entry.table].restore(entry.batch, entry.seq)
        restored[entry.table] = restored.get(entry.table, 0) + entry.batch.num_rows
    if settled:
        journal.release(settled)
    report = journal.last_recovery
    if report is not None and (report.damage or report.checkpoint_lost):
        gaps.record("journal_tail_lost", detail=report.describe())
    if restored:
        log.warning("recovered %s rows from the journal of %s", restored, root)
    return restored
