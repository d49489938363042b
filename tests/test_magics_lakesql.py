"""%%lakesql options in an in-process shell: --live/--history, --explain, --time, --plot, --every/--for,
and the one-line usage errors. (Refreshing in a real kernel: test_magics_kernel.py.)"""
from __future__ import annotations

import base64
import re

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from cryptolake_nb.explain import QueryPlan
from cryptolake_nb.lakesql import CellRequest, parse_duration, watch
from cryptolake_nb import ConfigError
from feeding import put

T0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC


@pytest.fixture
def ip(tmp_path, monkeypatch, make_trade):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb-lake"))
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext cryptolake_nb").raise_error()
    lake = shell.user_ns["lake"]
    put(lake, [make_trade(100 + i, 1, T0 + i * 3600, symbol=s) for i in range(48) for s in ("BTC-USDT", "ETH-USDT")])
    lake.flush()  # 2 symbols x 2 days committed
    put(lake, [make_trade(90, 1, T0 + 3 * 86_400, symbol="BTC-USDT", id="live")])  # one live row
    yield shell
    shell.run_cell("%unload_ext cryptolake_nb")
    InteractiveShell.clear_instance()


def png(output):
    """True when a captured output is a PNG image (bytes, or base64 text as a kernel sends it)."""
    data = output.data["image/png"]
    return (data if isinstance(data, bytes) else base64.b64decode(data))[:4] == b"\x89PNG"


def cell(shell, code):
    with capture_output() as cap:
        result = shell.run_cell(code)
    return result, cap


def ok(shell, code):
    result, cap = cell(shell, code)
    result.raise_error()
    return result.result, cap


def test_live_and_history_restrict_every_table(ip):
    both, _ = ok(ip, "%%lakesql\nSELECT count(*) AS n FROM trades")
    history, _ = ok(ip, "%%lakesql --history\nSELECT count(*) AS n FROM trades")
    live, _ = ok(ip, "%%lakesql --live -o only_live\nSELECT count(*) AS n, min(trade_id) AS id FROM trades")
    assert (both["n"][0], history["n"][0], live["n"][0]) == (97, 96, 1)
    assert live["id"][0] == "live" and ip.user_ns["only_live"] is live
    joined, _ = ok(ip, "%%lakesql --live\nSELECT count(*) AS n FROM trades a JOIN trades b USING (trade_id)")
    assert joined["n"][0] == 1  # both references see the live side only


def test_explain_shows_partitions_pruned_and_does_not_run(ip):
    ip.user_ns["sym"] = "ETH-USDT"
    before = len(ip.user_ns["lake"].queries)
    plan, _ = ok(ip, "%%lakesql --explain -o p\nSELECT avg(price) FROM trades WHERE symbol = $sym AND ts::DATE = '2023-11-16'")
    assert isinstance(plan, QueryPlan) and ip.user_ns["p"] is plan
    scan = plan.scan("trades")
    assert scan.partitions_read == ("BINANCE/ETH-USDT/2023-11-16",) and scan.partitions_pruned == 3
    assert len(ip.user_ns["lake"].queries) == before, "--explain plans, it does not run the query"
    history, _ = ok(ip, "%%lakesql --explain --history\nSELECT * FROM trades")
    assert history.scan("trades").live_rows == 0


def test_time_prints_one_timing_line_and_returns_the_result(ip):
    out, cap = ok(ip, "%%lakesql --time\nSELECT count(*) AS n FROM trades WHERE symbol = 'BTC-USDT'")
    assert out["n"][0] == 49
    line = cap.stdout.strip().splitlines()[0]
    assert re.fullmatch(r"total [\d.]+ ms · DuckDB [\d.]+ ms · 2 file\(s\) · 1 live row\(s\) · 1 row\(s\)", line), line


def test_plot_shows_a_png_for_lines_and_for_candles(ip):
    out, cap = ok(ip, "%%lakesql --plot -o r\nSELECT ts, symbol, price FROM trades ORDER BY ts")
    assert out is None and isinstance(ip.user_ns["r"], pd.DataFrame)
    assert [png(o) for o in cap.outputs] == [True]
    bars = ("SELECT time_bucket(INTERVAL 6 HOUR, ts) AS ts, first(price ORDER BY ts) AS open, max(price) AS high,"
            " min(price) AS low, last(price ORDER BY ts) AS close{v} FROM trades GROUP BY 1 ORDER BY 1")
    for volume in ("", ", sum(amount) AS volume"):
        _, cap = ok(ip, "%%lakesql --plot --polars\n" + bars.format(v=volume))
        assert [png(o) for o in cap.outputs] == [True]


def test_plot_without_a_numeric_column_is_a_usage_error(ip):
    result, cap = cell(ip, "%%lakesql --plot\nSELECT symbol FROM trades")
    assert result.error_in_exec is not None and "no numeric column" in cap.stderr


def test_every_updates_the_same_two_outputs_until_for_ends(ip):
    _, cap = ok(ip, "%%lakesql --every 0.05s --for 1s --time -o w\nSELECT count(*) AS n FROM trades")
    shown, updates = cap.outputs[:2], cap.outputs[2:]
    ids = {o.transient["display_id"] for o in cap.outputs}
    assert len(ids) == 2 and len(updates) >= 3, "a result and a caption, then updates of those two only"
    assert not any(o.update for o in shown) and all(o.update for o in updates)
    caption = updates[-1].data["text/plain"]
    assert "stopped (--for 1s elapsed)" in caption and "DuckDB" in caption
    assert ip.user_ns["w"]["n"][0] == 97


@pytest.mark.parametrize("line, message", [
    ("--for 2s", "--for needs --every"),
    ("--every 2x", "not a duration"),
    ("--every 0.01s", "at least 50ms"),
    ("--every", "--every needs a value"),
    ("--explain --every 1s", "--explain does not run"),
    ("--live --history", "not allowed with argument"),
    ("--frobnicate", "unrecognized arguments"),
])
def test_bad_options_are_one_line_usage_errors(ip, line, message):
    result, cap = cell(ip, f"%%lakesql {line}\nSELECT 1")
    assert result.error_in_exec is not None or result.error_before_exec is not None
    assert message in cap.stderr and "Traceback" not in cap.stderr + cap.stdout
    assert cap.stderr.strip().count("\n") == 0


def test_query_errors_keep_duckdbs_message_on_one_line(ip):
    result, cap = cell(ip, "%%lakesql --time\nSELECT no_such_column FROM trades")
    assert cap.stderr.startswith("UsageError: QueryError: Binder Error") and "no_such_column" in cap.stderr
    assert cap.stderr.strip().count("\n") == 0 and "Traceback" not in cap.stderr


def test_durations():
    assert [parse_duration(t) for t in ("2s", "500ms", "1.5m", "1h", "3", ".5s")] == [2, 0.5, 90, 3600, 3, 0.5]
    for bad in ("", "0s", "-1s", "2 days", "1e3"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


class FakeTime:
    """A clock that moves only when the watch sleeps; optionally Ctrl-C during the n-th sleep."""

    def __init__(self, interrupt_after_sleeps=None):
        self.now, self.sleeps, self.interrupt_after = 0.0, 0, interrupt_after_sleeps

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        if self.sleeps == self.interrupt_after:
            raise KeyboardInterrupt
        self.now += seconds


def test_watch_runs_on_schedule_and_stops_after_for_or_an_interrupt(ip):
    lake, ns = ip.user_ns["lake"], {}
    fake = FakeTime()
    with capture_output() as cap:
        runs = watch(lake, CellRequest("SELECT count(*) AS n FROM trades", {}, every_s=1.0, for_s=5.0, out="w"), ns,
                     clock=fake.clock, sleep=fake.sleep)
    assert runs == 6 and fake.now == 5.0, "runs at 0, 1, ..., 5 s; the next would start after --for"
    assert ns["w"]["n"][0] == 97 and len(cap.outputs) == 2 + 2 * 5 + 1
    fake = FakeTime(interrupt_after_sleeps=3)
    with capture_output() as cap:
        runs = watch(lake, CellRequest("SELECT 1 AS x", {}, every_s=2.0), ns, clock=fake.clock, sleep=fake.sleep)
    assert runs == 3 and "stopped (interrupted)" in cap.outputs[-1].data["text/plain"]
