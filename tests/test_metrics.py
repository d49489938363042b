"""The Prometheus endpoint: scraped over loopback with urllib, parsed with the reference parser, values
equal to lake.health(); loopback by default, stopped by close(); label values escaped."""
from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from prometheus_client.parser import text_string_to_metric_families

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.alerts import Alerts
from cryptolake_nb.health import Monitoring
from cryptolake_nb.metrics import CONTENT_TYPE, MetricsServer, render
from cryptolake_nb.simulator import ExchangeSimulator

import waiting
from feeding import put

T0 = 1_700_000_000.0


def scrape(address: tuple[str, int], path: str = "/metrics") -> tuple[str, str]:
    host, port = address
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} through prometheus_client's parser (it rejects malformed text)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_scrape_parses_and_matches_health(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, memory_cap_bytes=64 * 2**20) as lake:
        put(lake, [make_trade(100, 1, T0 + i, id=str(i)) for i in range(5)])
        lake.flush()
        put(lake, [make_trade(101, 1, T0 + 10 + i, id=str(10 + i)) for i in range(3)])  # ids 5..9 missing
        lake.sql("SELECT count(*) FROM trades")  # seals them (they stay buffered): the hole is seen
        lake.sequences.flush()
        address = lake.serve_metrics()
        assert address[0] == "127.0.0.1" and address[1] > 0  # loopback, any free port
        content_type, text = scrape(address)
        health = lake.health()
    assert content_type == CONTENT_TYPE
    got = samples(text)
    assert got[("cryptolake_rows_buffered", (("table", "trades"),))] == health["tables"]["trades"]["rows_buffered"] == 3
    assert got[("cryptolake_rows_buffered", (("table", "l2_book"),))] == 0
    assert got[("cryptolake_files", (("table", "trades"),))] == 1
    assert got[("cryptolake_file_bytes", (("table", "trades"),))] == health["tables"]["trades"]["bytes"] > 0
    assert got[("cryptolake_rows_committed", (("table", "trades"),))] == 5
    assert got[("cryptolake_memory_cap_bytes", ())] == 64 * 2**20
    assert got[("cryptolake_memory_limit_bytes", ())] == health["memory"]["limit_bytes"]
    assert got[("cryptolake_flushes_total", ())] == 1 and got[("cryptolake_rows_flushed_total", ())] == 5
    assert got[("cryptolake_flush_last_seconds", ())] == health["flush"]["last_s"]
    assert got[("cryptolake_flush_seconds", (("quantile", "0.99"),))] == health["flush"]["p99_s"]
    assert got[("cryptolake_flush_failing", ())] == 0
    assert got[("cryptolake_gaps_total", (("cause", "sequence_break"),))] == 1
    assert got[("cryptolake_gaps_open", ())] == 0
    assert got[("cryptolake_disk_total_bytes", ())] == health["disk"]["total_bytes"]
    assert got[("cryptolake_collector_state", (("state", "stopped"),))] == 1
    assert got[("cryptolake_alerts_firing", (("alert", "disk_nearly_full"),))] == 0
    assert got[("cryptolake_up", ())] == 1
    kinds = families(text)  # the parser strips _total from counter family names
    assert kinds["cryptolake_flushes"] == "counter" and kinds["cryptolake_rows_buffered"] == "gauge"


def test_feed_metrics_with_a_live_collector(tmp_path):
    with ExchangeSimulator(("BTC-USDT",), rate=300, seed=2, trade_share=1.0) as sim, \
            Lake(tmp_path / "lk", flush_interval=0.5) as lake:
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim)
        lake.start()
        address = lake.serve_metrics()
        assert waiting.wait_for(lambda: samples(scrape(address)[1]).get(
            ("cryptolake_messages_total", (("channel", "trades"), ("feed", "BINANCE"))), 0) >= 30, 30)
        got = samples(scrape(address)[1])
        health = lake.health()
        lake.stop()
    feed = (("feed", "BINANCE"),)
    trades = (("channel", "trades"), ("feed", "BINANCE"))
    assert got[("cryptolake_feed_state", feed + (("state", "connected"),))] == 1
    assert got[("cryptolake_feed_state", feed + (("state", "failed"),))] == 0
    assert 30 <= got[("cryptolake_messages_total", trades)] <= health["feeds"][0]["channels"]["trades"]["messages"]
    assert got[("cryptolake_messages_per_second", trades)] > 0
    p50 = got[("cryptolake_lag_seconds", trades + (("quantile", "0.5"),))]
    assert 0 <= p50 <= got[("cryptolake_lag_seconds", trades + (("quantile", "1"),))] < 5
    assert got[("cryptolake_feed_frames_total", feed)] >= 30 and got[("cryptolake_feed_reconnects_total", feed)] == 0
    assert got[("cryptolake_collector_state", (("state", "running"),))] == 1


def test_the_endpoint_stops_on_close_and_frees_its_port(tmp_path):
    lake = Lake(tmp_path / "lk", autoflush=False)
    address = lake.serve_metrics()
    assert lake.serve_metrics() == address == lake.serve_metrics(address[1])  # already serving: same address
    with pytest.raises(ConfigError, match="already served"):
        lake.serve_metrics(address[1] + 1 if address[1] < 65535 else 1)
    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(address, "/other")
    assert err.value.code == 404
    lake.close()
    with pytest.raises(urllib.error.URLError):
        scrape(address)
    with Lake(tmp_path / "lk", autoflush=False) as again:  # the port is free again: a restart can take it
        assert again.serve_metrics(address[1]) == address and "cryptolake_up 1" in scrape(address)[1]


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken, Lake(tmp_path / "lk", autoflush=False) as lake:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="could not serve metrics on 127.0.0.1"):
            lake.serve_metrics(taken.getsockname()[1])
        assert lake._metrics is None
        with pytest.raises(ConfigError, match="port"):
            MetricsServer(lambda: "", port=70000)


def test_metrics_from_the_configuration_are_served_at_open(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monitoring = Monitoring.from_config({"prometheus": {"enabled": True, "port": port}})
    with Lake(tmp_path / "lk", autoflush=False, monitoring=monitoring) as lake:
        assert lake._metrics is not None and lake._metrics.address == ("127.0.0.1", port)
        assert "cryptolake_up 1" in scrape(("127.0.0.1", port))[1]


def test_a_failing_collection_is_a_500_and_the_server_goes_on():
    calls = []

    def collect() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return "cryptolake_up 1\n"

    server = MetricsServer(collect)
    address = server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            scrape(address)
        assert err.value.code == 500
        assert scrape(address)[1] == "cryptolake_up 1\n" and server.scrapes == 2
    finally:
        server.stop()


def test_label_values_are_escaped_and_alerts_counted():
    alerts = Alerts(show=False)
    alerts.evaluate({"at_ns": 1, "disk": {"free_bytes": 0, "path": "/x"}})
    report = {
        "collector": {"state": "running"},
        "feeds": [{"feed": 'EX"1\\\n', "state": "connected", "frames": 3, "connections": 1, "reconnects": 0,
                   "failures": 0, "watchdog_trips": 0, "malformed": 0, "idle_s": 0.5,
                   "channels": {"trades": {"messages": 7, "messages_per_s": 1.5, "lag_p50_s": 0.01, "lag_p99_s": None,
                                           "lag_max_s": 0.02, "last_message_age_s": 0.1}}}],
        "disk": {"free_bytes": 0, "total_bytes": 10},
    }
    text = render(report, alerts.summary())
    assert 'feed="EX\\"1\\\\\\n"' in text
    got = samples(text)
    key = (("channel", "trades"), ("feed", 'EX"1\\\n'))
    assert got[("cryptolake_messages_total", key)] == 7
    assert ("cryptolake_lag_seconds", key + (("quantile", "0.99"),)) not in got  # unknown: no sample
    assert got[("cryptolake_alerts_firing", (("alert", "disk_nearly_full"),))] == 1
    assert got[("cryptolake_alerts_total", (("alert", "disk_nearly_full"),))] == 1


def test_lake_magic_serves_and_stops_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb-lake"))
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext cryptolake_nb").raise_error()
        lake = shell.user_ns["lake"]
        text = shell.run_line_magic("lake", "metrics")
        assert text.startswith("metrics at http://127.0.0.1:") and text.endswith("/metrics")
        host, port = lake._metrics.address
        assert samples(scrape((host, port))[1])[("cryptolake_rows_buffered", (("table", "trades"),))] == 0
        assert shell.run_line_magic("lake", "metrics stop") == "metrics stopped" and lake._metrics is None
        with pytest.raises(UsageError, match="usage"):
            shell.run_line_magic("lake", "metrics nine")
        health = shell.run_line_magic("lake", "health")
        assert health["disk"]["free_bytes"] > 0 and "lake health" in health._repr_html_()
        shell.run_line_magic("lake", "metrics")
    finally:
        shell.run_cell("%unload_ext cryptolake_nb")
    assert lake.closed and lake._metrics is None  # unloading closed the lake, and the endpoint with it


def test_a_taken_configured_port_fails_the_open_cleanly_and_readers_never_serve(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monitoring = Monitoring.from_config({"prometheus": {"enabled": True, "port": taken.getsockname()[1]},
                                             "alerts": {"webhook_url": "http://127.0.0.1:9/hook"}})
        webhooks = threading.active_count()
        with pytest.raises(ConfigError, match="could not serve metrics"):
            Lake(tmp_path / "lk", monitoring=monitoring)
        assert waiting.wait_for(lambda: threading.active_count() == webhooks, 5)  # its webhook thread ended
        with Lake(tmp_path / "lk") as writer:  # nothing left behind: the writer lock is free
            assert writer._metrics is None
            with Lake(tmp_path / "lk", read_only=True, monitoring=monitoring) as reader:
                assert reader._metrics is None  # a reader beside the collector does not take its port
                assert reader.alerts.summary()["hooks"] == 0
