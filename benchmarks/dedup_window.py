"""Cost of the dedup key store as its window fills (issue 4/7): time per 12.5k-key batch with an
empty window and with millions of keys, next to a baseline in the same process that re-sorts the
whole window of hashes on every batch (the store's first design).

    python -m benchmarks.dedup_window [--keys N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa

from cryptolake_nb.dedup import Deduper

BATCH = 12_500
TS0 = 1_700_000_000_000_000_000


def batch(k: int) -> pa.RecordBatch:
    ids = np.arange(k * BATCH, (k + 1) * BATCH)
    return pa.record_batch({
        "exchange": pa.array(["BINANCE"] * BATCH), "symbol": pa.array(["BTC-USDT"] * BATCH),
        "trade_id": pa.array(ids.astype(str)),
        "ts": pa.array(TS0 + ids * 20_000, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
    })


def lake_store(n: int) -> list[float]:
    d = Deduper({"trades": ("exchange", "symbol", "trade_id")}, lambda *a: [], window_s=600)
    times = []
    for k in range(n):
        b = batch(k)
        t = time.perf_counter()
        d("trades", b)
        times.append(time.perf_counter() - t)
    return times


def resort_baseline(n: int) -> list[float]:
    """Membership by searchsorted, then the whole window (hashes and their places) re-sorted with
    the new hashes on every batch, as the first design of the store did."""
    window = np.empty(0, np.uint64)
    places = np.empty(0, np.int64)
    times = []
    rng = np.random.default_rng(0)
    for _ in range(n):
        h = rng.integers(0, 2**63, BATCH, dtype=np.uint64)
        t = time.perf_counter()
        if len(window):
            pos = np.minimum(np.searchsorted(window, h), len(window) - 1)
            _ = window[pos] == h
        merged = np.concatenate([window, h])
        order = np.argsort(merged, kind="stable")
        window, places = merged[order], np.concatenate([places, np.arange(BATCH, dtype=np.int64)])[order]
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=5_000_000)
    n = ap.parse_args().keys // BATCH
    for name, fn in (("lake key store", lake_store), ("whole-window re-sort", resort_baseline)):
        t = fn(n)
        print(f"{name}: first 10 batches {statistics.median(t[:10]) * 1e3:.1f} ms, last 50 "
              f"{statistics.median(t[-50:]) * 1e3:.1f} ms (max {max(t) * 1e3:.0f} ms) per {BATCH:,}-key batch at {n * BATCH:,} keys")


if __name__ == "__main__":
    main()
