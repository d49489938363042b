"""Binance USD-M futures' public protocol over the synthetic `PerpetualMarket`: REST routes and streams."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptolake_nb.simulator.binance_spot import Reply, depth_limit
from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH
from cryptolake_nb.simulator.perpetual import BOOK_TICKER, FORCE_ORDER, KLINE, MARK_PRICE, PerpetualMarket

__all__ = ["FUTURES_STREAMS", "BinanceFutures"]

FUTURES_STREAMS: Mapping[str, str] = {
    "aggTrade": AGG_TRADE, "depth": DEPTH, "depth@100ms": DEPTH, "depth@250ms": DEPTH, "depth@500ms": DEPTH,
    "bookTicker": BOOK_TICKER, "markPrice": MARK_PRICE, "markPrice@1s": MARK_PRICE, "forceOrder": FORCE_ORDER,
    "kline_1m": KLINE,  # the only candle interval simulated
}
_BAD_SYMBOL: Reply = (400, {"code": -1121, "msg": "Invalid symbol."})


class BinanceFutures:
    """What fapi.binance.com and fstream.binance.com answer, for cryptofeed's `BinanceFutures` feed."""

    exchange = "BINANCE_FUTURES"
    default_symbols = ("BTC-USDT-PERP",)
    streams = FUTURES_STREAMS

    def __init__(self, symbols: Iterable[str], *, seed: int = 0, trade_share: float = 0.5) -> None:
        self.market = PerpetualMarket(symbols, seed=seed, trade_share=trade_share)

    def exchange_info(self, now_ms: int) -> dict[str, Any]:
        return self.market.exchange_info(now_ms)

    def rest(self, path: str, query: Mapping[str, str], now_ms: int) -> Reply | None:
        """The reply to GET `path`?`query`, or None when there is no such route."""
        if path == "/fapi/v1/exchangeInfo":
            return 200, self.exchange_info(now_ms)
        if path == "/fapi/v1/depth":
            request = depth_limit(query, self.market.instruments, 1000)
            if request is None:
                return 400, {"code": -1121, "msg": "Invalid symbol or limit."}
            return 200, self.market.snapshot(*request, ts_ms=now_ms)
        if path == "/fapi/v1/openInterest":
            symbol = query.get("symbol", "")
            if symbol not in self.market.instruments:
                return _BAD_SYMBOL
            return 200, self.market.open_interest(symbol, now_ms)
        if path == "/fapi/v1/ping":
            return 200, {}
        if path == "/fapi/v1/time":
            return 200, {"serverTime": now_ms}
        return None
