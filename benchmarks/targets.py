"""Issue 7's targets, each judged on figures of the same run: (what, lake, baseline, target, met)."""
from __future__ import annotations

from typing import Any

__all__ = ["Check", "checks"]

Check = tuple[str, str, str, str, "bool | None"]
LAKE = "cryptolake_nb"


def _ms(t: dict) -> str:
    return f"{t['median_s'] * 1e3:.1f} ms"


def checks(r: dict[str, Any]) -> list[Check]:
    out: list[Check] = []
    pc = r.get("parse_cost")
    if pc:
        cf = f"cryptofeed {pc['cryptofeed_us_per_msg']:.2f} us/msg on the same frames"
        floor = (f"; a callback that only keeps each object: {pc['keep_us']:.2f} us ({pc['keep_share']:.0%})"
                 if "keep_us" in pc else "")
        spread = (f", quartiles {pc['callback_share_iqr'][0]:.0%}-{pc['callback_share_iqr'][1]:.0%} over "
                  f"{pc['runs_paired']} paired runs" if "callback_share_iqr" in pc else "")
        out.append(("lake callback per message (feed loop) / cryptofeed's cost", f"{pc['lake_callback_us']:.2f} us "
                    f"({pc['callback_share']:.0%}{spread})", cf + floor, "<= 25%", pc["callback_share"] <= 0.25))
        out.append(("all lake work per message (callback + seal + flush) / cryptofeed's cost",
                    f"{pc['lake_callback_us'] + pc['seal_us_per_row'] + pc['flush_us_per_row']:.2f} us "
                    f"({pc['all_in_share']:.0%})", cf + " (the flusher thread's work: capacity, not the feed loop's wait)",
                    "reported, not judged: see Where the misses come from", None))
    su = r.get("sustained")
    if su:
        f = su["freshness"]
        ok = su["achieved_rate"] >= 0.95 * su["rate"] and f.get("p99_ms", 1e9) <= 1000
        out.append((f"freshness receipt -> visible, direct producer at {su['rate'] / 1e3:g}k msg/s "
                    "(poller: live rows, 50 ms apart; see Method)",
                    f"p50 {f.get('p50_ms', float('nan')):.0f} ms, p99 {f.get('p99_ms', float('nan')):.0f} ms "
                    f"(achieved {su['achieved_rate'] / 1e3:.1f}k/s)", "-", "p99 <= 1 s at 50k/s", ok))
    e2e = r.get("ingest_e2e")
    if e2e and e2e.get("freshness_at_max"):
        f = e2e["freshness_at_max"]
        out.append((f"freshness via simulator -> cryptofeed at its max sustained {e2e['max_sustained_msgs_per_s'] / 1e3:.1f}k msg/s",
                    f"p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms", "-", "p99 <= 1 s (at 50k/s: rate not reachable)",
                    None))
    fl = r.get("flush")
    if fl:
        out.append(("flush throughput", f"{fl['lake_rows_per_s'] / 1e6:.2f} M rows/s",
                    f"pyarrow default write {fl['pyarrow_default_rows_per_s'] / 1e6:.2f} M rows/s", ">= 1.5 M rows/s",
                    fl["lake_rows_per_s"] >= 1.5e6))
    cmp_ = r.get("comparison")
    if cmp_:
        out += _peer_checks(cmp_)
    mem = r.get("memory")
    if mem:
        out.append(("RSS / Arrow size of buffered rows", f"{mem['rss_to_arrow']:.2f}x "
                    f"({mem['rss_mb_per_million_rows']:.0f} MB per million rows)",
                    f"Arrow {mem['arrow_mb_per_million_rows']:.0f} MB per million rows", "<= 2x", mem["rss_to_arrow"] <= 2))
    cp = r.get("compaction")
    if cp:
        out.append((f"ohlc after compaction ({cp['files_before']} files -> {cp['files_after']}) / fully compacted",
                    f"{_ms(cp['ohlc_after'])} ({cp['after_vs_fully']:.2f}x)",
                    f"fully compacted {_ms(cp['ohlc_fully_compacted'])}; before compaction {_ms(cp['ohlc_before'])} "
                    f"({cp['slowdown_before']:.1f}x)", "<= 1.2x", cp["after_vs_fully"] <= 1.2))
    return out


def _peer_checks(c: dict) -> list[Check]:
    out: list[Check] = []
    s = c["systems"]
    lake, plain, pandas, arctic = s[LAKE], s.get("duckdb (plain, Parquet)"), s.get("pandas + Parquet"), s.get("ArcticDB (LMDB)", {})
    peers = f"ArcticDB {arctic['disk_bytes_per_trade']:.1f} B; " if "disk_bytes_per_trade" in arctic else ""
    peers += (f"pandas {pandas['disk_bytes_per_trade']:.1f} B; JSON {c['raw']['json_bytes_per_trade']:.0f} B; "
              f"CSV.gz {c['raw']['csv_gz_bytes_per_trade']:.1f} B")
    out.append(("bytes per trade on disk (synthetic market)", f"{lake['disk_bytes_per_trade']:.1f} B", peers,
                "<= 16 B", lake["disk_bytes_per_trade"] <= 16))
    q = lake["queries"]
    if "queries" in arctic:
        a = arctic["queries"]
        out.append((f"ohlc 1 min, one symbol-day ({c['stream_day_trades']:,} trades)", _ms(q["ohlc"]),
                    f"ArcticDB resample {_ms(a['ohlc'])} (ratio {q['ohlc']['median_s'] / a['ohlc']['median_s']:.2f})",
                    "faster than ArcticDB", q["ohlc"]["median_s"] < a["ohlc"]["median_s"]))
    else:
        out.append(("ohlc 1 min, one symbol-day", _ms(q["ohlc"]), f"ArcticDB unavailable: {arctic.get('unavailable')}",
                    "faster than ArcticDB", None))
    wi = c.get("whatif_rollup")
    if wi:
        vs = f"ArcticDB {_ms(arctic['queries']['ohlc'])}; " if "queries" in arctic else ""
        out.append(("what-if, not in the product: the same bars from 1-s rollups kept at flush",
                    _ms(wi["ohlc_from_rollup"]) + (" WRONG" if wi["wrong"] else ""),
                    vs + f"plain DuckDB over the trades {_ms(plain['queries']['ohlc'])}; rollup build "
                    f"{wi['build_us_per_trade']:.2f} us/trade", "-", None))
    ratio = q["vwap"]["median_s"] / plain["queries"]["vwap"]["median_s"]
    faster = q["vwap"]["median_s"] < arctic["queries"]["vwap"]["median_s"] if "queries" in arctic else None
    out.append((f"VWAP of every symbol over {c['trades'] / 1e6:g}M trades", _ms(q["vwap"]),
                f"plain DuckDB {_ms(plain['queries']['vwap'])} (ratio {ratio:.2f}); ArcticDB "
                + (_ms(arctic["queries"]["vwap"]) if "queries" in arctic else "unavailable"),
                "<= 1.2x plain DuckDB and faster than ArcticDB", ratio <= 1.2 and bool(faster)))
    for name in ("ohlc", "vwap", "asof", "scan"):
        p = pandas["queries"][name]
        out.append((f"{name} vs pandas with partition filters", _ms(q[name]),
                    f"pandas {_ms(p)} (ratio {q[name]['median_s'] / p['median_s']:.2f})", "faster than pandas",
                    q[name]["median_s"] < p["median_s"]))
    lu, pu = lake["scan_unpruned"], pandas["scan_unpruned"]
    out.append(("day scan without partition pruning vs pandas reading everything", _ms(lu),
                f"pandas {_ms(pu)} (ratio {lu['median_s'] / pu['median_s']:.2f})", "faster than pandas",
                lu["median_s"] < pu["median_s"]))
    u = c["unified"]
    for name in ("ohlc", "vwap", "asof", "scan", "count"):
        x = u[name]
        out.append((f"unified live+history `{name}` ({u['live_rows'] / 1e3:g}k live rows) / Parquet alone",
                    f"{_ms(x['lake'])} ({x['ratio']:.2f}x)", f"plain DuckDB {_ms(x['parquet_only'])}; with union_by_name "
                    f"(how the lake read files before schema fingerprints) {_ms(x['parquet_lake_read_options'])}", "<= 1.3x",
                    x["ratio"] <= 1.3))
    wrong = {n: e["wrong"] for n, e in s.items() if e.get("wrong")}
    out.append(("peers' answers equal to the lake's (else their times do not count)",
                "all equal" if not wrong else f"DIFFER: {wrong}", "-", "all equal", not wrong))
    return out
