"""Injected exchange faults: the simulator's fault plan, reconnect and sequence-break gaps, malformed frames."""
from __future__ import annotations

import asyncio
import json
import re
import time

import pyarrow as pa
import pytest
from cryptofeed.defines import TRADES
from websockets.asyncio.client import connect

from cryptolake_nb import Lake, TradeLake
from cryptolake_nb.collector import Collector
from cryptolake_nb.errors import ConfigError
from cryptolake_nb.feeds import FeedHealth, FeedSpec, build_feed, feed_health
from cryptolake_nb.sequence import SequenceDetector
from cryptolake_nb.simulator import ExchangeSimulator, Faults

import waiting

SYMBOLS = ("BTC-USDT", "ETH-USDT")
FAULTS = Faults(seed=11, duplicate=0.03, reorder=0.03, skip=0.02, skip_max=4, malformed=0.02)
DROPS = 2


def wait_for(predicate, timeout=20.0, what="condition"):
    assert waiting.wait_for(predicate, timeout, 0.02), f"timed out after {timeout} s waiting for {what}"


# -- the sequence detector, directly --------------------------------------------------------------
def batch(rows, exchange="BINANCE"):
    """rows: (symbol, trade_id, ts seconds)."""
    return pa.RecordBatch.from_pydict({
        "exchange": pa.array([exchange] * len(rows), pa.string()),
        "symbol": pa.array([r[0] for r in rows], pa.string()),
        "trade_id": pa.array([r[1] for r in rows], pa.string()),
        "ts": pa.array([int(r[2] * 1e9) for r in rows], pa.timestamp("ns", tz="UTC")),
    })


class Recorder:
    def __init__(self):
        self.rows = []

    def __call__(self, cause, **kw):
        self.rows.append({"cause": cause, **kw})


def test_sequence_detector_records_jumps_after_the_grace_period():
    rec = Recorder()
    det = SequenceDetector(rec, grace_s=1.0)
    det.observe("trades", batch([("BTC-USDT", "10", 0.0), ("BTC-USDT", "11", 0.1), ("BTC-USDT", "15", 0.2)]))
    assert rec.rows == [] and det.pending == 1  # 12..14 might still come late
    det.observe("trades", batch([("BTC-USDT", "16", 1.3)]))
    assert [(r["cause"], r["symbol"], r["channel"], r["count"]) for r in rec.rows] == [("sequence_break", "BTC-USDT", "trades", 3)]
    row = rec.rows[0]
    assert row["exchange"] == "BINANCE" and row["detail"].startswith("trade ids 12..14 missing")
    assert (row["start_ns"], row["end_ns"]) == (int(0.1e9), int(0.2e9))
    assert det.breaks == 1 and det.missing_ids == 3 and det.pending == 0


def test_sequence_detector_tolerates_reorder_duplicates_and_other_symbols():
    rec = Recorder()
    det = SequenceDetector(rec, grace_s=1.0)
    det.observe("trades", batch([("BTC-USDT", "5", 0.0), ("ETH-USDT", "100", 0.0), ("BTC-USDT", "7", 0.1),
                                 ("BTC-USDT", "6", 0.1), ("BTC-USDT", "9", 0.2)]))  # 8 late, across batches
    det.observe("trades", batch([("BTC-USDT", "8", 0.3), ("BTC-USDT", "9", 0.3), ("BTC-USDT", "3", 0.3),
                                 ("ETH-USDT", "101", 0.4)]))
    det.observe("trades", batch([("BTC-USDT", "10", 5.0), ("ETH-USDT", "102", 5.0)]))
    assert rec.rows == [] and det.pending == 0
    # a partly filled range: 21..24 missing, 22 arrives late -> 21 and 23..24
    det.observe("trades", batch([("BTC-USDT", "20", 6.0), ("BTC-USDT", "25", 6.1)]))
    det.observe("trades", batch([("BTC-USDT", "22", 6.2)]))
    assert det.flush() == 3
    assert sorted(r["detail"].split(" missing")[0] for r in rec.rows) == ["trade ids 11..19", "trade ids 21..21", "trade ids 23..24"]


def test_sequence_detector_scope():
    rec = Recorder()
    det = SequenceDetector(rec, grace_s=0.0)
    det.observe("trades", batch([("BTC-USD", "1", 0.0), ("BTC-USD", "9", 1.0)], exchange="COINBASE"))
    det.observe("trades", batch([("BTC-USDT", "x1", 0.0), ("BTC-USDT", None, 1.0)]))
    det.observe("ticker", batch([("BTC-USDT", "1", 0.0), ("BTC-USDT", "9", 1.0)]))
    det.observe("trades", batch([]))
    assert rec.rows == [] and det.flush() == 0
    det = SequenceDetector(rec, exchanges={"coinbase"}, grace_s=0.0)
    det.observe("trades", batch([("BTC-USD", "1", 0.0), ("BTC-USD", "9", 1.0)], exchange="COINBASE"))
    assert [r["count"] for r in rec.rows] == [7]


# -- the simulator's fault plan, on the wire --------------------------------------------------------
async def _frames(sim, seconds):
    url = f"{sim.ws_url}/stream?streams=btcusdt@aggTrade"
    out = []
    async with connect(url, ssl=sim.ssl_context, proxy=None) as ws:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            out.append(await asyncio.wait_for(ws.recv(), 5.0))
        sim.rate = 0  # then drain: every frame offered is read before we compare with the counts
        while True:
            try:
                out.append(await asyncio.wait_for(ws.recv(), 0.5))
            except asyncio.TimeoutError:
                break
    return out


def test_fault_plan_on_the_wire():
    with pytest.raises(ConfigError):
        Faults(duplicate=2.0)
    with ExchangeSimulator(("BTC-USDT",), rate=600, seed=5, trade_share=1.0,
                           faults=Faults(seed=1, duplicate=0.05, reorder=0.05, skip=0.05, malformed=0.05)) as sim:
        frames = asyncio.run(_frames(sim, 1.5))
        inj = sim.injected
    ids, bad = [], 0
    for text in frames:
        try:
            ids.append(json.loads(text)["data"]["a"])
        except (ValueError, KeyError, TypeError):
            bad += 1
    assert len(ids) > 300 and inj.connections == 1
    assert bad == inj.malformed_total > 0 and inj.malformed.get("unknown_event", 0) > 0
    assert len(ids) - len(set(ids)) == inj.duplicates > 0
    assert sum(1 for a, b in zip(ids, ids[1:]) if b < a) == inj.reordered > 0
    seen = set(ids)
    assert inj.skipped and all(not seen & set(range(s.first, s.last + 1)) for s in inj.skipped)
    missing = set(range(min(ids), max(ids) + 1)) - seen
    skipped = {i for s in inj.skipped for i in range(s.first, s.last + 1)}
    assert skipped & set(range(min(ids), max(ids) + 1)) <= missing
    assert {s.symbol for s in inj.skipped} == {"BTC-USDT"}


def test_silence_and_burst():
    with ExchangeSimulator(("BTC-USDT",), rate=200, seed=5, trade_share=1.0) as sim:
        wait_for(lambda: sim.events_generated > 20, what="events")
        sim.silence(1.0)  # checked for 0.3 s of it: room for a slow machine between the two calls
        before = sim.events_generated
        assert waiting.wait_for(lambda: sim.events_generated > before, 0.3, 0.02) is False
        wait_for(lambda: sim.events_generated > before, 5, what="events after the silence")
        sim.rate = 0
        n = sim.events_generated
        sim.burst(300)
        sim.burst(50, rate=500)
        assert sim.events_generated == n + 350
        assert len(sim.injected.silences) == 1 and sim.injected.bursts == [(300, 0.0), (50, 500.0)]


# -- the pieces together, without the lake's wiring ------------------------------------------------
def _drive(sim, count, drops=DROPS):
    """Wait for trades, drop every connection `drops` times (waiting for new trades after each)."""
    wait_for(lambda: count() >= 100, what="100 trades")
    for k in range(drops):
        wait_for(lambda: sim.connections == 1, what="one client connected")
        n = count()
        assert sim.drop_connections() == 1
        wait_for(lambda: sim.connections == 1 and count() >= n + 150, what=f"trades after drop {k + 1}")
    wait_for(lambda: sim.injected.malformed_total >= 3 and len(sim.injected.skipped) >= 3,
             what="a few malformed frames and skipped id ranges")
    n = count()
    wait_for(lambda: count() >= n + 200, what="trades after the last faults")  # past the detector's grace


def _drain(sim, counts, quiet_s=0.5):
    """The simulator queues no frame after this (rate 0; it counts a frame when it queues it), and
    the client has read every one queued before: `counts` holds still for `quiet_s`."""
    sim.rate = 0
    last = [counts(), time.monotonic()]

    def still():
        now = counts()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet_s

    wait_for(still, what="the client to read every frame already queued")


def _check(trades, gaps, sim, health):
    inj = sim.injected
    assert len(inj.disconnects) == DROPS
    # no reconnect caused by malformed frames
    assert health.connections == inj.connections == 1 + DROPS
    assert health.reconnects == DROPS
    assert health.malformed == inj.malformed_total - inj.malformed.get("unknown_event", 0)
    assert health.malformed > 0 and 0 < len(health.malformed_samples) <= health.malformed
    # each drop: one reconnect row per symbol of the connection, spanning the drop time
    reconnects = [g for g in gaps if g["cause"] == "reconnect"]
    assert len(reconnects) == DROPS * len(SYMBOLS)
    assert {(g["exchange"], g["symbol"], g["channel"]) for g in reconnects} == {("BINANCE", s, "trades") for s in SYMBOLS}
    drops = inj.disconnects + [float("inf")]
    for symbol in SYMBOLS:
        rows = sorted((g for g in reconnects if g["symbol"] == symbol), key=lambda g: g["end_ns"])
        for k, g in enumerate(rows):  # the k-th reconnect spans the k-th drop, and ends before the next
            assert g["start_ns"] <= drops[k] + 1_000_000_000 and drops[k] <= g["end_ns"] < drops[k + 1], (k, rows, drops)
            assert g["start_ns"] <= g["end_ns"] and g["count"] is None and "reconnected" in g["detail"]
    # no trade twice
    keys = list(zip(trades["exchange"], trades["symbol"], trades["trade_id"]))
    assert len(keys) == len(set(keys)) and inj.duplicates > 0
    # every skipped range inside what we collected lies in a sequence_break row
    breaks = {}
    for g in gaps:
        if g["cause"] == "sequence_break":
            lo, hi = map(int, re.match(r"trade ids (\d+)\.\.(\d+)", g["detail"]).groups())
            breaks.setdefault(g["symbol"], []).append((lo, hi))
    checked = 0
    for s in inj.skipped:
        ids = [int(t) for sym, t in zip(trades["symbol"], trades["trade_id"]) if sym == s.symbol]
        if not ids or s.first < min(ids) or s.last > max(ids):
            continue
        assert any(lo <= s.first and s.last <= hi for lo, hi in breaks.get(s.symbol, [])), (s, breaks)
        checked += 1
    assert checked >= 3


def test_faults_with_collector_and_detector_without_lake_wiring(tmp_path):
    with ExchangeSimulator(SYMBOLS, rate=400, seed=3, faults=FAULTS) as sim, \
            Lake(tmp_path / "lk", autoflush=False) as lake:
        spec = FeedSpec("BINANCE", SYMBOLS, (TRADES,), simulator=sim)
        health = FeedHealth("BINANCE", on_gap=lake.gaps.record)
        feeds = []

        def build():
            feeds.append(build_feed(spec, {TRADES: TradeLake(lake)}, health=health))
            return feeds

        col = Collector(build)
        col.start()
        try:
            _drive(sim, lambda: lake.status()["tables"]["trades"]["buffer_rows"])
            _drain(sim, lambda: (lake.status()["tables"]["trades"]["buffer_rows"], health.malformed))
        finally:
            col.stop()
            sim.rate = 0
        assert feed_health(feeds[0]) is health and col.status()["errors"] == []
        trades = lake.query_arrow("SELECT exchange, symbol, trade_id, ts FROM trades ORDER BY receipt_ts")
        detector = SequenceDetector(lake.gaps.record)
        for b in trades.to_batches(max_chunksize=200):  # as sealed batches would come
            detector.observe("trades", b)
        detector.flush()
        gaps = lake.gaps.table().to_pylist()
        for g in gaps:
            for k in ("start", "end"):
                g[f"{k}_ns"] = None if g[f"{k}_ts"] is None else int(pa.scalar(g[f"{k}_ts"], pa.timestamp("ns", tz="UTC")).cast(pa.int64()).as_py())
        _check(trades.to_pydict(), gaps, sim, health)


# -- through the lake's public API (needs lake.py wiring: FeedHealth per spec, SequenceDetector) --
def test_faults_through_the_lake(tmp_path):
    with ExchangeSimulator(SYMBOLS, rate=400, seed=3, faults=FAULTS) as sim, \
            Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", list(SYMBOLS), channels=["trades"], simulator=sim)
        lake.start()
        try:
            _drive(sim, lambda: lake.sql("SELECT count(*) AS n FROM trades")["n"][0])
            _drain(sim, lambda: (lake.sql("SELECT count(*) AS n FROM trades")["n"][0], lake.feed_health[0].malformed))
        finally:
            lake.stop()
            sim.rate = 0
        trades = lake.sql("SELECT exchange, symbol, trade_id FROM trades", to="arrow").to_pydict()
        gaps = lake.sql("SELECT cause, exchange, symbol, channel, epoch_ns(start_ts) AS start_ns,"
                        " epoch_ns(end_ts) AS end_ns, count, detail FROM gaps", to="arrow").to_pylist()
        dupes = lake.sql("SELECT exchange, symbol, trade_id, count(*) AS c FROM trades GROUP BY ALL HAVING c > 1")
        assert dupes.empty
        (health,) = lake.feed_health
        _check(trades, gaps, sim, health)
