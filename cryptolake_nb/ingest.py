"""cryptofeed callbacks that put objects into a lake's live buffer; they never raise."""
from __future__ import annotations

import logging
from typing import Any, Protocol

from .buffer import LiveBuffer

__all__ = ["LakeCallback", "TradeLake"]

log = logging.getLogger(__name__)


class _HasBuffers(Protocol):
    def buffer(self, table: str) -> LiveBuffer: ...


class LakeCallback:
    """Base of the per-table callbacks: `Feed(callbacks={TRADES: TradeLake(lake)})`.

    A callback that raises makes cryptofeed drop and reconnect the websocket (a data gap), so
    these only append; conversion and validation happen when the buffer seals.
    """

    table: str = ""

    def __init__(self, lake: _HasBuffers) -> None:
        self._append = lake.buffer(self.table).append
        self.calls = 0
        self.errors = 0

    async def __call__(self, obj: Any, receipt_timestamp: float) -> None:
        self.calls += 1
        try:
            self._append(obj, receipt_timestamp)
        except Exception:  # never propagate into cryptofeed
            self.errors += 1
            if self.errors <= 10 or self.errors % 10_000 == 0:
                log.exception("%s callback could not buffer a row (%d so far)", self.table, self.errors)


class TradeLake(LakeCallback):
    """Stores cryptofeed `Trade` objects in the `trades` table."""

    table = "trades"
