"""Deduplication by natural key, across reconnects and across the buffer/history boundary."""
from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from typing import Any, Callable, Iterable

import numpy as np
import polars as pl
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


RUN_CAP = 1 << 20  # keys per sorted run at most: bounds the cost of one merge, whatever the window


class _Run:
    """Sorted hashes of a window's keys with where each key is kept (chunk id << 32 | row)."""

    __slots__ = ("hashes", "where", "newest")

    def __init__(self, hashes: np.ndarray, where: np.ndarray, newest: int) -> None:
        self.hashes, self.where, self.newest = hashes, where, newest  # newest: its newest chunk id

    def __len__(self) -> int:
        return len(self.hashes)


class _Window:
    """The keys of one stream seen within the window, held compactly.

    Each key is a 64-bit hash in a sorted run (with where its key is kept), and the keys themselves
    stay in Arrow chunks, one per batch: about 16 bytes plus the Arrow size of the key per row,
    against ~110 bytes for a Python set of strings. A hash hit is confirmed on the real key, so a
    hash collision never drops a row. Each batch adds a run; the newest runs are merged like a
    binary counter (a run is merged into the one before it while that one is no more than twice
    its size), up to RUN_CAP keys: adding costs O(log) moves per key, a lookup one binary search per
    run, and no merge ever touches more than RUN_CAP keys, so neither grows with the window (the
    previous store merged into one main run: a sort of every key of the stream at once). Forgetting is exact (a
    hit in a chunk that left the window does not count); a run is dropped whole once every chunk
    it indexes has left, and merges leave out what has left.
    """

    def __init__(self) -> None:
        self.runs: list[_Run] = []  # oldest first
        self.chunks: deque[tuple[int, int]] = deque()  # (chunk id, newest ts), oldest first
        self.keys: dict[int, pa.Table] = {}  # chunk id -> its keys
        self.next_id = 0
        self.newest_ts: int | None = None

    def nbytes(self) -> int:
        return sum(r.hashes.nbytes + r.where.nbytes for r in self.runs) + sum(k.nbytes for k in self.keys.values())

    def oldest(self) -> int:
        return self.chunks[0][0] if self.chunks else self.next_id

    def key(self, where: int) -> tuple | None:
        """The key stored at `where`, or None if its chunk has left the window."""
        keys = self.keys.get(where >> 32)
        if keys is None:
            return None
        row = where & 0xFFFFFFFF
        return tuple(keys.column(c)[row].as_py() for c in range(keys.num_columns))

    def candidates(self, order: np.ndarray, probes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per run with a hash hit: (rows of the batch's hashes `h` with a hit, first hit position, its
        hashes, where), given `probes` = h[order] sorted (each binary search starts near the last one)."""
        out = []
        if not self.runs or not len(probes):
            return out
        for run in self.runs:
            pos = np.minimum(np.searchsorted(run.hashes, probes), len(run) - 1)
            hit = np.flatnonzero(run.hashes[pos] == probes)
            if len(hit):
                out.append((order[hit], pos[hit], run.hashes, run.where))
        return out

    def add(self, hashes: np.ndarray, keys: pa.Table, newest: int) -> None:
        if not len(hashes):
            return
        cid = self.next_id
        self.next_id += 1
        self.chunks.append((cid, newest))
        self.newest_ts = newest if self.newest_ts is None else max(self.newest_ts, newest)
        self.keys[cid] = keys
        order = np.argsort(hashes)
        where = (np.int64(cid) << 32) | order.astype(np.int64)
        runs = self.runs
        runs.append(_Run(hashes[order], where, cid))
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]) and len(runs[-2]) + len(runs[-1]) <= RUN_CAP:
            newer = runs.pop()
            runs[-1] = _merged(runs[-1], newer, self.oldest())

    def evict(self, window: int) -> None:
        if not self.chunks:
            return
        cutoff = self.newest_ts - window
        while self.chunks and self.chunks[0][1] < cutoff:
            self.keys.pop(self.chunks.popleft()[0], None)
        oldest = self.oldest()
        while self.runs and self.runs[0].newest < oldest:
            self.runs.pop(0)


def _merged(older: _Run, newer: _Run, oldest: int) -> _Run:
    """One sorted run of both, without the keys of chunks that left the window (id < `oldest`)."""
    hashes = np.concatenate([older.hashes, newer.hashes])
    where = np.concatenate([older.where, newer.where])
    live = where >> 32 >= oldest
    if not live.all():
        hashes, where = hashes[live], where[live]
    order = np.argsort(hashes, kind="stable")  # two sorted runs: timsort merges them in one pass
    return _Run(hashes[order], where[order], newer.newest)


class Deduper:
    """Drops rows whose natural key was already stored within the last `window_s` (exchange time).

    Keys are remembered per (table, exchange, symbol) stream, in chunks (one per batch) so that
    forgetting old keys is one filter per batch. The first time a stream is seen in this
    process, the keys of its committed history within the window are loaded (`history_keys`), so
    a reconnect after a restart does not store again what was flushed before it.
    """

    def __init__(self, keys: dict[str, tuple[str, ...]], history_keys: HistoryKeys, *, window_s: float = 600.0) -> None:
        self._keys = keys  # table -> key columns
        self._history = history_keys
        self._window = int(window_s * 1e9)
        self._streams: dict[Stream, _Window] = {}
        self._lock = threading.Lock()
        self.dropped: Counter[tuple[str, str]] = Counter()  # (table, exchange) -> rows dropped

    def nbytes(self) -> int:
        """Memory held for the keys of every stream (counted against the lake's memory cap)."""
        with self._lock:
            return sum(w.nbytes() for w in self._streams.values())

    def __call__(self, table: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` without the rows whose key was seen (in history, earlier batches, or itself)."""
        cols = self._keys.get(table)
        if not cols or batch.num_rows == 0:
            return batch
        own = tuple(c for c in cols if c not in _STREAM_COLUMNS)  # the stream gives exchange/symbol
        keys = pa.Table.from_arrays([_plain(batch.column(c)) for c in own], names=list(own))
        complete = np.ones(batch.num_rows, dtype=bool)
        for col in keys.columns:  # an incomplete key identifies nothing: never a duplicate
            if col.null_count:
                complete &= pc.is_valid(col).to_numpy(zero_copy_only=False)
        hashes = _hash(keys)
        ex = pc.dictionary_encode(batch.column("exchange"))
        sy = pc.dictionary_encode(batch.column("symbol"))
        code = ex.indices.to_numpy().astype(np.int64) * len(sy.dictionary) + sy.indices.to_numpy()
        ts = batch.column("ts").cast(pa.int64()).to_numpy()
        keep = np.ones(batch.num_rows, dtype=bool)
        order = np.argsort(code, kind="stable")
        bounds = np.flatnonzero(np.diff(code[order])) + 1
        with self._lock:
            for rows in np.split(order, bounds):
                stream = (table, ex.dictionary[ex.indices[rows[0]].as_py()].as_py(),
                          sy.dictionary[sy.indices[rows[0]].as_py()].as_py())
                window = self._streams.get(stream)
                if window is None:
                    window = self._load(stream, own, keys.schema, int(ts[rows].min()))
                rows = rows[complete[rows]]
                fresh = self._fresh(window, rows, hashes, keys)
                keep[rows[~fresh]] = False
                if fresh.any():
                    taken = rows[fresh]
                    window.add(hashes[taken], keys.take(pa.array(taken)), int(ts[taken].max()))
                if (~fresh).any():
                    self.dropped[(table, stream[1])] += int((~fresh).sum())
                window.evict(self._window)
        if keep.all():
            return batch
        log.info("%s: %d duplicate row(s) dropped", table, int((~keep).sum()))
        return batch.filter(pa.array(keep))

    @staticmethod
    def _fresh(window: _Window, rows: np.ndarray, hashes: np.ndarray, keys: pa.Table) -> np.ndarray:
        """Which of `rows` (in arrival order) carry a key seen neither in the window nor earlier in the batch."""
        fresh = np.ones(len(rows), dtype=bool)
        h = hashes[rows]
        order = np.argsort(h)
        probes = h[order]  # sorted once: for the window's runs and for repeats within the batch
        for hit, first, sorted_hashes, where in window.candidates(order, probes):
            for i, p in zip(hit, first):  # confirm each hit on the real key
                if not fresh[i]:
                    continue
                key, p = _row(keys, rows[i]), int(p)
                while p < len(sorted_hashes) and sorted_hashes[p] == h[i]:
                    if window.key(int(where[p])) == key:
                        fresh[i] = False
                        break
                    p += 1
        if len(h) < 2 or not (np.diff(probes) == 0).any():
            return fresh  # no hash twice in the batch (the usual case): no unique/setdiff
        _, first_seen = np.unique(h, return_index=True)
        repeats = np.setdiff1d(np.arange(len(rows)), first_seen)
        for i in repeats:  # same hash earlier in this batch: a repeat if some earlier row has this key
            if fresh[i]:
                key = _row(keys, rows[i])
                earlier = np.flatnonzero(h[:i] == h[i])
                fresh[i] = not any(fresh[j] and _row(keys, rows[j]) == key for j in earlier)
        return fresh

    def _load(self, stream: Stream, own: tuple[str, ...], schema: pa.Schema, first_ts: int) -> _Window:
        table, exchange, symbol = stream
        window = _Window()
        try:
            found = list(self._history(table, exchange, symbol, own, first_ts - self._window))
            if found:
                cols = list(zip(*found))
                keys = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(cols[1:], schema)], schema=schema)
                window.add(_hash(keys), keys, max(cols[0]))
        except Exception:  # history unreadable: dedupe within this session only, and say so
            log.exception("could not load recent %s keys of %s/%s from history", table, exchange, symbol)
        self._streams[stream] = window
        return window


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A key column as stored for comparison; timestamps as int ns (equal across sources)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.DictionaryArray):
        column = column.dictionary_decode()
    return column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column


def _hash(keys: pa.Table) -> np.ndarray:
    """One 64-bit hash per row of the key columns (polars' row hash: in-memory only, so its values
    need not be stable across versions; a collision costs a key comparison, never a row)."""
    if not keys.num_rows:
        return np.empty(0, dtype=np.uint64)
    return pl.from_arrow(keys).hash_rows(seed=0x5EED).to_numpy().astype(np.uint64, copy=False)


def _row(keys: pa.Table, i: int) -> tuple:
    return tuple(keys.column(c)[int(i)].as_py() for c in range(keys.num_columns))
