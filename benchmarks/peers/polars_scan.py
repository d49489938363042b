"""polars `scan_parquet` over the lake's Parquet files (lazy, predicate and projection pushdown)."""
from __future__ import annotations

import pandas as pd
import polars as pl

from ..workload import Workload

__all__ = ["PolarsScan"]


class PolarsScan:
    """Each answer is one lazy query over the same files plain DuckDB reads."""

    name = "polars scan_parquet"

    def __init__(self, files: list[str], workload: Workload) -> None:
        self.files = files
        self.w = workload

    def _scan(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.files)

    def _stream(self, exchange: str) -> pl.LazyFrame:
        w = self.w
        ts = pl.col("ts").dt.epoch("ns")
        return (self._scan().filter((pl.col("exchange") == exchange) & (pl.col("symbol") == w.symbol)
                                    & (ts >= w.start_ns) & (ts < w.end_ns)))

    def answer(self, name: str) -> pd.DataFrame:
        w = self.w
        if name == "ohlc":
            q = (self._stream(w.exchange).select("ts", "price", "amount")
                 .with_columns(bucket=(pl.col("ts").dt.epoch("ns") // w.step_ns) * w.step_ns)
                 .group_by("bucket").agg(
                     open=pl.col("price").sort_by("ts").first(), high=pl.col("price").max(),
                     low=pl.col("price").min(), close=pl.col("price").sort_by("ts").last(),
                     volume=pl.col("amount").sum(), trades=pl.len(),
                     vwap=(pl.col("price") * pl.col("amount")).sum() / pl.col("amount").sum())
                 .sort("bucket"))
        elif name == "vwap":
            q = (self._scan().group_by("exchange", "symbol").agg(
                vwap=(pl.col("price") * pl.col("amount")).sum() / pl.col("amount").sum(),
                volume=pl.col("amount").sum(), trades=pl.len()).sort("exchange", "symbol"))
        elif name == "asof":
            a = self._stream(w.exchange).select("ts", "price").sort("ts")
            b = self._stream(w.other).select("ts", pl.col("price").alias("other")).sort("ts")
            q = (a.join_asof(b, on="ts", strategy="backward").drop_nulls("other")
                 .select(matched=pl.len(), basis=(pl.col("price") - pl.col("other")).mean()))
        elif name == "scan":
            ts = pl.col("ts").dt.epoch("ns")
            q = (self._scan().filter((ts >= w.start_ns) & (ts < w.end_ns)).select(
                trades=pl.len(), volume=pl.col("amount").sum(), notional=(pl.col("price") * pl.col("amount")).sum(),
                low=pl.col("price").min(), high=pl.col("price").max()))
        else:
            raise KeyError(name)
        return q.collect().to_pandas()

    def close(self) -> None:
        pass
