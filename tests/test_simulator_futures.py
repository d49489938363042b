"""The simulated Binance USD-M futures venue: the perpetual market, its REST and streams, and
cryptofeed's real BinanceFutures feed on it through the collector thread."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptofeed.defines import CANDLES, FUNDING, L2_BOOK, LIQUIDATIONS, OPEN_INTEREST, TICKER, TRADES
from websockets.asyncio.client import connect

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.collector import Collector
from cryptolake_nb.feeds import FeedSpec, build_feed
from cryptolake_nb.simulator import ExchangeSimulator, Market, PerpetualMarket
from cryptolake_nb.simulator.market import AGG_TRADE, DEPTH
from cryptolake_nb.simulator.perpetual import BOOK_TICKER, FORCE_ORDER, KLINE, MARK_PRICE
from waiting import wait_for

EIGHT_HOURS_MS = 8 * 3600 * 1000
ALL = (TRADES, L2_BOOK, TICKER, FUNDING, OPEN_INTEREST, LIQUIDATIONS, CANDLES)


class FastClock:
    """Wall time running `factor` times faster from its creation: 1-minute candles close quickly."""

    def __init__(self, factor: float) -> None:
        self.factor, self.t0, self.m0 = factor, time.time_ns(), time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return self.t0 + int((time.monotonic() - self.m0) * self.factor * 1e9)


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator(("BTC-USDT-PERP", "ETH-USDT-PERP"), rate=300.0, seed=5, exchange="BINANCE_FUTURES",
                           clock=FastClock(60.0)) as s:
        yield s


# -- the market, without sockets -------------------------------------------------------------------
def _events(seed: int, n: int) -> list:
    market = PerpetualMarket(("BTC-USDT-PERP", "SOL-USDT-PERP"), seed=seed)
    return [market.step(1_700_000_000_000 + 50 * i) for i in range(n)]


def test_perpetual_market_is_deterministic_and_starts_from_the_spot_books() -> None:
    assert [e.payload for e in _events(3, 500)] == [e.payload for e in _events(3, 500)]
    assert [e.payload for e in _events(3, 500)] != [e.payload for e in _events(4, 500)]
    perp = PerpetualMarket(("BTC-USDT-PERP", "XYZ-USDT-PERP"), seed=9)
    spot = Market(("BTC-USDT", "XYZ-USDT"), seed=9)
    for symbol in ("BTCUSDT", "XYZUSDT"):
        assert {k: v for k, v in perp.snapshot(symbol, 20).items() if k not in "ET"} == spot.snapshot(symbol, 20)
    assert perp.symbol_map == {"BTC-USDT-PERP": "BTCUSDT", "XYZ-USDT-PERP": "XYZUSDT"}


@pytest.mark.parametrize("symbols", [("BTC-USDT",), ("btc-usdt-PERP",), ("BTC-BTC-PERP",), ()])
def test_perpetual_market_rejects_bad_symbols(symbols: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        PerpetualMarket(symbols)


def test_perpetual_market_events_are_consistent() -> None:
    market = PerpetualMarket(("BTC-USDT-PERP", "SOL-USDT-PERP"), seed=1)
    last_u = {s: market.snapshot(s)["lastUpdateId"] for s in market.instruments}
    trades: dict[str, list[dict]] = defaultdict(list)
    kinds, closed = set(), []
    for i in range(20_000):
        ts = 1_700_000_000_000 + 20 * i  # 400 s of market time
        event = market.step(ts)
        kinds.add(event.kind)
        p, symbol = event.payload, event.exchange_symbol
        book = market.snapshot(symbol, 1)
        bid, ask = Decimal(book["bids"][0][0]), Decimal(book["asks"][0][0])
        if event.kind == DEPTH:
            assert p["pu"] == last_u[symbol] and p["U"] == p["pu"] + 1 and p["u"] >= p["U"] and p["T"] == ts
            last_u[symbol] = p["u"]
        elif event.kind == AGG_TRADE:
            trades[symbol].append(p)
        elif event.kind == BOOK_TICKER:
            assert (Decimal(p["b"]), Decimal(p["a"]), p["u"]) == (bid, ask, last_u[symbol])
        elif event.kind == MARK_PRICE:
            mid = (bid + ask) / 2
            assert abs(Decimal(p["p"]) / mid - 1) < Decimal("0.01") and abs(Decimal(p["i"]) / mid - 1) < Decimal("0.01")
            assert abs(Decimal(p["r"])) <= Decimal("0.0075")
            assert p["T"] % EIGHT_HOURS_MS == 0 and 0 < p["T"] - ts <= EIGHT_HOURS_MS
        elif event.kind == FORCE_ORDER:
            o = p["o"]
            assert Decimal(o["p"]) < bid if o["S"] == "SELL" else Decimal(o["p"]) > ask
            assert Decimal(o["q"]) > 0 and o["X"] == "FILLED" and o["z"] == o["q"]
        else:
            assert event.kind == KLINE
            if p["k"]["x"]:
                closed.append(p["k"])
        assert Decimal(market.open_interest(symbol, ts)["openInterest"]) > 0
    assert kinds == {AGG_TRADE, DEPTH, BOOK_TICKER, MARK_PRICE, FORCE_ORDER, KLINE}
    assert len(closed) > 10
    for k in closed:  # a closed candle is exactly its minute's trades
        inside = [t for t in trades[k["s"]] if k["t"] <= t["T"] <= k["T"]]
        assert k["n"] == len(inside) and k["T"] - k["t"] == 59_999
        assert Decimal(k["v"]) == sum((Decimal(t["q"]) for t in inside), Decimal(0))
        if inside:
            prices = [Decimal(t["p"]) for t in inside]
            assert (Decimal(k["o"]), Decimal(k["c"])) == (prices[0], prices[-1])
            assert (Decimal(k["h"]), Decimal(k["l"])) == (max(prices), min(prices))


# -- the server ------------------------------------------------------------------------------------
def test_choosing_the_protocol() -> None:
    assert ExchangeSimulator(exchange="binance_futures").symbols == ("BTC-USDT-PERP",)
    assert ExchangeSimulator().exchange == "BINANCE" and ExchangeSimulator().symbols == ("BTC-USDT",)
    with pytest.raises(ConfigError, match="BINANCE, BINANCE_FUTURES"):
        ExchangeSimulator(exchange="KRAKEN")
    with pytest.raises(ConfigError, match="PERP"):
        ExchangeSimulator(("BTC-USDT",), exchange="BINANCE_FUTURES")
    futures = ExchangeSimulator(exchange="BINANCE_FUTURES")
    with pytest.raises(ConfigError, match="BINANCE_FUTURES's protocol, not 'BINANCE'"):
        FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=futures)


async def _get(sim: ExchangeSimulator, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=sim.ssl_context)) as session:
        async with session.get(sim.rest_url + path) as resp:
            return resp.status, json.loads(await resp.text())


def test_rest_routes(sim: ExchangeSimulator) -> None:
    status, info = asyncio.run(_get(sim, "/fapi/v1/exchangeInfo"))
    assert status == 200 and {(s["symbol"], s["contractType"]) for s in info["symbols"]} == {
        ("BTCUSDT", "PERPETUAL"), ("ETHUSDT", "PERPETUAL")}
    status, depth = asyncio.run(_get(sim, "/fapi/v1/depth?symbol=ETHUSDT&limit=1000"))
    assert status == 200 and depth["lastUpdateId"] > 0 and depth["E"] > 0
    assert Decimal(depth["bids"][0][0]) < Decimal(depth["asks"][0][0])
    status, oi = asyncio.run(_get(sim, "/fapi/v1/openInterest?symbol=BTCUSDT"))
    assert status == 200 and oi["symbol"] == "BTCUSDT" and Decimal(oi["openInterest"]) > 0
    assert wait_for(lambda: asyncio.run(_get(sim, "/fapi/v1/openInterest?symbol=BTCUSDT"))[1]["openInterest"]
                    != oi["openInterest"], timeout=20.0, interval=0.1)  # trades open and close positions
    assert asyncio.run(_get(sim, "/fapi/v1/openInterest?symbol=NOPE"))[0] == 400
    assert asyncio.run(_get(sim, "/fapi/v1/depth?symbol=BTCUSDT&limit=5000"))[0] == 400
    assert asyncio.run(_get(sim, "/api/v3/exchangeInfo"))[0] == 404  # that is the spot venue


def test_websocket_serves_every_stream(sim: ExchangeSimulator) -> None:
    names = ["aggTrade", "depth@100ms", "bookTicker", "markPrice@1s", "forceOrder", "kline_1m"]

    async def read() -> set[str]:
        url = f"{sim.ws_url}/stream?streams=" + "/".join(f"btcusdt@{n}" for n in names)
        seen: set[str] = set()
        async with connect(url, ssl=sim.ssl_context, proxy=None) as ws:
            async with asyncio.timeout(20):
                while len(seen) < len(names):
                    seen.add(json.loads(await ws.recv())["stream"])
        return seen

    assert asyncio.run(read()) == {f"btcusdt@{n}" for n in names}
    async def refused() -> None:
        async with connect(f"{sim.ws_url}/stream?streams=btcusdt@kline_5m", ssl=sim.ssl_context, proxy=None):
            pass

    with pytest.raises(Exception, match="400"):  # one candle interval is simulated
        asyncio.run(refused())


# -- cryptofeed's BinanceFutures through the collector ----------------------------------------------
class Sink:
    """Keeps what cryptofeed hands over (books copied: cryptofeed reuses the object)."""

    def __init__(self) -> None:
        self.got: dict[str, list] = defaultdict(list)
        self.threads: set[str] = set()

    def callbacks(self) -> dict[str, Any]:
        def keep(channel: str) -> Any:
            async def callback(obj: Any, receipt_timestamp: float) -> None:
                self.threads.add(threading.current_thread().name)
                if channel == L2_BOOK:
                    bid, ask = obj.book.bids.index(0)[0], obj.book.asks.index(0)[0]
                    obj = (obj.symbol, obj.sequence_number, bool(obj.delta), bid, ask)
                self.got[channel].append(obj)
            return callback

        return {channel: keep(channel) for channel in ALL}


def test_binance_futures_feed_gets_every_channel(sim: ExchangeSimulator, caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    spec = FeedSpec("BINANCE_FUTURES", sim.symbols, ALL, simulator=sim)
    collector = Collector(lambda: [build_feed(spec, sink.callbacks())], name="futures-collector")
    with caplog.at_level(logging.WARNING):
        collector.start()
        try:
            enough = wait_for(lambda: all(len(sink.got[c]) >= 3 for c in ALL), timeout=30.0, interval=0.1)
            status = collector.status()
        finally:
            collector.stop()
    got = {c: list(v) for c, v in sink.got.items()}
    assert enough, {c: len(v) for c, v in got.items()}
    assert status["state"] == "running" and status["errors"] == [] and sink.threads == {"futures-collector"}
    assert not [r for r in caplog.records if "Missing book update" in r.getMessage()]  # the pu chain holds

    symbols = set(sim.symbols)
    trades = got[TRADES]
    assert {t.exchange for t in trades} == {"BINANCE_FUTURES"} and {t.symbol for t in trades} <= symbols
    price = {s: [t.price for t in trades if t.symbol == s] for s in symbols}
    near = {s: (min(p) * Decimal("0.99"), max(p) * Decimal("1.01")) for s, p in price.items() if p}

    def sane(symbol: str, value: Decimal) -> bool:
        low, high = near[symbol]
        return low <= value <= high

    assert all(t.amount > 0 and t.side in ("buy", "sell") for t in trades)
    books = got[L2_BOOK]
    assert any(delta for _, _, delta, _, _ in books)  # diffs applied, not just snapshots
    assert all(bid < ask for _, _, _, bid, ask in books)
    for symbol in symbols:
        seqs = [seq for s, seq, _, _, _ in books if s == symbol]
        assert seqs == sorted(seqs)
    assert all(t.bid < t.ask and sane(t.symbol, t.bid) for t in got[TICKER] if t.symbol in near)
    for f in got[FUNDING]:
        assert abs(f.rate) <= Decimal("0.0075") and f.next_funding_time > f.timestamp
        assert f.symbol not in near or sane(f.symbol, f.mark_price)
    for oi in got[OPEN_INTEREST]:
        assert oi.open_interest > 0 and oi.symbol in symbols
    for liq in got[LIQUIDATIONS]:
        assert liq.quantity > 0 and liq.side in ("buy", "sell") and liq.status == "filled"
        assert liq.symbol not in near or sane(liq.symbol, liq.price)
    candles = got[CANDLES]
    assert all(c.closed and c.interval == "1m" and c.stop - c.start == pytest.approx(60, abs=0.01) for c in candles)
    assert all(c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high and c.volume >= 0 for c in candles)
    first_trade = min(t.timestamp for t in trades)
    later = [c for c in candles if c.start > first_trade]
    assert later  # 3+ closed candles over 2 symbols (1 s each at 60x): one a symbol may predate our first trade
    for c in later:  # a candle that began after the first trade we saw: exactly the trades we saw in it
        inside = [t for t in trades if t.symbol == c.symbol and c.start <= t.timestamp <= c.stop]
        assert c.trades == len(inside) and c.volume == sum((t.amount for t in inside), Decimal(0))


def test_lake_collects_futures_trades(tmp_path, sim: ExchangeSimulator) -> None:
    with Lake(tmp_path / "lk", flush_interval=600) as lake:
        lake.subscribe("BINANCE_FUTURES", ["BTC-USDT-PERP"], channels=["trades"], simulator=sim)
        lake.start()
        assert wait_for(lambda: lake.sql("SELECT count(*) AS n FROM trades")["n"][0] >= 20, timeout=30.0)
        lake.stop()
        rows = lake.sql("SELECT DISTINCT exchange, symbol FROM trades")
        assert set(rows.itertuples(index=False)) == {("BINANCE_FUTURES", "BTC-USDT-PERP")}
        assert lake.status()["collector"]["errors"] == []
