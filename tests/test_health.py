"""lake.health(): seal-time counters (messages, rates, lag), buffers, files, flush latency, gaps, disk;
the HTML view; a live collector on the simulator; logs through the `cryptolake_nb` tree."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.alerts import AlertRules
from cryptolake_nb.clock import ManualClock
from cryptolake_nb.feeds import ReconnectPolicy
from cryptolake_nb.health import DiskUsage, HealthStats, Monitoring, nearest_rank
from cryptolake_nb.schema import schema_for
from cryptolake_nb.simulator import ExchangeSimulator
from cryptolake_nb.status_view import HealthView

import waiting
from feeding import put

T0 = 1_700_000_000.0
NS = 1_000_000_000


def wait_for(predicate, timeout=30.0, what="condition"):
    assert waiting.wait_for(predicate, timeout, 0.05), f"timed out after {timeout} s waiting for {what}"


def trades_batch(exchange_lags: list[tuple[str, int]], start_ns: int = int(T0 * NS)) -> pa.RecordBatch:
    """A sealed `trades` batch: one row per (exchange, lag in ns)."""
    schema = schema_for("trades")
    n = len(exchange_lags)
    ts = np.arange(n, dtype=np.int64) * 1_000 + start_ns
    cols = {
        "exchange": [e for e, _ in exchange_lags], "symbol": ["BTC-USDT"] * n,
        "ts": pa.array(ts).cast(schema.field("ts").type),
        "receipt_ts": pa.array(ts + np.array([lag for _, lag in exchange_lags], dtype=np.int64)).cast(
            schema.field("receipt_ts").type),
    }
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in schema]
    return pa.RecordBatch.from_arrays([pa.array(a, f.type) if isinstance(a, list) else a for a, f in zip(arrays, schema)],
                                      schema=schema)


# -- HealthStats ---------------------------------------------------------------------------------------------------------
def test_stats_count_per_exchange_and_give_nearest_rank_lag_percentiles():
    clock = ManualClock()
    stats = HealthStats(clock, window_s=60, rate_window_s=10)
    lags_a = [ms * 1_000_000 for ms in range(1, 101)]  # 1..100 ms
    batch = trades_batch([("BINANCE", lag) for lag in lags_a] + [("COINBASE", 7_000_000)] * 3)
    clock.advance(2.0)
    stats.observe("trades", batch)
    a = stats.channel("BINANCE", "trades")
    assert a["messages"] == 100 and a["lag_samples"] == 100
    assert a["lag_p50_s"] == pytest.approx(0.050) and a["lag_p99_s"] == pytest.approx(0.099)
    assert a["lag_max_s"] == pytest.approx(0.100)
    assert a["messages_per_s"] == pytest.approx(100 / 2.0)  # the window is not full yet: since the lake opened
    assert a["last_message_age_s"] == 0.0
    c = stats.channel("COINBASE", "trades")
    assert c["messages"] == 3 and c["lag_p50_s"] == c["lag_max_s"] == pytest.approx(0.007)
    assert stats.channel("KRAKEN", "trades") == {"messages": 0, "messages_per_s": 0.0, "lag_p50_s": None,
                                                 "lag_p99_s": None, "lag_max_s": None, "lag_samples": 0,
                                                 "last_message_age_s": None}
    assert stats.messages("BINANCE", ["trades", "ticker"]) == 100 and stats.streams() == [
        ("BINANCE", "trades"), ("COINBASE", "trades")]


def test_stats_rates_and_lag_cover_only_their_windows():
    clock = ManualClock()
    stats = HealthStats(clock, window_s=30, rate_window_s=10)
    clock.advance(20)
    stats.observe("trades", trades_batch([("BINANCE", 500 * 1_000_000)] * 50))  # 500 ms lag at t=20
    clock.advance(5)
    stats.observe("trades", trades_batch([("BINANCE", 1_000_000)] * 20))  # 1 ms lag at t=25
    s = stats.channel("BINANCE", "trades")
    assert s["messages_per_s"] == pytest.approx(70 / 10) and s["lag_max_s"] == pytest.approx(0.5)
    clock.advance(6)  # t=31: the first batch is out of the 10 s rate window, still in the 30 s lag window
    s = stats.channel("BINANCE", "trades")
    assert s["messages_per_s"] == pytest.approx(20 / 10) and s["lag_max_s"] == pytest.approx(0.5)
    assert s["lag_p50_s"] == pytest.approx(0.5)  # 50 of the 70 sampled lags are 500 ms
    clock.advance(20)  # t=51: the first batch left the lag window too
    s = stats.channel("BINANCE", "trades")
    assert s["lag_max_s"] == pytest.approx(0.001) and s["messages_per_s"] == 0 and s["messages"] == 70
    assert s["last_message_age_s"] == pytest.approx(26)
    clock.advance(10)  # nothing in either window
    s = stats.channel("BINANCE", "trades")
    assert s["lag_p50_s"] is None and s["lag_max_s"] is None and s["messages"] == 70


def test_stats_keep_a_bounded_evenly_spaced_sample_but_the_exact_max():
    stats = HealthStats(ManualClock(), samples=16)
    lags = list(range(1, 10_001))
    stats.observe("trades", trades_batch([("BINANCE", lag) for lag in lags]))
    s = stats.channel("BINANCE", "trades")
    assert s["lag_samples"] == 16 and s["lag_max_s"] == pytest.approx(10_000 / 1e9)
    assert abs(s["lag_p50_s"] * 1e9 - 5_000) <= 10_000 / 16  # the sample is spread over the batch


def test_idle_counts_from_the_last_change_of_activity():
    clock = ManualClock()
    stats = HealthStats(clock)
    feed = ReconnectPolicy()  # any object can be the key; the lake uses its FeedHealth
    assert stats.idle_s(feed, 5) == 0.0
    clock.advance(3)
    assert stats.idle_s(feed, 5) == 3.0
    assert stats.idle_s(feed, 6) == 0.0
    clock.advance(2)
    assert stats.idle_s(feed, 6) == 2.0


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="window_s"):
        HealthStats(window_s=0)
    with pytest.raises(ConfigError, match="samples"):
        HealthStats(samples=0)
    with pytest.raises(ConfigError, match="interval_s"):
        Monitoring(interval_s=-1)
    with pytest.raises(ConfigError, match="buffer_fraction"):
        AlertRules(buffer_fraction=1.5)
    with pytest.raises(ConfigError, match="silent_s"):
        AlertRules(silent_s=0)
    assert nearest_rank([], 50) is None and nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_monitoring_from_a_configuration_section():
    m = Monitoring.from_config({"interval_s": 2.5, "alerts": {"silent_s": 15, "disk_free_bytes": 10,
                                                              "webhook_url": "http://127.0.0.1:9/x"},
                                "prometheus": {"enabled": True, "host": "127.0.0.1", "port": 9109}})
    assert m.interval_s == 2.5 and m.rules == AlertRules(silent_s=15, disk_free_bytes=10)
    assert m.webhook == "http://127.0.0.1:9/x" and (m.metrics_host, m.metrics_port) == ("127.0.0.1", 9109)
    off = Monitoring.from_config({"enabled": False, "prometheus": {"enabled": False, "port": 9109}})
    assert not off.enabled and off.metrics_port is None
    assert Monitoring.of(None) == Monitoring() and not Monitoring.of(False).enabled
    with pytest.raises(ConfigError, match="buffer_fraction"):
        Monitoring.from_config({"buffer_fraction": 0})


# -- lake.health() ---------------------------------------------------------------------------------------------------------
def test_health_reports_buffers_files_flush_latency_gaps_and_disk(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        put(lake, [make_trade(100 + i, 1, T0 + i, id=str(i)) for i in range(10)], receipt=T0 + 20)
        h = lake.health()
        assert isinstance(h, HealthView) and h["monitoring"] is True
        t = h["tables"]["trades"]
        assert t["rows_buffered"] == 10 and t["bytes_buffered"] > 0 and t["files"] == 0 and t["bytes"] == 0
        assert h["flush"]["last_s"] is None and h["flush"]["p99_s"] is None and h["flush"]["failures"] == 0
        for batch in range(3):
            put(lake, [make_trade(200, 1, T0 + 100 + batch, id=str(100 + batch))], receipt=T0 + 120)
            lake.flush()
        put(lake, [make_trade(300, 1, T0 + 300, id="400")], receipt=T0 + 300)  # ids 103..399 missing
        lake.stop()  # the pending sequence break is recorded (receipt times jump: silences too)
        h = lake.health()
        files = lake.committed_files("trades")
        t = h["tables"]["trades"]
        assert t["rows_buffered"] == 0 and t["files"] == len(files) == 4 and t["rows"] == 14
        assert t["bytes"] == sum(f.bytes for f in files) == sum(os.path.getsize(lake.root / f.path) for f in files)
        flush = h["flush"]
        assert flush["kept"] == flush["flushes"] == 4 and flush["last_s"] > 0
        assert flush["p99_s"] == flush["max_s"] == max(lake._flusher.latencies) and flush["p50_s"] <= flush["p99_s"]
        assert h["gaps"] == {"total": 4, "open": 0, "by_cause": {"sequence_break": 2, "silence": 2}}
        assert lake.gaps.table().num_rows == 4
        usage = shutil.disk_usage(lake.root)
        assert h["disk"]["total_bytes"] == usage.total and abs(h["disk"]["free_bytes"] - usage.free) < 64 * 2**20
        assert h["memory"]["limit_bytes"] == lake.memory.limit and 0 <= h["memory"]["used_fraction"] < 0.01
        # messages and lag per exchange and table, from the seals the flushes did
        stats = lake.health_stats.channel("BINANCE", "trades")
        assert stats["messages"] == 14 and stats["lag_max_s"] == pytest.approx(20.0)
        json.loads(repr(h))  # a terminal shows valid JSON
        assert lake.status()["health"]["tables"]["trades"]["files"] == 4


def test_disk_probe_errors_are_reported_not_raised(tmp_path):
    def broken(path: Path) -> DiskUsage:
        raise OSError(5, "Input/output error")

    with Lake(tmp_path / "lk", autoflush=False, monitoring=Monitoring(disk=broken)) as lake:
        disk = lake.health()["disk"]
    assert disk["free_bytes"] is None and "Input/output error" in disk["error"]


def test_monitoring_off_keeps_no_counters(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, monitoring=False) as lake:
        put(lake, [make_trade(100, 1, T0, id="1")])
        lake.flush()
        h = lake.health()
    assert lake.health_stats is None and h["monitoring"] is False
    assert h["tables"]["trades"]["files"] == 1 and h["flush"]["flushes"] == 1


def test_html_is_escaped_and_shows_feeds_lag_and_alerts(tmp_path):
    view = HealthView({
        "root": "/lake", "collector": {"state": "running"},
        "feeds": [{"feed": "BINANCE<x>", "state": "connected", "messages_per_s": 12.5, "lag_p50_s": 0.0123,
                   "lag_max_s": 0.5, "idle_s": 0.0, "reconnects": 2, "gap_open": None, "last_error": "<boom>",
                   "channels": {"trades": {"messages_per_s": 12.5}}}],
        "flush": {"last_s": 0.002, "p99_s": 0.004, "kept": 3}, "gaps": {"open": 1, "total": 7},
        "memory": {"used_bytes": 2**20, "used_fraction": 0.5}, "disk": {"free_bytes": 3 * 2**30, "free_fraction": 0.25},
        "alerts": {"firing": [{"kind": "feed_silent", "message": "feed <b>x</b> silent"}]},
    })
    html = view._repr_html_()
    assert "<x>" not in html and "BINANCE&lt;x&gt;" in html and "&lt;boom&gt;" in html
    assert "alerts firing: 1" in html and "feed &lt;b&gt;x&lt;/b&gt; silent" in html
    assert "<td>12.5</td>" in html and "<td>12.3</td>" in html and "<td>500.0</td>" in html  # msg/s, lag ms
    assert "trades 12.5/s" in html and "gaps open 1 / total 7" in html and "disk free 3.0 GiB (25%)" in html
    assert "flush last 2.0 ms, p99 4.0 ms" in html


# -- a live collector --------------------------------------------------------------------------------------------------------
@pytest.fixture
def sim():
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=300, seed=11) as s:
        yield s


def test_live_feed_health_rates_lag_reconnects_and_book_messages(tmp_path, sim):
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.2, watchdog_s=None)
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT", "ETH-USDT"], ["trades", "l2_book"], simulator=sim, reconnect=policy)
        lake.start()
        try:
            wait_for(lambda: (lake.health()["feeds"][0]["channels"]["trades"]["messages"] or 0) >= 50, what="trades")
            (feed,) = lake.health()["feeds"]
            assert feed["feed"] == "BINANCE" and feed["state"] == "connected" and feed["gap_open"] is None
            trades, books = feed["channels"]["trades"], feed["channels"]["l2_book"]
            assert trades["messages_per_s"] > 0 and books["messages_per_s"] > 0
            assert feed["messages_per_s"] == pytest.approx(trades["messages_per_s"] + books["messages_per_s"])
            assert 0 <= trades["lag_p50_s"] <= trades["lag_max_s"] < 5  # receipt - exchange time on loopback
            assert feed["frames"] > 0 and feed["idle_s"] is not None and feed["reconnects"] == 0
            assert sim.drop_connections() >= 1
            wait_for(lambda: lake.health()["feeds"][0]["reconnects"] >= 1
                     and lake.health()["gaps"]["by_cause"].get("reconnect"), what="a reconnect and its gap")
        finally:
            lake.stop()
        h = lake.health()
        (feed,) = h["feeds"]
        assert feed["state"] == "stopped" and h["gaps"]["by_cause"].get("reconnect", 0) >= 1 and h["gaps"]["open"] == 0
        # every stored message was counted once: trades are rows, a book message is one update_id group
        n_trades = lake.sql("SELECT count(*) AS n FROM trades WHERE exchange = 'BINANCE'")["n"][0]
        n_books = lake.sql("SELECT count(DISTINCT update_id) AS n FROM l2_book WHERE exchange = 'BINANCE'")["n"][0]
        assert feed["channels"]["trades"]["messages"] == n_trades
        assert feed["channels"]["l2_book"]["messages"] == n_books
        assert "<caption>feeds</caption>" in lake.status()._repr_html_()


def test_two_feeds_of_one_exchange_get_distinct_names(tmp_path, sim):
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim)
        lake.subscribe("BINANCE", ["ETH-USDT"], ["l2_book"], simulator=sim)
        lake.start()
        try:
            wait_for(lambda: all(f["state"] == "connected" for f in lake.health()["feeds"]), what="both feeds")
            names = [(f["feed"], tuple(f["channels"])) for f in lake.health()["feeds"]]
        finally:
            lake.stop()
    assert names == [("BINANCE", ("trades",)), ("BINANCE#2", ("l2_book",))]


def test_cryptofeed_and_lake_records_travel_the_cryptolake_nb_tree(tmp_path, sim, monkeypatch):
    """Everything the lake logs, and cryptofeed's 'feedhandler' records, reach a handler on
    'cryptolake_nb'; cryptofeed writes no log file of its own."""
    monkeypatch.chdir(tmp_path)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    package = logging.getLogger("cryptolake_nb")
    handler, level = Keep(logging.INFO), package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        with Lake(tmp_path / "lk", flush_interval=0.5, monitoring=Monitoring(interval_s=3600, show=False,
                                                                             rules=AlertRules(disk_free_bytes=2**62))) as lake:
            lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim)
            lake.start()
            logging.getLogger("feedhandler").warning("a cryptofeed warning")
            lake.check_alerts()  # disk below 4 EiB free: an alert record
            lake.stop()
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
    names = {r.name for r in seen}
    # handled by 'cryptolake_nb.cryptofeed' (the record keeps its origin's name)
    assert any(r.name == "feedhandler" and r.getMessage() == "a cryptofeed warning" for r in seen)
    assert "cryptolake_nb.alerts" in names and "cryptolake_nb.collector" in names
    assert not list(tmp_path.glob("*.log"))


def test_the_configurations_monitoring_section_reaches_the_lake(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__ALERTS__SILENT_S", "15")
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__ALERTS__WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__INTERVAL_S", "2.5")
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__PROMETHEUS__ENABLED", "true")
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__PROMETHEUS__PORT", "0")
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        assert lake.monitoring.rules == AlertRules(silent_s=15) and lake.monitoring.interval_s == 2.5
        assert lake.monitoring.webhook == "http://127.0.0.1:9/hook" and lake.alerts.summary()["hooks"] == 1
        assert lake._metrics is not None and lake._metrics.address[0] == "127.0.0.1"
    monkeypatch.setenv("CRYPTOLAKE_MONITORING__ENABLED", "false")
    with Lake(tmp_path / "lk", autoflush=False, monitoring=Monitoring(rules=AlertRules(silent_s=5))) as lake:
        assert lake.monitoring.enabled and lake.monitoring.rules.silent_s == 5  # the argument wins
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        assert lake.health_stats is None
