"""Trade id sequence breaks: trades an exchange numbered but we never received.

Some exchanges number each symbol's trades consecutively (Binance's aggTrade ids, spot and
derivatives). For them a jump in the ids is a known hole, which `SequenceDetector` records as a
`sequence_break` row in the `gaps` table. It sees the sealed `trades` batches (called like
`GapLog.observe(table, batch)`, from the buffer's on_sealed hook, after deduplication):

- per (exchange, symbol), it keeps the highest numeric trade id seen; ids jumping past it open a
  *pending* missing range [high + 1, new - 1];
- a late (out-of-order) trade fills its id in a pending range (splitting it), so reordering across
  seal boundaries is not a gap; repeats and ids older than the stream's first are ignored;
- a range still missing once the stream's exchange time has moved `grace_s` past the trade that
  revealed it is recorded: cause `sequence_break`, channel = the table, [start_ts, end_ts) = the
  exchange times of the trades either side, count = missing ids, detail "trade ids A..B missing (N)";
  `flush()` records everything pending (call it when collection stops).

Only exchanges in `exchanges` are checked (default `CONSECUTIVE_TRADE_IDS`); rows whose trade_id is
NULL or not a decimal integer are ignored. State lives in memory: the first batch of a stream after
a (re)start sets its baseline, so a hole across a restart is not reported here (a `reconnect` or
`silence` gap covers it).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CONSECUTIVE_TRADE_IDS", "SequenceDetector"]

log = logging.getLogger(__name__)

CONSECUTIVE_TRADE_IDS = frozenset({"BINANCE", "BINANCE_FUTURES", "BINANCE_US", "BINANCE_DELIVERY"})
"""cryptofeed exchange ids whose trade ids are consecutive per symbol (Binance aggTrade ids)."""

GapRecorder = Callable[..., None]  # GapLog.record(cause, exchange=, symbol=, channel=, start_ns=, end_ns=, count=, detail=)


@dataclass
class _Missing:
    lo: int          # first missing id
    hi: int          # last missing id
    start_ns: int    # exchange time of the trade before
    end_ns: int      # exchange time of the trade after (the one that revealed the hole)


@dataclass
class _Stream:
    first: int
    high: int
    high_ts: int
    newest_ts: int
    pending: list[_Missing] = field(default_factory=list)


class SequenceDetector:
    """Records `sequence_break` gaps where a symbol's consecutive trade ids jump (see the module doc)."""

    def __init__(self, record: GapRecorder, *, exchanges: Iterable[str] = CONSECUTIVE_TRADE_IDS,
                 tables: Iterable[str] = ("trades",), grace_s: float = 2.0, max_pending: int = 1000) -> None:
        self._record = record
        self.exchanges = frozenset(e.upper() for e in exchanges)
        self.tables = frozenset(tables)
        self._grace = int(grace_s * 1e9)
        self._max_pending = max_pending
        self._streams: dict[tuple[str, str, str], _Stream] = {}
        self._lock = threading.Lock()
        self.breaks = 0          # sequence_break rows recorded
        self.missing_ids = 0     # ids they cover

    @property
    def pending(self) -> int:
        """Missing ranges not yet recorded (they may still be filled by late trades)."""
        with self._lock:
            return sum(len(s.pending) for s in self._streams.values())

    def observe(self, table: str, batch: pa.RecordBatch) -> None:
        """Check one sealed batch of `table`; never raises (a failure is logged)."""
        if table not in self.tables or batch.num_rows == 0:
            return
        try:
            self._observe(table, batch)
        except Exception:
            log.exception("sequence check of a %s batch failed", table)

    def flush(self) -> int:
        """Record every pending range now; return how many."""
        with self._lock:
            done = 0
            for key, stream in self._streams.items():
                done += len(stream.pending)
                self._confirm(key, stream, everything=True)
            return done

    # -- internals -------------------------------------------------------------------------------
    def _observe(self, table: str, batch: pa.RecordBatch) -> None:
        exchange = batch.column("exchange")
        wanted = pc.is_in(exchange, value_set=pa.array(sorted(self.exchanges), pa.string()))
        ids = batch.column("trade_id")
        numeric = pc.and_(pc.fill_null(wanted, False), pc.fill_null(pc.utf8_is_digit(ids), False))
        if not pc.any(numeric).as_py():
            return
        rows = batch.filter(numeric)
        ex = pc.dictionary_encode(rows.column("exchange"))
        sy = pc.dictionary_encode(rows.column("symbol"))
        tid = pc.cast(rows.column("trade_id"), pa.int64()).to_numpy()
        ts = rows.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
        stream = ex.indices.to_numpy().astype(np.int64) * len(sy.dictionary) + sy.indices.to_numpy()
        order = np.lexsort((tid, stream))  # by stream, then trade id (stable: arrival order on ties)
        bounds = np.flatnonzero(np.diff(stream[order])) + 1
        exchanges, symbols = ex.dictionary.to_pylist(), sy.dictionary.to_pylist()
        with self._lock:
            for part in np.split(order, bounds):
                code = int(stream[part[0]])
                e, s = exchanges[code // len(symbols)], symbols[code % len(symbols)]
                self._stream(table, e, s, tid[part], ts[part])

    def _stream(self, table: str, exchange: str, symbol: str, ids: np.ndarray, ts: np.ndarray) -> None:
        key = (table, exchange, symbol)
        st = self._streams.get(key)
        if st is None:
            st = self._streams[key] = _Stream(first=int(ids[0]), high=int(ids[0]) - 1, high_ts=int(ts[0]),
                                              newest_ts=int(ts[0]))
        split = int(np.searchsorted(ids, st.high, side="right"))
        for x in ids[:split]:  # late or repeated ids
            self._fill(st, int(x))
        new, new_ts = ids[split:], ts[split:]
        if len(new):
            prev = np.r_[st.high, new[:-1]]
            prev_ts = np.r_[st.high_ts, new_ts[:-1]]
            for j in np.flatnonzero(new - prev > 1):
                st.pending.append(_Missing(int(prev[j]) + 1, int(new[j]) - 1, int(prev_ts[j]), int(new_ts[j])))
            st.high, st.high_ts = int(new[-1]), int(new_ts[-1])
        st.newest_ts = max(st.newest_ts, int(ts.max()))
        self._confirm(key, st, everything=len(st.pending) > self._max_pending)

    @staticmethod
    def _fill(st: _Stream, x: int) -> None:
        for n, m in enumerate(st.pending):
            if m.lo <= x <= m.hi:
                parts = [p for p in (_Missing(m.lo, x - 1, m.start_ns, m.end_ns), _Missing(x + 1, m.hi, m.start_ns, m.end_ns))
                         if p.lo <= p.hi]
                st.pending[n:n + 1] = parts
                return

    def _confirm(self, key: tuple[str, str, str], st: _Stream, *, everything: bool) -> None:
        keep: list[_Missing] = []
        for m in st.pending:
            if everything or m.end_ns + self._grace <= st.newest_ts:
                n = m.hi - m.lo + 1
                self.breaks += 1
                self.missing_ids += n
                try:
                    self._record("sequence_break", exchange=key[1], symbol=key[2], channel=key[0],
                                 start_ns=m.start_ns, end_ns=m.end_ns, count=n,
                                 detail=f"trade ids {m.lo}..{m.hi} missing ({n})")
                except Exception:
                    log.exception("could not record a sequence break of %s/%s", key[1], key[2])
            else:
                keep.append(m)
        st.pending = keep
