"""End-to-end ingest: simulator (own process) -> TLS websocket -> cryptofeed (parse, normalise, L2
book) -> lake callbacks on the collector thread -> seal, journal, flush, all with default settings.

The simulator's rate is raised step by step; a step is sustained when the lake received >= 95% of
the frames sent in it, the simulator sent >= 90% of the rate asked, and no connection dropped. The
highest sustained step is the ingest capacity; freshness (receipt -> visible to a query) is
measured in every step by a poller (see freshness.py). The receiving process's CPU time per message
(every thread: TLS, websocket, cryptofeed, lake, flusher, and the poller's queries) bounds what it
could take if the simulator were not the limit.
"""
from __future__ import annotations

import time
from pathlib import Path

from cryptolake_nb import Lake

from .freshness import Poller, visibility_latency
from .remote_sim import RemoteSimulator

__all__ = ["bench_ingest_e2e"]

SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"]


def _frames(lake: Lake) -> int:
    return sum(h.frames for h in lake.feed_health)


def _reconnects(lake: Lake) -> int:
    return sum(h.reconnects for h in lake.feed_health)


def bench_ingest_e2e(root: Path, rates: list[int], step_s: float) -> dict:
    """Ramp through `rates` (messages/s, half trades, half L2 diffs), `step_s` seconds each."""
    sim = RemoteSimulator(SYMBOLS)
    lake = Lake(root)
    steps: list[dict] = []
    try:
        lake.subscribe("BINANCE", SYMBOLS, ["trades", "l2_book"], simulator=sim)
        sim.command(rate=200)
        lake.start()
        deadline = time.monotonic() + 20
        while _frames(lake) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        poller = Poller(lake, pause_s=0.05).start()
        for rate in rates:
            sim.command(rate=rate)
            time.sleep(1.0)  # settle at the new rate
            s0, f0, r0, t0, c0 = sim.command(), _frames(lake), _reconnects(lake), time.monotonic(), time.process_time()
            ns0 = time.time_ns()
            time.sleep(step_s)
            s1, f1, r1, t1, c1 = sim.command(), _frames(lake), _reconnects(lake), time.monotonic(), time.process_time()
            dt = t1 - t0
            sent = (s1["trades"] + s1["depth"] - s0["trades"] - s0["depth"]) / dt
            received = (f1 - f0) / dt
            step = {"rate": rate, "sent_per_s": sent, "received_per_s": received, "reconnects": r1 - r0,
                    "cpu_us_per_msg": (c1 - c0) / max(f1 - f0, 1) * 1e6, "cpu_share": (c1 - c0) / dt,
                    "window_ns": (ns0, time.time_ns())}
            step["sustained"] = received >= 0.95 * sent and sent >= 0.9 * rate and r1 == r0
            steps.append(step)
            if not step["sustained"]:
                break
        sim.command(rate=0)
        poller.stop()
        receipts = lake.sql("SELECT epoch_ns(receipt_ts) AS r FROM trades", to="arrow").column("r").to_numpy()
        for step in steps:
            a, b = step.pop("window_ns")
            step["freshness"] = visibility_latency(receipts[(receipts >= a) & (receipts < b)], poller.answers)
        status = lake.status()
        stored = {t: lake.sql(f"SELECT count(*) AS n FROM {t}", to="arrow").column("n")[0].as_py() for t in ("trades", "l2_book")}
    finally:
        lake.close()
        sim.stop()
    good = [s for s in steps if s["sustained"]]
    best = max(good, key=lambda s: s["received_per_s"]) if good else None
    return {"steps": steps, "symbols": SYMBOLS, "step_s": step_s,
            "max_sustained_msgs_per_s": best["received_per_s"] if best else 0.0,
            "freshness_at_max": best["freshness"] if best else None,
            "peak_received_per_s": max((s["received_per_s"] for s in steps), default=0.0),
            "limited_by": _limit(steps),
            "rows": stored,
            "malformed": sum(f["malformed"] for f in status["feeds"])}


def _limit(steps: list[dict]) -> str:
    if not steps or steps[-1]["sustained"]:
        return "not reached: every rate asked was sustained"
    last = steps[-1]
    if last["sent_per_s"] < 0.9 * last["rate"]:
        return f"the simulator (sent {last['sent_per_s']:.0f}/s of {last['rate']}/s asked)"
    return f"the receiving process: cryptofeed + lake took {last['received_per_s']:.0f}/s of {last['sent_per_s']:.0f}/s sent"
