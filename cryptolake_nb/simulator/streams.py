"""Binance combined-stream subscriptions: stream names, and one queued writer per websocket client."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Mapping

from aiohttp import web

from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH

__all__ = ["SPOT_STREAMS", "StreamClient", "parse_streams"]

log = logging.getLogger(__name__)

CLIENT_QUEUE = 10_000  # a client this far behind is disconnected, as exchanges do
# stream name suffix -> market event kind, for Binance SPOT
SPOT_STREAMS: Mapping[str, str] = {"aggTrade": AGG_TRADE, "depth": DEPTH, "depth@100ms": DEPTH, "depth@1000ms": DEPTH}

StreamKey = tuple[str, str]  # (EXCHANGE_SYMBOL, market event kind)


def parse_streams(query: str, listed: Container[str], kinds: Mapping[str, str] = SPOT_STREAMS) -> dict[StreamKey, str]:
    """Map '/'-separated names like 'btcusdt@aggTrade' to keys; ValueError names the first bad one.

    `kinds` maps what follows the '@' to a market event kind (SPOT_STREAMS by default).
    """
    streams: dict[StreamKey, str] = {}
    for name in filter(None, query.split("/")):
        symbol, _, kind = name.partition("@")
        if kind not in kinds or symbol.upper() not in listed:
            raise ValueError(f"Invalid stream {name!r}.")
        streams[(symbol.upper(), kinds[kind])] = name
    if not streams:
        raise ValueError("No stream requested.")
    return streams


class StreamClient:
    """One websocket subscriber: its streams and an outbound queue drained by `pump()`."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, streams: dict[StreamKey, str]) -> None:
        self.ws = ws
        self.transport = request.transport
        self.streams = streams  # key -> stream name as the client spelled it (echoed back)
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)

    def offer(self, key: StreamKey, body: str) -> bool | None:
        """Queue one combined-stream frame; None if not subscribed, False if the client is too slow."""
        stream = self.streams.get(key)
        if stream is None:
            return None
        try:
            self.queue.put_nowait(f'{{"stream":"{stream}","data":{body}}}')
        except asyncio.QueueFull:
            log.warning("simulator: a client fell %d messages behind; disconnecting it", CLIENT_QUEUE)
            return False
        return True

    def offer_raw(self, key: StreamKey, frame: str) -> bool | None:
        """Queue `frame` as is (e.g. a malformed one) if subscribed to `key`; like offer()."""
        if key not in self.streams:
            return None
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    async def pump(self) -> None:
        """Send queued frames until the socket closes."""
        while not self.ws.closed:
            await self.ws.send_str(await self.queue.get())

    async def close(self) -> None:
        await self.ws.close(code=1001, message=b"going away")

    def abort(self) -> None:
        """Reset the TCP connection without a close frame."""
        if self.transport is not None:
            self.transport.abort()
