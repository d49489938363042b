"""Recorded captures served over TLS sockets: the real collector path on real exchange traffic.

The lake a CaptureServer feeds through cryptofeed's own feed (Collector thread, websocket, REST)
must hold the rows `lake.replay` stores from the same files, except the receipt times, which are
live by design.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptofeed.defines import TRADES
from websockets.asyncio.client import connect

from cryptolake_nb import ConfigError, Lake, ReplayError
from cryptolake_nb.collector import Collector
from cryptolake_nb.feeds import FeedSpec, build_feed
from cryptolake_nb.replay import capture_sets, replay_capture
from cryptolake_nb.simulator import CaptureServer
from cryptolake_nb.simulator.recording import message_key
from cryptolake_nb.tables import TABLES
from waiting import wait_for

VOLATILE = {"receipt_ts", "update_id"}  # live receipt times, and what is numbered from them


def _files(captures: Path, name: str) -> list[Path]:
    return capture_sets(captures)[name]


def _columns(lake: Lake, table: str) -> list[str]:
    return TABLES[table].schema.names


def _comparable(lake: Lake, table: str) -> Counter:
    """The table's rows without receipt times (and ids numbered from them); `ts` blanked where it is
    the receipt time (exchanges that send none); the book checkpoints we write on a timer left out."""
    cols = _columns(lake, table)
    select = ", ".join("CASE WHEN ts = receipt_ts THEN NULL ELSE ts END AS ts" if c == "ts" and "receipt_ts" in cols
                       else c for c in cols if c not in VOLATILE)
    where = "WHERE kind IS DISTINCT FROM 'checkpoint'" if "kind" in cols else ""
    rows = lake.sql(f"SELECT {select} FROM {table} {where}", to="arrow").to_pylist()
    return Counter(tuple(repr(v) for v in row.values()) for row in rows)


def _count(lake: Lake, table: str) -> int:
    where = "WHERE kind IS DISTINCT FROM 'checkpoint'" if "kind" in _columns(lake, table) else ""
    return lake.sql(f"SELECT count(*) AS n FROM {table} {where}", to="arrow").column("n")[0].as_py()


# -- the server on its own -------------------------------------------------------------------------
def test_rejects_bad_arguments(captures: Path, tmp_path: Path) -> None:
    files = _files(captures, "KRAKEN")
    for speed in (-1, float("nan"), float("inf"), "fast"):
        with pytest.raises(ConfigError, match="speed"):
            CaptureServer(files, speed=speed)
    with pytest.raises(ConfigError, match="loopback"):
        CaptureServer(files, host="0.0.0.0")
    with pytest.raises(ReplayError, match="several exchanges"):
        CaptureServer(files + _files(captures, "DYDX"))
    with pytest.raises(ReplayError, match="missing"):
        CaptureServer([f for f in files if ".ws." in f.name])
    no_connect = tmp_path / "KRAKEN.ws.48.0"
    no_connect.write_text("1618678132.8: {}\n", encoding="utf-8")
    with pytest.raises(ReplayError, match="must start with"):
        CaptureServer([files[0], no_connect])


def test_describes_the_capture(captures: Path) -> None:
    server = CaptureServer(_files(captures, "KRAKEN"), speed=None)
    assert server.exchange == "KRAKEN" and server.channels == ("ticker", "trades", "l2_book")
    assert server.symbols[:2] == ("KSM-BTC", "XMR-USD") and len(server.symbols) == 10
    frames = [sum(1 for line in open(f, encoding="utf-8") if re.match(r"\d+\.\d+: ", line))
              for f in _files(captures, "KRAKEN") if ".ws." in f.name]
    assert [len(r.frames) for r in server.recordings] == frames and server.frames_sent == 0
    assert [r.name for r in server.recordings] == ["KRAKEN.ws.48", "KRAKEN.ws.49", "KRAKEN.ws.50"]
    with pytest.raises(ConfigError, match="KRAKEN's protocol, not 'BINANCE'"):
        FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=server)
    assert FeedSpec("KRAKEN", server.symbols, ("trades",), simulator=server).simulator is server


def test_messages_match_whatever_the_list_order_and_connection_id() -> None:
    a = '{"event":"subscribe","pair":["A/B","C/D"],"subscription":{"name":"trade"}}'
    b = '{"subscription": {"name": "trade"}, "pair": ["C/D", "A/B"], "event": "subscribe"}'
    assert message_key(a) == message_key(b)
    assert message_key('{"method":"x","id":"HITBTC.ws.1"}') == message_key('{"method":"x","id":"HITBTC.ws.17"}')
    assert message_key('{"method":"x","id":"ETH-USD"}') != message_key('{"method":"x","id":"BTC-USD"}')
    assert message_key("ping") == ("text", "ping")


class _Leaky(CaptureServer):
    """A broken server that hands out the exchange's own addresses: the feed must refuse them."""

    def local_url(self, url: str) -> str:
        return url


def test_a_simulated_feed_never_leaves_the_simulator(captures: Path) -> None:
    with _Leaky(_files(captures, "BINANCE_FUTURES"), speed=None) as leaky:
        feed = build_feed(FeedSpec(leaky.exchange, leaky.symbols, ("trades",), simulator=leaky), {})
        with pytest.raises(ConfigError, match="wss://fstream.binance.com.* not its simulator"):
            feed.connect()
        with pytest.raises(ConfigError, match="not the simulator"):
            asyncio.run(feed.http_conn.read("https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000"))


async def _get(server: CaptureServer, url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=server.ssl_context)) as session:
        async with session.get(server.local_url(url)) as resp:
            return resp.status, await resp.text()


def test_serves_recorded_rest_responses_over_https(captures: Path) -> None:
    with CaptureServer(_files(captures, "BINANCE_FUTURES"), speed=None) as server:
        symbols_url = "https://fapi.binance.com/fapi/v1/exchangeInfo"
        assert server.local_url(symbols_url) == f"{server.rest_url}/fapi.binance.com/fapi/v1/exchangeInfo"
        status, body = asyncio.run(_get(server, symbols_url))
        assert status == 200 and json.loads(body)["futuresType"] == "U_MARGINED"
        assert asyncio.run(_get(server, symbols_url))[0] == 200  # symbol lists: as often as asked
        snapshot = "https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000"
        status, body = asyncio.run(_get(server, snapshot))
        assert status == 200 and json.loads(body)["lastUpdateId"] == 600859605926
        assert asyncio.run(_get(server, snapshot))[0] == 404  # a book snapshot: once per recording
        assert asyncio.run(_get(server, "https://fapi.binance.com/fapi/v1/nothing"))[0] == 404
        assert server.requests == [(symbols_url, 200), (symbols_url, 200), (snapshot, 200), (snapshot, 404),
                                   ("https://fapi.binance.com/fapi/v1/nothing", 404)]
        assert len(server.warnings) == 2 and "more often than the capture recorded" in server.warnings[0]


async def _read_all(url: str, server: CaptureServer, send: list[str], count: int, quiet: float = 0.3,
                    timeout: float = 30.0) -> tuple[list, list[float]]:
    """`count` frames, then whatever else arrives within `quiet` seconds; and when each came (the
    first time in the list: when `send` had gone out)."""
    frames, times = [], []
    async with connect(url, ssl=server.ssl_context, proxy=None, max_size=None, open_timeout=timeout) as ws:
        for message in send:
            await ws.send(message)
        times.append(time.monotonic())
        async with asyncio.timeout(timeout):
            while len(frames) < count:
                frames.append(await ws.recv())
                times.append(time.monotonic())
        try:
            async with asyncio.timeout(quiet):
                while True:
                    frames.append(await ws.recv())
        except TimeoutError:
            return frames, times


def _payloads(*recordings) -> list:
    return [payload for recording in recordings for _, payload in recording.frames]


def test_address_subscription_streams_the_recording_in_order(captures: Path) -> None:
    with CaptureServer(_files(captures, "BINANCE_FUTURES"), speed=None) as server:
        recording = server.recordings[0]
        url = server.local_url(recording.address)
        frames, _ = asyncio.run(_read_all(url, server, [], len(recording.frames)))
        assert frames == _payloads(recording)
        assert server.frames_sent == server.frames_total and server.frames_pending == 0
        again, _ = asyncio.run(_read_all(url, server, [], 0))  # each recording is served once
        assert again == [] and any("no recorded connection left" in w for w in server.warnings)
        server.stop()
        server.start()  # a restart rewinds the capture
        assert asyncio.run(_read_all(url, server, [], len(frames)))[0] == frames


def test_message_subscriptions_claim_their_recordings(captures: Path) -> None:
    with CaptureServer(_files(captures, "KRAKEN"), speed=None) as server:
        trade, ticker, book = server.recordings
        url = server.local_url(trade.address)
        subscribe = json.loads(ticker.sent[0][1])
        subscribe["pair"].reverse()  # cryptofeed's symbol order varies between runs
        frames, _ = asyncio.run(_read_all(url, server, [json.dumps(subscribe), "not json"], len(ticker.frames)))
        assert frames == _payloads(ticker)
        assert server.claimed == [ticker.name] and server.received[-1][1] == "not json"
        both = [trade.sent[0][1], book.sent[0][1]]
        frames, _ = asyncio.run(_read_all(url, server, both, len(trade.frames) + len(book.frames)))
        assert frames == _payloads(trade, book)  # merged, one recording after the other
        assert server.frames_sent == server.frames_total and not server.warnings


def test_paces_frames_at_the_recorded_speed(captures: Path) -> None:
    with CaptureServer(_files(captures, "KRAKEN"), speed=8.0) as server:
        recording = server.recordings[0]  # 49 frames over ~30 s (gaps <= 1.2 s): ~3.7 s at 8x
        (sent_at, subscribe), = recording.sent
        frames, times = asyncio.run(_read_all(server.local_url(recording.address), server, [subscribe],
                                              len(recording.frames)))
        assert frames == _payloads(recording)
        # frame i is due (t_i - t_subscribe) / speed after the subscription arrives: never earlier
        for (when, _), arrived in zip(recording.frames, times[1:]):
            assert arrived - times[0] >= (when - sent_at) / 8.0 - 0.05
        assert times[-1] - times[0] <= (recording.frames[-1][0] - sent_at) / 8.0 + 5.0


# -- the collector path, against the replay driver ------------------------------------------------
def _trade_fields(trade: Any) -> tuple:
    return (trade.exchange, trade.symbol, trade.side, trade.amount, trade.price, trade.id, trade.type, trade.timestamp)


def test_one_live_connection_gets_the_four_recorded_ones(captures: Path) -> None:
    """HITBTC's recording has four connections with the same subscriptions, cryptofeed 2.4.1 opens
    one: it gets all four, as the replay driver feeds all four files to its one parser."""
    files = _files(captures, "HITBTC")
    replayed: list = []

    async def keep(trade: Any, receipt_timestamp: float) -> None:
        replayed.append(_trade_fields(trade))

    direct = replay_capture(files, {TRADES: keep}).callbacks
    seen: dict[str, list] = defaultdict(list)

    def callback(channel: str) -> Any:
        async def count(obj: Any, receipt_timestamp: float) -> None:
            seen[channel].append(_trade_fields(obj) if channel == TRADES else None)
        return count

    with CaptureServer(files, speed=None) as server:
        spec = FeedSpec(server.exchange, server.symbols, server.channels, simulator=server)
        collector = Collector(lambda: [build_feed(spec, {c: callback(c) for c in server.channels})])
        collector.start()
        try:
            done = wait_for(lambda: {c: len(v) for c, v in seen.items()} == direct, timeout=40.0, interval=0.1)
            status = collector.status()
        finally:
            collector.stop()
        assert done, f"socket {({c: len(v) for c, v in seen.items()})} != replay {direct}; {server.status()}"
        assert server.claimed == [r.name for r in server.recordings] and server.frames_sent == server.frames_total
    assert status["state"] == "running" and status["errors"] == []
    assert Counter(seen[TRADES]) == Counter(replayed) and len(replayed) == 4000


@pytest.mark.parametrize("name", ["BINANCE_FUTURES", "DYDX", "KRAKEN"])
def test_collector_over_the_socket_stores_what_replay_stores(name: str, captures: Path, tmp_path: Path) -> None:
    """BINANCE_FUTURES: streams named in the address, book snapshots over REST; DYDX: subscription
    messages; KRAKEN: three recorded connections, two live ones (one if only trades are stored)."""
    files = _files(captures, name)
    with Lake(tmp_path / "direct", autoflush=False) as direct:
        stored = direct.replay(files)
        expected = {t: _comparable(direct, t) for t, n in stored.items() if n and t in TABLES}
    assert sum(expected["trades"].values()) > 0

    with CaptureServer(files, speed=None) as server, \
            Lake(tmp_path / "socket", flush_interval=600, max_rows=10_000_000) as lake:
        channels = [c for c in server.channels if c in TABLES]
        lake.subscribe(server.exchange, server.symbols, channels, simulator=server)
        lake.start()
        done = wait_for(lambda: server.claimed and server.frames_pending == 0
                        and all(_count(lake, t) >= sum(rows.values()) for t, rows in expected.items()),
                        timeout=40.0, interval=0.2)
        status = lake.status()["collector"]
        got = {t: _comparable(lake, t) for t in expected}  # live rows; stop() then flushes them
        lake.stop()
        assert {t: _count(lake, t) for t in expected} == {t: sum(rows.values()) for t, rows in got.items()}
    counts = {t: (sum(got[t].values()), sum(rows.values())) for t, rows in expected.items()}
    assert done, f"{name}: the socket lake did not catch up: (socket, replay) rows {counts}; {server.status()}"
    assert status["state"] == "running" and status["errors"] == []
    assert got["trades"] == expected["trades"], f"{name}: trades differ"
    for table, rows in expected.items():
        assert got[table] == rows, f"{name}: {table} differs: (socket, replay) rows {counts[table]}"
    assert server.frames_pending == 0  # every recording the subscribed channels claimed, sent in full
