"""jupysql interop: `%sql` sees the lake's views (live rows once, lockdown kept) in either load order,
in an in-process shell and in a real kernel; LakeConnection behaves as a DB-API connection."""
from __future__ import annotations

import re

import pandas as pd
import polars as pl
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from sql.connection import ConnectionManager  # jupysql: in the test extra

from cryptolake_nb import ForbiddenQueryError, QueryError
from cryptolake_nb.jupysql import ALIAS, LakeConnection
from feeding import put
from kernels import QUIET_ENV, notebook, run, stdout_json



@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    for k, v in QUIET_ENV.items():
        monkeypatch.setenv(k, v)


def split(lake, make_trade):
    """7 committed rows and 3 live ones."""
    put(lake, [make_trade(100 + i, 1, 1_700_000_000.0 + i, id=str(i)) for i in range(7)])
    lake.flush()
    put(lake, [make_trade(200 + i, 1, 1_700_000_100.0 + i, id=str(7 + i)) for i in range(3)])


def test_lake_connection_is_a_dbapi_connection_over_the_view(lake, make_trade):
    split(lake, make_trade)
    conn = LakeConnection(lake, {"sym": "BTC-USDT", "lo": 0})
    cur = conn.cursor()
    assert cur.execute("SELECT trade_id, price AS p, price AS p FROM trades WHERE symbol = $sym ORDER BY ts") is cur
    assert [d[0] for d in cur.description] == ["trade_id", "p", "p"]
    assert cur.fetchone() == ("0", 100.0, 100.0)
    assert cur.fetchmany(2) == [("1", 101.0, 101.0), ("2", 102.0, 102.0)]
    assert len(cur.fetchall()) == 7 and cur.fetchall() == [] and cur.fetchone() is None
    assert cur.rowcount == -1
    cur.execute("SELECT count(*) AS n FROM trades WHERE price > $lo", {"lo": 150})  # explicit values win
    assert cur.fetchall() == [(3,)]
    assert isinstance(conn.execute("SELECT * FROM trades").df(), pd.DataFrame)
    assert conn.pl().height == 10 and isinstance(conn.pl(), pl.DataFrame)
    conn.commit(), conn.rollback(), conn.close()  # no-ops: read-only, and the lake is not jupysql's
    assert not lake.closed


def test_lake_connection_keeps_the_lockdown(lake):
    conn = LakeConnection(lake)
    with pytest.raises(ForbiddenQueryError):
        conn.execute("CREATE TABLE t AS SELECT 1")
    with pytest.raises(ForbiddenQueryError):
        conn.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(QueryError, match=r"\$nope"):
        conn.execute("SELECT $nope AS x")
    with pytest.raises(QueryError, match="execute a SELECT first"):
        conn.cursor().fetchall()
    with pytest.raises(UsageError, match="ForbiddenQueryError"):  # what a notebook cell should show
        LakeConnection(lake, usage_errors=True).execute("SET threads = 1")


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb-lake"))
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance()
    yield ip
    ip.run_cell("%unload_ext cryptolake_nb")
    assert ALIAS not in ConnectionManager.connections, "unload removes the lake's jupysql connection"
    InteractiveShell.clear_instance()


def ok(ip, code):
    with capture_output() as cap:
        result = ip.run_cell(code)
    result.raise_error()
    return result.result, cap


@pytest.mark.parametrize("order", [("cryptolake_nb", "sql"), ("sql", "cryptolake_nb")])
def test_sql_magic_sees_history_and_live_rows_once_in_either_load_order(shell, make_trade, order):
    for ext in order:
        ok(shell, f"%load_ext {ext}")
    split(shell.user_ns["lake"], make_trade)
    result, _ = ok(shell, "%sql SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM trades")
    assert list(result) == [(10, 10)]
    shell.user_ns["floor"] = 150
    frame, _ = ok(shell, "r = %sql SELECT trade_id FROM trades WHERE price > $floor ORDER BY trade_id\nr.DataFrame()")
    assert list(frame["trade_id"]) == ["7", "8", "9"]
    ok(shell, "%%sql\nSELECT * EXCLUDE (extra), ts::DATE AS d FROM trades LIMIT 1")  # DuckDB syntax, verbatim
    assert shell.user_ns["lake"].queries[-1]["sql"].startswith("SELECT * EXCLUDE (extra), ts::DATE")


def test_sql_magic_errors_are_one_line(shell):
    ok(shell, "%load_ext cryptolake_nb")
    ok(shell, "%load_ext sql")
    with capture_output() as cap:
        result = shell.run_cell("%sql SELECT * FROM read_text('/etc/passwd')")
    assert result.error_in_exec is not None
    assert "ForbiddenQueryError" in cap.stderr and cap.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_sql_count_in_a_real_kernel_after_load_ext_sql(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "lake"))
    setup = (
        "import json\nfrom decimal import Decimal\nfrom cryptofeed.types import Trade\nfrom cryptolake_nb import TradeLake\n"
        "%load_ext cryptolake_nb\n"
        "cb = TradeLake(lake)\n"
        "def trade(i): return Trade('BINANCE', 'BTC-USDT', 'buy', Decimal(1), Decimal(100), 1.7e9 + i, id=str(i), type=None, raw=None)\n"
        "for i in range(7): await cb(trade(i), 1.7e9)\n"
        "lake.flush()\n"
        "for i in range(7, 10): await cb(trade(i), 1.7e9)\n"
        "print(json.dumps(lake.status()['tables']['trades']['rows_committed']))"
    )
    nb = notebook(
        setup,
        "%load_ext sql",
        "%sql SELECT count(*) FROM trades",
        "r = %sql SELECT count(*) AS n FROM trades\nprint(json.dumps(list(r)[0][0]))",
        "%unload_ext cryptolake_nb\n%load_ext cryptolake_nb",  # the other order: jupysql already loaded
        "again = %sql SELECT count(*) FROM trades\nprint(json.dumps(list(again)[0][0]))",
        "%sql SELECT * FROM read_text('/etc/passwd')",
        raises=(7,),
    )
    client = run(nb, tmp_path)
    assert stdout_json(client, 1) == 7, "7 rows committed, 3 live"
    shown = client.of(3, "execute_result")[0]["content"]["data"]["text/plain"]
    assert "count_star()" in shown and re.search(r"\|\s+10\s+\|", shown)
    assert stdout_json(client, 4) == 10
    assert stdout_json(client, 6) == 10
    errors = "".join(m["content"]["text"] for m in client.of(7, "stream") if m["content"]["name"] == "stderr")
    assert "ForbiddenQueryError" in errors and not client.of(7, "error")
