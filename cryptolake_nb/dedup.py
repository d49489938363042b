"""Deduplication by natural key, across reconnects and across the buffer/history boundary."""
from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Deduper", "key_columns"]

log = logging.getLogger(__name__)

Stream = tuple[str, str, str]  # (table, exchange, symbol)
HistoryKeys = Callable[[str, str, str, tuple[str, ...], int], Iterable[tuple]]
_STREAM_COLUMNS = ("exchange", "symbol")


def key_columns(spec: Any) -> tuple[str, ...]:
    """A table's dedup key; "*" is every column but receipt_ts (the same message received twice)."""
    if spec.dedup_key == ("*",):
        return tuple(c for c in spec.schema.names if c != "receipt_ts")
    return tuple(spec.dedup_key)


class Deduper:
    """Drops rows whose natural key was already stored within the last `window_s` (exchange time).

    Keys are remembered per (table, exchange, symbol) stream, in chunks (one per batch) so that
    forgetting old keys costs nothing per row. The first time a stream is seen in this process,
    the keys of its committed history within the window are loaded (`history_keys`), so a
    reconnect after a restart does not store again what was flushed before it.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]], history_keys: HistoryKeys, *, window_s: float = 600.0) -> None:
        self._keys = keys  # table -> key columns
        self._history = history_keys
        self._window = int(window_s * 1e9)
        self._seen: dict[Stream, set] = {}
        self._chunks: dict[Stream, deque[tuple[int, list]]] = {}  # (newest ts, keys) per batch
        self._lock = threading.Lock()
        self.dropped: Counter[tuple[str, str]] = Counter()  # (table, exchange) -> rows dropped

    def __call__(self, table: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` without the rows whose key was seen (in history, earlier batches, or itself)."""
        cols = self._keys.get(table)
        if not cols or batch.num_rows == 0:
            return batch
        own = tuple(c for c in cols if c not in _STREAM_COLUMNS)  # the stream gives exchange/symbol
        ex = pc.dictionary_encode(batch.column("exchange"))
        sy = pc.dictionary_encode(batch.column("symbol"))
        code = ex.indices.to_numpy().astype(np.int64) * len(sy.dictionary) + sy.indices.to_numpy()
        ts = batch.column("ts").cast(pa.int64()).to_numpy()
        values = [_plain(batch.column(c)) for c in own]
        keys = values[0] if len(values) == 1 else list(zip(*values))
        complete = np.ones(batch.num_rows, dtype=bool)
        for v in values:
            complete &= np.array([x is not None for x in v], dtype=bool)
        keep = np.ones(batch.num_rows, dtype=bool)
        order = np.argsort(code, kind="stable")
        bounds = np.flatnonzero(np.diff(code[order])) + 1
        with self._lock:
            for rows in np.split(order, bounds):
                first = rows[0]
                stream = (table, ex.dictionary[ex.indices[first].as_py()].as_py(),
                          sy.dictionary[sy.indices[first].as_py()].as_py())
                seen = self._seen.get(stream)
                if seen is None:
                    seen = self._load(stream, own, int(ts[rows].min()))
                added = []
                for i in rows[complete[rows]]:  # an incomplete key identifies nothing: never a duplicate
                    k = keys[i]
                    if k in seen:
                        keep[i] = False
                    else:
                        seen.add(k)
                        added.append(k)
                if added:
                    self._chunks[stream].append((int(ts[rows].max()), added))
                dropped = len(rows) - int(keep[rows].sum())
                if dropped:
                    self.dropped[(table, stream[1])] += dropped
                self._evict(stream)
        if keep.all():
            return batch
        log.info("%s: %d duplicate row(s) dropped", table, int((~keep).sum()))
        return batch.filter(pa.array(keep))

    def _load(self, stream: Stream, own: tuple[str, ...], first_ts: int) -> set:
        table, exchange, symbol = stream
        seen: set = set()
        chunk: list = []
        newest = first_ts
        try:
            for ts, *key in self._history(table, exchange, symbol, own, first_ts - self._window):
                k = key[0] if len(own) == 1 else tuple(key)
                seen.add(k)
                chunk.append(k)
                newest = max(newest, ts)
        except Exception:  # history unreadable: dedupe within this session only, and say so
            log.exception("could not load recent %s keys of %s/%s from history", table, exchange, symbol)
        self._seen[stream] = seen
        self._chunks[stream] = deque([(newest, chunk)]) if chunk else deque()
        return seen

    def _evict(self, stream: Stream) -> None:
        chunks = self._chunks[stream]
        if not chunks:
            return
        newest = max(t for t, _ in chunks)
        seen = self._seen[stream]
        while chunks and chunks[0][0] < newest - self._window:
            seen.difference_update(chunks.popleft()[1])


def _plain(column: pa.Array) -> list:
    """Python values of a key column; timestamps as int ns (cheap, and equal across sources)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()
