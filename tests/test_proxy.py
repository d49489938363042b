"""Proxy settings without a network: parsing, redaction, environment precedence, what a real feed is given."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptofeed.connection import WSAsyncConn
from cryptofeed.symbols import Symbols

from cryptolake_nb.errors import ConfigError
from cryptolake_nb.feeds import FeedSpec, build_feed
from cryptolake_nb.proxy import ProxyRoute, ProxyURL, redact, resolve_route
from cryptolake_nb.simulator import ExchangeSimulator
from cryptolake_nb.transport import ProxiedSyncHTTP


# -- URLs and redaction ---------------------------------------------------------------------------------
def test_parse_proxy_urls() -> None:
    p = ProxyURL.parse("socks5://bob:p%40ss%3Aw0rd@10.1.2.3")
    assert (p.scheme, p.host, p.port, p.username, p.password) == ("socks5", "10.1.2.3", 1080, "bob", "p@ss:w0rd")
    assert p.url == "socks5://bob:p%40ss%3Aw0rd@10.1.2.3:1080"  # credentials re-encoded for the client
    assert str(p) == repr(p)[10:-2] == p.redacted == "socks5://***@10.1.2.3:1080"
    assert p.url_without_credentials == "socks5://10.1.2.3:1080" and p.kind == "socks5"
    h = ProxyURL.parse(" HTTP://proxy.corp:3128/ ")
    assert (h.scheme, h.host, h.port, h.username, h.kind, h.redacted) == ("http", "proxy.corp", 3128, None, "http",
                                                                         "http://proxy.corp:3128")
    assert ProxyURL.parse("http://[::1]:8080").address == "[::1]:8080"
    assert ProxyURL.parse("socks5h://u@h:1").url == "socks5h://u@h:1"


@pytest.mark.parametrize(("value", "match"), [
    ("proxy.corp:3128", "no scheme"),
    ("ftp://u:topsecret@proxy.corp:21", "scheme 'ftp'; allowed: http, socks5, socks5h"),
    ("https://u:topsecret@proxy.corp", "scheme 'https'"),
    ("http://u:topsecret@:3128", "names no host"),
    ("http://u:topsecret@proxy.corp:99999", "not a valid URL"),
    ("http://u:topsecret@proxy.corp:3128/path", "no path"),
    ("", "must be a proxy URL"),
])
def test_invalid_proxy_urls_name_the_problem_without_the_password(value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        ProxyURL.parse(value)
    assert "topsecret" not in str(info.value)


def test_redact_masks_credentials_anywhere() -> None:
    text = "failed: http://bob:pw@h:1 and socks5h://tok@h2:2/x, https://plain.host/p 'wss://a:b@c'"
    assert redact(text) == "failed: http://***@h:1 and socks5h://***@h2:2/x, https://plain.host/p 'wss://***@c'"


# -- one decision per feed ------------------------------------------------------------------------------
ENV = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower.corp:3128", "ALL_PROXY": "socks5://all:1080",
       "NO_PROXY": "internal.corp,.example.com,10.0.0.0/8,*.svc,localhost:8443"}


def test_environment_lower_case_first_and_no_proxy() -> None:
    route = resolve_route(None, env=ENV)
    assert route.source == "environment"
    assert route.for_url("wss://stream.binance.com:9443/ws").redacted == "http://lower.corp:3128"
    assert route.for_url("https://api.binance.com/api").host == "lower.corp"
    assert route.for_url("http://api.binance.com/x").redacted == "socks5://all:1080"  # http: ALL_PROXY
    for bypassed in ("https://internal.corp/a", "https://a.b.example.com", "https://example.com", "https://10.2.3.4",
                     "https://x.svc", "https://localhost:8443"):
        assert route.for_url(bypassed) is None, bypassed
    for proxied in ("https://internal.corp.evil.com", "https://11.0.0.1", "https://localhost:443", "https://notexample.com"):
        assert route.for_url(proxied) is not None, proxied
    assert resolve_route(None, env={"all_proxy": "socks5h://h:9", "no_proxy": "*"}).for_url("https://x") is None
    assert resolve_route(None, env={}).describe() == "direct"
    assert resolve_route(None, env={"https_proxy": "  "}).https is None  # empty counts as unset


def test_explicit_setting_wins_over_the_environment() -> None:
    explicit = resolve_route("socks5://u:pw@127.0.0.1:1080", env=ENV)
    assert explicit.source == "explicit" and explicit.bypass == ()
    assert explicit.for_url("https://internal.corp/") == explicit.https  # env NO_PROXY not applied
    assert explicit.for_url("http://x") == explicit.https
    assert resolve_route("socks5://h:1", no_proxy="internal.corp", env=ENV).for_url("https://internal.corp") is None
    for direct in (False, "direct", "NONE"):
        assert resolve_route(direct, env=ENV).proxies == ()
    assert resolve_route(None, no_proxy=[], env=ENV).for_url("https://internal.corp") is not None
    assert explicit.describe() == "https via socks5://***@127.0.0.1:1080; http via socks5://***@127.0.0.1:1080 (explicit)"


def test_invalid_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"environment variable HTTPS_PROXY 'ftp://\*\*\*@h:1'") as info:
        resolve_route(None, env={"https_proxy": "ftp://u:hunter2@h:1"})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match="ALL_PROXY"):
        resolve_route(None, env={"ALL_PROXY": "nonsense"})
    with pytest.raises(ConfigError, match="proxy must be a proxy URL"):
        resolve_route(42)  # type: ignore[arg-type]


# -- FeedSpec and the feed it builds ------------------------------------------------------------------
def test_feedspec_validates_and_hides_the_proxy() -> None:
    spec = FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), proxy="http://bob:hunter2@proxy.corp:3128",
                    no_proxy="a.com, b.com")
    assert isinstance(spec.proxy, ProxyURL) and spec.no_proxy == ("a.com", "b.com")
    assert "hunter2" not in repr(spec) and "http://***@proxy.corp:3128" in repr(spec)
    with pytest.raises(ConfigError, match="scheme 'htp'"):
        FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), proxy="htp://proxy.corp:3128")
    with pytest.raises(ConfigError, match="no_proxy"):
        FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), no_proxy=[1, 2])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="ReconnectPolicy"):
        FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), reconnect={"initial_delay": 1})  # type: ignore[arg-type]


@pytest.fixture
def binance_symbols() -> Iterator[ExchangeSimulator]:
    """cryptofeed's Symbols cache pre-filled (from the simulator's listing), so a real Binance feed
    is built without its symbol request; restored afterwards."""
    from cryptofeed.exchanges import Binance

    saved = Symbols.data.get("BINANCE")
    with ExchangeSimulator(("BTC-USDT",)) as sim:
        Symbols.set("BINANCE", *Binance._parse_symbol_data(sim.exchange_info()))
        try:
            yield sim
        finally:
            if saved is None:
                Symbols.data.pop("BINANCE", None)
            else:
                Symbols.data["BINANCE"] = saved


def test_a_real_feed_gets_its_proxy_everywhere(binance_symbols: ExchangeSimulator) -> None:
    """No connection is opened: the real exchange's feed is only built and asked for its connections."""
    env = {"HTTPS_PROXY": "socks5h://u:pw@proxy.corp:1080", "NO_PROXY": "api.binance.com"}
    feed = build_feed(FeedSpec("BINANCE", ("BTC-USDT",), ("trades", "l2_book")), {}, env=env)
    (ws,) = [c for c, *_ in feed.connect() if isinstance(c, WSAsyncConn)]
    assert ws.address.startswith("wss://stream.binance.com") and ws.ws_kwargs["proxy"] == "socks5h://u:pw@proxy.corp:1080"
    assert feed.http_conn._route.for_url("https://api.binance.com/api/v3/depth") is None  # NO_PROXY
    sync = type(feed).http_sync
    assert isinstance(sync, ProxiedSyncHTTP) and sync.route == feed.http_conn._route and sync.timeout > 0
    # explicit False: direct, and websockets is told so (it would read the environment otherwise)
    direct = build_feed(FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), proxy=False), {}, env=env)
    (ws,) = [c for c, *_ in direct.connect()]
    assert ws.ws_kwargs["proxy"] is None and direct.http_conn._route == ProxyRoute(source="explicit")


def test_cryptofeed_log_records_lose_their_credentials(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from cryptolake_nb.feeds import route_cryptofeed_logging

    route_cryptofeed_logging()
    try:
        raise OSError("could not reach http://bob:hunter2@proxy.corp:3128")
    except OSError:
        with caplog.at_level(logging.WARNING):
            logging.getLogger("feedhandler").warning("%s: retry via %s", "BINANCE", "socks5://bob:hunter2@h:1",
                                                     exc_info=True)
    (record,) = [r for r in caplog.records if r.name == "feedhandler"]  # handled by ROUTED_LOGGER
    assert record.getMessage() == "BINANCE: retry via socks5://***@h:1"
    assert "http://***@proxy.corp:3128" in caplog.text and "hunter2" not in caplog.text
