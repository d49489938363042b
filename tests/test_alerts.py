"""Alerts: every condition fires once per episode, clears, and fires again on a new episode; each firing
alert is a notebook warning (once), a log record at WARNING or above, and a call of every hook; a
webhook on loopback receives the JSON."""
from __future__ import annotations

import errno
import json
import logging
import subprocess
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cryptolake_nb import AlertWarning, ConfigError, Lake
from cryptolake_nb.alerts import Alert, AlertRules, Alerts, Monitor, WebhookHook
from cryptolake_nb.clock import ManualClock
from cryptolake_nb.faults import FAULTS
from cryptolake_nb.feeds import ReconnectPolicy
from cryptolake_nb.health import DiskUsage, Monitoring
from cryptolake_nb.simulator import ExchangeSimulator

import waiting
from feeding import put

T0 = 1_700_000_000.0
QUIET = 3600.0  # a monitor interval long enough that only the test evaluates


def wait_for(predicate, timeout=30.0, what="condition"):
    assert waiting.wait_for(predicate, timeout, 0.02), f"timed out after {timeout} s waiting for {what}"


class Recorder:
    """A hook that keeps every alert it is handed."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def __call__(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def of(self, kind: str) -> list[tuple[str, str, int]]:
        return [(a.state, a.subject, a.episode) for a in self.alerts if a.kind == kind]


class Disk:
    """The injected disk probe: free bytes as the test sets them."""

    def __init__(self, free: int, total: int = 100 * 2**30) -> None:
        self.free, self.total = free, total

    def __call__(self, path: Path) -> DiskUsage:
        return DiskUsage(self.total, self.total - self.free, self.free)


def trades(make_trade, n, start=0):
    return [make_trade(100, 1, T0 + (start + i) * 0.001, id=str(start + i)) for i in range(n)]


# -- one condition at a time ---------------------------------------------------------------------------------------------------
def test_buffer_near_cap_fires_once_per_episode(tmp_path, make_trade):
    hook = Recorder()
    with Lake(tmp_path / "lk", autoflush=False, memory_cap_bytes=4 * 2**20,
              monitoring=Monitoring(show=False, rules=AlertRules(buffer_fraction=0.8))) as lake:
        lake.alerts.add_hook(hook)
        put(lake, trades(make_trade, 1000))  # ~0.4 MB of the guard's 1 MB limit
        assert lake.check_alerts() == [] and hook.alerts == []
        put(lake, trades(make_trade, 2000, start=1000))  # ~1.2 MB: over 80 %
        (alert,) = lake.check_alerts()
        assert (alert.kind, alert.state, alert.episode, alert.severity) == ("buffer_near_cap", "firing", 1, "warning")
        assert alert.value >= 0.8 and alert.threshold == 0.8 and "memory guard" in alert.message
        put(lake, trades(make_trade, 500, start=3000))
        assert lake.check_alerts() == [] and len(lake.alerts.firing) == 1  # still the same episode
        lake.flush()
        (cleared,) = lake.check_alerts()
        assert (cleared.kind, cleared.state, cleared.episode) == ("buffer_near_cap", "resolved", 1)
        assert lake.check_alerts() == [] and lake.alerts.firing == []
        put(lake, trades(make_trade, 3000, start=4000))
        lake.check_alerts()
        lake.check_alerts()
    assert hook.of("buffer_near_cap") == [("firing", "", 1), ("resolved", "", 1), ("firing", "", 2)]
    assert lake.alerts.fired["buffer_near_cap"] == 2


def test_flush_failing_fires_once_per_episode(tmp_path, make_trade):
    hook = Recorder()
    with Lake(tmp_path / "lk", flush_interval=0.1, monitoring=Monitoring(interval_s=QUIET, show=False)) as lake:
        lake.alerts.add_hook(hook)
        lake._flusher.max_backoff = 0.2  # retry often: the episode ends soon after the fault clears
        try:
            for episode in (1, 2):
                failures = lake.health()["flush"]["failures"]
                FAULTS.arm("write", errno.EIO, times=10**6)
                put(lake, trades(make_trade, 10, start=episode * 100))
                wait_for(lambda: lake.health()["flush"]["failures"] >= failures + 3, what="failed flushes")
                lake.check_alerts()
                lake.check_alerts()  # more failures, same episode
                FAULTS.clear()
                wait_for(lambda: lake.health()["flush"]["last_error"] is None
                         and lake.health()["tables"]["trades"]["rows_buffered"] == 0, what="the flush to heal")
                lake.check_alerts()
        finally:
            FAULTS.clear()
    assert hook.of("flush_failing") == [("firing", "", 1), ("resolved", "", 1), ("firing", "", 2), ("resolved", "", 2)]
    firing = [a for a in hook.alerts if a.state == "firing"]
    assert all(a.severity == "critical" and "Input/output error" in a.message for a in firing)


def test_disk_nearly_full_fires_once_per_episode_by_the_injected_probe(tmp_path):
    disk, hook = Disk(free=10 * 2**30), Recorder()
    rules = AlertRules(disk_free_bytes=2**30)
    with Lake(tmp_path / "lk", autoflush=False, monitoring=Monitoring(show=False, rules=rules, disk=disk)) as lake:
        lake.alerts.add_hook(hook)
        for free in (5 * 2**30, 2**30, 2**30 - 1, 100, 2**20, 2**30, 2 * 2**30, 50 * 2**20, 0, 40 * 2**30):
            disk.free = free
            lake.check_alerts()
        assert lake.health()["disk"]["free_bytes"] == 40 * 2**30
    assert hook.of("disk_nearly_full") == [("firing", "", 1), ("resolved", "", 1), ("firing", "", 2), ("resolved", "", 2)]
    first = hook.alerts[0]
    assert first.value == 2**30 - 1 and first.threshold == 2**30 and "MiB free" in first.message


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs and needs root: {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_nearly_full_on_a_real_small_filesystem(small_fs):
    """A 4 MiB tmpfs: the real statvfs probe sees it fill up and free again."""
    hook = Recorder()
    with Lake(small_fs / "lk", autoflush=False,
              monitoring=Monitoring(show=False, rules=AlertRules(disk_free_bytes=2 * 2**20))) as lake:
        lake.alerts.add_hook(hook)
        assert lake.check_alerts() == [] and lake.health()["disk"]["free_bytes"] > 3 * 2**20
        filler = small_fs / "filler"
        for episode in (1, 2):
            filler.write_bytes(b"\0" * (3 * 2**20))  # leaves less than 1 MiB free
            lake.check_alerts()
            lake.check_alerts()
            assert lake.health()["disk"]["free_bytes"] < 2**20
            filler.unlink()
            lake.check_alerts()
    assert hook.of("disk_nearly_full") == [("firing", "", 1), ("resolved", "", 1), ("firing", "", 2), ("resolved", "", 2)]


@pytest.fixture
def sim():
    with ExchangeSimulator(("BTC-USDT",), rate=200, seed=5, trade_share=1.0) as s:
        yield s


def frames_settled(lake: Lake, quiet_s: float = 0.4) -> None:
    """Wait until the feed has received no frame for `quiet_s` of real time."""
    def still() -> bool:
        before = lake.feed_health[0].frames
        time.sleep(quiet_s)
        return lake.feed_health[0].frames == before
    wait_for(still, what="the frames to stop")


def test_feed_silent_by_the_injected_clock(tmp_path, sim):
    clock, hook = ManualClock(), Recorder()
    monitoring = Monitoring(interval_s=QUIET, show=False, rules=AlertRules(silent_s=30))
    with Lake(tmp_path / "lk", clock=clock, monitoring=monitoring) as lake:
        lake.alerts.add_hook(hook)
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim, reconnect=ReconnectPolicy(watchdog_s=None))
        lake.start()
        try:
            wait_for(lambda: lake.feed_health[0].frames >= 10, what="frames")
            lake.check_alerts()
            seen = lake.feed_health[0].frames
            clock.advance(31)
            # frames keep arriving: 31 s by the clock, but never silent
            wait_for(lambda: lake.feed_health[0].frames > seen, what="a frame after the clock moved")
            assert lake.check_alerts() == []
            for episode in (1, 2):
                sim.silence(600)
                frames_settled(lake)
                lake.check_alerts()  # sees the last frames: the silence starts now by the clock
                clock.advance(29)
                assert lake.check_alerts() == []
                clock.advance(2)
                (alert,) = lake.check_alerts()
                assert (alert.kind, alert.subject, alert.state, alert.episode) == ("feed_silent", "BINANCE", "firing", episode)
                assert alert.value == pytest.approx(31) and "no message for 31 s" in alert.message
                assert lake.health()["feeds"][0]["gap_open"] == "silent" and lake.health()["gaps"]["open"] == 1
                clock.advance(100)
                assert lake.check_alerts() == []  # the same episode
                sim.silence(0)
                frames = lake.feed_health[0].frames
                wait_for(lambda: lake.feed_health[0].frames > frames, what="frames again")
                (cleared,) = lake.check_alerts()
                assert (cleared.kind, cleared.state, cleared.episode) == ("feed_silent", "resolved", episode)
        finally:
            lake.stop()
        assert lake.check_alerts() == []  # a stopped feed is not silent
    assert hook.of("feed_silent") == [("firing", "BINANCE", 1), ("resolved", "BINANCE", 1),
                                      ("firing", "BINANCE", 2), ("resolved", "BINANCE", 2)]


def test_retries_exhausted_fire_once_per_failure(tmp_path, sim):
    hook = Recorder()
    policy = ReconnectPolicy(initial_delay=0.05, max_delay=0.1, watchdog_s=None)
    with Lake(tmp_path / "lk", flush_interval=0.5, monitoring=Monitoring(interval_s=QUIET, show=False)) as lake:
        lake.alerts.add_hook(hook)
        lake.subscribe("BINANCE", ["BTC-USDT"], ["trades"], simulator=sim, retries=1, reconnect=policy)
        for episode in (1, 2):
            lake.start()
            try:
                wait_for(lambda: lake.health()["feeds"][0]["state"] == "connected", what="a connection")
                resolved = [(a.kind, a.state, a.episode) for a in lake.check_alerts()]
                assert resolved == ([] if episode == 1 else [("feed_failed", "resolved", 1)])  # the restart ended it
                sim.stop()
                wait_for(lambda: lake.health()["feeds"][0]["state"] == "failed", what="the feed to fail")
                (alert,) = lake.check_alerts()
                assert (alert.kind, alert.subject, alert.severity) == ("feed_failed", "BINANCE", "critical")
                assert "gave up reconnecting" in alert.message and "retries exhausted" in alert.message
                assert lake.check_alerts() == []
            finally:
                lake.stop()
                sim.start()
    assert hook.of("feed_failed") == [("firing", "BINANCE", 1), ("resolved", "BINANCE", 1), ("firing", "BINANCE", 2)]
    assert hook.of("feed_silent") == []


def test_a_collector_that_cannot_start_fires_feed_failed(tmp_path, sim):
    hook = Recorder()
    with Lake(tmp_path / "lk", monitoring=Monitoring(interval_s=QUIET, show=False)) as lake:
        lake.alerts.add_hook(hook)
        lake.subscribe("BINANCE", ["NOPE-USDT"], ["trades"], simulator=sim)  # the simulator lists no such symbol
        lake.start()
        wait_for(lambda: lake.health()["collector"]["state"] == "failed", what="the collector to fail")
        lake.check_alerts()
        lake.check_alerts()
    assert hook.of("feed_failed") == [("firing", "collector", 1)]
    assert "the collector failed" in hook.alerts[0].message


# -- delivery: notebook warning, log record, hooks, webhook --------------------------------------------------------------------
def test_each_firing_alert_is_one_warning_and_one_log_record(tmp_path, caplog):
    disk = Disk(free=0)
    with Lake(tmp_path / "lk", autoflush=False, monitoring=Monitoring(disk=disk)) as lake:
        with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.INFO, "cryptolake_nb"):
            warnings.simplefilter("default")  # Python's default: a repeated text at one place shows once ...
            for free in (0, 0, 0, 2**40, 0, 0, 2**40):
                disk.free = free
                lake.check_alerts()
    texts = [str(w.message) for w in shown if issubclass(w.category, AlertWarning)]
    assert len(shown) == len(texts) == 2 and texts[0] == texts[1]  # ... but each episode shows again
    assert texts[0].startswith("cryptolake alert (disk_nearly_full): 0.0 MiB free")
    records = [r for r in caplog.records if r.name == "cryptolake_nb.alerts"]
    assert [(r.levelname, r.getMessage().split(":")[0]) for r in records] == [
        ("WARNING", "cryptolake alert (disk_nearly_full)"), ("INFO", "cryptolake alert resolved (disk_nearly_full)")] * 2


def test_critical_alerts_log_at_error_and_a_failing_hook_does_not_stop_the_others(caplog):
    good = Recorder()

    def broken(alert: Alert) -> None:
        raise RuntimeError("hook bug")

    alerts = Alerts(show=False, hooks=(broken, good))
    report = {"at_ns": 5, "flush": {"last_error": "disk on fire", "failures": 3}}
    with caplog.at_level(logging.WARNING, "cryptolake_nb"):
        (alert,) = alerts.evaluate(report)
    assert good.alerts == [alert] and alert.value == 3
    levels = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "cryptolake_nb.alerts"]
    assert levels[0] == ("ERROR", "cryptolake alert (flush_failing): flushing to Parquet fails, rows stay in memory "
                                  "and it retries: disk on fire")
    assert any("hook" in m and "failed" in m for _, m in levels)
    with pytest.raises(ConfigError):
        alerts.add_hook(42)  # type: ignore[arg-type]
    alerts.remove_hook(good)
    alerts.evaluate({"at_ns": 6_000_000_005})
    assert len(good.alerts) == 1  # removed: no resolution delivered
    assert alerts.history[-1].state == "resolved" and alerts.history[-1].message.startswith("cleared after 6.0 s")


class Webhook:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/lake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    w = Webhook()
    yield w
    w.close()


def test_a_webhook_receives_each_transition_as_json(tmp_path, webhook):
    disk = Disk(free=0)
    monitoring = Monitoring(show=False, disk=disk, webhook=webhook.url)  # as the configuration will give it
    with Lake(tmp_path / "lk", autoflush=False, monitoring=monitoring) as lake:
        for free in (0, 0, 2**40, 2**40, 0):
            disk.free = free
            lake.check_alerts()
        (hook,) = [h for h in lake.alerts._hooks if isinstance(h, WebhookHook)]
        hook.join()
        assert hook.sent == 3 and hook.failed == 0
    bodies = [b for _, _, b in webhook.received]
    assert [(b["kind"], b["state"], b["episode"]) for b in bodies] == [
        ("disk_nearly_full", "firing", 1), ("disk_nearly_full", "resolved", 1), ("disk_nearly_full", "firing", 2)]
    assert {p for p, _, _ in webhook.received} == {"/hooks/lake"}
    assert {t for _, t, _ in webhook.received} == {"application/json"}
    assert bodies[0]["root"] == str(lake.root) and bodies[0]["severity"] == "warning" and bodies[0]["value"] == 0
    assert set(bodies[0]) == {"kind", "subject", "state", "severity", "message", "at_ns", "episode", "value",
                              "threshold", "root"}


def test_an_unreachable_webhook_is_logged_not_raised(tmp_path, caplog):
    webhook = Webhook()
    url = webhook.url.replace("http://", "http://user:secret@")
    webhook.close()  # nobody listens there any more
    hook = WebhookHook(url, timeout=2.0)
    alerts = Alerts(show=False, hooks=(hook,))
    with caplog.at_level(logging.WARNING, "cryptolake_nb"):
        alerts.evaluate({"at_ns": 1, "flush": {"last_error": "x"}})
        hook.join()
    alerts.close()
    assert hook.failed == 1 and hook.sent == 0
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "could not POST alert flush_failing" in text and "secret" not in text and "secret" not in repr(hook)
    with pytest.raises(ConfigError, match="http"):
        WebhookHook("ftp://127.0.0.1/x")


def test_the_monitor_thread_evaluates_on_its_own(tmp_path):
    disk, hook = Disk(free=10 * 2**30), Recorder()
    with Lake(tmp_path / "lk", monitoring=Monitoring(interval_s=0.05, show=False, disk=disk)) as lake:
        lake.alerts.add_hook(hook)
        assert lake._monitor.running
        disk.free = 0
        wait_for(lambda: hook.of("disk_nearly_full") == [("firing", "", 1)], 10, "the monitor to fire")
        time.sleep(0.3)  # several more rounds: still one alert
        assert hook.of("disk_nearly_full") == [("firing", "", 1)]
        disk.free = 10 * 2**30
        wait_for(lambda: len(hook.of("disk_nearly_full")) == 2, 10, "the monitor to resolve")
    assert not lake._monitor.running
    with pytest.raises(ConfigError):
        Monitor(lambda: None, interval_s=0)


def test_no_monitor_thread_when_monitoring_is_off_or_the_lake_is_read_only(tmp_path):
    with Lake(tmp_path / "lk", monitoring=False) as lake:
        assert not lake._monitor.running and lake.health_stats is None
    with Lake(tmp_path / "lk") as writer:
        assert writer._monitor.running
        with Lake(tmp_path / "lk", read_only=True) as reader:
            assert not reader._monitor.running and reader.health()["disk"]["free_bytes"] > 0
