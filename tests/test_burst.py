"""A sustained burst of 1M trades, fed through the real callback faster than storage takes them
(storage fails for the first part of it): memory stays bounded by the cap, queries keep working
and stay consistent meanwhile, and once storage heals every trade is committed exactly once.

How fast a query answers during the burst is a figure: benchmarks/burst.py measures it."""
from __future__ import annotations

import asyncio
import errno
import threading
from decimal import Decimal

import pytest
from cryptofeed.types import Trade

import waiting
from cryptolake_nb import Lake, TradeLake
from cryptolake_nb.faults import FAULTS

TOTAL = 2_000_000
CHUNK = 10_000
CAP = 320 * 2**20
WARM = 100_000  # trades through the same path before the baseline: one-time costs are not the burst's


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def produce(lake: Lake, first: int, last: int, heal_at: int, done: threading.Event) -> None:
    """The collector's side: real cryptofeed Trades `first..last-1` awaited through TradeLake, as
    fast as it can; storage heals when trade `heal_at` comes."""
    cb = TradeLake(lake)

    async def go() -> None:
        for start in range(first, last, CHUNK):
            if start == heal_at:
                FAULTS.clear()
            for i in range(start, start + CHUNK):
                t = Trade("BINANCE", "BTC-USDT", "buy" if i % 3 else "sell", Decimal(i % 7 + 1),
                          Decimal(30_000 + i % 50), 1_700_000_000.0 + i * 1e-3, id=str(i))
                await cb(t, 1_700_000_000.5 + i * 1e-3)

    try:
        asyncio.run(go())
    finally:
        done.set()


@pytest.mark.slow
def test_a_two_million_trade_burst_stays_under_the_memory_cap_and_loses_nothing(tmp_path):
    with Lake(tmp_path / "lk", memory_cap_bytes=CAP, flush_interval=3600) as lake:
        produce(lake, -WARM, 0, 0, threading.Event())  # a warm lake: modules, arenas, DuckDB
        lake.flush()
        lake.ohlc("BTC-USDT", "1min", exchange="BINANCE")
        baseline = rss_bytes()
        peak = [baseline]
        spilled = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes())
                spilled[0] = max(spilled[0], lake.memory.spilled_rows)
                done.wait(0.02)

        FAULTS.arm("write", errno.EIO, times=10**9)  # storage takes nothing at first
        sampler = threading.Thread(target=sample, daemon=True)
        producer = threading.Thread(target=produce, args=(lake, 0, TOTAL, TOTAL, done), daemon=True)
        sampler.start()
        producer.start()
        seen = []
        try:
            while not done.is_set():  # the notebook's side: cells keep running during the burst
                seen.append(int(lake.sql("SELECT count(*) AS n FROM trades")["n"][0]))
                bars = lake.ohlc("BTC-USDT", "1min", exchange="BINANCE")
                assert (bars["low"] <= bars["high"]).all()
        finally:
            producer.join(120)
            FAULTS.clear()
            sampler.join(5)
        assert len(seen) >= 3
        assert spilled[0] > 0  # the cap was reached: rows left memory for the journal
        assert lake.memory.dropped_rows == 0  # and all of them were safe there
        assert peak[0] - baseline < CAP, f"RSS grew by {(peak[0] - baseline) / 2**20:.0f} MiB over a {CAP >> 20} MiB cap"
        everything = TOTAL + WARM
        assert waiting.wait_for(lambda: lake.memory.spilled_rows == 0, 120)  # healed: all back from the journal
        lake.flush()
        assert lake.status()["tables"]["trades"]["rows_committed"] == everything
        final = lake.sql("SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM trades").iloc[0]
        assert (final["n"], final["d"]) == (everything, everything)
