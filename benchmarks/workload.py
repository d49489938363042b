"""The queries every system answers, their parameters, and how answers are compared.

Each system returns each answer as a pandas DataFrame with the columns below, so that a fast wrong
answer is caught before its time is reported (`disagreement`):
- `ohlc`:  1-minute bars of one symbol-day on one exchange: bucket (int ns), open, high, low, close,
           volume, trades, vwap; empty minutes absent; open/close = first/last trade by ts.
- `vwap`:  every (exchange, symbol) over all the data: exchange, symbol, vwap, volume, trades.
- `asof`:  each trade of SYMBOL on EXCHANGE that day, joined to the last trade of SYMBOL on OTHER at
           or before it: matched (count), basis (mean of price - other price).
- `scan`:  one full day, every stream: trades, volume, notional, low, high.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .synth import DAY_NS, T0_NS

__all__ = ["COLUMNS", "QUERIES", "SQL", "Workload", "disagreement"]

QUERIES = ("ohlc", "vwap", "asof", "scan")
COLUMNS = {
    "ohlc": ["bucket", "open", "high", "low", "close", "volume", "trades", "vwap"],
    "vwap": ["exchange", "symbol", "vwap", "volume", "trades"],
    "asof": ["matched", "basis"],
    "scan": ["trades", "volume", "notional", "low", "high"],
}


@dataclass(frozen=True)
class Workload:
    """Which stream and day the queries read (a dict of it is handed to the ArcticDB driver)."""

    exchange: str = "BINANCE"
    other: str = "COINBASE"
    symbol: str = "BTC-USDT"
    day: int = 1
    step_ns: int = 60 * 10**9

    @property
    def start_ns(self) -> int:
        return T0_NS + self.day * DAY_NS

    @property
    def end_ns(self) -> int:
        return self.start_ns + DAY_NS

    @property
    def date(self) -> str:
        return pd.Timestamp(self.start_ns, tz="UTC").strftime("%Y-%m-%d")

    def params(self) -> dict:
        return {"exchange": self.exchange, "other": self.other, "symbol": self.symbol,
                "start": self.start_ns, "end": self.end_ns, "step": self.step_ns}

    def as_dict(self) -> dict:
        return {**asdict(self), "start_ns": self.start_ns, "end_ns": self.end_ns, "date": self.date}


# `{src}` is `trades` in the lake, `read_parquet([...])` in plain DuckDB: the same statement otherwise
SQL = {
    "ohlc": ("SELECT (epoch_ns(ts) // $step) * $step AS bucket, arg_min(price, ts) AS open, max(price) AS high,"
             " min(price) AS low, arg_max(price, ts) AS close, sum(amount) AS volume, count(*) AS trades,"
             " sum(price * amount) / sum(amount) AS vwap FROM {src} WHERE exchange = $exchange AND symbol = $symbol"
             " AND epoch_ns(ts) >= $start AND epoch_ns(ts) < $end GROUP BY bucket ORDER BY bucket"),
    "vwap": ("SELECT exchange, symbol, sum(price * amount) / sum(amount) AS vwap, sum(amount) AS volume,"
             " count(*) AS trades FROM {src} GROUP BY exchange, symbol ORDER BY exchange, symbol"),
    "asof": ("SELECT count(*) AS matched, avg(a.price - b.price) AS basis FROM"
             " (SELECT ts, price FROM {src} WHERE exchange = $exchange AND symbol = $symbol"
             "  AND epoch_ns(ts) >= $start AND epoch_ns(ts) < $end) a"
             " ASOF JOIN (SELECT ts, price FROM {src} WHERE exchange = $other AND symbol = $symbol"
             "  AND epoch_ns(ts) >= $start AND epoch_ns(ts) < $end) b ON a.ts >= b.ts"),
    "scan": ("SELECT count(*) AS trades, sum(amount) AS volume, sum(price * amount) AS notional, min(price) AS low,"
             " max(price) AS high FROM {src} WHERE epoch_ns(ts) >= $start AND epoch_ns(ts) < $end"),
    "count": "SELECT count(*) AS n FROM {src}",
}


def disagreement(name: str, got: pd.DataFrame, want: pd.DataFrame, rtol: float = 1e-9) -> str | None:
    """None if `got` answers query `name` as `want` does; else what differs (first difference)."""
    cols = COLUMNS[name]
    missing = [c for c in cols if c not in got.columns]
    if missing:
        return f"missing columns {missing}"
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    for c in cols:
        a, b = got[c].to_numpy(), want[c].to_numpy()
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            if not np.allclose(a.astype(float), b.astype(float), rtol=rtol, atol=0, equal_nan=True):
                i = int(np.argmax(~np.isclose(a.astype(float), b.astype(float), rtol=rtol, atol=0, equal_nan=True)))
                return f"{c}[{i}] = {a[i]!r}, expected {b[i]!r}"
        elif list(map(str, a)) != list(map(str, b)):
            return f"{c} differs: {list(a)[:3]} vs {list(b)[:3]}"
    return None
