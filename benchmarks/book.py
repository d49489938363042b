"""L2 order-book costs, each next to a baseline run in the same process on the same updates.

`bench_book(n_updates, root, repeat)`: a deterministic synthetic day of one symbol's L2 book (a
1,000-level ladder a side, 1-3 level changes per update, the mid walking one tick at a time and taking
the level it lands on with it). Reported:
- ingest per update: applying the update to cryptofeed's own OrderBook (order_book, C) and awaiting a
  no-op callback (the baseline: what cryptofeed pays per book update anyway), then the same with the
  lake's l2_book callback (capture) instead; the difference is our callback cost. A plain Python dict
  book is timed too, for scale;
- seal (convert) and flush (transform + Parquet) per stored row, rows per update, bytes per update;
- book_at() latency over that history (flushed every ~500k updates, the last part live) next to the
  same reconstruction SQL in a plain DuckDB over every Parquet file of the day (no manifest pruning).

    python -c "from benchmarks.book import bench_book; print(bench_book(200_000, __import__('pathlib').Path('/tmp/bb'), 3))"
"""
from __future__ import annotations

import asyncio
import statistics
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import duckdb
import numpy as np
from cryptofeed.types import OrderBook

from cryptolake_nb import Lake
from cryptolake_nb.books import book_at

__all__ = ["bench_book", "day_of_updates", "raw_book_sizes"]

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
EXCHANGE, SYMBOL = "BINANCE", "BTC-USDT"
LEVELS = 1_000
CHUNK = 50_000
TICK = Decimal("0.01")


def day_of_updates(n: int, seed: int = 0) -> Iterator[list[tuple[float, list, list]]]:
    """Chunks of (ts, bid entries, ask entries) with Decimal prices and sizes, `n` updates in one day.
    Prices are ticks around a mid at 30,000.00; a move of the mid removes the level it lands on."""
    rng = np.random.default_rng(seed)
    prices = {k: Decimal(3_000_000 + k) * TICK for k in range(-3_000, 3_001)}
    sizes = [Decimal(f"{s:.4f}") for s in rng.lognormal(-1, 1, 512)]
    mid, done = 0, 0
    while done < n:
        m = min(CHUNK, n - done)
        ts = T0 + (done + np.arange(m)) * (86_400 / n) + rng.uniform(0, 86_400 / n / 2, m)
        counts = rng.integers(1, 4, m)
        offsets = np.minimum(rng.geometric(0.15, counts.sum()), LEVELS)
        is_bid = rng.random(counts.sum()) < 0.5
        removed = rng.random(counts.sum()) < 0.25
        size_ix = rng.integers(0, len(sizes), counts.sum())
        moves = rng.choice([-1, 0, 1], m, p=[0.01, 0.98, 0.01])
        chunk, j = [], 0
        for i in range(m):
            bids, asks = [], []
            if moves[i]:
                mid += int(moves[i])
                (asks if moves[i] > 0 else bids).append((prices[mid], Decimal(0)))
            for _ in range(counts[i]):
                if is_bid[j]:
                    bids.append((prices[mid - int(offsets[j])], Decimal(0) if removed[j] else sizes[size_ix[j]]))
                else:
                    asks.append((prices[mid + int(offsets[j])], Decimal(0) if removed[j] else sizes[size_ix[j]]))
                j += 1
            chunk.append((float(ts[i]), bids, asks))
        done += m
        yield chunk


def _ladder() -> OrderBook:
    rng = np.random.default_rng(1)
    bids = {Decimal(3_000_000 - k) * TICK: Decimal(f"{s:.4f}") for k, s in zip(range(1, LEVELS + 1), rng.lognormal(0, 1, LEVELS))}
    asks = {Decimal(3_000_000 + k) * TICK: Decimal(f"{s:.4f}") for k, s in zip(range(1, LEVELS + 1), rng.lognormal(0, 1, LEVELS))}
    return OrderBook(EXCHANGE, SYMBOL, bids=bids, asks=asks)


async def _drive(book: OrderBook, chunk: list, callback: Any) -> None:
    """What an exchange parser does per message: apply the levels to the book, then call back."""
    b_side, a_side = book.book.bids, book.book.asks
    for ts, bids, asks in chunk:
        for side, entries in ((b_side, bids), (a_side, asks)):
            for price, size in entries:
                if size:
                    side[price] = size
                elif price in side:
                    del side[price]
        book.delta = {"bid": bids, "ask": asks}
        book.timestamp = ts
        await callback(book, ts + 0.002)


def _dict_book(chunk: list, book: dict) -> None:
    for _, bids, asks in chunk:
        for side, entries in ((book["bid"], bids), (book["ask"], asks)):
            for price, size in entries:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)


async def _noop(book: Any, receipt: float) -> None:
    return None


def bench_book(n_updates: int, root: Path, repeat: int = 3) -> dict:
    """Ingest and query costs of the l2_book table on `n_updates` synthetic updates (see module doc)."""
    root = Path(root)
    lake = Lake(root / "book", autoflush=False, max_rows=10**12, max_bytes=2**50)
    callback = lake.callbacks(["l2_book"])["l2_book"]
    buffer = lake.buffer("l2_book")
    base_book, lake_book = _ladder(), _ladder()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(callback(_snapshot(lake_book), T0))  # the stream starts from a snapshot
    plain: dict[str, dict] = {"bid": {}, "ask": {}}
    t_base = t_lake = t_dict = t_seal = t_flush = 0.0
    rows = updates_flushed = done = 0
    flush_every = max(CHUNK, min(500_000, n_updates // 4))
    chunks = -(-n_updates // CHUNK)
    for i, chunk in enumerate(day_of_updates(n_updates)):
        t = time.perf_counter(); loop.run_until_complete(_drive(base_book, chunk, _noop)); t_base += time.perf_counter() - t
        t = time.perf_counter(); loop.run_until_complete(_drive(lake_book, chunk, callback)); t_lake += time.perf_counter() - t
        t = time.perf_counter(); _dict_book(chunk, plain); t_dict += time.perf_counter() - t
        t = time.perf_counter(); buffer.seal(); t_seal += time.perf_counter() - t
        done += len(chunk)
        if i < chunks - 1 and (done - updates_flushed >= flush_every or i == chunks - 2):  # the last chunk stays live
            rows += buffer.stats()["rows"]
            t = time.perf_counter(); lake.flush(); t_flush += time.perf_counter() - t
            updates_flushed = done
    loop.close()
    committed = lake.committed_files("l2_book")
    live_rows = buffer.stats()["rows"]
    rows_total = rows + live_rows
    checkpoints = lake.sql("SELECT count(*) AS n FROM l2_book WHERE kind = 'checkpoint'", to="arrow").column("n")[0].as_py()
    out = {
        "updates": n_updates, "rows": rows_total, "rows_per_update": rows_total / n_updates,
        "checkpoint_rows_share": checkpoints / rows_total, "files": len(committed), "live_rows": live_rows,
        "bytes_per_update_on_disk": sum(e.bytes for e in committed) / max(updates_flushed, 1),
        "cryptofeed_book_update_us": t_base / n_updates * 1e6,
        "lake_callback_us": (t_lake - t_base) / n_updates * 1e6,
        "dict_book_update_us": t_dict / n_updates * 1e6,
        "seal_us_per_row": t_seal / rows_total * 1e6,
        "flush_us_per_row": t_flush / max(rows, 1) * 1e6,
    }
    out.update(_bench_book_at(lake, [str(lake.root / e.path) for e in committed], repeat))
    lake.close()
    out["raw"] = raw_book_sizes(min(n_updates, 200_000))
    return out


def raw_book_sizes(n: int) -> dict:
    """Bytes per update of the first `n` updates as the exchange's JSON (a Binance depthUpdate with
    string prices) and as gzipped CSV rows (ts, side, price, size: one row per level change)."""
    import gzip
    import io
    import json

    json_bytes, lines, uid = 0, ["ts,side,price,size"], 1_000_000
    for chunk in day_of_updates(n):
        for ts, bids, asks in chunk:
            ms = int(ts * 1000)
            msg = {"e": "depthUpdate", "E": ms, "s": "BTCUSDT", "U": uid, "u": uid + len(bids) + len(asks) - 1,
                   "b": [[str(p), str(q)] for p, q in bids], "a": [[str(p), str(q)] for p, q in asks]}
            uid += len(bids) + len(asks)
            json_bytes += len(json.dumps(msg, separators=(",", ":")))
            lines += [f"{ts:.6f},bid,{p},{q}" for p, q in bids] + [f"{ts:.6f},ask,{p},{q}" for p, q in asks]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as gz:
        gz.write("\n".join(lines).encode())
    return {"updates": n, "json_bytes_per_update": json_bytes / n, "csv_gz_bytes_per_update": len(buf.getvalue()) / n}


def _snapshot(book: OrderBook) -> OrderBook:
    book.delta, book.timestamp, book.sequence_number, book.checksum = None, T0, None, None
    return book


# the same reconstruction as one plain SQL statement (what book_at would be without the manifest and
# its two-step plan): the latest full book at or before the update at or before $ts, then the deltas
_PLAIN_BOOK_AT = """
WITH r AS MATERIALIZED (
    SELECT update_id, kind, side, price, size, epoch_ns(ts) AS t FROM l2_book WHERE symbol = $symbol AND exchange = $exchange
), u AS (SELECT max(update_id) AS u FROM r WHERE kind <> 'checkpoint' AND t <= $ts),
b AS (SELECT max(update_id) AS b FROM r, u WHERE kind <> 'delta' AND update_id <= u.u),
lv AS (
    SELECT side, price, arg_max(size, update_id) AS size FROM r, u, b
    WHERE side IS NOT NULL AND update_id BETWEEN b.b AND u.u AND (kind = 'delta') = (update_id > b.b)
    GROUP BY side, price
)
SELECT side, price, size, row_number() OVER (PARTITION BY side ORDER BY CASE WHEN side = 'bid' THEN -price ELSE price END) AS level
FROM lv WHERE size > 0 QUALIFY level <= $depth ORDER BY side = 'ask', level
"""


def _bench_book_at(lake: Lake, files: list[str], repeat: int) -> dict:
    """book_at() at instants spread over the day (history and live), and the same SQL in a plain DuckDB
    over every Parquet file of the day (no manifest pruning, no live rows)."""
    rng = np.random.default_rng(2)
    instants = [int((T0 + x) * 1e9) for x in rng.uniform(0, 86_400, 20)]
    ours: list[float] = []
    for _ in range(repeat):
        for t in instants:
            s = time.perf_counter()
            book_at(SYMBOL, t, depth=10, exchange=EXCHANGE, to="arrow", lake=lake)
            ours.append(time.perf_counter() - s)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"CREATE VIEW l2_book AS SELECT * FROM read_parquet({files!r})")
    sql = _PLAIN_BOOK_AT
    plain: list[float] = []
    for _ in range(repeat):
        for t in instants[:5]:  # slow: every file, every time
            s = time.perf_counter()
            con.sql(sql, params={"symbol": SYMBOL, "exchange": EXCHANGE, "ts": t, "depth": 10}).fetchall()
            plain.append(time.perf_counter() - s)
    con.close()
    return {"book_at_ms_median": statistics.median(ours) * 1e3, "book_at_ms_max": max(ours) * 1e3,
            "book_at_queries": len(ours), "plain_duckdb_all_files_ms_median": statistics.median(plain) * 1e3}
