"""Deterministic synthetic trades, as Arrow tables in the lake's `trades` schema."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from cryptolake_nb.schema import schema_for

T0_NS = 1_700_006_400 * 10**9  # 2023-11-15 00:00 UTC


def trades(n: int, *, symbol: str = "BTC-USDT", exchange: str = "BINANCE", seed: int = 0,
           start_ns: int = T0_NS, rate_per_s: float = 12.0) -> pa.Table:
    """`n` trades: random-walk prices on a 0.01 tick, lognormal sizes, bursty exponential gaps."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1e9 / rate_per_s, n) * rng.choice([0.2, 1.0, 3.0], n, p=[0.3, 0.6, 0.1])
    ts = start_ns + np.cumsum(gaps).astype(np.int64)
    price = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 2e-4, n))), 2)
    amount = np.round(rng.lognormal(-4, 1.2, n), 6) + 1e-6
    receipt = ts + rng.integers(1_000_000, 50_000_000, n)
    schema = schema_for("trades")
    cols = {
        "exchange": pa.array(np.full(n, exchange, dtype=object), pa.string()),
        "symbol": pa.array(np.full(n, symbol, dtype=object), pa.string()),
        "side": pa.array(np.where(rng.random(n) < 0.5, "buy", "sell"), pa.string()),
        "amount": pa.array(amount), "price": pa.array(price),
        "trade_id": pa.array((np.arange(n) + 1_000_000_000).astype(str), pa.string()),
        "type": pa.nulls(n, pa.string()),
        "extra": pa.nulls(n, pa.string()),
        "ts": pa.array(ts).cast(schema.field("ts").type),
        "receipt_ts": pa.array(receipt).cast(schema.field("receipt_ts").type),
    }
    return pa.table([cols[f.name] for f in schema], schema=schema)
