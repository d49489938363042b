"""Connection management against the simulator: backoff with jitter, retry limits, the half-open watchdog."""
from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptofeed.defines import TRADES

from cryptolake_nb import Lake
from cryptolake_nb.clock import ManualClock
from cryptolake_nb.collector import Collector
from cryptolake_nb.errors import ConfigError
from cryptolake_nb.feeds import FeedHealth, FeedSpec, ReconnectPolicy, build_feed
from cryptolake_nb.simulator import ExchangeSimulator

import waiting

SYMBOLS = ("BTC-USDT", "ETH-USDT")


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    assert waiting.wait_for(predicate, timeout, 0.02), f"timed out after {timeout} s waiting for {what}"


# -- the policy ---------------------------------------------------------------------------------------
def test_backoff_grows_caps_and_jitters_reproducibly() -> None:
    exact = ReconnectPolicy(initial_delay=1.0, factor=2.0, max_delay=10.0, jitter=0.0)
    assert [exact.delay(n, random.Random()) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert exact.delay(10_000, random.Random()) == 10.0  # no overflow after a very long outage
    jittered = ReconnectPolicy(initial_delay=1.0, factor=2.0, max_delay=10.0, jitter=0.5)
    a = [jittered.delay(n, random.Random(3)) for n in range(1, 7)]
    assert a == [jittered.delay(n, random.Random(3)) for n in range(1, 7)]  # the injected rng decides
    assert a != [jittered.delay(n, random.Random(4)) for n in range(1, 7)]
    for n, d in enumerate(a, 1):
        base = min(10.0, 2.0 ** (n - 1))
        assert base / 2 < d <= base
    draws = [ReconnectPolicy(jitter=1.0).delay(1, random.Random(s)) for s in range(50)]
    assert min(draws) < 0.2 and max(draws) > 0.8  # full jitter spreads over [0, 1)
    with pytest.raises(ValueError):
        exact.delay(0, random.Random())


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(initial_delay=-1), "initial_delay"),
    (dict(initial_delay=float("nan")), "initial_delay"),
    (dict(factor=0.5), "factor"),
    (dict(factor=True), "factor"),
    (dict(jitter=1.5), "jitter"),
    (dict(initial_delay=5, max_delay=1), "max_delay"),
    (dict(watchdog_s=0), "watchdog_s"),
    (dict(watchdog_s="10"), "watchdog_s"),
])
def test_policy_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ReconnectPolicy(**kwargs)


# -- against the simulator ------------------------------------------------------------------------------
@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    with ExchangeSimulator(SYMBOLS, rate=300.0, seed=17, trade_share=1.0) as s:
        yield s


def trades(lake: Lake) -> int:
    return int(lake.sql("SELECT count(*) AS n FROM trades")["n"][0])


def gap_rows(lake: Lake) -> list[dict]:
    return lake.sql("SELECT cause, symbol, channel, epoch_ns(start_ts) AS start_ns, epoch_ns(end_ts) AS end_ns,"
                    " detail FROM gaps ORDER BY start_ts").to_dict("records")


@pytest.mark.parametrize("abrupt", [False, True], ids=["close", "reset"])
def test_dropped_socket_reconnects_after_backoff_records_the_gap_and_resumes(abrupt: bool, sim: ExchangeSimulator,
                                                                             tmp_path: Path) -> None:
    policy = ReconnectPolicy(initial_delay=0.3, max_delay=1.0, jitter=0.5, watchdog_s=None)
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", list(SYMBOLS), ["trades"], simulator=sim, reconnect=policy)
        lake.start()
        try:
            wait_for(lambda: trades(lake) >= 50 and sim.connections == 1, what="trades")
            assert sim.drop_connections(abrupt=abrupt) == 1
            n = trades(lake)
            wait_for(lambda: trades(lake) >= n + 100, what="trades after the drop")
            (health,) = lake.feed_health
            status = health.status()
            gaps = gap_rows(lake)
        finally:
            lake.stop()
    assert status["state"] == "connected" and status["connections"] == 2 and status["reconnects"] == 1
    assert health.backoffs[0][0] == 1 and 0.15 <= status["last_delay_s"] <= 0.3  # attempt 1: initial_delay, jittered
    assert status["failures"] == 1 and status["last_error"]
    assert sorted((g["cause"], g["symbol"], g["channel"]) for g in gaps) == [("reconnect", s, "trades") for s in SYMBOLS]
    (dropped_at,) = sim.injected.disconnects
    for g in gaps:
        # frames already on their way when the simulator noted the drop may land just after it
        assert g["start_ns"] <= dropped_at + 200_000_000 and dropped_at <= g["end_ns"]
        assert (g["end_ns"] - g["start_ns"]) / 1e9 >= status["last_delay_s"]  # the hole includes the wait
        assert "connection #2" in g["detail"]


def test_outage_backs_off_by_the_policy_then_recovers(sim: ExchangeSimulator) -> None:
    """The simulator goes away (connections refused) and comes back on the same port."""
    policy = ReconnectPolicy(initial_delay=0.05, factor=2.0, max_delay=0.4, jitter=0.5, watchdog_s=None)
    spec = FeedSpec("BINANCE", SYMBOLS, (TRADES,), simulator=sim, retries=-1, reconnect=policy)
    gaps: list[dict] = []
    health = FeedHealth("BINANCE", on_gap=lambda cause, **kw: gaps.append({"cause": cause, **kw}))
    got: list[Any] = []

    async def on_trade(trade: Any, receipt: float) -> None:
        got.append(trade)

    collector = Collector(lambda: [build_feed(spec, {TRADES: on_trade}, health=health, rng=random.Random(5))])
    collector.start()
    try:
        wait_for(lambda: len(got) >= 30, what="trades")
        t0 = time.monotonic()
        sim.stop()
        wait_for(lambda: health.failures >= 6, what="six failures")
        elapsed = time.monotonic() - t0
        assert health.state == "reconnecting" and "Connect call failed" in (health.last_error or "")
        sim.start()
        n = len(got)
        wait_for(lambda: len(got) >= n + 30 and health.state == "connected", what="trades after the outage")
        backoffs = list(health.backoffs)
    finally:
        collector.stop()
    replay = random.Random(5)
    expected = [(k, policy.delay(k, replay)) for k in range(1, len(backoffs) + 1)]
    assert backoffs == expected  # attempt numbers and jittered delays, draw for draw
    assert elapsed >= sum(d for _, d in backoffs[:5])  # each failed attempt waited its delay
    assert max(d for _, d in backoffs) <= policy.max_delay
    assert collector.status()["state"] == "stopped" and collector.status()["errors"] == []
    (gap,) = {(g["cause"], g["start_ns"], g["end_ns"]) for g in gaps}
    assert gap[0] == "reconnect" and (gap[2] - gap[1]) / 1e9 >= elapsed


def test_retries_exhausted_fail_the_feed_in_status_and_gaps(sim: ExchangeSimulator, tmp_path: Path) -> None:
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.1, watchdog_s=None)
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim, retries=2, reconnect=policy)
        lake.start()
        try:
            wait_for(lambda: trades(lake) >= 20, what="trades")
            last = lake.sql("SELECT max(epoch_ns(receipt_ts)) AS t FROM trades")["t"][0]
            sim.stop()
            # the collector notices after the feed: when cryptofeed's task ends with the feed's error
            wait_for(lambda: lake.status()["feeds"][0]["state"] == lake.status()["collector"]["state"] == "failed",
                     what="the feed and the collector to fail")
            status = lake.status()
            gaps = gap_rows(lake)
        finally:
            lake.stop()
    feed = status["feeds"][0]
    assert feed["failures"] == 3 and [a for a, _ in lake.feed_health[0].backoffs] == [1, 2]
    assert feed["last_error"].startswith("retries exhausted: ") and "Connect call failed" in feed["last_error"]
    assert status["collector"]["state"] == "failed"
    assert any("retries exhausted" in e and "gave up after 2 reconnection attempt(s)" in e
               for e in status["collector"]["errors"])
    (g,) = gaps
    assert (g["cause"], g["symbol"], g["channel"]) == ("feed_failed", "BTC-USDT", "trades")
    # from the last frame (stored receipt times are rounded to the microsecond) to the moment it gave up
    assert g["start_ns"] >= last - 1_000 and g["end_ns"] > g["start_ns"] and "gave up after 2" in g["detail"]


def test_watchdog_reconnects_a_silent_open_socket(sim: ExchangeSimulator, tmp_path: Path) -> None:
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, watchdog_s=0.5)
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", list(SYMBOLS), ["trades"], simulator=sim, reconnect=policy)
        lake.start()
        try:
            wait_for(lambda: trades(lake) >= 50, what="trades")
            (health,) = lake.feed_health
            sim.silence(1.5)  # sockets stay open, pings answered, nothing published
            wait_for(lambda: health.watchdog_trips >= 1, what="the watchdog")
            n = trades(lake)
            wait_for(lambda: trades(lake) >= n + 100, what="trades after the silence")
            status = health.status()
            gaps = gap_rows(lake)
        finally:
            lake.stop()
    assert sim.injected.connections >= 2 and status["reconnects"] >= 1 and status["state"] == "connected"
    assert status["watchdog_trips"] >= 1 and "watchdog" in status["last_error"]
    ((silent_from, silent_to),) = sim.injected.silences
    assert {(g["cause"], g["symbol"]) for g in gaps} == {("silence", s) for s in SYMBOLS}
    for g in gaps:
        assert "watchdog: no message for" in g["detail"] and "reconnected" in g["detail"]
        assert g["start_ns"] <= silent_from + 100_000_000 and g["end_ns"] >= silent_to


def test_watchdog_reads_the_injected_clock_and_can_be_off(sim: ExchangeSimulator) -> None:
    """With a manual clock the watchdog trips only when the clock says the socket was silent long enough."""
    sim.rate = 0  # an open socket that never delivers anything
    clock = ManualClock()
    health = FeedHealth("BINANCE", clock=clock)
    spec = FeedSpec("BINANCE", ("BTC-USDT",), (TRADES,), simulator=sim,
                    reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.01, watchdog_s=5.0))

    async def on_trade(trade: Any, receipt: float) -> None:
        pass

    collector = Collector(lambda: [build_feed(spec, {TRADES: on_trade}, health=health)])
    collector.start()
    try:
        wait_for(lambda: health.connections == 1 and sim.connections == 1, what="a connection")
        clock.advance(4.9)
        assert not waiting.wait_for(lambda: health.watchdog_trips > 0, 1.5, 0.02)  # 1.5 s real time, 4.9 s by the clock
        clock.advance(0.2)
        wait_for(lambda: health.watchdog_trips == 1 and health.connections == 2, what="the watchdog")
    finally:
        collector.stop()
    assert sim.injected.connections == 2
    # the same silence without a watchdog: the socket is left alone
    quiet = FeedHealth("BINANCE", clock=clock)
    spec = FeedSpec("BINANCE", ("BTC-USDT",), (TRADES,), simulator=sim, reconnect=ReconnectPolicy(watchdog_s=None))
    collector = Collector(lambda: [build_feed(spec, {TRADES: on_trade}, health=quiet)])
    collector.start()
    try:
        wait_for(lambda: quiet.connections == 1, what="a connection")
        clock.advance(3600)
        time.sleep(0.5)
        assert quiet.watchdog_trips == 0 and quiet.connections == 1 and quiet.state == "connected"
    finally:
        collector.stop()
