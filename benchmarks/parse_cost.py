"""The lake's cost per message as a share of cryptofeed's own, on the same messages.

Binance aggTrade frames from the simulator's market model (as the simulator would send them) are fed
to cryptofeed's Binance message handler (JSON parse, Decimal conversion, symbol mapping, `Trade`),
once with a no-op callback (cryptofeed's cost) and once with the lake's callback (the difference is
ours on the feed loop). The lake's deferred work per row (seal: convert, dedup, journal; flush:
Parquet) runs on the flusher thread and is reported per row too, and as an all-in share.

A third callback only keeps each object until the next seal point and does nothing else: the floor
for a callback that keeps cryptofeed's objects to convert later, as the lake's did until it stored
the fields of each `Trade` and let the object go (pending.py). Kept objects live past the callback,
so cryptofeed's allocations land on fresh memory instead of reusing what the no-op callback freed
at once.
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
import time
from pathlib import Path

from cryptolake_nb import Lake
from cryptolake_nb.feeds import FeedSpec, build_feed
from cryptolake_nb.simulator import ExchangeSimulator, Market
from cryptolake_nb.simulator.market import AGG_TRADE

__all__ = ["bench_parse_cost"]

SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]
SEAL_EVERY = 2_000  # messages between seals: 0.25 s of a feed at 8k msg/s


def _frames(market: Market, n: int, t0_ms: int) -> list[str]:
    out, ms = [], t0_ms
    while len(out) < n:
        ms += 1
        ev = market.step(ms)
        if ev.kind == AGG_TRADE:
            out.append(f'{{"stream":"{ev.exchange_symbol.lower()}@aggTrade","data":{json.dumps(ev.payload, separators=(",", ":"))}}}')
    return out


async def _noop(obj: object, receipt: float) -> None:
    return None


class _Keep:
    """Keeps every object it is given until `clear()`."""

    def __init__(self) -> None:
        self.kept: list[object] = []

    async def __call__(self, obj: object, receipt: float) -> None:
        self.kept.append(obj)

    def clear(self) -> None:
        self.kept = []


def bench_parse_cost(n: int, root: Path, repeat: int) -> dict:
    """`repeat` rounds of `n` fresh frames each (fresh trade ids: nothing is dropped as a duplicate).

    Paired: each run of SEAL_EVERY frames goes through all three feeds back to back, in a shuffled
    order, and the callbacks' shares are medians of the per-run ratios to the no-op run of the same
    frames. This machine's speed shifts between states for seconds at a time (the no-op runs' own
    spread, `cryptofeed_run_us`, shows it), so comparing totals of whole rounds mixed states; a
    ratio of runs milliseconds apart does not."""
    market = Market(SYMBOLS, seed=3, trade_share=1.0)
    sim = ExchangeSimulator(SYMBOLS, rate=0).start()  # only for the feed's TLS and symbol lists
    lake = Lake(root, autoflush=False, max_rows=10**12, max_bytes=2**50)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    order = random.Random(7)
    try:
        spec = FeedSpec("BINANCE", tuple(SYMBOLS), ("trades",), simulator=sim)
        keep = _Keep()
        feeds = {"noop": build_feed(spec, {"trades": _noop}), "keep": build_feed(spec, {"trades": keep}),
                 "lake": build_feed(spec, lake.callbacks(["trades"]))}
        rounds: dict[str, list[float]] = {"noop": [], "keep": [], "lake": [], "seal": [], "flush": []}
        pairs: dict[str, list[float]] = {"keep": [], "lake": []}  # per run of frames: (t - t_noop) / t_noop
        per_msg: dict[str, list[float]] = {"keep": [], "lake": []}  # per run: (t - t_noop) / frames
        noop_runs: list[float] = []  # per run: cryptofeed's own us/msg

        async def drive(feed: object, frames: list[str]) -> None:
            handler = feed.message_handler
            for f in frames:
                await handler(f, None, time.time())

        for r in range(repeat):
            frames = _frames(market, n, 1_700_000_000_000 + r * 10**8)
            spent = dict.fromkeys(feeds, 0.0)
            sealing = 0.0
            for i in range(0, n, SEAL_EVERY):  # the flusher seals every 0.25 s: objects never pile up
                chunk = frames[i:i + SEAL_EVERY]
                took = {}
                for name in order.sample(list(feeds), len(feeds)):
                    t = time.perf_counter()
                    loop.run_until_complete(drive(feeds[name], chunk))
                    took[name] = time.perf_counter() - t
                    if name == "lake":
                        t = time.perf_counter(); lake.buffer("trades").seal(); sealing += time.perf_counter() - t
                    keep.clear()  # the keeping callback lets go of its objects at the same points
                for name in pairs:
                    pairs[name].append((took[name] - took["noop"]) / took["noop"])
                    per_msg[name].append((took[name] - took["noop"]) / len(chunk) * 1e6)
                noop_runs.append(took["noop"] / len(chunk) * 1e6)
                for name in feeds:
                    spent[name] += took[name]
            for name in feeds:
                rounds[name].append(spent[name])
            rounds["seal"].append(sealing)
            t = time.perf_counter(); lake.flush(); rounds["flush"].append(time.perf_counter() - t)
        stored = lake.status()["tables"]["trades"]["rows_committed"]
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        lake.close()
        sim.stop()
    us = {k: statistics.median(v) / n * 1e6 for k, v in rounds.items()}
    share = {k: statistics.median(v) for k, v in pairs.items()}
    cost = {k: statistics.median(v) for k, v in per_msg.items()}
    deferred = us["seal"] + us["flush"]
    return {"messages": n, "repeat": repeat, "rows_stored": stored, "runs_paired": len(pairs["lake"]),
            "cryptofeed_us_per_msg": us["noop"], "cryptofeed_min_us": min(rounds["noop"]) / n * 1e6,
            "cryptofeed_max_us": max(rounds["noop"]) / n * 1e6, "cryptofeed_run_us": [min(noop_runs), max(noop_runs)],
            "keep_us": cost["keep"], "keep_share": share["keep"], "keep_share_iqr": _quartiles(pairs["keep"]),
            "lake_callback_us": cost["lake"], "callback_share": share["lake"],
            "callback_share_iqr": _quartiles(pairs["lake"]),
            # the previous estimate, for comparison: medians of whole rounds, then their ratio
            "callback_share_of_round_medians": (us["lake"] - us["noop"]) / us["noop"],
            "seal_us_per_row": us["seal"], "flush_us_per_row": us["flush"],
            "all_in_share": (cost["lake"] + deferred) / us["noop"]}


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]] if values else [math.nan, math.nan]
    q = statistics.quantiles(values, n=4)
    return [q[0], q[2]]


def bench_capture_parse(captures: Path) -> dict:
    """cryptofeed's own per-message cost on real traffic: its parsers re-driven over every playable
    capture in `captures` (no-op callbacks); captures its parsers reject are listed, not hidden."""
    from cryptofeed.defines import CANDLES, L2_BOOK, L3_BOOK, TICKER, TRADES

    import cryptolake_nb
    from cryptolake_nb.replay import capture_sets, replay_capture

    messages, seconds, per, failed = 0, 0.0, {}, {}
    for name, files in sorted(capture_sets(captures).items()):
        try:
            r = replay_capture(files, {c: _noop for c in (TRADES, L2_BOOK, L3_BOOK, TICKER, CANDLES)})
        except cryptolake_nb.ReplayError as exc:
            failed[name] = str(exc)[:200]
            continue
        messages += r.messages
        seconds += r.duration
        per[name] = round(r.duration / max(r.messages, 1) * 1e6, 2)
    return {"messages": messages, "parse_us_per_message": seconds / max(messages, 1) * 1e6,
            "per_exchange_us": per, "not_playable": failed}
