"""Rows kept aside: counted by reason, kept on disk as JSON lines with their raw values."""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from pathlib import Path

import pandas as pd

from .records import Reject

__all__ = ["RejectLog"]

log = logging.getLogger(__name__)


class RejectLog:
    """Append-only record of rejected rows under `<root>/_quarantine/rejects.jsonl`."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "_quarantine" / "rejects.jsonl"
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # per table
        self.by_source: Counter[tuple[str, str]] = Counter()  # per (table, exchange)

    def add(self, rejects: list[Reject]) -> None:
        lines = [json.dumps({"table": r.table, "reason": r.reason, "values": r.values}, default=str) for r in rejects]
        with self._lock:
            for r in rejects:
                self.counts[r.table] += 1
                self.by_source[(r.table, str(r.values.get("exchange")))] += 1
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write("\n".join(lines) + "\n")
            except OSError:
                log.exception("could not record %d rejected rows in %s", len(rejects), self.path)
        log.warning("%d row(s) rejected, e.g. %s", len(rejects), rejects[0].reason)

    def frame(self) -> pd.DataFrame:
        """Every rejected row so far: table, reason, values."""
        with self._lock:
            if not self.path.exists():
                return pd.DataFrame(columns=["table", "reason", "values"])
            with open(self.path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        return pd.DataFrame(rows, columns=["table", "reason", "values"])
