"""Memory of buffered rows, in a fresh process: `python -m benchmarks.memory ROOT ROWS` prints JSON.

Trades go through the real callback in chunks of 20k and are sealed after each chunk (what the
flusher does every 0.25 s), with no flush, so every row stays in the live buffer. Reported: RSS
growth per million buffered rows, the Arrow size of those rows (`RecordBatch.nbytes`), their ratio
(target <= 2: what the process holds beyond the Arrow data: dedup keys, allocator slack, ...), and
the peak RSS (VmHWM) including the transient cryptofeed objects before each seal.
"""
from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from decimal import Decimal
from pathlib import Path

from cryptofeed.types import Trade

from cryptolake_nb import Lake, TradeLake

from .stats import peak_rss_bytes, rss_bytes

__all__ = ["buffered_memory"]

CHUNK = 20_000
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")


def buffered_memory(root: Path, rows: int) -> dict:
    lake = Lake(root, autoflush=False, max_rows=10**12, max_bytes=2**50, memory_cap_bytes=2**50)
    cb = TradeLake(lake)
    buf = lake.buffer("trades")
    prices = [Decimal(f"{37_000 + i / 100:.2f}") for i in range(2_000)]
    amounts = [Decimal(f"{(i + 1) / 10_000:.4f}") for i in range(997)]
    loop = asyncio.new_event_loop()

    async def feed(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            await cb(Trade("BINANCE", SYMBOLS[i & 3], "buy" if i & 4 else "sell", amounts[i % 997],
                           prices[(i * 7) % 2_000], 1.7e9 + i * 1e-3, id=str(i >> 2)), 1.7e9 + i * 1e-3 + 0.02)

    loop.run_until_complete(feed(0, CHUNK))  # warm: imports, first allocations, DuckDB untouched
    buf.seal()
    gc.collect()
    base_rss, base_rows, base_bytes = rss_bytes(), buf.stats()["rows"], buf.stats()["bytes"]
    t = time.perf_counter()
    for lo in range(CHUNK, CHUNK + rows, CHUNK):
        loop.run_until_complete(feed(lo, min(lo + CHUNK, CHUNK + rows)))
        buf.seal()
    elapsed = time.perf_counter() - t
    gc.collect()
    st = buf.stats()
    held_rows, arrow_bytes = st["rows"] - base_rows, st["bytes"] - base_bytes
    grown = rss_bytes() - base_rss
    out = {"rows": held_rows, "rss_growth_mb": grown / 2**20, "arrow_mb": arrow_bytes / 2**20,
           "rss_mb_per_million_rows": grown / held_rows * 1e6 / 2**20,
           "arrow_mb_per_million_rows": arrow_bytes / held_rows * 1e6 / 2**20,
           "rss_to_arrow": grown / arrow_bytes, "peak_rss_mb": peak_rss_bytes() / 2**20,
           "ingest_s": elapsed}
    loop.close()
    lake.close()
    return out


if __name__ == "__main__":
    print(json.dumps(buffered_memory(Path(sys.argv[1]), int(sys.argv[2]))))
