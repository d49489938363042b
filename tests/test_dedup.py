"""Deduplication by natural key: within a batch, across batches and flushes, and across restarts."""
from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolake_nb import Lake
from cryptolake_nb.dedup import Deduper
from feeding import put


def ids(lake):
    return lake.sql("SELECT trade_id FROM trades ORDER BY ts")["trade_id"].tolist()


def test_duplicates_are_dropped_across_batches_flushes_and_restarts(tmp_path, make_trade):
    t0 = 1_700_000_000.0
    trade = lambda i, **kw: make_trade(100 + i, 1, t0 + i, id=str(i), **kw)  # noqa: E731
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        put(lake, [trade(0), trade(1), trade(1), trade(2)])  # a repeat within one batch
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [trade(2), trade(3)])  # a reconnect re-sends the last trade
        lake.flush()
        put(lake, [trade(3), trade(4)])  # across the buffer/history boundary
        put(lake, [trade(4, symbol="ETH-USDT")])  # same id, other symbol: not a duplicate
        assert ids(lake) == ["0", "1", "2", "3", "4", "4"]
        assert lake.dedup.dropped == {("trades", "BINANCE"): 3}
    with Lake(tmp_path / "lk", autoflush=False) as lake:  # a restart: the keys come from history
        put(lake, [trade(3), trade(4), trade(5)])
        assert ids(lake) == ["0", "1", "2", "3", "4", "4", "5"]
        assert lake.dedup.dropped == {("trades", "BINANCE"): 2}


def test_trades_without_an_id_are_never_deduplicated(lake, make_trade):
    same = [make_trade(100, 1, 1_700_000_000.0, id=None) for _ in range(3)]
    put(lake, same)
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 3


def test_keys_older_than_the_window_are_forgotten(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, dedup_window_s=60) as lake:
        put(lake, [make_trade(100, 1, 1_700_000_000.0, id="7")])
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [make_trade(100, 1, 1_700_000_500.0, id="8")])  # moves the window on
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [make_trade(100, 1, 1_700_000_501.0, id="7")])  # an id reused much later is kept
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 3


class _Reference:
    """The dedup rule stated plainly: per (exchange, symbol) a queue of (newest ts, keys) per batch;
    a row is a repeat if its key is in the queue or earlier in its batch; after each batch, batches
    whose newest ts is more than the window behind the newest seen leave from the front."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.streams: dict[tuple, list] = {}
        self.newest: dict[tuple, int] = {}

    def keep(self, rows: list[tuple]) -> list[bool]:
        out, taken = [], {}  # taken: symbol -> {id: ts} of this batch's new keys
        for sym, tid, ts in rows:
            queue, new = self.streams.setdefault(sym, []), taken.setdefault(sym, {})
            fresh = tid is None or not (tid in new or any(tid in keys for _, keys in queue))
            out.append(fresh)
            if fresh and tid is not None:
                new[tid] = ts
        for sym, new in taken.items():
            queue = self.streams[sym]
            if new:
                queue.append((max(new.values()), set(new)))
                self.newest[sym] = max(self.newest.get(sym, 0), max(new.values()))
            while queue and queue[0][0] < self.newest[sym] - self.window_ns:
                queue.pop(0)
        return out


_row = st.tuples(st.sampled_from(["BTC-USDT", "ETH-USDT"]), st.one_of(st.none(), st.integers(0, 40).map(str)),
                 st.integers(0, 3_000))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_row, min_size=1, max_size=30), min_size=1, max_size=60))
def test_deduper_keeps_exactly_what_the_plain_rule_keeps(batches):
    window_ns = 2_000 * 10**6  # 2 s against ts steps of 1 s per batch: keys keep leaving
    dedup = Deduper({"trades": ("exchange", "symbol", "trade_id")}, lambda *a: [], window_s=window_ns / 1e9)
    ref = _Reference(window_ns)
    for i, rows in enumerate(batches):
        rows = [(sym, tid, i * 10**9 + ms * 10**6) for sym, tid, ms in rows]
        batch = pa.record_batch({
            "exchange": pa.array(["BINANCE"] * len(rows)).dictionary_encode(),
            "symbol": pa.array([r[0] for r in rows]).dictionary_encode(),
            "trade_id": pa.array([r[1] for r in rows], pa.string()),
            "ts": pa.array([r[2] for r in rows], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        })
        kept = dedup("trades", batch)
        want = [r for r, k in zip(rows, ref.keep(rows)) if k]
        got = list(zip(kept.column("symbol").to_pylist(), kept.column("trade_id").to_pylist(),
                       kept.column("ts").cast(pa.int64()).to_pylist()))
        assert got == want, f"batch {i}"
