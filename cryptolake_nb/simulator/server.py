"""A synthetic exchange on loopback: a seeded market published in a venue's protocol (Binance spot or USD-M)."""
from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Coroutine, Iterable
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import WSMsgType, web
from yarl import URL

from cryptolake_nb.clock import Clock, SystemClock
from cryptolake_nb.errors import ConfigError, SimulatorError
from cryptolake_nb.simulator.binance_futures import BinanceFutures
from cryptolake_nb.simulator.binance_spot import BinanceSpot, Reply
from cryptolake_nb.simulator.faults import MALFORMED_KINDS, Faults, Injected, SkippedIds, malformed_frame
from cryptolake_nb.simulator.loopback import LoopbackServer
from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH, Market, MarketEvent
from cryptolake_nb.simulator.streams import StreamClient, parse_streams

__all__ = ["PROTOCOLS", "ExchangeSimulator"]

log = logging.getLogger(__name__)

_TICK_S = 0.01          # pacing granularity of the market task
_MAX_BURST_S = 0.5      # after a stall, catch up at most this much market time


class VenueProtocol(Protocol):
    """A venue's public protocol over a synthetic market (see binance_spot.py, binance_futures.py)."""

    exchange: str
    default_symbols: tuple[str, ...]
    streams: Any  # stream name suffix -> market event kind
    market: Market

    def exchange_info(self, now_ms: int) -> dict[str, Any]: ...

    def rest(self, path: str, query: Any, now_ms: int) -> Reply | None: ...


PROTOCOLS: dict[str, type] = {p.exchange: p for p in (BinanceSpot, BinanceFutures)}
"""cryptofeed exchange id -> the protocol the simulator speaks for it."""


class ExchangeSimulator(LoopbackServer):
    """A synthetic exchange on 127.0.0.1 with TLS, run by its own loop in a daemon thread.

    `exchange` picks the protocol: "BINANCE" (spot; symbols like 'BTC-USDT') or "BINANCE_FUTURES"
    (USD-M perpetuals; symbols like 'BTC-USDT-PERP', with funding, liquidations, open interest,
    book tickers and 1-minute candles). `rate` is market events per second over all symbols.

    Faults: `faults` (a seeded `Faults` plan: duplicate, reordered, skipped-id and malformed trade
    frames), plus the commands `drop_connections()`, `silence(seconds)` and `burst(events, rate=)`;
    `injected` records all of it (counts, skipped id ranges, disconnect times).
    """

    def __init__(
        self,
        symbols: Iterable[str] | None = None,
        *,
        rate: float = 50.0,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        trade_share: float = 0.5,
        clock: Clock | None = None,
        exchange: str = "BINANCE",
        faults: Faults | None = None,
    ) -> None:
        super().__init__(host=host, port=port)
        name = exchange.upper() if isinstance(exchange, str) else ""
        if name not in PROTOCOLS:
            raise ConfigError(f"the simulator speaks {', '.join(sorted(PROTOCOLS))}, not {exchange!r}")
        protocol_class = PROTOCOLS[name]
        self._protocol: VenueProtocol = protocol_class(
            protocol_class.default_symbols if symbols is None else symbols, seed=seed, trade_share=trade_share)
        self.exchange = name
        self._market = self._protocol.market
        self.rate = rate
        self._clock: Clock = clock or SystemClock()
        self.trades_sent = 0
        self.depth_updates_sent = 0
        self.events_generated = 0
        self.sent: collections.Counter[str] = collections.Counter()  # frames sent per market event kind
        self.injected = Injected()
        self.faults = faults or Faults()
        self._held: dict[str, str] = {}  # exchange symbol -> a trade frame body held back (reorder)
        self._silent_until = 0.0         # loop time until which the market publishes nothing

    # -- faults ----------------------------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        """The fault plan; assigning one restarts its seeded draws."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        if not isinstance(value, Faults):
            raise ConfigError(f"faults must be a Faults plan, got {value!r}")
        self._faults, self._fault_rng = value, value.rng()

    def drop_connections(self, *, abrupt: bool = False, timeout: float = 5.0) -> int:
        """Disconnect every websocket client (recorded in `injected.disconnects` when any was connected)."""
        at = self._clock.time_ns()
        dropped = super().drop_connections(abrupt=abrupt, timeout=timeout)
        if dropped:
            self.injected.disconnects.append(at)
        return dropped

    def silence(self, seconds: float, timeout: float = 5.0) -> None:
        """Publish nothing for `seconds` (the market stands still; sockets stay open, pings answered)."""
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
            raise ConfigError(f"silence needs seconds in [0, 3600], got {seconds!r}")
        loop = self._loop
        if loop is None or not self.running:
            raise SimulatorError("the simulator is not running")
        start = self._clock.time_ns()

        async def _set() -> None:
            self._silent_until = asyncio.get_running_loop().time() + seconds

        asyncio.run_coroutine_threadsafe(_set(), loop).result(timeout)
        self.injected.silences.append((start, start + int(seconds * 1e9)))

    def burst(self, events: int, *, rate: float = 0.0, timeout: float = 60.0) -> None:
        """Publish `events` extra market events at `rate` per second (0: all at once); returns when sent."""
        if not isinstance(events, int) or events < 0 or not isinstance(rate, (int, float)) or rate < 0:
            raise ConfigError(f"burst needs events >= 0 and rate >= 0, got {events!r}, {rate!r}")
        loop = self._loop
        if loop is None or not self.running:
            raise SimulatorError("the simulator is not running")

        async def _burst() -> None:
            done, start = 0, asyncio.get_running_loop().time()
            while done < events:
                due = events if rate == 0 else min(events, int((asyncio.get_running_loop().time() - start) * rate) + 1)
                for _ in range(due - done):
                    self._publish(self._market.step(self._now_ms()))
                done = due
                if done < events:
                    await asyncio.sleep(_TICK_S)

        asyncio.run_coroutine_threadsafe(_burst(), loop).result(timeout)
        self.injected.bursts.append((events, float(rate)))

    # -- configuration ---------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        """Market events per second over all symbols (each one frame of some kind); 0 pauses."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        """Takes effect on the simulator's loop: once set, no event is published at the old rate (a
        tick that had started at it has finished)."""
        if not isinstance(value, (int, float)) or not 0 <= value <= 100_000:
            raise ConfigError(f"rate must be a number of messages per second in [0, 100000], got {value!r}")
        loop = self._loop
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is None or not self.running or on_loop:
            self._rate = float(value)
            return

        async def _set() -> None:
            self._rate = float(value)

        asyncio.run_coroutine_threadsafe(_set(), loop).result(5.0)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Listed symbols, cryptofeed-normalised (e.g. 'BTC-USDT', 'BTC-USDT-PERP')."""
        return tuple(self._market.symbol_map)

    @property
    def symbol_map(self) -> dict[str, str]:
        """Normalised symbol -> exchange symbol (e.g. 'BTC-USDT' -> 'BTCUSDT')."""
        return self._market.symbol_map

    def exchange_info(self) -> dict[str, Any]:
        """The body the exchangeInfo route serves, without a request."""
        return self._protocol.exchange_info(self._now_ms())

    def symbol_reader(self) -> _InProcessReader:
        """Answers the exchange's symbol-list GETs in-process (a feed is built without a request)."""
        return _InProcessReader(self)

    def rest_reply(self, url: str) -> Reply | None:
        """What GET `url` (the exchange's or this server's address) returns, without a request; for the
        static routes (symbol lists): the market itself belongs to the server's loop thread."""
        parsed = URL(url)
        return self._protocol.rest(parsed.path, parsed.query, self._now_ms())

    def _describe(self) -> str:
        return f"{self.exchange} ({', '.join(self.symbols)})"

    def __repr__(self) -> str:
        where = self.rest_url if self.running else "stopped"
        return f"ExchangeSimulator({self.exchange}: {', '.join(self.symbols)}; {self._rate:g} msg/s; {where})"

    # -- the loop thread -------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return self._clock.time_ns() // 1_000_000

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self._ws_handler)
        app.router.add_get("/{tail:.*}", self._rest_handler)

    def _background(self) -> list[Coroutine[Any, Any, None]]:
        return [self._run_market()]

    async def _run_market(self) -> None:
        loop = asyncio.get_running_loop()
        last, carry = loop.time(), 0.0
        while True:
            await asyncio.sleep(_TICK_S)
            now = loop.time()
            if now < self._silent_until:
                last, carry = now, 0.0
                continue
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
        faults = self._faults
        if event.kind != AGG_TRADE or not faults.active:
            self._offer(key, event.kind, body)
            return
        rng, symbol, injected = self._fault_rng, event.exchange_symbol, self.injected
        if faults.malformed and rng.random() < faults.malformed:
            kind = rng.choice(MALFORMED_KINDS)
            if self._offer_raw(key, kind):
                injected.count_malformed(kind)
        held = self._held.pop(symbol, None)
        if held is None and faults.reorder and rng.random() < faults.reorder:
            self._held[symbol] = body  # goes out after the symbol's next trade
        else:
            self._offer(key, event.kind, body)
            if held is not None and self._offer(key, event.kind, held):
                injected.reordered += 1
            if faults.duplicate and rng.random() < faults.duplicate and self._offer(key, event.kind, body):
                injected.duplicates += 1
        if faults.skip and rng.random() < faults.skip:
            first, last = self._market.skip_trade_ids(symbol, rng.randint(1, faults.skip_max))
            normalised = {v: k for k, v in self._market.symbol_map.items()}[symbol]
            injected.skipped.append(SkippedIds(normalised, symbol, first, last))

    def _offer_raw(self, key: tuple[str, str], kind: str) -> bool:
        sent = False
        for client in list(self._clients):
            stream = client.streams.get(key)
            if stream is not None and client.offer_raw(key, malformed_frame(kind, stream, key[0])):
                sent = True
        return sent

    def _offer(self, key: tuple[str, str], kind: str, body: str) -> bool:
        """Offer one frame to every subscribed client; True if any took it."""
        sent = False
        for client in list(self._clients):
            accepted = client.offer(key, body)
            if accepted is False:
                self._clients.discard(client)
                client.abort()
            elif accepted:
                sent = True
                self.sent[kind] += 1
                if kind == AGG_TRADE:
                    self.trades_sent += 1
                elif kind == DEPTH:
                    self.depth_updates_sent += 1
        return sent

    # -- handlers --------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        try:
            streams = parse_streams(request.query.get("streams", ""), self._market.instruments, self._protocol.streams)
        except ValueError as exc:
            return web.json_response({"code": -1121, "msg": str(exc)}, status=400)
        ws = web.WebSocketResponse(timeout=2.0, autoping=True, heartbeat=None)
        await ws.prepare(request)
        client = StreamClient(request, ws, streams)
        self._clients.add(client)
        self.injected.connections += 1
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

    async def _rest_handler(self, request: web.Request) -> web.Response:
        reply = self._protocol.rest(request.path, request.query, self._now_ms())
        if reply is None:
            return web.json_response({"code": -5, "msg": f"Unknown path {request.path}."}, status=404)
        status, body = reply
        return web.json_response(body, status=status)


class _InProcessReader:
    """cryptofeed's HTTPSync.read shape, answered by the simulator's routes without a socket."""

    def __init__(self, simulator: ExchangeSimulator) -> None:
        self.simulator = simulator

    def read(self, address: str, params: Any = None, headers: Any = None, json: bool = False,
             text: bool = True, uuid: Any = None) -> Any:
        reply = self.simulator.rest_reply(address)
        if reply is None or reply[0] != 200:
            raise SimulatorError(f"the simulated {self.simulator.exchange} does not serve {address}")
        return _as_cryptofeed_reads_it(reply[1], parsed=json)


def _as_cryptofeed_reads_it(body: Any, parsed: bool) -> Any:
    """The JSON text, or (`parsed`) the JSON with floats as Decimal, as HTTPSync.read(json=True) gives."""
    text = json.dumps(body, separators=(",", ":"))
    return json.loads(text, parse_float=Decimal) if parsed else text
