"""A recorded cryptofeed capture served over the socket: REST responses over https, websocket frames
over wss, at the recorded pace, faster, or as fast as the client reads.

How live connections get recorded ones (each recorded connection is served at most once per start):

- The client's address is matched to the recordings' addresses: same host and path, else (an
  exchange that moved its host since) same path; among those, one with the same query parts
  first (Binance names its streams in the query, in an order that varies between runs).
- A recording whose client sent nothing (the subscription is in the address) is claimed when the
  connection opens. Otherwise the connection claims, on each message it sends, every unclaimed
  recording whose client once sent the same message (compared as JSON, symbol lists in any order,
  cryptofeed connection ids ignored). A first message matching none claims the first candidate
  anyway, with a warning (a client whose subscription format changed since the recording).
- One connection may hold several recordings (cryptofeed 2.4.1 opens one HITBTC connection where
  the recording has four, and two KRAKEN ones for three): their frames are merged, by recorded time
  when paced, one recording after the other at `speed=None`, which is also the order in which
  `cryptolake_nb.replay` feeds them. A connection left with no recording stays open and silent.

Frame i of a recording is sent `(t_i - t_anchor) / speed` seconds after the claim, where t_anchor
is the recorded time of the matching message (of the connect line, for address subscriptions).
REST: a polled GET (NAME.http.N.0) is answered by URL once per recorded response; a symbol GET
(NAME.0) by URL, as often as asked; anything else gets 404. See cryptolake_nb.replay_http.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from cryptolake_nb.errors import ConfigError, ReplayError
from cryptolake_nb.replay import Capture, load_capture
from cryptolake_nb.replay_http import RecordedResponses, RecordedSyncHTTP, Substitution
from cryptolake_nb.simulator.loopback import LoopbackServer
from cryptolake_nb.simulator.recording import Recording, ReplayClient, Target, read_recording

__all__ = ["CaptureServer"]

log = logging.getLogger(__name__)

_LOGGED_MESSAGES = 1000  # client messages kept for inspection
_HOP_HEADERS = {"content-length", "content-encoding", "transfer-encoding", "connection", "content-type"}


class CaptureServer(LoopbackServer):
    """Serves one exchange's capture files (read in place) as that exchange would, on 127.0.0.1 with TLS.

    `speed`: 1.0 replays at the recorded pace, 10 ten times faster, None or 0 as fast as possible.
    Use with `FeedSpec(server.exchange, server.symbols, channels, simulator=server)` or
    `lake.subscribe(server.exchange, server.symbols, channels, simulator=server)`.
    """

    thread_name = "cryptolake-capture-server"

    def __init__(self, files: Iterable[str | Path], *, speed: float | None = 1.0, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host=host, port=port)
        if speed is not None and (not isinstance(speed, (int, float)) or not math.isfinite(speed) or speed < 0):
            raise ConfigError(f"speed must be None, 0 (as fast as possible) or a positive factor, got {speed!r}")
        self.speed = float(speed) if speed else None
        self.capture: Capture = load_capture(files)
        self.exchange = self.capture.exchange
        self.recordings = [read_recording(p) for p in self.capture.ws_files]
        self.substitutions: list[Substitution] = []  # symbol GETs answered with another URL's record
        # since the last start: client messages (connection, text), REST (URL, status), warnings
        self.received: collections.deque[tuple[str, str]] = collections.deque(maxlen=_LOGGED_MESSAGES)
        self.requests: list[tuple[str, int]] = []
        self.warnings: list[str] = []
        self._reset()

    # -- what the capture holds ------------------------------------------------------------------
    @property
    def subscription(self) -> dict[str, list[str]]:
        """The recorded configuration: cryptofeed channel -> normalised symbols."""
        return {channel: list(symbols) for channel, symbols in self.capture.config.items()}

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.capture.config)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every recorded symbol, in configuration order."""
        return tuple(dict.fromkeys(s for symbols in self.capture.config.values() for s in symbols))

    @property
    def frames_total(self) -> int:
        return sum(len(r.frames) for r in self.recordings)

    @property
    def frames_sent(self) -> int:
        return sum(r.position for r in self.recordings)

    @property
    def frames_pending(self) -> int:
        """Frames of claimed recordings not sent yet (0 once everything claimed is out)."""
        return sum(r.remaining for r in self.recordings if r.client is not None)

    @property
    def claimed(self) -> list[str]:
        return [r.name for r in self.recordings if r.client is not None]

    def status(self) -> dict[str, Any]:
        """Per recording: frames, sent, the connection serving it; plus REST requests and warnings."""
        return {
            "exchange": self.exchange, "speed": self.speed, "connections": self.connections,
            "recordings": {r.name: {"frames": len(r.frames), "sent": r.position, "client": r.client}
                           for r in self.recordings},
            "requests": list(self.requests), "warnings": list(self.warnings),
        }

    # -- the feed adapter's view -----------------------------------------------------------------
    def local_url(self, url: str) -> str:
        """The exchange's `url` on this server: its host becomes the first path segment."""
        parts = urlsplit(url)
        base = self.ws_url if parts.scheme in ("ws", "wss") else self.rest_url
        return f"{base}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def symbol_reader(self) -> RecordedSyncHTTP:
        """The recorded symbol lists, as the replay driver answers them (by URL, else the next unused)."""
        return RecordedSyncHTTP(RecordedResponses(self.exchange, "symbol", self.capture.symbol_responses,
                                                  latest=True, fallback=True, substitutions=self.substitutions))

    def _describe(self) -> str:
        pace = "as fast as possible" if self.speed is None else f"at {self.speed:g}x"
        return f"{self.exchange} capture ({len(self.recordings)} connection(s), {pace})"

    def __repr__(self) -> str:
        where = self.rest_url if self.running else "stopped"
        return f"CaptureServer({self._describe()}; {where})"

    # -- serving ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Rewind: every recording unclaimed and unsent, every recorded response available again."""
        for recording in self.recordings:
            recording.rewind()
        self.received.clear()
        self.requests.clear()
        self.warnings.clear()
        self._polled = RecordedResponses(self.exchange, "polled", self.capture.http_responses, latest=False,
                                         fallback=False)
        self._symbols = RecordedResponses(self.exchange, "symbol", self.capture.symbol_responses, latest=True,
                                          fallback=False)
        self._serial = 0

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/{tail:.*}", self._handle)

    def warn(self, message: str, *args: Any) -> None:
        """Log a warning about this run and keep it in `warnings`."""
        text = message % args
        self.warnings.append(text)
        log.warning("capture server: %s", text)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        original = request.raw_path[1:]  # "<exchange host>/<path>?<query>"
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, "wss://" + original)
        return self._rest("https://" + original)

    def _rest(self, url: str) -> web.Response:
        try:
            if url in self._polled.by_url:
                body = self._polled.take(url)
            elif url in self._symbols.by_url:
                body = self._symbols.take(url)
            else:
                raise ReplayError(f"{self.exchange}: the capture holds no response for {url}")
        except ReplayError as exc:
            self.warn("%s", exc)
            self.requests.append((url, 404))
            return web.json_response({"error": str(exc)}, status=404)
        self.requests.append((url, 200))
        body, _, head = body.partition(" header: ")
        headers = {k: str(v) for k, v in (_json_object(head) or {}).items() if k.lower() not in _HOP_HEADERS}
        return web.Response(text=body, content_type="application/json", headers=headers)

    async def _websocket(self, request: web.Request, address: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        self._serial += 1
        client = ReplayClient(self, request, ws, f"client-{self._serial}", Target.of(address))
        self._clients.add(client)
        log.info("capture server: %s connected to %s", client.name, address)
        pump = asyncio.create_task(client.pump(), name=f"capture-{client.name}")
        try:
            client.on_connect()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    client.on_message(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    client.on_message(msg.data.decode("utf-8", "replace"))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            log.info("capture server: %s disconnected", client.name)
        return ws

    def candidates(self, target: Target) -> list[Recording]:
        """Unclaimed recordings a connection to `target` may get, best first (see the module doc)."""
        free = [r for r in self.recordings if r.client is None]
        same = [r for r in free if (r.target.netloc, r.target.path) == (target.netloc, target.path)]
        pool = same or [r for r in free if r.target.path == target.path]
        return sorted(pool, key=lambda r: r.target.query != target.query)  # stable: file order otherwise


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
