"""A small synthetic market for the helper tests: trades, tickers and L2 books of two symbols on one
exchange (plus noise on another), fed through the real callbacks, two thirds flushed to Parquet and
the rest left live. The same values are kept as plain pandas frames for the independent references.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from cryptofeed.types import OrderBook, Ticker, Trade

from cryptolake_nb import Lake

from feeding import put

T0 = 1_700_000_000.0
SYMBOLS = ("BTC-USDT", "ETH-USDT")
EXCHANGE = "BINANCE"
NOISE = "KRAKEN"  # the same symbols on another exchange: must never leak into BINANCE results


def _times(rng: np.random.Generator, n: int, mean_s: float) -> np.ndarray:
    """Strictly increasing times on a millisecond grid (no ties: ordering is then unambiguous)."""
    steps = np.maximum(1, np.round(rng.exponential(mean_s, n) * 1000)).astype(np.int64)
    return T0 + np.cumsum(steps) / 1000.0


def _ns(ts: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.round(ts * 1e6).astype("int64") * 1000, utc=True))


def trades(seed: int, n: int, symbol: str, exchange: str = EXCHANGE, base: float = 30_000.0) -> tuple[list, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    price = np.round(base * np.exp(np.cumsum(rng.normal(0, 8e-4, n))), 2)
    amount = np.round(rng.lognormal(-2, 1, n), 6) + 1e-6
    side = rng.choice(["buy", "sell", None], n, p=[0.5, 0.45, 0.05])
    ts = _times(rng, n, 4.0)
    objs = [Trade(exchange, symbol, s, Decimal(str(a)), Decimal(str(p)), t, id=f"{seed}-{i}", type=None, raw=None)
            for i, (p, a, s, t) in enumerate(zip(price, amount, side, ts))]
    frame = pd.DataFrame({"exchange": exchange, "symbol": symbol, "side": side, "price": price, "amount": amount,
                          "ts": _ns(ts)})
    return objs, frame


def tickers(seed: int, n: int, symbol: str, exchange: str = EXCHANGE, base: float = 30_000.0) -> tuple[list, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    bid = np.round(base * np.exp(np.cumsum(rng.normal(0, 8e-4, n))), 2)
    ask = bid + np.round(rng.uniform(0.01, 5.0, n), 2)
    ts = _times(rng, n, 5.0)
    bid_none = rng.random(n) < 0.05  # some updates carry only the ask
    objs = [Ticker(exchange, symbol, None if nb else Decimal(str(b)), Decimal(str(a)), t, raw=None)
            for b, a, t, nb in zip(bid, ask, ts, bid_none)]
    frame = pd.DataFrame({"exchange": exchange, "symbol": symbol, "bid": np.where(bid_none, np.nan, bid), "ask": ask,
                          "ts": _ns(ts)})
    return objs, frame


def books(lake: Lake, seed: int, n: int, symbol: str, exchange: str = EXCHANGE, after_s: float = 0.0) -> pd.DataFrame:
    """Real cryptofeed OrderBooks, snapshots then deltas that move the top; returns the best bid and
    ask after each update (the reference)."""
    rng = np.random.default_rng(seed)
    cb = lake.callbacks(["l2_book"])["l2_book"]
    ts = _times(rng, n, 3.0) + after_s
    mid = 1000 + int(rng.integers(0, 50))
    book = OrderBook(exchange, symbol, bids={Decimal(mid - k): Decimal(1) for k in range(1, 8)},
                     asks={Decimal(mid + k): Decimal(1) for k in range(1, 8)})
    rows = []

    async def go() -> None:
        for i, t in enumerate(ts):
            if i == 0:
                book.delta = None
            else:
                side = "bid" if rng.random() < 0.5 else "ask"
                levels = book.book.bids if side == "bid" else book.book.asks
                best = levels.index(0)[0]
                if rng.random() < 0.5 and len(levels) > 2:  # remove the best level
                    del levels[best]
                    book.delta = {side: [(best, Decimal(0))], ("ask" if side == "bid" else "bid"): []}
                else:  # a new level, maybe improving the top without crossing
                    other = (book.book.asks if side == "bid" else book.book.bids).index(0)[0]
                    step = Decimal(int(rng.integers(-2, 2)))
                    price = best + step if side == "bid" else best - step
                    if (side == "bid" and price >= other) or (side == "ask" and price <= other):
                        price = best
                    size = Decimal(int(rng.integers(1, 9)))
                    levels[price] = size
                    book.delta = {side: [(price, size)], ("ask" if side == "bid" else "bid"): []}
            book.timestamp, book.sequence_number, book.checksum = float(t), None, None
            await cb(book, float(t) + 0.001)
            rows.append((float(book.book.bids.index(0)[0]), float(book.book.asks.index(0)[0])))

    asyncio.run(go())
    frame = pd.DataFrame(rows, columns=["bid", "ask"])
    frame["ts"] = _ns(ts)
    frame["symbol"] = symbol
    return frame


def build(root: Path) -> tuple[Lake, dict[str, pd.DataFrame]]:
    """The market in a fresh lake, history and live; returns the lake and reference frames
    (`trades`, `ticker`: every exchange; `book`: BINANCE)."""
    lake = Lake(root, autoflush=False)
    trade_parts, ticker_parts, book_parts = [], [], []
    live_trades, live_tickers = [], []
    for k, sym in enumerate(SYMBOLS):
        objs, frame = trades(10 + k, 1500, sym, base=30_000.0 / (k * 15 + 1))
        cut = len(objs) * 2 // 3
        put(lake, objs[:cut])
        live_trades += objs[cut:]
        trade_parts.append(frame)
        tobjs, tframe = tickers(20 + k, 900, sym, base=30_000.0 / (k * 15 + 1))
        _tick(lake, tobjs[: len(tobjs) * 2 // 3])
        live_tickers += tobjs[len(tobjs) * 2 // 3:]
        ticker_parts.append(tframe)
        noise, nframe = trades(30 + k, 300, sym, exchange=NOISE, base=5.0)
        put(lake, noise)
        trade_parts.append(nframe)
        nobjs, ntframe = tickers(40 + k, 200, sym, exchange=NOISE, base=5.0)
        _tick(lake, nobjs)
        ticker_parts.append(ntframe)
    for k, sym in enumerate(SYMBOLS):
        book_parts.append(books(lake, 50 + k, 200, sym))
    lake.flush()
    put(lake, live_trades)
    _tick(lake, live_tickers)
    for k, sym in enumerate(SYMBOLS):
        book_parts.append(books(lake, 60 + k, 100, sym, after_s=1000.0))  # a new session of the book, live
    ref = {"trades": pd.concat(trade_parts, ignore_index=True), "ticker": pd.concat(ticker_parts, ignore_index=True),
           "book": pd.concat(book_parts, ignore_index=True)}
    return lake, ref


def _tick(lake: Lake, objs: list) -> None:
    cb = lake.callbacks(["ticker"])["ticker"]

    async def go() -> None:
        for o in objs:
            await cb(o, o.timestamp + 0.001)

    asyncio.run(go())
