"""Shared by the book tables: the flush hook that starts every file with the full book, and where a
lake's update ids start. The design is described in tables/l2_book.py."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..manifest import Manifest
from ._book_capture import BookLayout

__all__ = ["FlushCheckpoints", "first_update_id", "fold"]

log = logging.getLogger(__name__)


def fold(layout: BookLayout, rows: pa.Table) -> pa.Table:
    """The levels (key and value columns) a run of rows leaves: its last full group, then later deltas,
    the last row per key; removed levels dropped. Without a full group: what the deltas tell."""
    uid = rows.column("update_id").to_numpy()
    full = pc.not_equal(rows.column("kind"), "delta").to_numpy(zero_copy_only=False)
    keep = rows.column("side").is_valid().to_numpy(zero_copy_only=False)
    if full.any():
        last = uid[full].max()
        keep &= (full & (uid == last)) | (~full & (uid > last))
    values = [c for c in layout.level_columns if c not in layout.key_columns]
    sel = rows.filter(pa.array(keep)).select([*layout.key_columns, *values, "update_id"])
    sel = sel.take(pa.array(np.argsort(sel.column("update_id").to_numpy(), kind="stable")))
    out = sel.group_by(list(layout.key_columns), use_threads=False).aggregate([(c, "last") for c in values])
    out = out.rename_columns([c[:-5] if c.endswith("_last") else c for c in out.column_names])
    return out.filter(pc.greater(out.column("size"), 0))


class FlushCheckpoints:
    """The flush hook: every file starts with the full book (a `checkpoint` group carrying the id of
    the update it follows) unless its first update is one already; files are written in update order.

    The book a file's head needs is the one its key's previous update left. The capture puts a full
    book on every update whose UTC day differs from the previous one's, so a head that is a plain delta
    continues the key's last processed rows: the most recent state kept here whose last update id is
    below the head (a few per key, so a flush that failed before its commit and comes again finds the
    state from before it), else, on a reopened lake, the committed file holding the key's highest id.
    """

    _KEEP = 4  # states kept per key

    def __init__(self, root: Path, layout: BookLayout) -> None:
        self._root = Path(root)
        self._layout = layout
        self._states: dict[tuple[str, str], list[tuple[int, pa.Table]]] = {}
        self._index: tuple[tuple[int, int], dict] | None = None

    def __call__(self, key: tuple[str, str, Any], rows: pa.Table) -> pa.Table:
        exchange, symbol = key[0], key[1]
        uid = rows.column("update_id").to_numpy()
        order = np.argsort(uid, kind="stable")  # arrival order, even where the exchange's clock is not
        rows, uid = rows.take(pa.array(order)), uid[order]
        head = rows.slice(0, int(np.searchsorted(uid, uid[0], side="right")))
        states = self._states.setdefault((exchange, symbol), [])
        if not pc.any(pc.not_equal(head.column("kind"), "delta")).as_py():
            before = [s for s in states if s[0] < uid[0]]
            state = max(before, key=lambda s: s[0]) if before else self._from_history(exchange, symbol, int(uid[0]))
            if state is None:
                log.warning("%s %s %s: no earlier book to start the file with", self._layout.table, exchange, symbol)
            else:
                rows = pa.concat_tables([self._checkpoint(exchange, symbol, state, rows), rows])
        states.append((int(uid[-1]), fold(self._layout, rows)))
        del states[:-self._KEEP]
        return rows

    def _checkpoint(self, exchange: str, symbol: str, state: tuple[int, pa.Table], rows: pa.Table) -> pa.Table:
        last_id, levels = state
        price = levels.column("price").to_numpy()
        ask = pc.equal(levels.column("side"), "ask").to_numpy(zero_copy_only=False)
        levels = levels.take(pa.array(np.lexsort((np.where(ask, price, -price), ask))))  # bids best first, then asks
        n = max(levels.num_rows, 1)
        schema = self._layout.schema
        cols = {c: levels.column(c) if levels.num_rows else pa.nulls(1, schema.field(c).type)
                for c in ("side", *self._layout.level_columns)}
        cols.update({
            "exchange": pa.array([exchange] * n, pa.string()), "symbol": pa.array([symbol] * n, pa.string()),
            "update_id": pa.array([last_id] * n, pa.int64()), "kind": pa.array(["checkpoint"] * n, pa.string()),
            "sequence_number": pa.nulls(n, pa.int64()), "checksum": pa.nulls(n, pa.int64()),
            "ts": pa.repeat(pc.min(rows.column("ts")), n), "receipt_ts": pa.repeat(pc.min(rows.column("receipt_ts")), n),
        })
        return pa.table([cols[f.name].cast(f.type) for f in schema], schema=schema)

    def _from_history(self, exchange: str, symbol: str, before: int) -> tuple[int, pa.Table] | None:
        """The levels after the key's last committed update below `before`, from the file holding it."""
        best = None
        for entry in self._recent_files().get((exchange, symbol), ()):
            top = max_update_id(self._root / entry.path, below=before)
            if top is not None and (best is None or top > best[0]):
                best = (top, entry)
        if best is None:
            return None
        rows = pq.read_table(self._root / best[1].path, schema=self._layout.schema)
        uid = rows.column("update_id").to_numpy()
        return best[0], fold(self._layout, rows.filter(pa.array(uid < before)))

    def _recent_files(self) -> dict:
        """(exchange, symbol) -> the committed files that can hold its highest update ids: those of the
        last commit holding the key and the few reaching latest in time (a compaction commits old
        rows late). Cached while the manifest is unchanged. Read through a second Manifest:
        transforms run in the flusher, the only committer, so no commit is half-written meanwhile."""
        log_path = self._root / "_manifest" / "log.jsonl"
        try:
            stamp = (log_path.stat().st_size, log_path.stat().st_mtime_ns)
        except FileNotFoundError:
            return {}
        if self._index is None or self._index[0] != stamp:
            self._index = (stamp, recent_files(Manifest(self._root).files(self._layout.table)))
        return self._index[1]


def recent_files(entries: Any, latest: int = 4) -> dict[tuple[str, str], list]:
    """Per (exchange, symbol): the files of its last commit and its `latest` files by max_ts."""
    by_key: dict[tuple[str, str], list] = {}
    for e in entries:
        by_key.setdefault((e.exchange, e.symbol), []).append(e)
    out = {}
    for key, files in by_key.items():
        last = commit_seq(files[-1].path)
        chosen = {e.path: e for e in files if commit_seq(e.path) == last}
        chosen.update({e.path: e for e in sorted(files, key=lambda e: e.max_ts)[-latest:]})
        out[key] = list(chosen.values())
    return out


def commit_seq(path: str) -> int:
    """The commit sequence number a data file's name carries (`part-<seq>-<random>.parquet`)."""
    return int(Path(path).name.split("-")[1])


def max_update_id(path: Path, below: int | None = None) -> int | None:
    """The highest update id in a file (below `below`, reading the column only if the footer's
    statistics do not settle it); None if there is none."""
    meta = pq.ParquetFile(path).metadata
    col = meta.schema.to_arrow_schema().get_field_index("update_id")
    stats = [meta.row_group(g).column(col).statistics for g in range(meta.num_row_groups)]
    if stats and all(s is not None and s.has_min_max for s in stats):
        top = max(s.max for s in stats)
        if below is None or top < below:
            return int(top)
    uid = pq.read_table(path, columns=["update_id"]).column("update_id").to_numpy()
    uid = uid if below is None else uid[uid < below]
    return int(uid.max()) if len(uid) else None


def first_update_id(root: Path, table: str) -> int:
    """Where a lake's update ids start: the wall clock in ns, and above every committed id (read from
    the footers of the files that can hold the highest ones)."""
    start = time.time_ns()
    root = Path(root).resolve()
    try:
        for files in recent_files(Manifest(root).files(table), latest=1).values():
            for e in files:
                top = max_update_id(root / e.path)
                if top is not None:
                    start = max(start, top + 1)
    except Exception:  # a missing footer must not stop the lake from opening; the clock alone still orders
        log.warning("%s: could not read the last committed update id", table, exc_info=True)
    return start
