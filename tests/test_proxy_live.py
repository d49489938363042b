"""The collector through a real proxy server (pproxy: HTTP CONNECT and SOCKS5) in front of the simulator.

"Every connection went through the proxy" is checked from both ends: the proxy logs one tunnel per
connection it carried to the simulator's port, and an audit hook sees every socket the collector
thread opened: all of them to the proxy, none to the simulator.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pproxy
import pytest

from cryptolake_nb import Lake
from cryptolake_nb.errors import ProxyError
from cryptolake_nb.feeds import ReconnectPolicy
from cryptolake_nb.proxy import ProxyURL, resolve_route
from cryptolake_nb.simulator import ExchangeSimulator
from cryptolake_nb.transport import ProxiedSyncHTTP

import waiting

USER, PASSWORD = "alice", "s3cret-pw"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
COLLECTOR_THREAD = "cryptolake-collector"
FAST = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, watchdog_s=None)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    assert waiting.wait_for(predicate, timeout, 0.02), f"timed out after {timeout} s waiting for {what}"


# -- who connected where: every socket.connect in this process, by thread ----------------------------
_CONNECTS: list[tuple[str, int]] = []
_RECORDING = threading.Event()


def _record_connects(event: str, args: tuple) -> None:
    if event == "socket.connect" and _RECORDING.is_set():
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _CONNECTS.append((threading.current_thread().name, int(address[1])))


sys.addaudithook(_record_connects)


@pytest.fixture
def connects() -> Iterator[list[tuple[str, int]]]:
    _CONNECTS.clear()
    _RECORDING.set()
    yield _CONNECTS
    _RECORDING.clear()


# -- the proxy -----------------------------------------------------------------------------------------
class LoopbackProxy:
    """pproxy serving HTTP CONNECT and SOCKS5 on one 127.0.0.1 port, with a username and password,
    in its own thread. `events` are pproxy's own log lines ('socks5 127.0.0.1:5123 -> 127.0.0.1:443')."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackProxy:
        ready = threading.Event()

        async def serve() -> None:
            server = pproxy.Server(f"http+socks5://127.0.0.1:0#{USER}:{PASSWORD}")
            # authtime=0: pproxy would otherwise let an address in without credentials once it authenticated
            self._server = await server.start_server(dict(rserver=[], verbose=self.events.append, authtime=0,
                                                          block=lambda host: host not in LOOPBACK))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(serve())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="test-proxy", daemon=True)
        self._thread.start()
        assert ready.wait(10), "the proxy did not start"
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)

    def url(self, scheme: str, password: str = PASSWORD) -> str:
        return f"{scheme}://{USER}:{password}@127.0.0.1:{self.port}"

    def tunnels(self, kind: str, port: int) -> int:
        """Connections pproxy carried with protocol `kind` ('http' or 'socks5') to 127.0.0.1:`port`."""
        pattern = re.compile(rf"^{kind} 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{port}$")
        return sum(1 for e in list(self.events) if pattern.match(e))


@pytest.fixture
def proxy() -> Iterator[LoopbackProxy]:
    p = LoopbackProxy().start()
    yield p
    p.stop()


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=300.0, seed=21) as s:
        yield s


def dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_secret(*texts: Any) -> None:
    for text in texts:
        assert PASSWORD not in str(text) and f"{USER}:" not in str(text), text


# -- the collector through the proxy --------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_collector_goes_through_the_proxy(scheme: str, proxy: LoopbackProxy, sim: ExchangeSimulator,
                                          connects: list, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kind = "http" if scheme == "http" else "socks5"
    with caplog.at_level(logging.DEBUG, logger="cryptolake_nb"), Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT", "ETH-USDT"], ["trades", "l2_book"], simulator=sim,
                       proxy=proxy.url(scheme), reconnect=FAST)
        lake.start()
        try:
            count = lambda table: lake.sql(f"SELECT count(*) AS n FROM {table}")["n"][0]  # noqa: E731
            wait_for(lambda: count("trades") >= 50 and count("l2_book") >= 50, what="trades and books")
            # the book snapshots came over REST, the streams over wss: at least one tunnel each
            wait_for(lambda: proxy.tunnels(kind, sim.port) >= 2, what="two tunnels")
            first = proxy.tunnels(kind, sim.port)
            assert sim.drop_connections() == 1  # the reconnection goes through the proxy too
            n = count("trades")
            wait_for(lambda: count("trades") >= n + 50 and sim.connections == 1, what="trades after the drop")
            status = lake.status()
        finally:
            lake.stop()
    (feed,) = status["feeds"]
    assert feed["connections"] == 2 and feed["reconnects"] == 1 and feed["state"] == "connected"
    assert proxy.tunnels(kind, sim.port) >= first + 1
    other = "socks5" if kind == "http" else "http"
    assert proxy.tunnels(other, sim.port) == 0
    # from the collector's side: every socket it opened went to the proxy, none to the simulator
    collector = [port for thread, port in connects if thread == COLLECTOR_THREAD]
    assert collector and set(collector) == {proxy.port}, collector
    # the proxy records a tunnel on its own thread, after the collector's connect: let it catch up
    wait_for(lambda: len(collector) == proxy.tunnels(kind, sim.port), 5, what="the proxy to count every socket")
    assert (COLLECTOR_THREAD, sim.port) not in connects
    # the proxy is shown, its credentials are not
    assert feed["proxy"].startswith(f"https via {scheme}://***@127.0.0.1:{proxy.port}")
    no_secret(json.dumps(status, default=str), caplog.text, status["subscriptions"])


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_proxy_down_is_reported_by_name_without_credentials(scheme: str, sim: ExchangeSimulator, connects: list,
                                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = dead_port()
    url = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}"
    shown = f"{scheme}://***@127.0.0.1:{port}"
    with caplog.at_level(logging.DEBUG), Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim, proxy=url, retries=2, reconnect=FAST)
        lake.start()
        try:
            wait_for(lambda: lake.status()["feeds"][0]["state"] == "failed"  # the collector notices after the feed
                     and lake.status()["collector"]["state"] == "failed", what="the feed and the collector to fail")
            status = lake.status()
            gaps = lake.sql("SELECT cause, channel, symbol, detail FROM gaps").to_dict("records")
        finally:
            lake.stop()
    (feed,) = status["feeds"]
    assert feed["last_error"].startswith(f"retries exhausted: proxy {shown} unreachable"), feed["last_error"]
    assert feed["failures"] == 3 and feed["connections"] == 0
    assert status["collector"]["state"] == "failed"
    assert any(f"proxy {shown} unreachable" in e for e in status["collector"]["errors"])
    assert [(g["cause"], g["channel"], g["symbol"]) for g in gaps] == [("feed_failed", "trades", "BTC-USDT")]
    assert f"proxy {shown} unreachable" in gaps[0]["detail"]
    assert {p for t, p in connects if t == COLLECTOR_THREAD} == {port}  # never around the proxy
    no_secret(json.dumps(status, default=str), caplog.text, gaps)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_wrong_proxy_password_is_not_unreachable(scheme: str, proxy: LoopbackProxy, sim: ExchangeSimulator,
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim, proxy=proxy.url(scheme, "wrong-pw"),
                       retries=1, reconnect=FAST)
        lake.start()
        try:
            wait_for(lambda: lake.status()["feeds"][0]["state"] == "failed", what="the feed to fail")
            status = lake.status()
        finally:
            lake.stop()
    error = status["feeds"][0]["last_error"]
    assert f"connection through proxy {scheme}://***@127.0.0.1:{proxy.port} failed" in error, error
    assert proxy.tunnels("http", sim.port) == proxy.tunnels("socks5", sim.port) == 0
    assert any("Unauthorized" in e for e in proxy.events)
    assert "wrong-pw" not in json.dumps(status, default=str) and "wrong-pw" not in caplog.text


def test_a_simulated_feed_ignores_environment_proxies(proxy: LoopbackProxy, sim: ExchangeSimulator,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Loopback traffic must not reach an environment proxy; an explicit proxy is needed for that."""
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy.url("http"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades", "l2_book"], simulator=sim)
        lake.start()
        try:
            wait_for(lambda: lake.sql("SELECT count(*) AS n FROM l2_book")["n"][0] >= 20, what="books")
            status = lake.status()
        finally:
            lake.stop()
    assert status["feeds"][0]["proxy"] == "direct"
    assert proxy.events == []


# -- the blocking symbol fetch (requests) -----------------------------------------------------------
def _ca_bundle(sim: ExchangeSimulator, tmp_path: Path) -> str:
    path = tmp_path / "sim-ca.pem"
    path.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in sim.ssl_context.get_ca_certs(binary_form=True)))
    return str(path)


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_symbol_fetch_goes_through_the_proxy(scheme: str, proxy: LoopbackProxy, sim: ExchangeSimulator,
                                             connects: list, tmp_path: Path) -> None:
    kind = "http" if scheme == "http" else "socks5"
    fetch = ProxiedSyncHTTP(resolve_route(proxy.url(scheme)), verify=_ca_bundle(sim, tmp_path), timeout=10)
    body = fetch.read(f"{sim.rest_url}/api/v3/exchangeInfo", json=True, uuid="BINANCE")
    assert {s["symbol"] for s in body["symbols"]} == {"BTCUSDT", "ETHUSDT"}
    assert proxy.tunnels(kind, sim.port) == 1
    mine = threading.current_thread().name
    assert [p for t, p in connects if t == mine] == [proxy.port]


def test_symbol_fetch_with_the_proxy_down_raises_proxy_error(sim: ExchangeSimulator, tmp_path: Path) -> None:
    port = dead_port()
    fetch = ProxiedSyncHTTP(resolve_route(f"socks5://{USER}:{PASSWORD}@127.0.0.1:{port}"), timeout=5)
    with pytest.raises(ProxyError, match=re.escape(f"proxy socks5://***@127.0.0.1:{port} unreachable")) as info:
        fetch.read(f"{sim.rest_url}/api/v3/exchangeInfo", json=True, uuid="BINANCE")
    no_secret(info.value, repr(info.value))
    assert ProxyURL.parse(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}").url.endswith(f"@127.0.0.1:{port}")
