"""Feeding real cryptofeed objects to a lake through its real callback, from synchronous tests."""
from __future__ import annotations

import asyncio
from typing import Any, Iterable

from cryptolake_nb import TradeLake


def put(lake: Any, trades: Iterable[Any], receipt: float = 1_700_000_100.0) -> None:
    """Await `TradeLake(lake)` for each trade, as cryptofeed would, with one receipt time."""
    cb = TradeLake(lake)

    async def go() -> None:
        for t in trades:
            await cb(t, receipt)

    asyncio.run(go())
