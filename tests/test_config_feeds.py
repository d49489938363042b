"""The feeds section reaches cryptofeed: Feed options and cryptofeed's own config pass through, the
network section's defaults and a feed's overrides land in the FeedSpec, the timeouts in the connections."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptofeed.defines import L2_BOOK, TRADES

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.config import load_settings
from cryptolake_nb.feeds import build_feed, feed_options
from cryptolake_nb.managed_feed import managed_class, runtime_of
from cryptolake_nb.proxy import ProxyRoute, ProxyURL
from cryptolake_nb.simulator import ExchangeSimulator

import waiting


async def _noop(obj, receipt):  # a cryptofeed callback that stores nothing
    return None


@pytest.fixture(scope="module")
def sim():
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=300, seed=11) as s:
        yield s


@pytest.fixture(scope="module")
def ca_file(sim: ExchangeSimulator, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sim") / "ca.pem"
    path.write_bytes(sim.ca_pem)
    return str(path)


def test_feed_options_and_cryptofeed_config_reach_the_feed(sim: ExchangeSimulator) -> None:
    settings = load_settings(False, env={}, cryptofeed={"binance": {"key_id": "from-top", "key_secret": "s"},
                                                        "ignore_invalid_instruments": True},
                             network={"connect_timeout_s": 4.5, "rest_timeout_s": 7.0, "retries": 3},
                             feeds=[{"exchange": "binance", "symbols": "BTC-USDT", "channels": ["trades", "l2_book"],
                                     "book_depth": 7,
                                     "cryptofeed": {"depth_interval": "1000ms", "checksum_validation": True,
                                                    "config": {"binance": {"key_id": "from-feed"}}}}])
    kwargs = settings.feeds[0].subscribe_kwargs(settings.network)
    spec = settings.feed_spec(**{**kwargs, "simulator": sim})
    assert spec.retries == 3 and spec.connect_timeout == 4.5 and spec.rest_timeout == 7.0
    feed = build_feed(spec, {TRADES: _noop, L2_BOOK: _noop})
    assert feed.max_depth == 7 and feed.depth_interval == "1000ms" and feed.checksum_validation is True
    assert feed.config.binance.key_id == "from-feed"            # the feed's config over the top-level one
    assert feed.config.ignore_invalid_instruments is True       # the top-level one reaches every feed
    assert feed.config.uvloop is False                          # the kernel's keys stay the lake's
    assert runtime_of(feed).connect_timeout == 4.5 and feed.http_conn._timeout == 7.0
    conns = [entry[0] for entry in feed.connect()]
    assert conns and all(c.ws_kwargs["open_timeout"] == 4.5 for c in conns if hasattr(c, "ws_kwargs"))


def test_the_symbol_fetch_timeout_is_the_rest_timeout() -> None:
    from cryptofeed.exchanges import EXCHANGE_MAP

    cls = managed_class(EXCHANGE_MAP["KRAKEN"], ProxyRoute(), 12.5)  # no request: the class only
    assert cls.http_sync.timeout == 12.5
    assert managed_class(EXCHANGE_MAP["KRAKEN"], ProxyRoute(), 12.5) is cls


def test_network_defaults_and_per_feed_overrides(tmp_path: Path) -> None:
    settings = load_settings(False, env={}, lake={"root": tmp_path / "lk", "autoflush": False},
                             network={"proxy": "socks5://u:pw@127.0.0.1:1080", "no_proxy": "localhost",
                                      "retries": 4, "reconnect": {"initial_delay": 0.5, "watchdog_s": 90}},
                             feeds=[{"exchange": "BINANCE", "symbols": ["BTC-USDT"]},
                                    {"exchange": "KRAKEN", "symbols": ["BTC-USD"], "proxy": "direct", "retries": -1,
                                     "no_proxy": ["a.example"], "reconnect": {"watchdog_s": 15}}])
    with Lake(settings=settings) as lake:
        plain, own = (lake.settings.feed_spec(**f.subscribe_kwargs(settings.network)) for f in settings.feeds)
        direct = lake.subscribe("BINANCE", ["ETH-USDT"])  # a direct call takes the same defaults
    assert isinstance(plain.proxy, ProxyURL) and plain.proxy.password == "pw" and plain.no_proxy == ("localhost",)
    assert plain.retries == 4 and plain.reconnect.initial_delay == 0.5 and plain.reconnect.watchdog_s == 90
    assert own.proxy is False and own.retries == -1 and own.no_proxy == ("a.example",)
    assert own.reconnect.watchdog_s == 15 and own.reconnect.initial_delay == 0.5  # the rest: the network's
    assert direct.proxy == plain.proxy and direct.retries == 4 and direct.reconnect == plain.reconnect


@pytest.mark.parametrize(("options", "match"), [
    ({"http_proxy": "http://127.0.0.1:3128"}, r"'http_proxy' is set by the lake; use proxy"),
    ({"symbols": ["X"]}, r"'symbols' is set by the lake"),
    ({"timeout": 5}, r"use reconnect\.watchdog_s"),
    ({"max_dpeth": 5}, r"'max_dpeth' is not a keyword argument of BINANCE's Feed; allowed: .*max_depth"),
    ({"config": {"uvloop": True}}, r"cryptofeed\.config\.uvloop cannot be set"),
    ({"config": {"log": {"filename": "x.log"}}}, r"cryptofeed\.config\.log cannot be set"),
])
def test_options_the_lake_owns_or_the_feed_lacks_are_refused(tmp_path: Path, options: dict, match: str) -> None:
    with Lake(tmp_path / "lk", autoflush=False) as lake, pytest.raises(ConfigError, match=match):
        lake.subscribe("BINANCE", ["BTC-USDT"], options=options)
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.cryptofeed = .*" + match):
        load_settings(False, env={}, feeds=[{"exchange": "BINANCE", "symbols": ["BTC-USDT"], "cryptofeed": options}])


def test_feed_options_come_from_the_exchange_class() -> None:
    options = feed_options("BINANCE")
    assert {"max_depth", "candle_interval", "depth_interval", "checksum_validation", "config"} <= set(options)
    assert not {"symbols", "callbacks", "retries", "http_proxy", "timeout"} & set(options)


def test_a_configured_feed_collects_with_its_book_depth(tmp_path: Path, sim: ExchangeSimulator, ca_file: str) -> None:
    settings = load_settings(False, env={}, lake={"root": tmp_path / "lk", "flush_interval": 0.5},
                             feeds=[{"exchange": "BINANCE", "symbols": ["BTC-USDT"], "channels": ["trades", "l2_book"],
                                     "book_depth": 3, "simulator": {"url": sim.rest_url, "ca_file": ca_file}}])
    with Lake(settings=settings) as lake:
        [spec] = lake.subscribe_configured()
        assert spec.options == {"max_depth": 3} and spec.simulator.rest_url == sim.rest_url
        lake.start()
        full = ("SELECT update_id, side, count(*) AS n FROM l2_book WHERE kind <> 'delta' AND price IS NOT NULL "
                "GROUP BY ALL")
        assert waiting.wait_for(lambda: len(lake.sql(full)) >= 2, 30, 0.05), "no full book stored"
        assert waiting.wait_for(lambda: lake.sql("SELECT count(*) AS n FROM trades")["n"][0] > 0, 30, 0.05)
        lake.stop()
        levels = lake.sql(full)
    assert levels["n"].max() == 3  # cryptofeed kept 3 levels a side (the simulator's book is deeper)
