"""The whole path: simulator -> cryptofeed in the collector thread -> lake -> DuckDB, and the kernel story."""
from __future__ import annotations

import threading
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell

from cryptolake_nb import CollectorError, ConfigError, Lake, SymbolError, TradeLake
from cryptolake_nb.simulator import ExchangeSimulator

import waiting


def wait_for(predicate, timeout=30.0, what="condition"):
    assert waiting.wait_for(predicate, timeout, 0.05), f"timed out after {timeout} s waiting for {what}"


def count(lake):
    return lake.sql("SELECT count(*) AS n FROM trades")["n"][0]


@pytest.fixture
def sim():
    with ExchangeSimulator(("BTC-USDT", "ETH-USDT"), rate=400, seed=3) as s:
        yield s


def collector_threads():
    return [t for t in threading.enumerate() if t.name.startswith("cryptolake-collector") and t.is_alive()]


def test_collect_query_flush_stop_restart(tmp_path, sim):
    with Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT", "ETH-USDT"], channels=["trades"], simulator=sim)
        lake.start()
        assert lake.status()["collector"]["state"] in ("starting", "running")
        wait_for(lambda: count(lake) >= 50, what="50 trades")
        wait_for(lambda: lake.status()["tables"]["trades"]["files"] >= 1, what="an age flush")
        assert lake.vwap("BTC-USDT", exchange="BINANCE") > 0
        with pytest.raises(CollectorError):
            lake.start()
        t = time.monotonic()
        lake.stop()
        assert time.monotonic() - t < 5.0
        assert lake.status()["tables"]["trades"]["buffer_rows"] == 0
        n = count(lake)
        time.sleep(0.5)
        assert count(lake) == n, "rows arrived after stop()"
        assert not collector_threads()
        lake.start()  # start/stop/start
        wait_for(lambda: count(lake) > n + 20, what="trades after restart")
        lake.stop()
        ids = lake.sql("SELECT symbol, trade_id, count(*) AS c FROM trades GROUP BY ALL HAVING c > 1")
        assert ids.empty, "a trade was stored twice"
    assert not collector_threads()


def test_the_callbacks_work_in_a_users_own_feedhandler(tmp_path, sim):
    from cryptofeed.defines import TRADES

    from cryptolake_nb.collector import Collector
    from cryptolake_nb.feeds import FeedSpec, build_feed

    with Lake(tmp_path / "lk", autoflush=False) as lake:
        spec = FeedSpec("BINANCE", ("BTC-USDT",), (TRADES,), simulator=sim)
        col = Collector(lambda: [build_feed(spec, {TRADES: TradeLake(lake)})])
        col.start()
        try:
            wait_for(lambda: count(lake) >= 10, what="10 trades")
        finally:
            col.stop()
        assert set(lake.sql("SELECT DISTINCT exchange, symbol FROM trades").itertuples(index=False)) == {("BINANCE", "BTC-USDT")}


def test_a_bad_symbol_is_visible_in_status_and_the_log_not_in_cells(tmp_path, sim, caplog, capsys):
    with Lake(tmp_path / "lk") as lake:
        lake.subscribe("BINANCE", ["NOPE-USDT"], channels=["trades"], simulator=sim)
        try:
            lake.start()
        except CollectorError:
            pass
        wait_for(lambda: lake.status()["collector"]["errors"], what="the error in status")
        status = lake.status()["collector"]
        assert status["state"] == "failed" and "NOPE-USDT" in " ".join(status["errors"])
        lake.stop()
    assert any("NOPE-USDT" in r.getMessage() for r in caplog.records)
    out = capsys.readouterr()
    assert "NOPE-USDT" not in out.out + out.err


def test_subscribe_validates(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        with pytest.raises(ConfigError, match="NOTANEXCHANGE"):
            lake.subscribe("NOTANEXCHANGE", ["BTC-USDT"])
        with pytest.raises(ConfigError, match="channel"):
            lake.subscribe("BINANCE", ["BTC-USDT"], channels=["no_such_channel"])
        with pytest.raises(SymbolError, match="control character"):
            lake.subscribe("BINANCE", ["BTC\x00USD"])
        with pytest.raises(ConfigError, match="subscribe"):
            lake.start()


def test_reload_ext_leaves_no_second_thread(tmp_path, monkeypatch, sim):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb"))
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    try:
        ip.run_cell("%load_ext cryptolake_nb").raise_error()
        ip.user_ns["sim"] = sim
        ip.run_cell("lake.subscribe('BINANCE', ['BTC-USDT'], channels=['trades'], simulator=sim); lake.start()").raise_error()
        wait_for(lambda: len(collector_threads()) == 1, what="the collector thread")
        first = ip.user_ns["lake"]
        ip.run_cell("%reload_ext cryptolake_nb").raise_error()
        assert first.closed and len(collector_threads()) == 0
        ip.run_cell("lake.subscribe('BINANCE', ['BTC-USDT'], channels=['trades'], simulator=sim); lake.start()").raise_error()
        wait_for(lambda: len(collector_threads()) == 1, what="one collector thread")
        time.sleep(0.3)
        assert len(collector_threads()) == 1
        wait_for(lambda: ip.user_ns["lake"].sql("SELECT count(*) AS n FROM trades")["n"][0] > 0, what="rows")
        ip.run_cell("%unload_ext cryptolake_nb").raise_error()
        assert not collector_threads()
    finally:
        InteractiveShell.clear_instance()
