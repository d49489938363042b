"""Cost of health and metrics on the ingest path: callback + seal throughput, monitoring off vs on.

Each run opens a fresh lake and pushes the same pre-built cryptofeed `Trade` objects through the
lake's real callback (`TradeLake`) on an event loop, as the collector thread does, while the
flusher thread seals every 0.25 s (the producer seals itself past 2 x SEAL_ROWS pending); the run
ends when every row is sealed. Conversion, dedup, journal append and gap detection happen at seal
time in both configurations.

- off: `Lake(monitoring=False)`: no seal-time counters, no monitor thread, no endpoint.
- on:  `Lake(monitoring=Monitoring())`: `HealthStats.observe` on every sealed batch, the alert
  monitor thread evaluating the full health report every second, and a scraper thread GETting
  /metrics over loopback every second (each scrape builds and renders the report).

Runs come in pairs, off and on next to each other (alternating which goes first), in one process.
The cost is the median over the pairs of on / off - 1: a pair shares the machine's load of its
moment, so a shared machine whose load changes during the benchmark does not move it the way it
moves a ratio of two medians (also reported). Process CPU time (all threads) is a second figure;
target: both below 5 %. Alongside, the parts measured alone: `observe` per sealed batch, one health
report, one /metrics render, one scrape; added up per run they estimate the cost without the noise.

    python -m benchmarks.health_bench [--runs 11] [--trades 500000] [--write docs/benchmarks-health.md]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptofeed.types import Trade

from cryptolake_nb import Lake, TradeLake
from cryptolake_nb.health import HealthStats, Monitoring
from cryptolake_nb.metrics import render

__all__ = ["TARGET", "main", "make_trades", "measure", "report_markdown", "run_once"]

TARGET = 0.05  # health and metrics may cost at most 5 % of callback + seal throughput
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")
RECEIPT_DELAY = 0.012  # receipt - exchange time of every trade (the lag the counters report)


def make_trades(n: int) -> list[tuple[Trade, float]]:
    """n (Trade, receipt time) pairs over four symbols, ids consecutive per symbol (no sequence gaps)."""
    prices = [Decimal(f"{37_000 + i / 100:.2f}") for i in range(2_000)]
    amounts = [Decimal(f"{(i + 1) / 10_000:.4f}") for i in range(997)]
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        ts = t0 + i * 1e-4
        out.append((Trade("BINANCE", SYMBOLS[i & 3], "buy" if i & 4 else "sell", amounts[i % 997],
                          prices[(i * 7) % 2_000], ts, id=str(i >> 2)), ts + RECEIPT_DELAY))
    return out


class Scraper:
    """GETs `url` every `every_s` seconds on a thread; counts scrapes and keeps the last body's size."""

    def __init__(self, url: str, every_s: float = 1.0) -> None:
        self.url, self.every_s = url, every_s
        self.scrapes, self.bytes = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)

    def start(self) -> "Scraper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with urllib.request.urlopen(self.url, timeout=10) as response:
                self.bytes = len(response.read())
            self.scrapes += 1
            if self._stop.wait(self.every_s):
                return


def run_once(root: Path, trades: list[tuple[Trade, float]], monitored: bool) -> dict[str, Any]:
    """One run: seconds from the first callback until every row is sealed, and what monitoring did."""
    monitoring = Monitoring(show=False, interval_s=1.0) if monitored else False
    with Lake(root, monitoring=monitoring, autocompact=False) as lake:
        scraper = None
        if monitored:
            host, port = lake.serve_metrics()
            scraper = Scraper(f"http://{host}:{port}/metrics").start()
        callback = TradeLake(lake)
        buffers = list(lake._buffers.values())

        async def push() -> None:
            for trade, receipt in trades:
                await callback(trade, receipt)

        loop = asyncio.new_event_loop()
        gc.collect()
        try:
            started, cpu = time.perf_counter(), time.process_time()
            loop.run_until_complete(push())
            for buf in buffers:
                buf.seal()
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        finally:
            loop.close()
        if scraper is not None:
            scraper.stop()
        counted = lake.health_stats.messages("BINANCE", ["trades"]) if lake.health_stats is not None else None
        rows = lake._buffers["trades"].stats()["rows"]
        out = {"seconds": elapsed, "cpu_seconds": cpu, "rows": rows, "messages_counted": counted,
               "monitor_rounds": lake._monitor.rounds, "scrapes": scraper.scrapes if scraper else 0,
               "metrics_bytes": scraper.bytes if scraper else 0}
    if rows != len(trades) or (monitored and counted != len(trades)):
        raise RuntimeError(f"run lost rows or counts: {out}")
    return out


def _parts(trades: list[tuple[Trade, float]], root: Path) -> dict[str, float]:
    """The monitoring work measured alone: observe per sealed batch, one health report, one render."""
    with Lake(root, monitoring=Monitoring(show=False), autoflush=False, autocompact=False) as lake:
        callback = TradeLake(lake)

        async def push() -> None:
            for trade, receipt in trades[:100_000]:
                await callback(trade, receipt)

        asyncio.run(push())
        batches = [s.batch for s in lake._buffers["trades"].snapshot()]
        lake.flush()  # committed files for the report to count
        stats = HealthStats()
        observe = []
        for batch in batches:
            t = time.perf_counter()
            stats.observe("trades", batch)
            observe.append(time.perf_counter() - t)
        reports, renders, scrapes = [], [], []
        host, port = lake.serve_metrics()
        for _ in range(50):
            t = time.perf_counter()
            h = lake.health()
            reports.append(time.perf_counter() - t)
            t = time.perf_counter()
            render(h, lake.alerts.summary())
            renders.append(time.perf_counter() - t)
            t = time.process_time()
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
                response.read()
            scrapes.append(time.process_time() - t)  # server and client side, both in this process
        rows = sum(b.num_rows for b in batches)
    return {"sealed_batches": len(batches), "rows_per_batch": rows / len(batches),
            "observe_us_per_batch": statistics.median(observe) * 1e6,
            "observe_ns_per_row": sum(observe) / rows * 1e9,
            "health_report_ms": statistics.median(reports) * 1e3, "render_ms": statistics.median(renders) * 1e3,
            "scrape_cpu_ms": statistics.median(scrapes) * 1e3}


def measure(runs: int = 11, n_trades: int = 500_000, workdir: Path | None = None) -> dict[str, Any]:
    """Alternating runs (after one untimed warm-up of each), medians, the cost ratio and the parts."""
    trades = make_trades(n_trades)
    gc.collect()
    gc.freeze()  # the pre-built trades are not rescanned by every collection during the runs
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        for monitored in (False, True):  # warm-up: imports, allocator, page cache
            run_once(base / f"warm-{monitored}", trades, monitored)
        off, on = [], []
        for i in range(runs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for monitored in order:
                result = run_once(base / f"run-{i}-{monitored}", trades, monitored)
                (on if monitored else off).append(result)
        parts = _parts(trades, base / "parts")
    gc.unfreeze()
    med_off = statistics.median(r["seconds"] for r in off)
    med_on = statistics.median(r["seconds"] for r in on)
    cost = statistics.median(b["seconds"] / a["seconds"] for a, b in zip(off, on)) - 1  # per pair, then median
    spread = statistics.median(abs(r["seconds"] - med_off) for r in off) / med_off  # median absolute deviation
    cpu_off = statistics.median(r["cpu_seconds"] for r in off)
    cpu_on = statistics.median(r["cpu_seconds"] for r in on)
    # the parts' CPU per "on" run, over the off runs' CPU: what monitoring costs without the machine's noise
    added = (parts["observe_ns_per_row"] * 1e-9 * n_trades
             + statistics.mean(r["scrapes"] for r in on) * parts["scrape_cpu_ms"] * 1e-3
             + statistics.mean(r["monitor_rounds"] for r in on) * parts["health_report_ms"] * 1e-3)
    cpu_cost = cpu_on / cpu_off - 1
    return {
        "trades": n_trades, "runs": runs, "target": TARGET,
        "medians_cost": med_on / med_off - 1, "cpu_cost": cpu_cost, "off_spread": spread, "estimated_cost": added / cpu_off,
        "off": {"median_s": med_off, "runs_s": [r["seconds"] for r in off], "msgs_per_s": n_trades / med_off,
                "cpu_median_s": cpu_off},
        "on": {"median_s": med_on, "runs_s": [r["seconds"] for r in on], "msgs_per_s": n_trades / med_on,
               "cpu_median_s": cpu_on,
               "scrapes": [r["scrapes"] for r in on], "monitor_rounds": [r["monitor_rounds"] for r in on],
               "metrics_bytes": max(r["metrics_bytes"] for r in on)},
        "cost": cost, "met": cost < TARGET and cpu_cost < TARGET, "parts": parts,
    }


def report_markdown(result: dict[str, Any], machine: dict[str, Any] | None = None) -> str:
    """docs/benchmarks-health.md from one `measure()` result."""
    off, on, parts = result["off"], result["on"], result["parts"]
    verdict = "**met**" if result["met"] else "**not met**"
    lines = [
        "# Benchmark: cost of health and metrics on the ingest path",
        "",
        "Generated by `python -m benchmarks.health_bench --write docs/benchmarks-health.md` (method in the",
        "module docstring of `benchmarks/health_bench.py`). Callback + seal throughput of the same",
        f"{result['trades']:,} trades, monitoring off vs on, {result['runs']} alternating runs each in one process,",
        "medians. \"On\" is everything a headless collector with monitoring runs: seal-time counters,",
        "the alert monitor (1 s) and a Prometheus scraper GETting /metrics every second over loopback.",
        "",
        f"Target: cost < {result['target']:.0%}: {verdict} (wall time, median over the pairs of on / off - 1: "
        f"{result['cost']:+.2%}; process CPU time, median on / median off - 1: {result['cpu_cost']:+.2%}; both "
        "must be below the target).",
        "",
        "| configuration | median s | trades/s | process CPU s (all threads) | runs (s) |",
        "|---|---:|---:|---:|---|",
        f"| off | {off['median_s']:.3f} | {off['msgs_per_s']:,.0f} | {off['cpu_median_s']:.3f} | "
        f"{', '.join(f'{s:.3f}' for s in off['runs_s'])} |",
        f"| on | {on['median_s']:.3f} | {on['msgs_per_s']:,.0f} | {on['cpu_median_s']:.3f} | "
        f"{', '.join(f'{s:.3f}' for s in on['runs_s'])} |",
        "",
        f"The ratio of the two wall-time medians gives {result['medians_cost']:+.2%}. Process CPU time counts every "
        "thread of the process (also the monitor, the HTTP server and the in-process scraper). Run-to-run "
        f"spread of the off runs (median absolute deviation): {result['off_spread']:.1%} of their median: on a "
        "shared machine (see the load below) single runs move by more than the cost, which is why runs are "
        "compared in pairs and the parts are also timed alone.",
        "",
        f"Scrapes per \"on\" run: {', '.join(map(str, on['scrapes']))}; monitor rounds: "
        f"{', '.join(map(str, on['monitor_rounds']))}; a scrape is {on['metrics_bytes']:,} bytes of text.",
        "",
        "The parts alone (medians):",
        "",
        "| part | cost |",
        "|---|---:|",
        f"| `HealthStats.observe`, per sealed batch ({parts['rows_per_batch']:,.0f} rows on average) | "
        f"{parts['observe_us_per_batch']:.0f} us ({parts['observe_ns_per_row']:.0f} ns per row) |",
        f"| one health report (`lake.health()`) | {parts['health_report_ms']:.2f} ms |",
        f"| one /metrics render of that report | {parts['render_ms']:.2f} ms |",
        f"| one scrape, server and client (CPU) | {parts['scrape_cpu_ms']:.2f} ms |",
        "",
        f"Added up for one \"on\" run (observe on every row, its scrapes and monitor rounds) and divided by the "
        f"off runs' CPU time, the parts come to {result['estimated_cost']:.2%}: the cost without the machine's noise.",
        "",
        "Nothing is added per message: the callback is the same in both configurations; the counters run",
        "once per sealed batch, the report once per monitor round and per scrape.",
    ]
    if machine:
        lines += ["", f"Machine: {machine.get('cpu')}, {machine.get('cpus')} CPUs, Python {machine.get('python')}; "
                      f"load average at start {machine.get('load_avg_at_start')}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.health_bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--trades", type=int, default=500_000)
    p.add_argument("--write", type=Path, help="write the markdown report here")
    args = p.parse_args(argv)
    from benchmarks.machine import machine

    info = machine()
    result = measure(args.runs, args.trades)
    print(json.dumps(result, indent=1))
    if args.write:
        args.write.write_text(report_markdown(result, info))
    return result


if __name__ == "__main__":
    main()
