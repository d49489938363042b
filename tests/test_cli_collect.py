"""`cryptolake collect` as a real subprocess against the loopback simulator, read meanwhile by other
processes; SIGTERM/SIGINT flush and exit 0 with every acknowledged row stored exactly once."""
from __future__ import annotations

import json
import re
import signal
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from cryptolake_nb import Lake
from cryptolake_nb.simulator import ExchangeSimulator

import clirun
import waiting

pytestmark = pytest.mark.slow

SYMBOLS = ("BTC-USDT", "ETH-USDT")


def wait_for(predicate, timeout=30.0, what="condition"):
    assert waiting.wait_for(predicate, timeout, 0.05), f"timed out after {timeout} s waiting for {what}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return clirun.cli_env(tmp_path_factory.mktemp("guard"))


@pytest.fixture
def sim():
    with ExchangeSimulator(SYMBOLS, rate=300, seed=11) as s:
        yield s


def write_config(where: Path, url: str, ca_pem: bytes, channels=("trades",), extra: str = "", **lake) -> Path:
    (where / "ca.pem").write_bytes(ca_pem)
    settings = {"root": "lk", "flush_interval": 0.3, **lake}
    lines = ["lake:", *(f"  {k}: {json.dumps(v)}" for k, v in settings.items()),
             "feeds:",
             "  - exchange: BINANCE",
             f"    symbols: {json.dumps(list(SYMBOLS))}",
             f"    channels: {json.dumps(list(channels))}",
             "    retries: -1",
             f"    simulator: {{url: {json.dumps(url)}, ca_file: ca.pem}}", extra]
    path = where / "collector.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Running:
    """A `cryptolake collect` child; its stdout JSON lines are read on a thread as they come."""

    def __init__(self, args, env, cwd: Path) -> None:
        self.stderr_path = cwd / "collect.stderr"
        self.proc = clirun.start(["collect", *args], env, cwd, self.stderr_path)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def events(self, name: str) -> list[dict]:
        return [line for line in list(self.lines) if line["event"] == name]

    def wait_event(self, name: str, timeout: float = 30.0) -> dict:
        wait_for(lambda: self.events(name) or self.proc.poll() is not None, timeout, f"a {name!r} line")
        assert self.events(name), f"collect exited ({self.proc.returncode}) without {name!r}: {self.stderr}"
        return self.events(name)[-1]

    def stop(self, sig: int, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def collectors():
    started: list[Running] = []
    yield started
    for c in started:
        c.kill()


def trade_count(lake: Lake) -> int:
    return int(lake.sql("SELECT count(*) AS n FROM trades")["n"][0])


def assert_exactly_once_without_holes(root: Path, expected: int) -> None:
    """Every trade once, and per symbol the simulator's consecutive ids with none missing."""
    with Lake(root, read_only=True) as lake:
        per = lake.sql("SELECT symbol, count(*) AS n, count(DISTINCT trade_id) AS d, "
                       "max(trade_id::BIGINT) - min(trade_id::BIGINT) + 1 AS span FROM trades GROUP BY symbol")
    assert set(per["symbol"]) == set(SYMBOLS)
    assert int(per["n"].sum()) == expected, per
    assert (per["n"] == per["d"]).all(), f"a trade was stored twice: {per}"
    assert (per["n"] == per["span"]).all(), f"trade ids are missing: {per}"


def test_sigterm_flushes_and_exits_0_while_other_processes_read(env, tmp_path, sim, collectors):
    config = write_config(tmp_path, sim.rest_url, sim.ca_pem,
                          extra="monitoring: {prometheus: {enabled: true, host: 127.0.0.1, port: 0}}")
    col = Running(["--config", config, "--status-every", "0.3"], env, tmp_path)
    collectors.append(col)
    started = col.wait_event("started")
    assert started["pid"] == col.proc.pid and started["root"] == str((tmp_path / "lk").resolve())
    assert started["feeds"] == ["BINANCE(sim) trades BTC-USDT,ETH-USDT"]
    metrics_url = started["metrics_url"]
    assert metrics_url.startswith("http://127.0.0.1:") and metrics_url.endswith("/metrics")

    # a notebook's view: the same lake read-only, following the collector's commits
    with Lake(tmp_path / "lk", read_only=True) as reader:
        wait_for(lambda: trade_count(reader) > 0, what="committed trades seen by a reader")
        first = trade_count(reader)
        wait_for(lambda: trade_count(reader) > first + 20, what="the reader's count to grow")

        query = clirun.run(["--root", "lk", "sql", "-f", "json", "SELECT count(*) AS n FROM trades"], env, tmp_path)
        assert query.returncode == 0, query.stderr
        assert json.loads(query.stdout)[0]["n"] > first

        status = clirun.run(["--root", "lk", "status", "-f", "json"], env, tmp_path)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["writer"] == {"pid": col.proc.pid, "running": True}
        assert report["collector"]["pid"] == col.proc.pid and report["collector"]["report"]["collector"] == "running"
        assert report["collector"]["age_s"] < 10

        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(metrics_url, timeout=10) as response:
            metrics = response.read().decode()
        assert re.search(r'^cryptolake_rows_committed\{[^}]*table="trades"[^}]*\} [1-9]', metrics, re.M), metrics[:2000]

        locked = clirun.run(["--root", "lk", "compact"], env, tmp_path)
        assert locked.returncode == 1
        assert "already open for writing" in locked.stderr and "stop the collector" in locked.stderr
        assert "Traceback" not in locked.stderr

        wait_for(lambda: col.events("progress") and col.events("progress")[-1]["received"].get("trades", 0) > 0,
                 what="a progress line with trades")
        acknowledged = col.events("progress")[-1]["received"]["trades"]
        assert col.stop(signal.SIGTERM) == 0, col.stderr
        stopped = col.events("stopped")[-1]
        assert stopped["reason"] == "SIGTERM" and stopped["exit"] == 0 and stopped["unflushed"] == 0
        total = stopped["received"]["trades"]
        assert stopped["committed"]["trades"] == total >= acknowledged
        assert trade_count(reader) == total  # the open reader follows the last commit too
    assert_exactly_once_without_holes(tmp_path / "lk", total)
    assert sim.trades_sent >= total
    assert "Traceback" not in col.stderr and "stopped cleanly" in col.stderr
    after = clirun.run(["--root", "lk", "status", "-f", "json"], env, tmp_path)
    assert json.loads(after.stdout)["writer"]["running"] is False
    assert json.loads(after.stdout)["collector"]["report"]["event"] == "stopped"


def test_sigint_with_the_simulator_in_its_own_process(env, tmp_path, collectors):
    sim = clirun.start(["simulate", "--ca-file", "ca.pem", "--rate", "300", "--symbols", *SYMBOLS],
                       env, tmp_path, tmp_path / "simulate.stderr")
    try:
        hello = json.loads(sim.stdout.readline())
        assert hello["event"] == "listening" and hello["url"].startswith("https://127.0.0.1:")
        config = write_config(tmp_path, hello["url"], (tmp_path / "ca.pem").read_bytes(),
                              channels=("trades", "l2_book"), durability="strict")
        col = Running(["--config", config, "--status-every", "0.5"], env, tmp_path)
        collectors.append(col)
        col.wait_event("started")
        wait_for(lambda: col.events("progress") and col.events("progress")[-1]["committed"].get("trades", 0) > 30,
                 what="30 committed trades")
        assert col.stop(signal.SIGINT) == 0, col.stderr
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(30) == 0
    assert json.loads(sim.stdout.readline())["event"] == "stopped"
    stopped = col.events("stopped")[-1]
    assert stopped["reason"] == "SIGINT" and stopped["exit"] == 0 and stopped["unflushed"] == 0
    assert stopped["committed"]["trades"] == stopped["received"]["trades"]
    assert stopped["book_updates"]["l2_book"] > 0 and stopped["committed"]["l2_book"] > 0
    assert_exactly_once_without_holes(tmp_path / "lk", stopped["received"]["trades"])
    verify = clirun.run(["--root", "lk", "verify", "-f", "json"], env, tmp_path)
    assert verify.returncode == 0 and json.loads(verify.stdout)["damaged"] == 0


def test_a_restart_continues_the_same_lake(env, tmp_path, sim, collectors):
    config = write_config(tmp_path, sim.rest_url, sim.ca_pem)
    totals = []
    for run in range(2):
        col = Running(["--config", config, "--status-every", "0.3"], env, tmp_path)
        collectors.append(col)
        col.wait_event("started")
        wait_for(lambda: col.events("progress") and col.events("progress")[-1]["committed"].get("trades", 0) > 20,
                 what="20 committed trades")
        assert col.stop(signal.SIGTERM) == 0, col.stderr
        totals.append(col.events("stopped")[-1]["committed"]["trades"])
    with Lake(tmp_path / "lk", read_only=True) as lake:
        assert trade_count(lake) == sum(totals)
        assert lake.sql("SELECT count(*) AS n FROM (SELECT symbol, trade_id FROM trades GROUP BY ALL "
                        "HAVING count(*) > 1)")["n"][0] == 0


def test_an_unreachable_simulator_fails_the_run_with_exit_1(env, tmp_path, sim, collectors):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write_config(tmp_path, f"https://127.0.0.1:{port}", sim.ca_pem)
    col = Running(["--config", config], env, tmp_path)
    collectors.append(col)
    assert col.proc.wait(60) == 1
    col._reader.join(10)
    stopped = col.events("stopped")[-1]
    assert stopped["exit"] == 1 and stopped["reason"] == "failed"
    errors = [line for line in col.stderr.splitlines() if line.startswith("cryptolake: error:")]
    assert len(errors) == 1 and "the collector failed" in errors[0] and "cannot be reached" in errors[0], col.stderr
    assert "Traceback" not in col.stderr.split("cryptolake: error:")[-1]
