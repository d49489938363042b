"""Query observability and the status report: recent queries with files and live rows, gaps, HTML."""
from __future__ import annotations

import json
import math

import pytest
from IPython.core.interactiveshell import InteractiveShell

from cryptolake_nb import ConfigError, QueryError
from cryptolake_nb.feeds import FeedHealth
from cryptolake_nb.querylog import QueryLog
from cryptolake_nb.status_view import StatusView

from feeding import put

T0 = 1_700_000_000.0


@pytest.fixture
def filled(lake, make_trade):
    """trades: 2 committed files of BTC-USDT, 1 of ETH-USDT, and 3 live BTC-USDT rows."""
    put(lake, [make_trade(100, 1, T0, id="1"), make_trade(10, 1, T0, symbol="ETH-USDT", id="1")])
    lake.flush()
    put(lake, [make_trade(101, 1, T0 + 1, id="2")])
    lake.flush()
    put(lake, [make_trade(102 + i, 1, T0 + 2 + i, id=str(3 + i)) for i in range(3)])
    return lake


def test_each_query_records_files_and_live_rows_of_the_tables_it_reads(filled):
    filled.sql("SELECT count(*) FROM trades")
    q = filled.queries[-1]
    assert q["files"] == {"trades": 3} and q["live_rows"] == {"trades": 3} and q["rows"] == 1
    assert q["files_total"] == 3 and q["live_rows_total"] == 3 and q["ms"] > 0
    filled.ohlc("ETH-USDT", "1s", exchange="BINANCE")  # pruned to the one ETH file; the buffer has no ETH rows
    q = filled.queries[-1]
    assert q["files"]["trades"] == 1 and q["live_rows"]["trades"] == 3  # the live snapshot is not pruned
    assert set(q["files"]) == {"trades", "gaps"}  # ohlc reads the gaps table for coverage
    filled.sql("SELECT * FROM gaps")
    assert filled.queries[-1]["files"] == {"gaps": 0}  # every table sealed, but only gaps was read


def test_status_summarises_recent_queries_newest_first(filled):
    for i in range(4):
        filled.sql(f"SELECT {i} AS i, count(*) AS n FROM trades")
    status = filled.status(recent_queries=3)
    q = status["queries"]
    assert q["count"] == q["kept"] == 4
    assert [r["sql"] for r in q["recent"]] == [f"SELECT {i} AS i, count(*) AS n FROM trades" for i in (3, 2, 1)]
    assert all(r["files"] == {"trades": 3} and r["live_rows"] == {"trades": 3} for r in q["recent"])
    times = sorted(r["ms"] for r in filled.queries)
    assert q["p50_ms"] == times[math.ceil(0.5 * 4) - 1] == times[1]
    assert q["p99_ms"] == q["max_ms"] == times[-1]
    json.loads(repr(status))  # a terminal shows valid JSON


def test_the_log_is_bounded(filled):
    for i in range(105):
        filled.sql("SELECT $i AS i", {"i": i})
    assert len(filled.queries) == 100 and filled.queries.total == 105
    assert filled.queries[0]["sql"] == "SELECT $i AS i" and filled.status()["queries"]["kept"] == 100
    assert filled.queries[-1]["files"] == {} and filled.queries[-1]["rows"] == 1  # reads no table
    filled.queries.clear()
    summary = filled.status()["queries"]
    assert summary["kept"] == 0 and summary["count"] == 105 and summary["p50_ms"] is None  # status() runs no query
    with pytest.raises(ConfigError):
        QueryLog(maxlen=0)


def test_failed_queries_are_not_recorded(filled):
    with pytest.raises(QueryError, match="nope"):
        filled.sql("SELECT nope FROM trades")
    assert filled.queries.total == 0


def test_status_counts_gaps_by_cause(filled, make_trade):
    put(filled, [make_trade(110, 1, T0 + 10, id="20")])  # ids 6..19 missing: a sequence break
    filled.stop()  # sequence breaks still pending are recorded at stop
    gaps = filled.status()["gaps"]
    assert gaps["total"] == 1 and gaps["by_cause"] == {"sequence_break": 1}
    assert gaps["recent"][0]["symbol"] == "BTC-USDT" and gaps["recent"][0]["start_ts"].startswith("2023-11-14")


def test_html_shows_tables_queries_and_escapes_sql(filled):
    filled.sql("SELECT '<script>alert(1)</script>' AS x, count(*) AS n FROM trades")
    html = filled.status()._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "recent queries" in html and "trades 3/3" in html  # history files / live rows for trades
    assert "<td>trades</td><td>3</td>" in html  # live rows of trades
    assert "8 empty not shown" in html and "<td>ticker</td>" not in html
    assert "memory" in html and "gaps</b> 0" in html


def test_html_shows_feeds_and_collector_errors(filled):
    status = filled.status()
    health = FeedHealth("BINANCE", on_gap=filled.gaps.record)
    status["feeds"] = [health.status()]
    status["collector"]["errors"] = ["BINANCE: <bad> symbol"]
    html = StatusView(status)._repr_html_()
    assert "<caption>feeds</caption>" in html and "<td>BINANCE</td>" in html
    assert "&lt;bad&gt; symbol" in html


def test_lake_status_magic_shows_recent_queries(tmp_path, monkeypatch, make_trade):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb-lake"))
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("%load_ext cryptolake_nb").raise_error()
        put(shell.user_ns["lake"], [make_trade(100, 1, T0, id="1")])
        shell.run_cell("%%lakesql\nSELECT count(*) AS n FROM trades WHERE price < 1000").raise_error()
        result = shell.run_cell("%lake status")
        result.raise_error()
        status = result.result
        assert status["queries"]["recent"][0]["live_rows"] == {"trades": 1}
        data, _ = shell.display_formatter.format(status)
        assert "WHERE price &lt; 1000" in data["text/html"]
    finally:
        shell.run_cell("%unload_ext cryptolake_nb")
        InteractiveShell.clear_instance()
