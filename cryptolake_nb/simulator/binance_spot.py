"""Binance SPOT's public protocol over the synthetic `Market`: REST routes and stream names."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptolake_nb.simulator.market import Market
from cryptolake_nb.simulator.streams import SPOT_STREAMS

__all__ = ["BinanceSpot", "Reply", "depth_limit"]

Reply = tuple[int, Any]  # HTTP status, JSON body
_BAD_REQUEST: Reply = (400, {"code": -1121, "msg": "Invalid symbol or limit."})


def depth_limit(query: Mapping[str, str], listed: Mapping[str, Any], maximum: int) -> tuple[str, int] | None:
    """(symbol, limit) of a depth request, or None when either is invalid."""
    symbol = query.get("symbol", "")
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return None
    return (symbol, limit) if symbol in listed and 1 <= limit <= maximum else None


class BinanceSpot:
    """What api.binance.com and stream.binance.com:9443 answer, for cryptofeed's `Binance` feed."""

    exchange = "BINANCE"
    default_symbols = ("BTC-USDT",)
    streams = SPOT_STREAMS

    def __init__(self, symbols: Iterable[str], *, seed: int = 0, trade_share: float = 0.5) -> None:
        self.market = Market(symbols, seed=seed, trade_share=trade_share)

    def exchange_info(self, now_ms: int) -> dict[str, Any]:
        return self.market.exchange_info(now_ms)

    def rest(self, path: str, query: Mapping[str, str], now_ms: int) -> Reply | None:
        """The reply to GET `path`?`query`, or None when there is no such route."""
        if path == "/api/v3/exchangeInfo":
            return 200, self.exchange_info(now_ms)
        if path == "/api/v3/depth":
            request = depth_limit(query, self.market.instruments, 5000)
            return _BAD_REQUEST if request is None else (200, self.market.snapshot(*request))
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/time":
            return 200, {"serverTime": now_ms}
        return None
