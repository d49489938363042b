"""What a query would read: per table, partitions/files/rows chosen vs available, and DuckDB's plan.

`Lake.explain` (and `%%lakesql --explain`) answers "is my filter pruning?" before a slow query
runs: the manifest knows every committed file's exchange, symbol, date, rows and time range, so
the counts are exact without opening a file. Rows are whole files' rows: DuckDB may skip more
row groups inside the files it opens.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterable

from .manifest import FileEntry

__all__ = ["QueryPlan", "TableScan"]


@dataclass(frozen=True)
class TableScan:
    """One table's share of a query: what pruning kept of its committed files, and its live rows."""

    table: str
    pruned_by: tuple[str, ...]  # the conditions applied to the manifest, in words
    partitions_read: tuple[str, ...]  # "EXCHANGE/SYMBOL/DATE" of the files kept
    partitions_total: int
    files_read: int
    files_total: int
    rows_read: int  # committed rows in the files kept
    rows_total: int
    live_rows: int

    @classmethod
    def of(cls, table: str, pruned_by: Iterable[str], kept: Iterable[FileEntry], available: Iterable[FileEntry],
           live_rows: int) -> "TableScan":
        kept, available = list(kept), list(available)
        return cls(table, tuple(pruned_by), tuple(sorted({_partition(e) for e in kept})),
                   len({_partition(e) for e in available}), len(kept), len(available),
                   sum(e.rows for e in kept), sum(e.rows for e in available), live_rows)

    @property
    def partitions_pruned(self) -> int:
        return self.partitions_total - len(self.partitions_read)

    def line(self) -> str:
        how = ", ".join(self.pruned_by) if self.pruned_by else "no partition filter"
        return (f"{self.table}: {len(self.partitions_read)} of {self.partitions_total} partitions "
                f"({self.partitions_pruned} pruned), {self.files_read} of {self.files_total} files, "
                f"{self.rows_read:,} of {self.rows_total:,} committed rows, {self.live_rows:,} live rows [{how}]")


@dataclass(frozen=True)
class QueryPlan:
    """The answer of `Lake.explain`: one `TableScan` per lake table the query reads, and DuckDB's plan."""

    sql: str
    source: str  # "all", "live" or "history"
    scans: tuple[TableScan, ...]
    plan: str

    def scan(self, table: str) -> TableScan:
        for s in self.scans:
            if s.table == table:
                return s
        raise KeyError(table)

    def __str__(self) -> str:
        lines = [s.line() for s in self.scans] or ["no lake table read"]
        if self.source != "all":
            lines.insert(0, f"source: {self.source} only")
        for s in self.scans:
            if s.partitions_read:
                shown = ", ".join(s.partitions_read[:8]) + (", ..." if len(s.partitions_read) > 8 else "")
                lines.append(f"  {s.table} partitions read: {shown}")
        return "\n".join(lines) + "\n\n" + self.plan

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{_e(s.table)}</td><td>{len(s.partitions_read)} / {s.partitions_total}</td>"
            f"<td>{s.files_read} / {s.files_total}</td><td>{s.rows_read:,} / {s.rows_total:,}</td>"
            f"<td>{s.live_rows:,}</td><td>{_e(', '.join(s.pruned_by) or '-')}</td>"
            f"<td>{_e(', '.join(s.partitions_read[:8]) + (', ...' if len(s.partitions_read) > 8 else ''))}</td></tr>"
            for s in self.scans
        )
        source = "" if self.source == "all" else f"<p>source: <b>{_e(self.source)}</b> only</p>"
        return (f"{source}<table><tr><th>table</th><th>partitions read</th><th>files read</th>"
                f"<th>committed rows read</th><th>live rows</th><th>pruned by</th><th>partitions</th></tr>{rows}</table>"
                f"<details><summary>DuckDB plan</summary><pre>{_e(self.plan)}</pre></details>")


def _partition(e: FileEntry) -> str:
    return f"{e.exchange}/{e.symbol}/{e.date}"


def _e(text: object) -> str:
    return html.escape(str(text))
