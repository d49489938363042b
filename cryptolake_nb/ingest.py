"""cryptofeed callbacks that put objects into a lake's live buffer; they never raise."""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Protocol

from .buffer import LiveBuffer
from .errors import ConfigError
from .tables import TABLES

__all__ = ["LakeCallback", "TradeLake", "callback_for"]

log = logging.getLogger(__name__)


class _HasBuffers(Protocol):
    captures: dict[str, Any]

    def buffer(self, table: str) -> LiveBuffer: ...


class LakeCallback:
    """Base of the per-table callbacks: `Feed(callbacks={TRADES: TradeLake(lake)})`.

    A callback that raises makes cryptofeed drop and reconnect the websocket (a data gap), so
    these only append (the buffer's lock-free appender, after the table's capture hook if it has
    one); conversion and validation happen when the buffer seals.
    """

    table: str = ""

    def __init__(self, lake: _HasBuffers, table: str | None = None) -> None:
        self.table = table or self.table
        if self.table not in TABLES:
            raise ConfigError(f"channel {self.table!r} is not stored; stored channels are {sorted(TABLES)}")
        self._buffer = lake.buffer(self.table)
        put = self._buffer.appender()
        capture = getattr(lake, "captures", {}).get(self.table)

        def captured(obj: Any, receipt: float) -> None:
            put(capture(obj, receipt), receipt)

        self._append = put if capture is None else captured
        self.errors = 0

    @property
    def calls(self) -> int:
        """Objects this table's buffer has received (from every callback feeding it)."""
        return self._buffer.appended

    async def __call__(self, obj: Any, receipt_timestamp: float) -> None:
        try:
            self._append(obj, receipt_timestamp)
        except Exception:  # never propagate into cryptofeed
            self._failed()

    def function(self) -> Callable[[Any, float], Awaitable[None]]:
        """This callback as a plain coroutine function, what `lake.callbacks()` hands cryptofeed: the
        same work, without the bound-method call an instance costs on every message; errors still
        count on this instance."""
        append, failed = self._append, self._failed

        async def callback(obj: Any, receipt_timestamp: float) -> None:
            try:
                append(obj, receipt_timestamp)
            except Exception:  # never propagate into cryptofeed
                failed()

        callback.__qualname__ = f"{type(self).__name__}({self.table}).function"
        return callback

    def _failed(self) -> None:
        self.errors += 1
        if self.errors <= 10 or self.errors % 10_000 == 0:
            log.exception("%s callback could not buffer a row (%d so far)", self.table, self.errors)


def callback_for(lake: _HasBuffers, channel: str) -> Callable[[Any, float], Awaitable[None]]:
    """The callback storing cryptofeed `channel` (e.g. "trades", "l2_book") in the table of that name,
    as a coroutine function (`LakeCallback.function`)."""
    return LakeCallback(lake, channel).function()


class TradeLake(LakeCallback):
    """Stores cryptofeed `Trade` objects in the `trades` table."""

    table = "trades"
