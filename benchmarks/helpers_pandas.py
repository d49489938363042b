"""The plain-pandas baseline of every quant helper, on the lake's own Parquet files and live rows.

What a competent quant writes without the lake: `pd.read_parquet(root/<table>, columns=..., filters=...)`
over the lake's hive-style tree (exchange=/symbol=/date=), so only the needed partitions are opened
and row groups outside the time range are skipped, plus the live rows the feed handler holds in memory
(a pandas frame, converted once, untimed), then vectorised pandas/numpy. Each method returns what the
lake's helper of the same name returns (same columns, same order, same single-symbol shape), so
every answer is compared before any time counts (`helpers_bench.disagreement`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

__all__ = ["PandasHelpers", "Scope"]

DAY_NS = 86_400 * 10**9
# the partition values are also stored in the files: declaring them strings lets pyarrow merge both
_PARTITIONING = ds.partitioning(pa.schema([("exchange", pa.string()), ("symbol", pa.string()),
                                           ("date", pa.string())]), flavor="hive")


@dataclass(frozen=True)
class Scope:
    """The helper arguments every baseline shares: which rows, and the output shape."""

    symbols: tuple[str, ...]
    single: bool
    exchange: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    @classmethod
    def of(cls, symbols: str | Sequence[str], exchange: str | None = None, start: Any = None,
           end: Any = None) -> "Scope":
        single = isinstance(symbols, str)
        syms = (symbols,) if single else tuple(dict.fromkeys(symbols))
        return cls(syms, single, exchange, _ns(start), _ns(end))

    def filters(self) -> list[tuple]:
        """Partition filters (exchange, symbol, date) and the time range, for read_parquet."""
        out: list[tuple] = [("symbol", "in", list(self.symbols))]
        if self.exchange is not None:
            out.append(("exchange", "==", self.exchange))
        if self.start_ns is not None or self.end_ns is not None:
            first = (self.start_ns or 0) // DAY_NS
            last = (self.end_ns - 1) // DAY_NS if self.end_ns is not None else None
            if last is not None:
                out.append(("date", "in", [_date(d) for d in range(first, last + 1)]))
            else:
                out.append(("date", ">=", _date(first)))
        if self.start_ns is not None:
            out.append(("ts", ">=", pd.Timestamp(self.start_ns, tz="UTC")))
        if self.end_ns is not None:
            out.append(("ts", "<", pd.Timestamp(self.end_ns, tz="UTC")))
        return out


def _ns(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).value


def _date(day: int) -> str:
    return pd.Timestamp(day * DAY_NS, tz="UTC").strftime("%Y-%m-%d")


class PandasHelpers:
    """Baselines over `root` (a lake's directory) and `live` ({table: DataFrame of unflushed rows})."""

    def __init__(self, root: Path, live: dict[str, pd.DataFrame]) -> None:
        self.root = Path(root)
        self.live = live

    # -- reading -----------------------------------------------------------------------------
    def read(self, table: str, columns: list[str], scope: Scope) -> pd.DataFrame:
        """Committed rows (only the partitions the scope needs) and the matching live rows."""
        keys = [c for c in ("exchange", "symbol") if c in columns]
        hist = pd.read_parquet(self.root / table, columns=columns, filters=scope.filters(),
                               partitioning=_PARTITIONING, to_pandas_kwargs={"categories": keys})
        live = self.live.get(table)
        if live is None or live.empty:
            return hist
        mask = live["symbol"].isin(scope.symbols).to_numpy(copy=True)
        if scope.exchange is not None:
            mask &= (live["exchange"] == scope.exchange).to_numpy()
        t = live["ts"].to_numpy("datetime64[ns]").view(np.int64)
        if scope.start_ns is not None:
            mask &= t >= scope.start_ns
        if scope.end_ns is not None:
            mask &= t < scope.end_ns
        part = live.loc[mask, columns]
        if not part.empty:
            for k in keys:  # one categorical dtype on both sides keeps the concatenation categorical
                dtype = pd.CategoricalDtype(sorted(set(hist[k].cat.categories) | set(part[k].unique())))
                hist[k], part[k] = hist[k].cat.set_categories(dtype.categories), part[k].astype(dtype)
            hist = pd.concat([hist, part], ignore_index=True)
        for k in keys:  # categories in lexical order: groupby(sort=True) then sorts symbols as SQL does
            hist[k] = hist[k].cat.set_categories(sorted(hist[k].cat.categories))
        return hist

    def _sorted(self, table: str, columns: list[str], scope: Scope) -> pd.DataFrame:
        """Rows by symbol then (ts, receipt_ts): first/last trade, lead/lag within a symbol."""
        df = self.read(table, ["symbol", *columns, "ts", "receipt_ts"], scope)
        df = df.sort_values(["symbol", "ts", "receipt_ts"], kind="stable", ignore_index=True)
        df["t"] = df["ts"].to_numpy("datetime64[ns]").view(np.int64)
        return df

    @staticmethod
    def _finish(out: pd.DataFrame, scope: Scope) -> pd.DataFrame:
        out = out.reset_index(drop=True)
        for k in ("exchange", "symbol"):
            if k in out:
                out[k] = out[k].astype(str)
        if "bucket" in out:
            out.insert(out.columns.get_loc("bucket"), "ts", pd.to_datetime(out.pop("bucket"), utc=True))
        return out.drop(columns="symbol") if scope.single else out

    @classmethod
    def _scalar(cls, out: pd.DataFrame, column: str, scope: Scope) -> Any:
        if scope.single:
            return float(out[column].iloc[0]) if len(out) else None
        return cls._finish(out, scope)

    # -- trade helpers -----------------------------------------------------------------------
    def ohlc(self, symbols: Any, interval_ns: int, **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        df = self._sorted("trades", ["price", "amount"], scope)
        df["bucket"] = df["t"] // interval_ns * interval_ns
        df["notional"] = df["price"] * df["amount"]
        g = df.groupby(["symbol", "bucket"], sort=True, observed=True)
        out = g.agg(open=("price", "first"), high=("price", "max"), low=("price", "min"), close=("price", "last"),
                    volume=("amount", "sum"), trades=("price", "size"), notional=("notional", "sum")).reset_index()
        out["vwap"] = out.pop("notional") / out["volume"]
        out["coverage"] = 1.0  # the benchmark lake has no gaps (asserted by the caller)
        return self._finish(out, scope)

    def vwap(self, symbols: Any, interval_ns: int | None = None, **kw: Any) -> Any:
        scope = Scope.of(symbols, **kw)
        df = self.read("trades", ["symbol", "ts", "price", "amount"], scope)
        df["notional"] = df["price"] * df["amount"]
        keys = ["symbol"]
        if interval_ns is not None:
            df["bucket"] = df["ts"].to_numpy("datetime64[ns]").view(np.int64) // interval_ns * interval_ns
            keys.append("bucket")
        out = df.groupby(keys, sort=True, observed=True).agg(
            notional=("notional", "sum"), volume=("amount", "sum"), trades=("price", "size")).reset_index()
        out.insert(len(keys), "vwap", out.pop("notional") / out["volume"])
        out["symbol"] = out["symbol"].astype(str)
        return self._scalar(out, "vwap", scope) if interval_ns is None else self._finish(out, scope)

    def twap(self, symbols: Any, interval_ns: int | None = None, **kw: Any) -> Any:
        scope = Scope.of(symbols, **kw)
        df = self._sorted("trades", ["price"], scope)
        t, sym = df["t"].to_numpy(), df["symbol"].cat.codes.to_numpy()
        bucket = np.zeros(len(df), np.int64) if interval_ns is None else t // interval_ns * interval_ns
        if interval_ns is None:
            last_t = df.groupby("symbol", observed=True)["t"].transform("max").to_numpy()
            until = np.full(len(df), scope.end_ns, np.int64) if scope.end_ns is not None else last_t
        else:
            until = bucket + interval_ns
            if scope.end_ns is not None:
                until = np.minimum(until, scope.end_ns)
        same = np.zeros(len(df), bool)
        same[:-1] = (sym[1:] == sym[:-1]) & (bucket[1:] == bucket[:-1])
        nxt = np.empty_like(t)
        nxt[:-1], nxt[-1:] = t[1:], 0
        w = np.where(same, nxt, until) - t
        price = df["price"].to_numpy()
        frame = pd.DataFrame({"symbol": df["symbol"], "bucket": bucket, "pw": price * w, "w": w, "price": price})
        out = frame.groupby(["symbol", "bucket"], sort=True, observed=True).agg(pw=("pw", "sum"), w=("w", "sum"),
                                                                  mean=("price", "mean"), trades=("price", "size"))
        out["twap"] = np.where(out["w"] > 0, out["pw"] / out["w"].where(out["w"] > 0, 1), out["mean"])
        out = out.reset_index()[["symbol", "bucket", "twap", "trades"]]
        if interval_ns is None:
            return self._scalar(out.drop(columns="bucket"), "twap", scope)
        return self._finish(out, scope)

    def _closes(self, scope: Scope, step: int) -> pd.DataFrame:
        df = self._sorted("trades", ["price"], scope)
        df["bucket"] = df["t"] // step * step
        return df.groupby(["symbol", "bucket"], sort=True, observed=True)["price"].last().rename("close").reset_index()

    def returns(self, symbols: Any, interval_ns: int, how: str = "simple", **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        out = self._closes(scope, interval_ns)
        ratio = out["close"] / out.groupby("symbol", observed=True)["close"].shift(1)
        out["return"] = ratio - 1 if how == "simple" else np.log(ratio)
        return self._finish(out, scope)

    def realized_volatility(self, symbols: Any, interval_ns: int | None = None, sample_ns: int = 60 * 10**9,
                            **kw: Any) -> Any:
        scope = Scope.of(symbols, **kw)
        bars = self._closes(scope, sample_ns)
        bars["r"] = np.log(bars["close"] / bars.groupby("symbol", observed=True)["close"].shift(1))
        bars = bars.dropna(subset=["r"])
        bars["bucket"] = 0 if interval_ns is None else bars["bucket"] // interval_ns * interval_ns
        bars["r2"] = bars["r"] ** 2
        out = bars.groupby(["symbol", "bucket"], sort=True, observed=True).agg(s=("r2", "sum"), returns=("r", "size")).reset_index()
        out.insert(2, "realized_volatility", np.sqrt(out.pop("s")))
        if interval_ns is None:
            return self._scalar(out.drop(columns="bucket"), "realized_volatility", scope)
        return self._finish(out, scope)

    # -- quotes ------------------------------------------------------------------------------
    def _quotes(self, scope: Scope, step: int) -> pd.DataFrame:
        df = self._sorted("ticker", ["bid", "ask"], scope)
        df["bucket"] = df["t"] // step * step
        return df.groupby(["symbol", "bucket"], sort=True, observed=True)[["bid", "ask"]].last().reset_index()

    def spread(self, symbols: Any, interval_ns: int, **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        out = self._quotes(scope, interval_ns)
        out["spread"] = out["ask"] - out["bid"]
        out["spread_bps"] = out["spread"] / ((out["bid"] + out["ask"]) / 2.0) * 1e4
        return self._finish(out, scope)

    def mid(self, symbols: Any, interval_ns: int, **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        out = self._quotes(scope, interval_ns)
        out["mid"] = (out["bid"] + out["ask"]) / 2.0
        return self._finish(out, scope)

    # -- order flow --------------------------------------------------------------------------
    def _sided(self, scope: Scope, keys: list[str], df: pd.DataFrame) -> pd.DataFrame:
        side = df["side"].to_numpy()
        df["buy"] = np.where(side == "buy", df["amount"].to_numpy(), 0.0)
        df["sell"] = np.where(side == "sell", df["amount"].to_numpy(), 0.0)
        out = df.groupby(keys, sort=True, observed=True).agg(
            volume=("amount", "sum"), buy_volume=("buy", "sum"), sell_volume=("sell", "sum"),
            trades=("amount", "size")).reset_index()
        out["symbol"] = out["symbol"].astype(str)
        return out

    def trade_imbalance(self, symbols: Any, interval_ns: int | None, **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        df = self.read("trades", ["symbol", "side", "amount", "ts"], scope)
        keys = ["symbol"]
        if interval_ns is not None:
            df["bucket"] = df["ts"].to_numpy("datetime64[ns]").view(np.int64) // interval_ns * interval_ns
            keys.append("bucket")
        out = self._sided(scope, keys, df)
        sided = out["buy_volume"] + out["sell_volume"]
        out["imbalance"] = (out["buy_volume"] - out["sell_volume"]) / sided.where(sided != 0)
        return self._finish(out[[*keys, "buy_volume", "sell_volume", "imbalance", "volume", "trades"]], scope)

    def volume_profile(self, symbols: Any, interval_ns: int | None = None, *, bin: float, **kw: Any) -> pd.DataFrame:
        scope = Scope.of(symbols, **kw)
        df = self.read("trades", ["symbol", "side", "amount", "price", "ts"], scope)
        df["level"] = np.floor(np.round(df["price"].to_numpy() / bin, 9))
        keys = ["symbol", "level"]
        if interval_ns is not None:
            df["bucket"] = df["ts"].to_numpy("datetime64[ns]").view(np.int64) // interval_ns * interval_ns
            keys = ["symbol", "bucket", "level"]
        out = self._sided(scope, keys, df)
        out.insert(len(keys) - 1, "price", out.pop("level") * bin)
        return self._finish(out[[*keys[:-1], "price", "volume", "buy_volume", "sell_volume", "trades"]], scope)

    # -- as-of join and resampling -------------------------------------------------------------
    def asof_join(self, symbols: Any, tolerance_ns: int, columns: list[str], **kw: Any) -> pd.DataFrame:
        """Trades with the ticker row in effect (per exchange and symbol), at most `tolerance_ns` old,
        by exchange, symbol, then time: one `merge_asof` per stream (its rows come read by partition,
        so each is sorted by time alone, never the whole wide frame), concatenated in key order."""
        scope = Scope.of(symbols, **kw)
        names = ["exchange", "symbol", "side", "amount", "price", "trade_id", "type", "extra", "ts", "receipt_ts"]
        left = self.read("trades", names, scope)
        right_scope = Scope(scope.symbols, False, scope.exchange,
                            None if scope.start_ns is None else scope.start_ns - tolerance_ns, scope.end_ns)
        right = self.read("ticker", ["exchange", "symbol", "ts", *columns], right_scope).rename(columns={"ts": "ts_right"})
        quotes = dict(iter(right.groupby(["exchange", "symbol"], sort=False, observed=True)))
        none = right.iloc[:0]
        parts = []
        for key, trades in left.groupby(["exchange", "symbol"], sort=True, observed=True):
            q = quotes.get(key, none).drop(columns=["exchange", "symbol"])
            parts.append(pd.merge_asof(trades.sort_values("ts", kind="stable"), q.sort_values("ts_right", kind="stable"),
                                       left_on="ts", right_on="ts_right", tolerance=pd.Timedelta(tolerance_ns),
                                       direction="backward", allow_exact_matches=True))
        out = pd.concat(parts, ignore_index=True) if parts else left.assign(
            **{"ts_right": pd.Series(dtype=right["ts_right"].dtype), **{c: pd.Series(dtype=right[c].dtype) for c in columns}})
        for k in ("exchange", "symbol"):
            out[k] = out[k].astype(str)
        out["staleness"] = out["ts"] - out.pop("ts_right")
        return out

    def resample(self, symbols: Any, interval_ns: int, fill: str, **kw: Any) -> pd.DataFrame:
        """The ticker's last row per (exchange, symbol, bucket), on a grid with `fill` for empty buckets."""
        scope = Scope.of(symbols, **kw)
        names = ["exchange", "symbol", "bid", "ask", "extra", "ts", "receipt_ts"]
        df = self.read("ticker", names, scope)
        df["bucket"] = df["ts"].to_numpy("datetime64[ns]").view(np.int64) // interval_ns * interval_ns
        last = df.sort_values(["exchange", "symbol", "bucket", "ts", "receipt_ts"], kind="stable").drop_duplicates(
            ["exchange", "symbol", "bucket"], keep="last")
        lo = None if scope.start_ns is None else scope.start_ns // interval_ns * interval_ns
        hi = None if scope.end_ns is None else (scope.end_ns - 1) // interval_ns * interval_ns
        parts = []
        for (ex, sym), g in last.groupby(["exchange", "symbol"], sort=True, observed=True):
            b = g["bucket"].to_numpy()
            grid = b if fill == "none" else np.arange(b[0] if lo is None else lo, (b[-1] if hi is None else hi) + 1,
                                                      interval_ns, dtype=np.int64)
            g = g.set_index("bucket").reindex(grid, method="ffill" if fill == "previous" else None)
            g["filled"] = ~np.isin(grid, b)
            g["exchange"], g["symbol"] = str(ex), str(sym)
            g["ts"] = pd.to_datetime(grid, utc=True)
            parts.append(g.reset_index(drop=True))
        out = pd.concat(parts, ignore_index=True)[[*names, "filled"]]
        return out
