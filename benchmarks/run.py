"""`make bench` / `make bench-quick`: the lake against its peers and its own targets, in one run.

Writes benchmarks/results/bench-<mode>-<time>.json and (full mode, or --doc) docs/benchmarks.md.
Sections can be picked with --only (e.g. `--only comparison,memory`) while working on one of them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .book import bench_book
from .compaction import bench_compaction
from .comparison import bench_comparison
from .flush_bench import bench_flush
from .ingest_e2e import bench_ingest_e2e
from .journal import bench_journal
from .machine import machine
from .method import DIAGNOSIS, METHOD
from .parse_cost import bench_capture_parse, bench_parse_cost
from .report import markdown
from .targets import checks

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "data" / "cryptofeed-captures"
RESULTS = Path(__file__).resolve().parent / "results"
DOC = REPO / "docs" / "benchmarks.md"

QUICK = dict(trades=1_000_000, days=4, live=200_000, parse_msgs=20_000, flush=500_000, rates=[2_000, 5_000, 10_000],
             rate_step_s=2, sustained_rate=50_000, sustained_s=10, memory_rows=300_000, book=100_000, journal=200_000,
             compact_files=100, repeat=3)
FULL = dict(trades=10_000_000, days=4, live=200_000, parse_msgs=200_000, flush=2_000_000,
            rates=[2_000, 5_000, 10_000, 20_000, 50_000], rate_step_s=5, sustained_rate=50_000, sustained_s=600,
            memory_rows=2_000_000, book=5_000_000, journal=1_000_000, compact_files=1_000, repeat=5)
NOT_RUN_FULL = [
    "100M historical trades: not in `make bench`. The 10M comparison takes ~2 minutes here; 100M (the lake "
    "~1.3 GB, pandas, ArcticDB and the source day files ~8 GB more) takes ~30 minutes more, beyond what a "
    "`make bench` may take on this 2-core machine. `python -m benchmarks.run --full --trades 100000000 "
    "--only comparison --out docs/benchmarks-100m.md` runs it (published in docs/benchmarks-100m.md when run).",
    "Freshness at 50k msg/s through the simulator and cryptofeed: the path does not reach 50k msg/s on this "
    "machine (see the ingest ramp), so it is measured with a direct producer through the real callback.",
]


def _subprocess_json(module: str, *args: Any) -> dict:
    """Run `python -m benchmarks.<module> args...` in a fresh interpreter; its JSON output."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.{module} failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout)


def sections(s: dict, root: Path, arctic: bool) -> dict[str, Callable[[], dict]]:
    """Name -> the call that measures it, in run order (one at a time: 2 cores)."""
    rep = s["repeat"]
    return {
        "comparison": lambda: bench_comparison(s["trades"], s["days"], s["live"], root / "cmp", rep, arctic=arctic),
        "parse_cost": lambda: bench_parse_cost(s["parse_msgs"], root / "parse", rep),
        "capture_parse": lambda: bench_capture_parse(CAPTURES),
        "ingest_e2e": lambda: bench_ingest_e2e(root / "e2e", s["rates"], s["rate_step_s"]),
        "sustained": lambda: _subprocess_json("sustained", root / "sustained", s["sustained_rate"], s["sustained_s"]),
        "memory": lambda: _subprocess_json("memory", root / "memory", s["memory_rows"]),
        "flush": lambda: bench_flush(s["flush"], root / "flush", rep),
        "book": lambda: bench_book(s["book"], root / "book", rep),
        "journal": lambda: bench_journal(s["journal"], root / "journal", repeat=rep),
        "compaction": lambda: bench_compaction(s["compact_files"], 2_000, root / "compact", rep),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, CI-sized time (< 2 minutes)")
    ap.add_argument("--full", action="store_true", help="issue-sized runs (10M trades); writes docs/benchmarks.md")
    ap.add_argument("--only", default="", help="comma-separated sections to run")
    ap.add_argument("--trades", type=int, help="override the number of market trades")
    ap.add_argument("--no-arctic", action="store_true", help="skip the ArcticDB peer")
    ap.add_argument("--doc", action="store_true", help="write docs/benchmarks.md even in quick mode")
    ap.add_argument("--report", type=Path, help="only re-render the report from a stored result JSON")
    ap.add_argument("--out", type=Path, default=DOC, help="the report path (default docs/benchmarks.md)")
    args = ap.parse_args(argv)
    if args.report:
        return _publish(json.loads(args.report.read_text()), args.out)
    quick = not args.full
    sizes = dict(QUICK if quick else FULL)
    if args.trades:
        sizes["trades"] = args.trades
    started = time.time()
    result: dict[str, Any] = {"machine": machine(), "mode": "quick" if quick else "full", "sizes": sizes,
                              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                              "not_run": [] if quick else [n for n in NOT_RUN_FULL
                                                           if not (n.startswith("100M") and sizes["trades"] >= 10**8)],
                              "errors": {}, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="cryptolake-bench-") as tmp:
        todo = sections(sizes, Path(tmp), arctic=not args.no_arctic)
        wanted = [x for x in args.only.split(",") if x] or list(todo)
        for name in wanted:
            t = time.perf_counter()
            load_before = os.getloadavg()[0]
            print(f"[bench] {name} ...", flush=True)
            try:
                result[name] = todo[name]()
            except Exception as exc:  # a section that breaks is reported, the others still run
                result["errors"][name] = f"{type(exc).__name__}: {exc}"
                print(f"[bench] {name} FAILED: {exc}", flush=True)
            result["sections"][name] = {"seconds": round(time.perf_counter() - t, 1),
                                        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
            print(f"[bench] {name} took {time.perf_counter() - t:.1f} s", flush=True)
    result["elapsed_s"] = time.time() - started
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["checks"] = [dict(zip(("what", "lake", "baseline", "target", "met"), c)) for c in checks(result)]
    for c in result["checks"]:
        met = "-" if c["met"] is None else "yes" if c["met"] else "NO"
        print(f"{met:>4}  {c['what']}: {c['lake']}  |  {c['baseline']}  |  target {c['target']}")
    for name, err in result["errors"].items():
        result["not_run"].append(f"section `{name}` failed: {err}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{result['mode']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"results: {out}")
    if not quick or args.doc:
        _publish(result, args.out)
    print(f"total {result['elapsed_s']:.0f} s")
    return 1 if result["errors"] else 0


def _publish(result: dict, out: Path = DOC) -> int:
    """The report (docs/benchmarks.md by default), and the result it was made from beside it (.json)."""
    result["checks"] = [dict(zip(("what", "lake", "baseline", "target", "met"), c)) for c in checks(result)]
    out.write_text(markdown(result, METHOD, DIAGNOSIS))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {out} and {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
