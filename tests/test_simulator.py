"""The loopback exchange: synthetic market, REST, TLS and combined-stream websocket."""
from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterator
from decimal import Decimal

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cryptolake_nb.errors import ConfigError, SimulatorError
from cryptolake_nb.simulator import ExchangeSimulator, Market
from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH
from waiting import wait_for


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=200.0, seed=7) as s:
        yield s


async def _get(sim: ExchangeSimulator, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sim.ssl_context)) as session:
        async with session.get(sim.rest_url + path) as resp:
            return resp.status, json.loads(await resp.text())


async def _read_ws(sim: ExchangeSimulator, streams: str, count: int, timeout: float = 15.0) -> list[dict]:
    out: list[dict] = []
    url = f"{sim.ws_url}/stream?streams={streams}"
    async with connect(url, ssl=sim.ssl_context, proxy=None, open_timeout=timeout) as ws:
        async with asyncio.timeout(timeout):
            while len(out) < count:
                out.append(json.loads(await ws.recv()))
    return out


# -- the market, without sockets ------------------------------------------------------------------
def test_market_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list:
        market = Market(("BTC-USDT", "ETH-USDT"), seed=seed)
        return [market.step(1_700_000_000_000 + i).payload for i in range(300)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_market_events_are_consistent() -> None:
    market = Market(("BTC-USDT", "SOL-USDT"), seed=1)
    last_u: dict[str, int] = {s: market.snapshot(s)["lastUpdateId"] for s in market.instruments}
    last_trade: dict[str, int] = {}
    kinds = set()
    for i in range(2000):
        event = market.step(1_700_000_000_000 + i)
        kinds.add(event.kind)
        p = event.payload
        if event.kind == DEPTH:
            assert p["U"] == last_u[p["s"]] + 1 and p["u"] >= p["U"]
            last_u[p["s"]] = p["u"]
            for price, qty in p["b"] + p["a"]:
                assert Decimal(price) > 0 and Decimal(qty) >= 0
        else:
            assert p["a"] > last_trade.get(p["s"], 0)
            last_trade[p["s"]] = p["a"]
            assert Decimal(p["p"]) > 0 and Decimal(p["q"]) > 0
            book = market.snapshot(p["s"], 1)
            assert p["p"] == (book["bids"][0][0] if p["m"] else book["asks"][0][0])
    assert kinds == {AGG_TRADE, DEPTH}
    snap = market.snapshot("BTCUSDT", 5)
    bids = [Decimal(b[0]) for b in snap["bids"]]
    asks = [Decimal(a[0]) for a in snap["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]


def test_market_sizes_look_lognormal() -> None:
    market = Market(("BTC-USDT",), seed=2, trade_share=1.0)
    sizes = sorted(Decimal(market.step(i).payload["q"]) for i in range(2000))
    median, top = sizes[len(sizes) // 2], sizes[int(len(sizes) * 0.99)]
    assert sizes[0] > 0 and top > 10 * median  # heavy right tail
    sides = [market.step(i).payload["m"] for i in range(1000)]
    assert 350 < sum(sides) < 650


@pytest.mark.parametrize("symbols", [(), ("BTCUSDT",), ("btc-usdt",), ("BTC-BTC",), ("BTC-USDT", "BTC-USDT")])
def test_market_rejects_bad_symbols(symbols: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        Market(symbols)


def test_simulator_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        ExchangeSimulator(host="0.0.0.0")
    with pytest.raises(ConfigError, match="rate"):
        ExchangeSimulator(rate=-1)
    with pytest.raises(SimulatorError):
        ExchangeSimulator().ws_url  # not started


# -- the server ------------------------------------------------------------------------------------
def test_binds_free_loopback_ports(sim: ExchangeSimulator) -> None:
    with ExchangeSimulator() as other:
        assert sim.port != other.port
        assert sim.ws_url.startswith("wss://127.0.0.1:") and sim.rest_url.startswith("https://127.0.0.1:")
    with pytest.raises(SimulatorError, match="already running"):
        sim.start()


def test_rest_exchange_info_and_depth(sim: ExchangeSimulator) -> None:
    status, info = asyncio.run(_get(sim, "/api/v3/exchangeInfo"))
    assert status == 200
    assert {(s["symbol"], s["baseAsset"], s["quoteAsset"]) for s in info["symbols"]} == {
        ("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT")}
    assert info == {**sim.exchange_info(), "serverTime": info["serverTime"]}
    status, depth = asyncio.run(_get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=1000"))
    assert status == 200 and depth["lastUpdateId"] > 0 and depth["bids"] and depth["asks"]
    assert Decimal(depth["bids"][0][0]) < Decimal(depth["asks"][0][0])
    status, _ = asyncio.run(_get(sim, "/api/v3/depth?symbol=NOPE&limit=10"))
    assert status == 400


def test_tls_requires_the_simulator_ca(sim: ExchangeSimulator) -> None:
    async def untrusted() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl.create_default_context())) as s:
            async with s.get(sim.rest_url + "/api/v3/ping"):
                pass

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        asyncio.run(untrusted())


def test_websocket_serves_combined_streams_in_sequence(sim: ExchangeSimulator) -> None:
    msgs = asyncio.run(_read_ws(sim, "btcusdt@aggTrade/btcusdt@depth@100ms", 60))
    assert {m["stream"] for m in msgs} == {"btcusdt@aggTrade", "btcusdt@depth@100ms"}
    depth = [m["data"] for m in msgs if m["stream"].endswith("100ms")]
    for prev, cur in zip(depth, depth[1:]):
        assert cur["U"] == prev["u"] + 1
    ids = [m["data"]["a"] for m in msgs if m["stream"].endswith("aggTrade")]
    assert ids == sorted(set(ids))
    assert all(m["data"]["s"] == "BTCUSDT" for m in msgs)
    assert sim.trades_sent >= len(ids)


def test_unknown_stream_is_refused(sim: ExchangeSimulator) -> None:
    with pytest.raises(Exception, match="400"):
        asyncio.run(_read_ws(sim, "dogeusdt@aggTrade", 1, timeout=5))


def test_rate_zero_is_silent_and_rate_can_change(sim: ExchangeSimulator) -> None:
    sim.rate = 0
    before = sim.events_generated
    time.sleep(0.3)
    assert sim.events_generated == before
    sim.rate = 500
    assert wait_for(lambda: sim.events_generated >= before + 100)


def test_drop_connections_disconnects_clients(sim: ExchangeSimulator) -> None:
    async def scenario(abrupt: bool) -> int:
        url = f"{sim.ws_url}/stream?streams=ethusdt@aggTrade"
        async with connect(url, ssl=sim.ssl_context, proxy=None) as ws:
            await ws.recv()
            dropped = await asyncio.to_thread(sim.drop_connections, abrupt=abrupt)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await ws.recv()
            return dropped

    assert asyncio.run(scenario(False)) == 1
    assert asyncio.run(scenario(True)) == 1
    assert wait_for(lambda: sim.connections == 0)


def test_restart_keeps_address_and_certificate() -> None:
    sim = ExchangeSimulator(rate=100)
    with pytest.raises(SimulatorError):
        sim.drop_connections()
    sim.start()
    url, ctx = sim.ws_url, sim.ssl_context
    sim.stop()
    sim.stop()  # idempotent
    assert not sim.running
    sim.start()
    try:
        assert sim.ws_url == url and sim.ssl_context is ctx
        assert asyncio.run(_read_ws(sim, "btcusdt@aggTrade", 3))
    finally:
        sim.stop()
