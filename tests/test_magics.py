"""The notebook interface: %load_ext, %%lakesql with options and bound variables, %lake."""
from __future__ import annotations

import asyncio

import pandas as pd
import polars as pl
import pytest
from IPython.core.interactiveshell import InteractiveShell

from cryptolake_nb import TradeLake
from cryptolake_nb.magics import split_options


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOLAKE_ROOT", str(tmp_path / "nb-lake"))
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance()
    run(shell, "%load_ext cryptolake_nb")
    yield shell
    run(shell, "%unload_ext cryptolake_nb")
    InteractiveShell.clear_instance()


def run(shell, code):
    result = shell.run_cell(code)
    result.raise_error()
    return result.result


def fill(lake, make_trade):
    cb = TradeLake(lake)

    async def go():
        for i in range(10):
            await cb(make_trade(100 + i, 1, 1_700_000_000.0 + i, symbol="BTC-USDT" if i % 2 else "ETH-USDT"), 1.7e9)

    asyncio.run(go())


def test_load_ext_opens_the_lake_at_the_configured_root(ip, tmp_path):
    lake = ip.user_ns["lake"]
    assert lake.root == (tmp_path / "nb-lake").resolve()


def test_lakesql_binds_variables_and_stores_results(ip, make_trade):
    fill(ip.user_ns["lake"], make_trade)
    ip.user_ns["sym"] = "BTC-USDT' OR '1'='1"
    out = run(ip, "%%lakesql -o res\nSELECT count(*) AS n FROM trades WHERE symbol = $sym")
    assert isinstance(out, pd.DataFrame) and out["n"][0] == 0 and ip.user_ns["res"] is out
    ip.user_ns["sym"] = "BTC-USDT"
    out = run(ip, "%%lakesql --polars\nSELECT count(*) AS n FROM trades WHERE symbol = $sym")
    assert isinstance(out, pl.DataFrame) and out["n"][0] == 5
    assert run(ip, "%lakesql SELECT max(price) AS p FROM trades WHERE symbol = $sym")["p"][0] == 109


def test_dollar_and_braces_are_not_expanded_into_the_sql(ip, make_trade):
    fill(ip.user_ns["lake"], make_trade)
    out = run(ip, "%%lakesql\nSELECT '{sym}' AS a, '$sym' AS b, count(*) AS n FROM trades")
    assert out["a"][0] == "{sym}" and out["b"][0] == "$sym" and out["n"][0] == 10


def test_errors_are_one_line_usage_errors(ip, capsys):
    result = ip.run_cell("%%lakesql\nSELECT nope FROM trades")
    assert result.error_in_exec is not None or result.error_before_exec is not None
    err = capsys.readouterr()
    text = err.out + err.err
    assert "nope" in text and "Traceback" not in text
    result = ip.run_cell("%%lakesql\nCOPY (SELECT 1) TO 'x.csv'")
    text = "".join(capsys.readouterr())
    assert "ForbiddenQueryError" in text and "Traceback" not in text


def test_lake_status_and_flush(ip, make_trade):
    fill(ip.user_ns["lake"], make_trade)
    assert "file(s) committed" in run(ip, "%lake flush")
    status = run(ip, "%lake status")
    assert status["tables"]["trades"]["rows_committed"] == 10
    assert "<table>" in status._repr_html_()


def test_unload_closes_the_lake_and_drops_the_magics(ip):
    lake = ip.user_ns["lake"]
    run(ip, "%unload_ext cryptolake_nb")
    assert lake.closed and "lakesql" not in ip.magics_manager.magics["cell"]
    run(ip, "%load_ext cryptolake_nb")
    assert ip.user_ns["lake"] is not lake and not ip.user_ns["lake"].closed


def test_split_options_keeps_sql_verbatim():
    assert split_options("-o x --polars SELECT '-o' AS a") == (["-o", "x", "--polars"], "SELECT '-o' AS a")


def test_load_ext_opens_read_only_next_to_another_writer(tmp_path, monkeypatch):
    import subprocess
    import sys
    import textwrap

    root = tmp_path / "shared-lake"
    writer = textwrap.dedent(f"""
        import sys, time
        from cryptolake_nb import Lake
        lake = Lake({str(root)!r})
        print("open", flush=True)
        sys.stdin.readline()
        lake.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        monkeypatch.setenv("CRYPTOLAKE_ROOT", str(root))
        InteractiveShell.clear_instance()
        shell = InteractiveShell.instance()
        run(shell, "%load_ext cryptolake_nb")
        lake = shell.user_ns["lake"]
        assert lake.read_only
        assert run(shell, "%lakesql SELECT count(*) AS n FROM trades")["n"][0] == 0
        run(shell, "%unload_ext cryptolake_nb")
        InteractiveShell.clear_instance()
    finally:
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0
