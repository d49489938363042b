"""A direct producer: cryptofeed `Trade` objects pushed through the lake's real callback at a fixed
rate, from a thread with its own event loop (as the collector thread does), without cryptofeed's
websocket and parser. Used where the simulator -> cryptofeed path cannot reach the rate asked for."""
from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

from cryptofeed.types import Trade

from cryptolake_nb import Lake, TradeLake

__all__ = ["DirectProducer"]

_TICK_S = 0.005
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT")


class DirectProducer:
    """`rate` trades/s over four symbols until `stop()`; `sent` counts them, `behind_s` the worst lag."""

    def __init__(self, lake: Lake, rate: float) -> None:
        self.callback = TradeLake(lake)
        self.rate = rate
        self.sent = 0
        self.behind_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-producer", daemon=True)
        self._prices = [Decimal(f"{37_000 + i / 100:.2f}") for i in range(2_000)]
        self._amounts = [Decimal(f"{(i + 1) / 10_000:.4f}") for i in range(997)]

    def start(self) -> "DirectProducer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._produce())
        finally:
            loop.close()

    async def _produce(self) -> None:
        cb, prices, amounts = self.callback, self._prices, self._amounts
        start = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            self.behind_s = max(self.behind_s, (due - i) / self.rate)
            while i < due:
                now = time.time()
                # ids consecutive per symbol, as Binance's are (a hole would be recorded as a gap)
                await cb(Trade("BINANCE", SYMBOLS[i & 3], "buy" if i & 4 else "sell", amounts[i % 997],
                               prices[(i * 7) % 2_000], now - 0.01, id=str(i >> 2)), now)
                i += 1
                self.sent = i
            await asyncio.sleep(_TICK_S)
