"""Runs INSIDE the ArcticDB virtual environment (pandas < 3), as a script: no cryptolake_nb import.

    python arctic_driver.py spec.json  ->  one JSON object on stdout

The spec names an LMDB directory, the day files (Parquet, the same rows every system gets), the
workload and the number of runs. Per day file ("one flush"): Arrow -> pandas, one ArcticDB symbol
per (exchange, symbol) stream indexed by ts, `append`. Then: read one stream's day, and the four
workload answers (bars by ArcticDB's own `QueryBuilder.resample`, sums by its `groupby`), each
timed `repeat` times after one warm-up, answers returned for checking against the lake.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

COLUMNS = ["side", "amount", "price", "trade_id", "receipt_ts"]


def stream_name(exchange: str, symbol: str) -> str:
    return f"{exchange}.{symbol}"


def frames(table_path: str) -> dict[str, pd.DataFrame]:
    """One day file -> {stream name: frame indexed by ts}, as ArcticDB wants time series."""
    df = pq.read_table(table_path).to_pandas()
    out = {}
    for (ex, sym), g in df.groupby(["exchange", "symbol"], sort=False, observed=True):
        out[stream_name(ex, sym)] = g.set_index("ts")[COLUMNS]
    return out


def write(lib: Any, sources: list[str]) -> dict:
    runs, rows = [], 0
    for path in sources:
        table = pq.read_table(path)  # untimed: every system starts a flush from the same Arrow table
        t = time.perf_counter()
        df = table.to_pandas()
        for (ex, sym), g in df.groupby(["exchange", "symbol"], sort=False, observed=True):
            name = stream_name(ex, sym)
            frame = g.set_index("ts")[COLUMNS]
            if lib.has_symbol(name):
                lib.append(name, frame)
            else:
                lib.write(name, frame)
        runs.append(time.perf_counter() - t)
        rows += table.num_rows
    return {"runs": runs, "rows": rows, "seconds": sum(runs)}


def ohlc_query(step_ns: int) -> Any:
    from arcticdb import QueryBuilder

    q = QueryBuilder()
    q = q.apply("notional", q["price"] * q["amount"])
    return q.resample(f"{step_ns // 10**9}s").agg({
        "open": ("price", "first"), "high": ("price", "max"), "low": ("price", "min"), "close": ("price", "last"),
        "volume": ("amount", "sum"), "notional": ("notional", "sum"), "trades": ("price", "count")})


def bars(data: pd.DataFrame) -> pd.DataFrame:
    """ArcticDB's resample output -> the workload's ohlc columns (empty minutes dropped)."""
    data = data[data["trades"] > 0]
    out = pd.DataFrame({"bucket": data.index.asi8 if hasattr(data.index, "asi8") else data.index.astype("int64"),
                        "open": data["open"].to_numpy(), "high": data["high"].to_numpy(),
                        "low": data["low"].to_numpy(), "close": data["close"].to_numpy(),
                        "volume": data["volume"].to_numpy(), "trades": data["trades"].to_numpy().astype("int64")})
    out["vwap"] = data["notional"].to_numpy() / out["volume"].to_numpy()
    return out


def sums_query() -> Any:
    from arcticdb import QueryBuilder

    q = QueryBuilder()
    q = q.apply("notional", q["price"] * q["amount"])
    return q.groupby("side").agg({"notional": "sum", "amount": "sum", "price": "count"})


def answers(lib: Any, w: dict) -> dict[str, Callable[[], pd.DataFrame]]:
    from arcticdb import ReadRequest

    day = (pd.Timestamp(w["start_ns"], tz="UTC"), pd.Timestamp(w["end_ns"] - 1, tz="UTC"))
    names = sorted(lib.list_symbols())
    mine, other = stream_name(w["exchange"], w["symbol"]), stream_name(w["other"], w["symbol"])

    def ohlc() -> pd.DataFrame:
        return bars(lib.read(mine, date_range=day, query_builder=ohlc_query(w["step_ns"])).data)

    def vwap() -> pd.DataFrame:
        got = lib.read_batch([ReadRequest(n, query_builder=sums_query()) for n in names])
        rows = []
        for n, item in zip(names, got):
            s = item.data.sum()
            ex, sym = n.split(".", 1)
            rows.append({"exchange": ex, "symbol": sym, "vwap": s["notional"] / s["amount"],
                         "volume": s["amount"], "trades": int(s["price"])})
        return pd.DataFrame(rows).sort_values(["exchange", "symbol"]).reset_index(drop=True)

    def asof() -> pd.DataFrame:
        a = lib.read(mine, date_range=day, columns=["price"]).data
        b = lib.read(other, date_range=day, columns=["price"]).data.rename(columns={"price": "other"})
        j = pd.merge_asof(a, b, left_index=True, right_index=True, direction="backward").dropna(subset=["other"])
        return pd.DataFrame({"matched": [len(j)], "basis": [(j["price"] - j["other"]).mean()]})

    def scan() -> pd.DataFrame:
        got = lib.read_batch([ReadRequest(n, date_range=day, columns=["price", "amount"]) for n in names])
        price = np.concatenate([g.data["price"].to_numpy() for g in got])
        amount = np.concatenate([g.data["amount"].to_numpy() for g in got])
        return pd.DataFrame({"trades": [len(price)], "volume": [amount.sum()], "notional": [float(price @ amount)],
                             "low": [price.min()], "high": [price.max()]})

    def read_day() -> pd.DataFrame:
        return lib.read(mine, date_range=day).data

    return {"ohlc": ohlc, "vwap": vwap, "asof": asof, "scan": scan, "read_day": read_day}


def disk_bytes(path: str) -> int:
    """Blocks actually used (LMDB's data file is sparse up to its map size)."""
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(d, f)).st_blocks * 512
    return total


def main(spec_path: str) -> int:
    import arcticdb

    spec = json.loads(open(spec_path).read())
    ac = arcticdb.Arctic(f"lmdb://{spec['store']}")
    lib = ac.get_library("trades", create_if_missing=True)
    out: dict[str, Any] = {"versions": {"arcticdb": arcticdb.__version__, "pandas": pd.__version__,
                                        "numpy": np.__version__, "python": sys.version.split()[0]}}
    out["write"] = write(lib, spec["sources"])
    out["disk_bytes"] = disk_bytes(spec["store"])
    out["timings"], out["answers"] = {}, {}
    for name, fn in answers(lib, spec["workload"]).items():
        for _ in range(spec.get("warmup", 1)):
            result = fn()
        runs = []
        for _ in range(spec["repeat"]):
            t = time.perf_counter()
            result = fn()
            runs.append(time.perf_counter() - t)
        out["timings"][name] = {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "runs": len(runs)}
        if name != "read_day":
            out["answers"][name] = {c: result[c].tolist() for c in result.columns}
        else:
            out["read_day_rows"] = len(result)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
