"""`python -m benchmarks.helpers_bench [--quick|--full]`: every quant helper against plain pandas, same run.

The lake holds the synthetic market of `synth.market` (trades; --full: 10M over 4 days) plus ticker
quotes derived from it, written through the lake's own path (append_batch + flush, one flush per
day), and `live` more trades (and their quotes) in the live buffer, one hour after the history. Each
case runs a helper (`lake.ohlc(...)`, ...) and the same computation in pandas (`helpers_pandas`),
checks that both answers agree, then times both (median of `repeat` runs after one warm-up; min and
max kept). Variants: `day` one symbol-day of history, `recent` the last history day and the live
rows, `full` one symbol over all history and live rows, `multi` every symbol (5 for ohlc) over
everything. Writes benchmarks/results/helpers-<mode>-<time>.json and, in full mode (or --doc),
docs/benchmarks-helpers.md.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cryptolake_nb import Lake
from cryptolake_nb.schema import schema_for

from .helpers_pandas import PandasHelpers
from .helpers_report import disagreement, markdown, verdicts
from .machine import machine
from .stats import summary
from .synth import DAY_NS, SYMBOLS, T0_NS, market, market_counts, stream_day

__all__ = ["Case", "build", "cases", "live_trades", "quotes_for", "run_case"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
DOC = REPO / "docs" / "benchmarks-helpers.md"
QUICK = dict(trades=1_000_000, days=4, live=50_000, repeat=3)
FULL = dict(trades=10_000_000, days=4, live=200_000, repeat=5)
HOUR_NS = 3600 * 10**9
MIN, SEC = 60 * 10**9, 10**9


# -- data ---------------------------------------------------------------------------------------
def quotes_for(trades: pa.Table, seed: int, share: float = 0.5) -> pa.Table:
    """Ticker rows for about `share` of the trades: each one halfway between a trade and the one before
    it in its stream, quoting around the earlier trade's price (~1-5 bps each side, on the symbol's
    tick, so quotes repeat as a resting top of book does)."""
    order = pc.sort_indices(trades, [("exchange", "ascending"), ("symbol", "ascending"), ("ts", "ascending")])
    t = trades.take(order)
    rng = np.random.default_rng([seed, 17])
    ts = t.column("ts").to_numpy().view(np.int64)
    stream = pc.binary_join_element_wise(t.column("exchange"), t.column("symbol"), "/").to_numpy(zero_copy_only=False)
    keep = np.zeros(len(ts), bool)
    keep[1:] = (stream[1:] == stream[:-1]) & (rng.random(len(ts) - 1) < share)
    idx = np.flatnonzero(keep)
    price = t.column("price").to_numpy()[idx - 1]
    tick = np.array([SYMBOLS[s][2] for s in t.column("symbol").take(idx).to_pylist()])
    half = rng.uniform(0.5e-4, 2.5e-4, len(idx))
    qts = (ts[idx - 1] + ts[idx]) // 2
    schema = schema_for("ticker")
    cols = {"exchange": t.column("exchange").take(idx), "symbol": t.column("symbol").take(idx),
            "bid": pa.array(np.round(np.floor(price * (1 - half) / tick) * tick, 10)),
            "ask": pa.array(np.round(np.ceil(price * (1 + half) / tick) * tick, 10)),
            "extra": pa.nulls(len(idx), pa.string()), "ts": pa.array(qts).cast(schema.field("ts").type),
            "receipt_ts": pa.array(qts + rng.integers(1_000_000, 40_000_000, len(idx))).cast(schema.field("ts").type)}
    quotes = pa.table([cols[f.name] for f in schema], schema=schema)
    return quotes.take(pc.sort_indices(quotes, [("ts", "ascending")]))


def live_trades(n: int, days: int, seed: int = 0) -> pa.Table:
    """`n` trades of every stream in the hour after the history (a day's intraday shape, squeezed)."""
    parts, start = [], T0_NS + days * DAY_NS
    for i, ((stream, _), count) in enumerate(market_counts(n, 1).items()):
        day = stream_day(stream, days, count, days=days + 1, first_id=10**9 + i * 10**7, seed=seed)
        ts = day.column("ts").to_numpy().view(np.int64)
        lag = day.column("receipt_ts").to_numpy().view(np.int64) - ts
        squeezed = start + (ts - start) // 24
        for name, values in (("ts", squeezed), ("receipt_ts", squeezed + lag)):
            field = day.schema.field(name)
            day = day.set_column(day.schema.get_field_index(name), field, pa.array(values).cast(field.type))
        parts.append(day)
    table = pa.concat_tables(parts)
    return table.take(pc.sort_indices(table, [("ts", "ascending")]))


def build(root: Path, total: int, days: int, live: int) -> tuple[Lake, dict[str, pd.DataFrame]]:
    """The lake (history flushed day by day, `live` trades and their quotes left in the buffer) and
    the live rows as the pandas frames a feed handler would hold."""
    lake = Lake(root, autoflush=False, autocompact=False, durability="none", max_rows=10**12, max_bytes=2**50)
    for day, table in market(total, days):
        lake.buffer("trades").append_batch(table)
        lake.buffer("ticker").append_batch(quotes_for(table, seed=day))
        lake.flush()
    trades = live_trades(live, days)
    quotes = quotes_for(trades, seed=days)
    lake.buffer("trades").append_batch(trades)
    lake.buffer("ticker").append_batch(quotes)
    return lake, {"trades": trades.to_pandas(), "ticker": quotes.to_pandas()}


# -- cases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One helper call on the lake and the same computation in pandas."""

    helper: str
    variant: str  # day | recent | full | multi
    call: str     # the lake call, as a user writes it
    lake: Callable[[Lake], Any]
    pandas: Callable[[PandasHelpers], Any]
    # the lake's SQL reading the rows the call returns and nothing more (asof_join: every left row),
    # timed alongside: what producing those rows costs through DuckDB (the call reads them by pyarrow)
    floor: Callable[[Lake], Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.helper}/{self.variant}"


def _scopes(days: int) -> dict[str, dict[str, Any]]:
    """Per scope: the symbols, and the keyword arguments (exchange, start, end) both sides get."""
    every = list(SYMBOLS)
    return {
        "day": dict(symbols="BTC-USDT", kw=dict(exchange="BINANCE", start=T0_NS + DAY_NS, end=T0_NS + 2 * DAY_NS)),
        "recent": dict(symbols="BTC-USDT", kw=dict(exchange="BINANCE", start=T0_NS + (days - 1) * DAY_NS)),
        "full": dict(symbols="BTC-USDT", kw=dict(exchange="BINANCE")),
        "multi": dict(symbols=every, kw=dict()),
        "multi5": dict(symbols=every[:5], kw=dict()),
        "multi_quotes": dict(symbols=every, kw=dict(exchange="BINANCE")),  # quote helpers: one venue
        # asof_join returns every trade: over everything that is 10M rows out, a day is 2.5M
        "multi_day": dict(symbols=every, kw=dict(start=T0_NS + DAY_NS, end=T0_NS + 2 * DAY_NS)),
    }


# helper -> [(variant, scope, helper args for the lake, the same for pandas)]
_PLAN: dict[str, list[tuple[str, str, dict, dict]]] = {
    "ohlc": [("day", "day", {"interval": "1min"}, {"interval_ns": MIN}),
             ("recent", "recent", {"interval": "1min"}, {"interval_ns": MIN}),
             ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
             ("multi", "multi5", {"interval": "1min"}, {"interval_ns": MIN})],
    "vwap": [("day", "day", {"interval": "1min"}, {"interval_ns": MIN}),
             ("full", "full", {}, {}), ("multi", "multi", {}, {})],
    "twap": [("day", "day", {"interval": "1min"}, {"interval_ns": MIN}),
             ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
             ("multi", "multi", {"interval": "1min"}, {"interval_ns": MIN})],
    "returns": [("day", "day", {"interval": "1min"}, {"interval_ns": MIN}),
                ("full", "full", {"interval": "1min", "how": "log"}, {"interval_ns": MIN, "how": "log"}),
                ("multi", "multi", {"interval": "1min"}, {"interval_ns": MIN})],
    "realized_volatility": [("day", "day", {"interval": "1h"}, {"interval_ns": 60 * MIN}),
                            ("full", "full", {}, {}), ("multi", "multi", {}, {})],
    "spread": [("day", "day", {"interval": "1s"}, {"interval_ns": SEC}),
               ("recent", "recent", {"interval": "1s"}, {"interval_ns": SEC}),
               ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
               ("multi", "multi_quotes", {"interval": "1min"}, {"interval_ns": MIN})],
    "mid": [("day", "day", {"interval": "1s"}, {"interval_ns": SEC}),
            ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
            ("multi", "multi_quotes", {"interval": "1min"}, {"interval_ns": MIN})],
    "trade_imbalance": [("day", "day", {"interval": "1min"}, {"interval_ns": MIN}),
                        ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
                        ("multi", "multi", {"interval": None}, {"interval_ns": None})],
    "volume_profile": [("day", "day", {"bin": 10.0}, {"bin": 10.0}),
                       ("full", "full", {"bin": 10.0}, {"bin": 10.0}),
                       ("multi", "multi", {"bin": 1.0}, {"bin": 1.0})],
    "asof_join": [("day", "day", {"tolerance": "1s"}, {"tolerance_ns": SEC}),
                  ("recent", "recent", {"tolerance": "1s"}, {"tolerance_ns": SEC}),
                  ("full", "full", {"tolerance": "1s"}, {"tolerance_ns": SEC}),
                  ("multi", "multi_day", {"tolerance": "1s"}, {"tolerance_ns": SEC})],
    "resample": [("day", "day", {"interval": "1s"}, {"interval_ns": SEC}),
                 ("full", "full", {"interval": "1min"}, {"interval_ns": MIN}),
                 ("multi", "multi_quotes", {"interval": "1min"}, {"interval_ns": MIN})],
}


def _lake_call(helper: str, symbols: Any, args: dict, kw: dict) -> tuple[str, Callable[[Lake], Any]]:
    """The lake side of a case: the call text and a function of the lake."""
    if helper == "asof_join":
        full = dict(columns=["bid", "ask"], **args, **kw)
        return (f"asof_join('trades', 'ticker', {symbols!r}{_kwargs(full)})",
                lambda lake: lake.asof_join("trades", "ticker", symbols, **full))
    if helper == "resample":
        full = dict(symbols=symbols, **kw)
        interval = args["interval"]
        return (f"resample('ticker', {interval!r}, 'previous'{_kwargs(full)})",
                lambda lake: lake.resample("ticker", interval, "previous", **full))
    full = {**args, **kw}
    return f"{helper}({symbols!r}{_kwargs(full)})", lambda lake: getattr(lake, helper)(symbols, **full)


def _kwargs(kw: dict) -> str:
    """', a=1, b=2' as the call shows them (times as dates), or '' for none."""
    shown = {k: (pd.Timestamp(v, tz="UTC").strftime("%Y-%m-%d") if k in ("start", "end") else v) for k, v in kw.items()}
    return "".join(f", {k}={v!r}" for k, v in shown.items())


def cases(days: int) -> list[Case]:
    """One case per (helper, variant) of `_PLAN`, for a history of `days` days."""
    scopes, out = _scopes(days), []
    for helper, plan in _PLAN.items():
        for variant, scope, args, base_args in plan:
            symbols, kw = scopes[scope]["symbols"], scopes[scope]["kw"]
            call, lake_fn = _lake_call(helper, symbols, args, kw)
            if helper == "resample":
                base_args = {**base_args, "fill": "previous"}
            if helper == "asof_join":
                base_args = {**base_args, "columns": ["bid", "ask"]}

            def pandas_fn(p: PandasHelpers, h=helper, s=symbols, a=base_args, k=kw) -> Any:
                return getattr(p, h)(s, **a, **k)

            floor = _left_rows(symbols, kw) if helper == "asof_join" else None
            out.append(Case(helper, variant, call, lake_fn, pandas_fn, floor))
    return out


def _left_rows(symbols: Any, kw: dict) -> Callable[[Lake], Any]:
    """The trades in the scope, every column, as pandas (what an as-of join of them returns, unjoined),
    read with the same file pruning the helper gets."""
    syms = [symbols] if isinstance(symbols, str) else list(symbols)
    where, params = ["list_contains($symbols, symbol)"], {"symbols": syms}
    for key, cond in (("exchange", "exchange = $exchange"), ("start", "ts >= $start"), ("end", "ts < $end")):
        if kw.get(key) is not None:
            where.append(cond)
            params[key] = pd.Timestamp(kw[key], tz="UTC") if key != "exchange" else kw[key]
    sql = f"SELECT * FROM trades WHERE {' AND '.join(where)}"
    prune = dict(symbols=syms, exchange=kw.get("exchange"), start_ns=kw.get("start"), end_ns=kw.get("end"))
    return lambda lake: lake.query_arrow(sql, params, **prune).to_pandas()


def run_case(case: Case, lake: Lake, base: PandasHelpers, repeat: int) -> dict:
    """Both sides timed, taking turns run by run (a load that comes and goes on the shared machine hits
    both alike); the pandas answer must agree with the lake's (else the case is marked wrong)."""
    ours, theirs = case.lake(lake), case.pandas(base)  # warm-up, and the answers compared
    sides: dict[str, Callable[[], Any]] = {"lake": lambda: case.lake(lake), "pandas": lambda: case.pandas(base)}
    if case.floor is not None:
        floor = case.floor  # a checked, warmed floor: it reads as many rows as the call returns
        if len(floor(lake)) != len(ours):
            raise RuntimeError(f"{case.name}: the floor read {len(floor(lake))} rows, the call returned {len(ours)}")
        sides["floor"] = lambda: floor(lake)
    runs: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(repeat):
        for side, call in sides.items():
            started = time.perf_counter()
            call()
            runs[side].append(time.perf_counter() - started)
    lake_t, pandas_t = summary(runs["lake"]), summary(runs["pandas"])
    rows = len(ours) if isinstance(ours, pd.DataFrame) else 1
    entry = {"helper": case.helper, "variant": case.variant, "call": case.call, "rows_out": rows,
             "lake": dict(lake_t), "pandas": dict(pandas_t), "speedup": pandas_t.median / lake_t.median,
             "wrong": disagreement(ours, theirs)}
    if case.floor is not None:
        entry["floor"] = dict(summary(runs["floor"]))
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M historical + 50k live trades")
    ap.add_argument("--full", action="store_true", help="10M historical + 200k live trades; writes the doc")
    ap.add_argument("--only", default="", help="comma-separated helpers (e.g. ohlc,twap)")
    ap.add_argument("--repeat", type=int, help="timed runs per side")
    ap.add_argument("--doc", action="store_true", help="write docs/benchmarks-helpers.md in quick mode too")
    ap.add_argument("--report", type=Path, help="only re-render docs/benchmarks-helpers.md from a stored result JSON")
    args = ap.parse_args(argv)
    if args.report:
        stored = json.loads(args.report.read_text())
        DOC.write_text(markdown({**stored, "targets": verdicts(stored["cases"])}))
        print(f"wrote {DOC}")
        return 0
    sizes = dict(FULL if args.full else QUICK)
    sizes["repeat"] = args.repeat or sizes["repeat"]
    only = {h for h in args.only.split(",") if h}
    result: dict[str, Any] = {"machine": machine(), "mode": "full" if args.full else "quick", "sizes": sizes,
                              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cases": []}
    with tempfile.TemporaryDirectory(prefix="cryptolake-helpers-") as tmp:
        t = time.perf_counter()
        lake, live = build(Path(tmp) / "lake", sizes["trades"], sizes["days"], sizes["live"])
        counts = lake.sql("SELECT (SELECT count(*) FROM trades) AS trades, (SELECT count(*) FROM ticker) AS ticker,"
                          " (SELECT count(*) FROM gaps) AS gaps").iloc[0].to_dict()
        if counts["gaps"]:
            raise RuntimeError("the benchmark lake has gaps: the pandas ohlc baseline assumes coverage 1.0")
        result["data"] = {**{k: int(v) for k, v in counts.items()}, "live_trades": len(live["trades"]),
                          "live_quotes": len(live["ticker"]), "files": len(lake.committed_files("trades")),
                          "build_s": time.perf_counter() - t}
        print(f"[helpers] built {result['data']} in {result['data']['build_s']:.0f} s", flush=True)
        base = PandasHelpers(lake.root, live)
        for case in cases(sizes["days"]):
            if only and case.helper not in only:
                continue
            entry = run_case(case, lake, base, sizes["repeat"])
            result["cases"].append(entry)
            print(f"[helpers] {case.name:28} lake {entry['lake']['median_s'] * 1e3:8.1f} ms  pandas "
                  f"{entry['pandas']['median_s'] * 1e3:8.1f} ms  x{entry['speedup']:6.1f}"
                  f"{'  WRONG: ' + entry['wrong'] if entry['wrong'] else ''}", flush=True)
        lake.close()
    result["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = verdicts(result["cases"])
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"helpers-{result['mode']}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"results: {out}")
    for t in result["targets"]:
        print(f"{'met' if t['met'] else 'NOT MET':>8}  {t['target']}: {t['detail']}")
    if args.full or args.doc:
        DOC.write_text(markdown(result))
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
