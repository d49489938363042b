"""Deterministic synthetic trades, as Arrow tables in the lake's `trades` schema.

`trades(n)`: one stream, for the micro-benchmarks (flush, journal, compaction).
`market(total, days)`: the volume data set every system is measured on: many symbols on several
exchanges, day by day. Why it looks the way it does:
- one shared "fair price" path per symbol (1 s resolution, random walk with per-symbol volatility), so
  the same symbol trades at nearly the same price on every exchange (as-of joins across exchanges
  give small, realistic basis values); each exchange adds its own few-bps noise, rounded to its tick;
- trade counts by exchange and symbol follow skewed weights (BTC on the largest venue gets ~15%),
  so one symbol-day on the biggest stream is ~360k trades at 10M trades over 4 days;
- arrival intensity per minute = intraday profile x lognormal noise x occasional 10-40x bursts;
  timestamps are strictly increasing within a stream (first/last by ts are well defined for all peers);
- sizes: lognormal notional (heavy right tail plus rare block trades), rounded to the lot;
  sides persist (a buy follows a buy 70% of the time); receipt = ts + lognormal network latency.
Every number derives from (seed, exchange, symbol, day): any day can be regenerated alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cryptolake_nb.schema import schema_for

__all__ = ["DAY_NS", "EXCHANGES", "SYMBOLS", "T0_NS", "Stream", "market", "market_counts", "stream_day", "trades"]

T0_NS = 1_700_006_400 * 10**9  # 2023-11-15 00:00 UTC
DAY_NS = 86_400 * 10**9

EXCHANGES = {"BINANCE": 0.5, "COINBASE": 0.3, "KRAKEN": 0.2}
# symbol: (share of trades, start price, tick, lot, daily volatility)
SYMBOLS = {
    "BTC-USDT": (0.30, 37_000.0, 0.01, 1e-5, 0.025),
    "ETH-USDT": (0.20, 2_000.0, 0.01, 1e-4, 0.030),
    "SOL-USDT": (0.12, 60.0, 0.001, 1e-3, 0.050),
    "XRP-USDT": (0.10, 0.6, 1e-5, 0.1, 0.040),
    "DOGE-USDT": (0.09, 0.08, 1e-6, 1.0, 0.050),
    "BNB-USDT": (0.08, 240.0, 0.01, 1e-3, 0.030),
    "ADA-USDT": (0.06, 0.38, 1e-5, 0.1, 0.045),
    "LTC-USDT": (0.05, 70.0, 0.01, 1e-3, 0.035),
}


@dataclass(frozen=True)
class Stream:
    """One (exchange, symbol) stream: its index numbers feed the seeds."""

    exchange: str
    symbol: str

    @property
    def key(self) -> tuple[int, int]:
        return list(EXCHANGES).index(self.exchange), list(SYMBOLS).index(self.symbol)


def trades(n: int, *, symbol: str = "BTC-USDT", exchange: str = "BINANCE", seed: int = 0,
           start_ns: int = T0_NS, rate_per_s: float = 12.0) -> pa.Table:
    """`n` trades: random-walk prices on a 0.01 tick, lognormal sizes, bursty exponential gaps."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1e9 / rate_per_s, n) * rng.choice([0.2, 1.0, 3.0], n, p=[0.3, 0.6, 0.1])
    ts = start_ns + np.cumsum(gaps).astype(np.int64)
    price = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 2)
    amount = np.round(rng.lognormal(-4, 1.2, n), 6) + 1e-6
    receipt = ts + rng.integers(1_000_000, 50_000_000, n)
    return _table(exchange, symbol, np.where(rng.random(n) < 0.5, "buy", "sell"), amount, price,
                  np.arange(n) + 1_000_000_000, ts, receipt)


def _table(exchange: str, symbol: str, side: np.ndarray, amount: np.ndarray, price: np.ndarray,
           ids: np.ndarray, ts: np.ndarray, receipt: np.ndarray) -> pa.Table:
    n = len(ts)
    schema = schema_for("trades")
    cols = {
        "exchange": pa.array(np.full(n, exchange, dtype=object), pa.string()),
        "symbol": pa.array(np.full(n, symbol, dtype=object), pa.string()),
        "side": pa.array(side, pa.string()),
        "amount": pa.array(amount, pa.float64()), "price": pa.array(price, pa.float64()),
        "trade_id": pa.array(ids.astype(str), pa.string()),
        "type": pa.nulls(n, pa.string()),
        "extra": pa.nulls(n, pa.string()),
        "ts": pa.array(ts.astype(np.int64)).cast(schema.field("ts").type),
        "receipt_ts": pa.array(receipt.astype(np.int64)).cast(schema.field("receipt_ts").type),
    }
    return pa.table([cols[f.name] for f in schema], schema=schema)


def market_counts(total: int, days: int) -> dict[tuple[Stream, int], int]:
    """Trades per (stream, day): the weights above, +-10% per day (seeded), summing to about `total`."""
    rng = np.random.default_rng(12345)
    out = {}
    for ex, w_ex in EXCHANGES.items():
        for sym, spec in SYMBOLS.items():
            for day in range(days):
                out[(Stream(ex, sym), day)] = max(1, int(total * w_ex * spec[0] / days * rng.uniform(0.9, 1.1)))
    return out


def _fair_path(symbol: str, days: int, seed: int) -> np.ndarray:
    """The symbol's fair price each second over all days (shared by every exchange)."""
    _, start, _, _, vol = SYMBOLS[symbol]
    rng = np.random.default_rng([seed, 7, list(SYMBOLS).index(symbol)])
    steps = rng.standard_t(4, days * 86_400) * (vol / np.sqrt(86_400) / np.sqrt(2))  # fat-tailed returns
    return start * np.exp(np.cumsum(steps))


def _arrival_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` strictly increasing ns offsets within one day, clustered in bursty minutes."""
    minutes = np.arange(1440)
    profile = 1.0 + 0.6 * np.cos(2 * np.pi * (minutes - 14 * 60) / 1440)  # busier in the US/EU overlap
    weights = profile * rng.lognormal(0.0, 0.5, 1440) * np.where(rng.random(1440) < 0.02, rng.uniform(10, 40, 1440), 1.0)
    per_minute = rng.multinomial(n, weights / weights.sum())
    slot = np.repeat(minutes, per_minute).astype(np.int64)
    span = 60 * 10**9 - int(per_minute.max())  # room for the +arange below, which makes times unique
    times = np.sort(slot * 60 * 10**9 + rng.integers(0, span, n))  # each minute's trades stay in it
    within = np.arange(n) - np.repeat(np.cumsum(per_minute) - per_minute, per_minute)
    return times + within


def stream_day(stream: Stream, day: int, n: int, *, days: int, first_id: int, seed: int = 0,
               fair: np.ndarray | None = None) -> pa.Table:
    """The `n` trades of one stream on `day` (0-based), trade ids from `first_id` on, sorted by ts."""
    _, _, tick, lot, _ = SYMBOLS[stream.symbol]
    ex_i, sym_i = stream.key
    rng = np.random.default_rng([seed, ex_i, sym_i, day])
    fair = _fair_path(stream.symbol, days, seed) if fair is None else fair
    offsets = _arrival_times(rng, n)
    ts = T0_NS + day * DAY_NS + offsets
    noise = 1.0 + rng.normal(0.0, 2e-4, n) + (ex_i - 1) * 1e-4  # a few bps per exchange, a small basis
    price = np.maximum(np.round(fair[day * 86_400 + offsets // 10**9] * noise / tick), 1) * tick
    notional = np.where(rng.random(n) < 0.002, rng.pareto(1.5, n) * 50_000, rng.lognormal(np.log(300.0), 1.4, n))
    amount = np.maximum(np.round(notional / price / lot), 1) * lot
    flips = rng.random(n) < 0.3  # sides persist: a flip with probability 0.3
    side = np.where(np.cumsum(flips) % 2 == 0, "buy", "sell")
    receipt = ts + (rng.lognormal(np.log(15e6), 0.6, n)).astype(np.int64)
    return _table(stream.exchange, stream.symbol, side, np.round(amount, 10), np.round(price, 10),
                  first_id + np.arange(n), ts, receipt)


def market(total: int, days: int, *, seed: int = 0) -> Iterator[tuple[int, pa.Table]]:
    """(day, that day's trades of every stream, sorted by ts as a feed would deliver them), ~`total` in all."""
    counts = market_counts(total, days)
    fair = {s: _fair_path(s, days, seed) for s in SYMBOLS}
    next_id = {(ex, sym): 1_000_000 * (1 + i) for i, (ex, sym) in enumerate((e, s) for e in EXCHANGES for s in SYMBOLS)}
    for day in range(days):
        parts = []
        for (stream, d), n in counts.items():
            if d != day:
                continue
            key = (stream.exchange, stream.symbol)
            parts.append(stream_day(stream, day, n, days=days, first_id=next_id[key], seed=seed, fair=fair[stream.symbol]))
            next_id[key] += n
        table = pa.concat_tables(parts)
        yield day, table.take(pc.sort_indices(table, [("ts", "ascending")]))
