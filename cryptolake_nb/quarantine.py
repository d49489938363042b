"""Rows kept aside by validation: counted per table and exchange, queryable as `quarantine`."""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .clock import Clock, SystemClock
from .records import Reject
from .schema import TS
from .sidelog import SideLog

__all__ = ["QUARANTINE_SCHEMA", "RejectLog"]

log = logging.getLogger(__name__)

QUARANTINE_SCHEMA = pa.schema([
    pa.field("table", pa.string()),       # the table the row was meant for
    pa.field("exchange", pa.string()),    # as received (may be the invalid value itself)
    pa.field("symbol", pa.string()),
    pa.field("reason", pa.string()),      # why it was kept aside
    pa.field("values", pa.string()),      # the raw values, a JSON object
    pa.field("kept_ts", TS),              # when it was kept aside
])


class RejectLog:
    """Append-only record of rejected rows under `<root>/_quarantine/rejects.jsonl`."""

    def __init__(self, root: Path, *, clock: Clock | None = None, read_only: bool = False) -> None:
        self._clock = clock or SystemClock()
        self.log = SideLog(Path(root) / "_quarantine" / "rejects.jsonl", QUARANTINE_SCHEMA, read_only=read_only)
        self.path = self.log.path
        self.counts: Counter[str] = Counter()  # per table, this session
        self.by_source: Counter[tuple[str, str]] = Counter()  # per (table, exchange), this session

    def add(self, rejects: list[Reject]) -> None:
        now = self._clock.time_ns()
        rows = []
        for r in rejects:
            exchange = r.values.get("exchange")
            self.counts[r.table] += 1
            self.by_source[(r.table, str(exchange))] += 1
            rows.append({"table": r.table, "exchange": None if exchange is None else str(exchange),
                         "symbol": None if r.values.get("symbol") is None else str(r.values.get("symbol")),
                         "reason": r.reason, "values": json.dumps(r.values, default=str), "kept_ts": now})
        self.log.append(rows)
        log.warning("%d row(s) rejected, e.g. %s", len(rejects), rejects[0].reason)

    def table(self) -> pa.Table:
        return self.log.table()

    def frame(self) -> pd.DataFrame:
        """Every rejected row so far: table, reason, values (a dict), ..."""
        df = self.table().to_pandas()
        df["values"] = [json.loads(v) for v in df["values"]]
        return df
