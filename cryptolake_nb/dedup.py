"""Deduplication by natural key, across reconnects and across the buffer/history boundary."""
from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa

__all__ = ["Deduper"]

log = logging.getLogger(__name__)

Stream = tuple[str, str, str]  # (table, exchange, symbol)
HistoryKeys = Callable[[str, str, str, tuple[str, ...], int], Iterable[tuple]]


class Deduper:
    """Drops rows whose natural key was already stored within the last `window_s` (exchange time).

    Keys are remembered per (table, exchange, symbol) stream. The first time a stream is seen in
    this process, the keys of its committed history within the window are loaded (`history_keys`),
    so a reconnect after a restart does not store again what was flushed before it.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]], history_keys: HistoryKeys, *, window_s: float = 600.0) -> None:
        self._keys = keys  # table -> key columns
        self._history = history_keys
        self._window = int(window_s * 1e9)
        self._seen: dict[Stream, set[tuple]] = {}
        self._order: dict[Stream, deque[tuple[int, tuple]]] = {}
        self._lock = threading.Lock()
        self.dropped: Counter[tuple[str, str]] = Counter()  # (table, exchange) -> rows dropped

    def __call__(self, table: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` without the rows whose key was seen (in history, earlier batches, or itself)."""
        cols = self._keys.get(table)
        if not cols or batch.num_rows == 0:
            return batch
        ts = batch.column("ts").cast(pa.int64()).to_numpy()
        exchange = batch.column("exchange").to_pylist()
        symbol = batch.column("symbol").to_pylist()
        keys = list(zip(*(_plain(batch.column(c)) for c in cols)))
        keep = np.ones(batch.num_rows, dtype=bool)
        with self._lock:
            for i, key in enumerate(keys):
                if None in key:
                    continue  # an incomplete key identifies nothing: never a duplicate
                stream = (table, exchange[i], symbol[i])
                seen = self._seen.get(stream)
                if seen is None:
                    seen = self._load(stream, cols, int(ts[i]))
                if key in seen:
                    keep[i] = False
                    self.dropped[(table, exchange[i])] += 1
                    continue
                seen.add(key)
                self._order[stream].append((int(ts[i]), key))
            self._evict()
        if keep.all():
            return batch
        log.info("%s: %d duplicate row(s) dropped", table, int((~keep).sum()))
        return batch.filter(pa.array(keep))

    def _load(self, stream: Stream, cols: tuple[str, ...], first_ts: int) -> set[tuple]:
        table, exchange, symbol = stream
        seen = set()
        order: deque[tuple[int, tuple]] = deque()
        try:
            for ts, *key in self._history(table, exchange, symbol, cols, first_ts - self._window):
                seen.add(tuple(key))
                order.append((ts, tuple(key)))
        except Exception:  # history unreadable: dedupe within this session only, and say so
            log.exception("could not load recent %s keys of %s/%s from history", table, exchange, symbol)
        self._seen[stream], self._order[stream] = seen, order
        return seen

    def _evict(self) -> None:
        for stream, order in self._order.items():
            if not order:
                continue
            newest = max(order[-1][0], order[0][0])
            seen = self._seen[stream]
            while order and order[0][0] < newest - self._window:
                seen.discard(order.popleft()[1])


def _plain(column: pa.Array) -> list:
    """Python values of a key column; timestamps as int ns (cheap, and equal across sources)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()
