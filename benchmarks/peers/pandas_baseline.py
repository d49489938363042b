"""The do-it-yourself baseline: pandas `to_parquet` per flush into a Hive-partitioned directory
(exchange=/symbol=/date=), `read_parquet(filters=...)` + groupby / merge_asof to query it."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..workload import Workload

__all__ = ["PandasParquet"]

PARTITIONS = ["exchange", "symbol", "date"]


class PandasParquet:
    """What a quant writes in an afternoon: one `df.to_parquet(partition_cols=...)` per flush."""

    name = "pandas + Parquet"

    def __init__(self, root: Path, workload: Workload) -> None:
        self.root = Path(root)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.w = workload

    def write(self, table: pa.Table) -> None:
        """One flush: the rows as a DataFrame, a date column, pandas' defaults (snappy) otherwise."""
        df = table.to_pandas()
        df["date"] = df["ts"].dt.strftime("%Y-%m-%d")
        df.to_parquet(self.root, partition_cols=PARTITIONS, index=False)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.parquet"))

    def _read(self, columns: list[str], **where: str) -> pd.DataFrame:
        filters = [(k, "==", v) for k, v in where.items()] or None
        return pd.read_parquet(self.root, columns=columns, filters=filters)

    def _stream(self, exchange: str) -> pd.DataFrame:
        w = self.w
        df = self._read(["ts", "price", "amount"], exchange=exchange, symbol=w.symbol, date=w.date)
        return df if df["ts"].is_monotonic_increasing else df.sort_values("ts", kind="stable")

    def answer(self, name: str) -> pd.DataFrame:
        w = self.w
        if name == "ohlc":
            df = self._stream(w.exchange)
            df["bucket"] = df["ts"].astype("int64") // w.step_ns * w.step_ns
            df["notional"] = df["price"] * df["amount"]
            g = df.groupby("bucket", sort=True)
            out = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
                        volume=("amount", "sum"), trades=("price", "size"), notional=("notional", "sum"))
            out["vwap"] = out.pop("notional") / out["volume"]
            return out.reset_index()
        if name == "vwap":
            df = self._read(["exchange", "symbol", "price", "amount"])
            df["notional"] = df["price"] * df["amount"]
            out = df.groupby(["exchange", "symbol"], observed=True, sort=True).agg(
                notional=("notional", "sum"), volume=("amount", "sum"), trades=("price", "size"))
            out["vwap"] = out.pop("notional") / out["volume"]
            return out.reset_index().astype({"exchange": str, "symbol": str})
        if name == "asof":
            a = self._stream(w.exchange)[["ts", "price"]]
            b = self._stream(w.other)[["ts", "price"]].rename(columns={"price": "other"})
            j = pd.merge_asof(a, b, on="ts", direction="backward").dropna(subset=["other"])
            return pd.DataFrame({"matched": [len(j)], "basis": [(j["price"] - j["other"]).mean()]})
        if name == "scan":
            return self.scan(pruned=True)
        raise KeyError(name)

    def scan(self, *, pruned: bool) -> pd.DataFrame:
        """The day's aggregates: with the date partition filter, or reading everything and filtering."""
        w = self.w
        df = self._read(["ts", "price", "amount"], **({"date": w.date} if pruned else {}))
        if not pruned:
            t = df["ts"].astype("int64")
            df = df[(t >= w.start_ns) & (t < w.end_ns)]
        return pd.DataFrame({"trades": [len(df)], "volume": [df["amount"].sum()],
                             "notional": [float(np.dot(df["price"].to_numpy(), df["amount"].to_numpy()))],
                             "low": [df["price"].min()], "high": [df["price"].max()]})

    def close(self) -> None:
        pass
