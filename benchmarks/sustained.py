"""Sustained ingest in a fresh process: a direct producer at a fixed rate into a lake with its
default settings (background flusher, journal, compaction), a poller measuring freshness, and RSS
sampled every second. Run as `python -m benchmarks.sustained ROOT RATE SECONDS`: prints JSON.
A separate process, so that RSS is this workload's alone."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from cryptolake_nb import Lake

from .freshness import Poller, visibility_latency
from .producer import DirectProducer
from .stats import peak_rss_bytes, rss_bytes

__all__ = ["sustained"]


def sustained(root: Path, rate: float, seconds: float) -> dict:
    """Figures of one run (see the module docstring)."""
    base_rss = rss_bytes()
    lake = Lake(root)
    started_ns = time.time_ns()
    producer = DirectProducer(lake, rate).start()
    poller = Poller(lake, pause_s=0.05).start()
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        buffered = lake.buffer("trades").stats()
        samples.append({"t_s": round(time.monotonic() - t0, 2), "rss_mb": rss_bytes() / 2**20,
                        "sent": producer.sent, "buffered_rows": buffered["rows"], "buffered_mb": buffered["bytes"] / 2**20,
                        "dedup_mb": lake.dedup.nbytes() / 2**20, "files": len(lake.committed_files("trades"))})
    producer.stop()
    poller.stop()
    achieved = producer.sent / (time.monotonic() - t0)
    receipts = lake.sql("SELECT epoch_ns(receipt_ts) AS r FROM trades WHERE epoch_ns(receipt_ts) >= $s",
                        {"s": started_ns}, to="arrow").column("r").to_numpy()
    status = lake.status()
    lake.close()
    rss = [s["rss_mb"] for s in samples]
    half = samples[len(samples) // 2:]
    slope = (np.polyfit([s["t_s"] for s in half], [s["rss_mb"] for s in half], 1)[0] * 60) if len(half) > 2 else None
    return {"rate": rate, "seconds": seconds, "achieved_rate": achieved, "producer_max_behind_s": producer.behind_s,
            "rows_stored": len(receipts), "freshness": visibility_latency(receipts, poller.answers),
            "freshness_by_third": [visibility_latency(receipts[(receipts >= a) & (receipts < b)], poller.answers)
                                   for a, b in _thirds(started_ns, time.time_ns())],
            "queries": len(poller.query_s), "query_ms_p50": float(np.median(poller.query_s) * 1e3) if poller.query_s else None,
            "rss_base_mb": base_rss / 2**20, "rss_first_mb": rss[0] if rss else None, "rss_max_mb": max(rss, default=None),
            "rss_last_mb": rss[-1] if rss else None, "peak_rss_mb": peak_rss_bytes() / 2**20, "rss_slope_mb_per_min_second_half": slope,
            "flushes": status["flush"]["flushes"], "samples": samples}


def _thirds(a: int, b: int) -> list[tuple[int, int]]:
    step = (b - a) // 3
    return [(a + i * step, a + (i + 1) * step) for i in range(3)]


if __name__ == "__main__":
    print(json.dumps(sustained(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))))
