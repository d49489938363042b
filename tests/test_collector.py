"""FeedSpec/build_feed and the Collector, driving cryptofeed's real Binance parser against the simulator."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.symbols import Symbols

from cryptolake_nb.clock import ManualClock
from cryptolake_nb.collector import Collector
from cryptolake_nb.errors import CollectorError, ConfigError
from cryptolake_nb.feeds import FeedSpec, build_feed, make_feedhandler
from cryptolake_nb.simulator import ExchangeSimulator
from waiting import wait_for


class Sink:
    """Async callbacks that keep what cryptofeed hands them (list.append is atomic)."""

    def __init__(self) -> None:
        self.trades: list[Any] = []
        self.books: list[tuple[Any, Any, Any]] = []
        self.thread_names: set[str] = set()

    async def on_trade(self, trade: Any, receipt_timestamp: float) -> None:
        self.thread_names.add(threading.current_thread().name)
        self.trades.append(trade)

    async def on_book(self, book: Any, receipt_timestamp: float) -> None:
        # cryptofeed reuses one OrderBook object per symbol: copy what we check
        self.books.append((book.symbol, book.sequence_number, book.delta))

    def callbacks(self) -> dict[str, Any]:
        return {TRADES: self.on_trade, L2_BOOK: self.on_book}


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=200.0, seed=11) as s:
        yield s


@pytest.fixture
def collectors() -> Iterator[list[Collector]]:
    made: list[Collector] = []
    yield made
    for c in made:
        c.stop()


def make_collector(collectors: list[Collector], spec: FeedSpec, sink: Sink, **kw: Any) -> Collector:
    cbs = {k: v for k, v in sink.callbacks().items() if k in spec.channels}
    c = Collector(lambda: [build_feed(spec, cbs)], **kw)
    collectors.append(c)
    return c


# -- FeedSpec --------------------------------------------------------------------------------------
def test_feedspec_normalises_and_names() -> None:
    spec = FeedSpec("binance", ["BTC-USDT", "BTC-USDT"], ["trades"])
    assert spec.exchange == "BINANCE" and spec.symbols == ("BTC-USDT",) and spec.channels == ("trades",)
    assert "BINANCE" in spec.name and hash(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(exchange="NOPE", symbols=("BTC-USDT",), channels=("trades",)), r"'NOPE'.*BINANCE"),
        (dict(exchange="BINANCE", symbols=("BTC-USDT",), channels=("tardes",)), r"'tardes'.*l2_book.*trades"),
        (dict(exchange="BINANCE", symbols=("BTC-USDT",), channels=("balances",)), r"'balances'"),
        (dict(exchange="BINANCE", symbols=(), channels=("trades",)), "at least one symbol"),
        (dict(exchange="BINANCE", symbols="BTC-USDT", channels=("trades",)), "sequence"),
        (dict(exchange="BINANCE", symbols=("BTC-USDT",), channels=()), "at least one channel"),
        (dict(exchange="BINANCE", symbols=("BTC-USDT",), channels=("trades",), retries=-2), "retries"),
    ],
)
def test_feedspec_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FeedSpec(**kwargs)


def test_feedspec_simulator_only_for_binance(sim: ExchangeSimulator) -> None:
    with pytest.raises(ConfigError, match="COINBASE"):
        FeedSpec("COINBASE", ("BTC-USD",), ("trades",), simulator=sim)


def test_build_feed_checks_callbacks(sim: ExchangeSimulator) -> None:
    spec = FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=sim)
    with pytest.raises(ConfigError, match="async"):
        build_feed(spec, {TRADES: lambda obj, ts: None})
    with pytest.raises(ConfigError, match="l2_book"):
        build_feed(spec, {L2_BOOK: Sink().on_book})


def test_build_feed_points_at_simulator_without_touching_global_symbols(sim: ExchangeSimulator) -> None:
    populated = Symbols.populated("BINANCE")
    feed = build_feed(FeedSpec("BINANCE", ("ETH-USDT",), ("trades",), simulator=sim), {TRADES: Sink().on_trade})
    assert feed.id == "BINANCE"
    assert feed.std_symbol_to_exchange_symbol("ETH-USDT") == "ETHUSDT"
    assert Symbols.populated("BINANCE") == populated  # the process-wide cache is restored
    assert feed.address.startswith(sim.ws_url)
    with pytest.raises(ConfigError, match="simulator"):
        type(feed).symbol_mapping(refresh=True)  # never a blocking request to the real host
    with pytest.raises(ConfigError, match="not supported"):
        build_feed(FeedSpec("BINANCE", ("FOO-BAR",), ("trades",), simulator=sim), {})


def test_simulated_feed_sets_what_cryptofeed_sets(sim: ExchangeSimulator) -> None:
    """Guards against cryptofeed drift: our Symbols-free Exchange init must match the stock one."""
    from cryptofeed.exchanges import Binance

    saved = Symbols.data.get("BINANCE")
    syms, info = Binance._parse_symbol_data(sim.exchange_info())
    Symbols.set("BINANCE", syms, info)  # pre-filled: the stock class makes no request
    try:
        stock = Binance(symbols=["BTC-USDT"], channels=["trades"], config={"log": {"disabled": True}})
    finally:
        if saved is None:
            Symbols.data.pop("BINANCE", None)
        else:
            Symbols.data["BINANCE"] = saved
    ours = build_feed(FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=sim), {})
    extra = {"own_symbols", "websocket_endpoints", "rest_endpoints"}
    assert set(vars(ours)) - extra == set(vars(stock))
    assert ours.normalized_symbol_mapping == stock.normalized_symbol_mapping
    assert ours.subscription == stock.subscription


def test_make_feedhandler_is_kernel_friendly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    policy = asyncio.get_event_loop_policy()
    make_feedhandler()
    assert asyncio.get_event_loop_policy() is policy  # no uvloop switch
    assert list(tmp_path.iterdir()) == []  # no ./feedhandler.log
    fh_log = logging.getLogger("feedhandler")
    assert fh_log.propagate is False
    assert not any(isinstance(h, logging.StreamHandler) for h in fh_log.handlers)
    with caplog.at_level(logging.WARNING):
        fh_log.warning("hello from cryptofeed")
    assert any(r.getMessage() == "hello from cryptofeed" for r in caplog.records)


# -- Collector with the real Binance parser ----------------------------------------------------------
def test_collector_receives_trades_and_books(sim: ExchangeSimulator, collectors: list[Collector],
                                             capsys: pytest.CaptureFixture) -> None:
    sink = Sink()
    spec = FeedSpec("BINANCE", ("BTC-USDT", "ETH-USDT"), ("trades", "l2_book"), simulator=sim)
    c = make_collector(collectors, spec, sink, name="sim-collector")
    c.start()
    assert c.status()["state"] == "running"
    assert wait_for(lambda: len(sink.trades) >= 20 and len(sink.books) >= 20)
    trades = list(sink.trades)
    assert sink.thread_names == {"sim-collector"}
    assert {t.exchange for t in trades} == {"BINANCE"}
    assert {t.symbol for t in trades} <= {"BTC-USDT", "ETH-USDT"}
    assert all(isinstance(t.price, Decimal) and isinstance(t.amount, Decimal) and t.price > 0 for t in trades)
    assert {t.side for t in trades} <= {"buy", "sell"}
    for symbol in {t.symbol for t in trades}:
        ids = [int(t.id) for t in trades if t.symbol == symbol]
        assert ids == sorted(set(ids))
    books = list(sink.books)
    assert any(delta for _, _, delta in books)  # diffs were accepted, not only snapshots
    for symbol in {s for s, _, _ in books}:
        seqs = [seq for s, seq, _ in books if s == symbol]
        assert seqs == sorted(seqs)
    status = c.status()
    assert status["state"] == "running" and status["errors"] == [] and status["started_at"] is not None
    assert status["feeds"] == ["BINANCE l2_book,trades BTC-USDT,ETH-USDT"]
    t0 = time.monotonic()
    c.stop()
    assert time.monotonic() - t0 < 5.0
    assert c.status()["state"] == "stopped" and c.status()["stopped_at"] is not None
    assert capsys.readouterr() == ("", "")


def test_start_stop_start(sim: ExchangeSimulator, collectors: list[Collector]) -> None:
    sink = Sink()
    clock = ManualClock()
    c = make_collector(collectors, FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=sim), sink, clock=clock)
    c.start()
    with pytest.raises(CollectorError, match="already running"):
        c.start()
    assert wait_for(lambda: len(sink.trades) >= 3)
    c.stop()
    c.stop()  # idempotent
    n = len(sink.trades)
    time.sleep(0.2)
    assert len(sink.trades) == n  # nothing arrives once stopped
    clock.advance(60)
    c.start()
    assert c.status()["started_at"].timestamp() == pytest.approx(clock.time_ns() / 1e9)
    assert wait_for(lambda: len(sink.trades) >= n + 3)
    t0 = time.monotonic()
    c.stop()
    assert time.monotonic() - t0 < 5.0


def test_reconnects_after_the_exchange_drops_connections(sim: ExchangeSimulator, collectors: list[Collector]) -> None:
    sink = Sink()
    c = make_collector(collectors, FeedSpec("BINANCE", ("BTC-USDT",), ("trades", "l2_book"), simulator=sim), sink)
    c.start()
    assert wait_for(lambda: len(sink.trades) >= 3 and sim.connections == 1)
    assert sim.drop_connections() == 1
    n = len(sink.trades)
    assert wait_for(lambda: len(sink.trades) >= n + 5)
    assert c.status()["state"] == "running"


def test_bad_symbol_fails_into_status_and_log(sim: ExchangeSimulator, collectors: list[Collector],
                                             caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> None:
    c = make_collector(collectors, FeedSpec("BINANCE", ("FOO-BAR",), ("trades",), simulator=sim), Sink())
    with caplog.at_level(logging.ERROR):
        c.start()
    status = c.status()
    assert status["state"] == "failed"
    assert any("FOO-BAR" in e for e in status["errors"])
    assert any(r.levelno == logging.ERROR and "FOO-BAR" in r.getMessage() for r in caplog.records)
    c.stop()
    assert c.status()["state"] == "failed"
    assert capsys.readouterr() == ("", "")


class _SlowHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            time.sleep(0.3)


def test_unreachable_endpoint_fails_into_status_and_log(collectors: list[Collector], caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture) -> None:
    gone = ExchangeSimulator()
    gone.start()
    gone.stop()  # its port now refuses connections
    spec = FeedSpec("BINANCE", ("BTC-USDT",), ("trades",), simulator=gone, retries=0)
    c = make_collector(collectors, spec, Sink())
    slow = _SlowHandler()  # a slow log handler widens any window between "failed" and the log record
    logging.getLogger("cryptolake_nb.collector").addHandler(slow)
    try:
        with caplog.at_level(logging.WARNING):
            c.start()
            assert wait_for(lambda: c.status()["state"] == "failed")
    finally:
        logging.getLogger("cryptolake_nb.collector").removeHandler(slow)
    errors = c.status()["errors"]
    assert errors and "retries" in errors[-1]
    assert any(r.name == "cryptolake_nb.collector" and r.levelno == logging.ERROR for r in caplog.records)
    assert any(r.name == "cryptolake_nb.feed_health" and "gave up" in r.getMessage()
               and "Connect call failed" in r.getMessage() for r in caplog.records)
    t0 = time.monotonic()
    c.stop()
    assert time.monotonic() - t0 < 5.0
    assert capsys.readouterr() == ("", "")


def test_errors_in_build_feeds_are_captured(collectors: list[Collector], caplog: pytest.LogCaptureFixture) -> None:
    def explode() -> list:
        raise RuntimeError("boom")

    c = Collector(explode)
    collectors.append(c)
    with caplog.at_level(logging.ERROR):
        c.start()
    assert c.status()["state"] == "failed" and "boom" in c.status()["errors"][-1]
    assert "boom" in caplog.text
    c.stop()
    c.start()  # a failed collector can be started again
    assert c.status()["state"] == "failed" and len(c.status()["errors"]) == 1
