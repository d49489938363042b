"""Loopback exchange speaking Binance SPOT's public REST and combined-stream websocket protocol."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from cryptolake_nb.clock import Clock, SystemClock
from cryptolake_nb.errors import ConfigError, SimulatorError
from cryptolake_nb.simulator.market import AGG_TRADE, Market, MarketEvent
from cryptolake_nb.simulator.streams import StreamClient, parse_streams
from cryptolake_nb.simulator.tls import make_loopback_tls

__all__ = ["ExchangeSimulator"]

log = logging.getLogger(__name__)

_TICK_S = 0.01          # pacing granularity of the market task
_MAX_BURST_S = 0.5      # after a stall, catch up at most this much market time


class ExchangeSimulator:
    """A Binance-like exchange on 127.0.0.1 with TLS, run by its own loop in a daemon thread."""

    def __init__(
        self,
        symbols: Iterable[str] = ("BTC-USDT",),
        *,
        rate: float = 50.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        trade_share: float = 0.5,
        clock: Clock | None = None,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ConfigError(f"the simulator binds loopback only, got host={host!r}")
        self._market = Market(symbols, seed=seed, trade_share=trade_share)
        self.rate = rate
        self._host, self._port = host, port
        self._clock: Clock = clock or SystemClock()
        self._tls = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._clients: set[StreamClient] = set()
        self._stopping: asyncio.Event | None = None
        self.trades_sent = 0
        self.depth_updates_sent = 0
        self.events_generated = 0

    # -- configuration ---------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        """Market events per second over all symbols (each one trade or one depth diff); 0 pauses."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not isinstance(value, (int, float)) or not 0 <= value <= 100_000:
            raise ConfigError(f"rate must be a number of messages per second in [0, 100000], got {value!r}")
        self._rate = float(value)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Listed symbols, cryptofeed-normalised (e.g. 'BTC-USDT')."""
        return tuple(self._market.symbol_map)

    @property
    def symbol_map(self) -> dict[str, str]:
        """Normalised symbol -> exchange symbol (e.g. 'BTC-USDT' -> 'BTCUSDT')."""
        return self._market.symbol_map

    def exchange_info(self) -> dict[str, Any]:
        """The body /api/v3/exchangeInfo serves, without a request."""
        return self._market.exchange_info(self._now_ms())

    # -- addresses -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port; after stop() it still names where the simulator was (connections are refused)."""
        if self._tls is None:
            raise SimulatorError("the simulator has not been started")
        return self._port

    @property
    def ws_url(self) -> str:
        """Websocket base address; clients append /stream?streams=..."""
        return f"wss://{self._host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"https://{self._host}:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting only this simulator's freshly made certificate authority."""
        if self._tls is None:
            raise SimulatorError("the simulator has not been started")
        return self._tls.client_context

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connections(self) -> int:
        return len(self._clients)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> ExchangeSimulator:
        """Start serving; return once the socket is listening."""
        if self.running:
            raise SimulatorError("the simulator is already running")
        if self._tls is None:  # kept across restarts, so clients built earlier still trust us
            try:
                self._tls = make_loopback_tls("127.0.0.1" if self._host == "localhost" else self._host)
            except Exception as exc:
                raise SimulatorError(f"could not create the TLS certificate: {exc}") from exc
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="cryptolake-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise SimulatorError(f"the simulator did not start within {timeout} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise SimulatorError(f"the simulator could not start: {failure[0]}") from failure[0]
        log.info("exchange simulator listening on %s (%s)", self.rest_url, ", ".join(self.symbols))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket; idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive() and not loop.is_closed():
            if self._stopping is not None:
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise SimulatorError(f"the simulator thread did not stop within {timeout} s")
        self._thread = self._loop = self._runner = None
        log.info("exchange simulator stopped")

    def __enter__(self) -> ExchangeSimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def drop_connections(self, *, abrupt: bool = False, timeout: float = 5.0) -> int:
        """Disconnect every websocket client (close frame, or a reset when abrupt); return how many."""
        loop = self._loop
        if loop is None or not self.running:
            raise SimulatorError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(self._drop(abrupt), loop).result(timeout)

    def __repr__(self) -> str:
        where = self.rest_url if self.running else "stopped"
        return f"ExchangeSimulator({', '.join(self.symbols)}; {self._rate:g} msg/s; {where})"

    # -- the loop thread -------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported to start() or logged; never printed
            if not ready.is_set():
                failure.append(exc)
                ready.set()
            else:
                log.error("exchange simulator crashed: %r", exc, exc_info=exc)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/stream", self._ws_handler)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self._port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self._tls.server_context).start()
        market = asyncio.create_task(self._run_market(), name="simulator-market")
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            market.cancel()
            await asyncio.gather(market, return_exceptions=True)
            await self._drop(abrupt=False)
            await self._runner.cleanup()

    async def _run_market(self) -> None:
        loop = asyncio.get_running_loop()
        last, carry = loop.time(), 0.0
        while True:
            await asyncio.sleep(_TICK_S)
            now = loop.time()
            due = min(now - last, _MAX_BURST_S) * self._rate + carry
            last = now
            count = int(due)
            carry = due - count
            for _ in range(count):
                self._publish(self._market.step(self._now_ms()))

    def _publish(self, event: MarketEvent) -> None:
        self.events_generated += 1
        key = (event.exchange_symbol, event.kind)
        body = json.dumps(event.payload, separators=(",", ":"))
        for client in list(self._clients):
            accepted = client.offer(key, body)
            if accepted is False:
                self._clients.discard(client)
                client.abort()
            elif accepted and event.kind == AGG_TRADE:
                self.trades_sent += 1
            elif accepted:
                self.depth_updates_sent += 1

    async def _drop(self, abrupt: bool) -> int:
        clients = list(self._clients)
        self._clients.clear()
        for client in clients:
            if abrupt:
                client.abort()
            else:
                await client.close()
        return len(clients)

    # -- handlers --------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        try:
            streams = parse_streams(request.query.get("streams", ""), self._market.instruments)
        except ValueError as exc:
            return web.json_response({"code": -1121, "msg": str(exc)}, status=400)
        ws = web.WebSocketResponse(timeout=2.0, autoping=True, heartbeat=None)
        await ws.prepare(request)
        client = StreamClient(request, ws, streams)
        self._clients.add(client)
        writer = asyncio.create_task(client.pump())
        log.debug("simulator: client connected for %s", sorted(streams.values()))
        try:
            async for msg in ws:  # answers pings and notices closes; the public streams take no input
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.exchange_info())

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = 0
        if symbol not in self._market.instruments or not 1 <= limit <= 5000:
            return web.json_response({"code": -1121, "msg": "Invalid symbol or limit."}, status=400)
        return web.json_response(self._market.snapshot(symbol, limit))

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self._now_ms()})
