"""A what-if, not the product: 1-minute bars served from 1-second rollups that a flush could maintain
(the issue's suggestion for beating ArcticDB's resample). Measures the rollup's build cost per
trade and the bar query over it, and checks its bars equal the lake's own."""
from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pandas as pd

from .stats import timed
from .workload import Workload, disagreement

__all__ = ["rollup_whatif"]

_BUILD = """COPY (SELECT epoch_ns(ts) // 1000000000 * 1000000000 AS b, arg_min(price, ts) AS open, max(price) AS high,
 min(price) AS low, arg_max(price, ts) AS close, sum(amount) AS volume, count(*) AS trades,
 sum(price * amount) AS notional FROM read_parquet({files}) WHERE exchange = '{ex}' AND symbol = '{sym}'
 GROUP BY b ORDER BY b) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
_BARS = """SELECT b // {step} * {step} AS bucket, arg_min(open, b) AS open, max(high) AS high, min(low) AS low,
 arg_max(close, b) AS close, sum(volume) AS volume, sum(trades) AS trades, sum(notional) / sum(volume) AS vwap
 FROM read_parquet('{src}') GROUP BY bucket ORDER BY bucket"""


def rollup_whatif(files: list[str], w: Workload, want: pd.DataFrame, root: Path, repeat: int) -> dict:
    """`files`: the stream-day's Parquet files; `want`: the lake's ohlc answer for it."""
    root.mkdir(parents=True, exist_ok=True)
    out = root / "rollup-1s.parquet"
    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(_BUILD.format(files=files, ex=w.exchange, sym=w.symbol, out=out))
    build_s = time.perf_counter() - t
    rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    q = timed(lambda: con.sql(_BARS.format(step=w.step_ns, src=out)).to_arrow_table().to_pandas(), repeat)
    con.close()
    trades = int(want["trades"].sum())
    return {"rollup_rows": rows, "build_s": build_s, "build_us_per_trade": build_s / trades * 1e6,
            "rollup_bytes": out.stat().st_size, "ohlc_from_rollup": dict(q),
            "wrong": disagreement("ohlc", q.value, want, rtol=1e-7)}
