"""Pruning from plain SQL never changes a result, prunes what it can, and --explain says so.

The reference for every query is the same SQL run by a separate in-memory DuckDB over all rows
(read once, unpruned, from the lake): any file pruned wrongly shows up as a difference.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptolake_nb import ConfigError, ForbiddenQueryError
from feeding import put

T0 = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
DAY = 86_400.0
EXCHANGES = ("BINANCE", "COINBASE")
SYMBOLS = ("BTC-USDT", "ETH-USDT")


@pytest.fixture
def filled(lake, make_trade):
    """2 exchanges x 2 symbols x 3 days committed (two flushes: 2 files per partition), plus live rows
    on a fourth day and inside day 2; timestamps carry microseconds so boundaries are sharp."""
    n = 0

    def batch(days, hours):
        nonlocal n
        rows = []
        for ex in EXCHANGES:
            for sym in SYMBOLS:
                for d in days:
                    for h in hours:
                        rows.append(make_trade(100 + n % 13, 1, T0 + d * DAY + h * 3600 + (n % 5) * 1e-6 + 0.000123,
                                               symbol=sym, exchange=ex, id=str(n)))
                        n += 1
        return rows

    put(lake, batch((0, 1, 2), (0, 5, 11)))
    lake.flush()
    put(lake, batch((0, 1, 2), (12, 18, 23)))
    lake.flush()
    put(lake, batch((1, 3), (6, 7)))  # live: overlaps committed days and adds a new one
    return lake


def reference(lake):
    """Every row of `trades`, in a separate DuckDB that has never heard of pruning."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("trades", lake.sql("SELECT * FROM trades", to="arrow"))
    return con


def rows_of(lake, ref, sql, params=None):
    ours = sorted(lake.sql(sql, params, to="arrow").to_pylist(), key=repr)
    theirs = sorted(ref.sql(sql, params=params or None).to_arrow_table().to_pylist(), key=repr)
    return ours, theirs


def files_read(lake):
    return lake.queries[-1]["files"]["trades"]


PRUNED = [  # (sql, params, files read of the 24 committed)
    ("SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT'", None, 12),
    ("SELECT trade_id FROM trades WHERE symbol = $s AND exchange = 'COINBASE'", {"s": "ETH-USDT"}, 6),
    ("SELECT trade_id FROM trades t WHERE t.symbol IN ('BTC-USDT', 'XRP-USDT') AND t.exchange = 'BINANCE'", None, 6),
    ("SELECT trade_id FROM trades WHERE ts::DATE = '2023-11-16'", None, 8),
    ("SELECT trade_id FROM trades WHERE date(ts) BETWEEN DATE '2023-11-16' AND '2023-11-17'", None, 16),
    ("SELECT trade_id FROM trades WHERE CAST(ts AS DATE) > '2023-11-16'", None, 8),
    ("SELECT trade_id FROM trades WHERE CAST(ts AS DATE) < '2023-11-16'", None, 8),
    ("SELECT trade_id FROM trades WHERE ts >= TIMESTAMP '2023-11-16 12:00' AND ts < '2023-11-17'", None, 4),
    ("SELECT trade_id FROM trades WHERE ts > $t", {"t": dt.datetime(2023, 11, 17, 12, 0, 0, 123)}, 4),
    ("SELECT trade_id FROM trades WHERE ts <= $t", {"t": "2023-11-15 11:00:00.000123+00"}, 4),
    ("SELECT trade_id FROM trades WHERE ts = '2023-11-15 00:00:00.000123'", None, 1),  # one file starts there
    ("SELECT trade_id FROM trades WHERE '2023-11-17' <= ts::DATE AND 'BTC-USDT' = symbol", None, 4),
    ("SELECT trade_id FROM trades WHERE ts BETWEEN '2023-11-15 23:00:00.000124' AND $e", {"e": dt.date(2023, 11, 16)}, 4),
    ("SELECT count(*) AS n, sum(price) AS p FROM trades WHERE symbol = 'BTC-USDT' AND price > 105", None, 12),
    ("SELECT trade_id FROM (SELECT * FROM trades WHERE exchange = 'BINANCE') WHERE symbol = 'ETH-USDT'", None, 12),
    ("WITH b AS (SELECT * FROM trades WHERE symbol = 'BTC-USDT') SELECT trade_id FROM b JOIN b AS c USING (trade_id)",
     None, 12),
    ("SELECT symbol, count(*) AS n FROM trades WHERE exchange = 'BINANCE' GROUP BY symbol HAVING count(*) > 1", None, 12),
    ("SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT' AND symbol = 'ETH-USDT'", None, 0),
    ("SELECT 1 AS x UNION ALL SELECT count(*) FROM trades WHERE exchange = 'COINBASE'", None, 12),
]

NOT_PRUNED = [  # filters that must not prune: every committed file is read
    "SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT' OR exchange = 'BINANCE'",
    "SELECT trade_id FROM trades WHERE NOT (symbol = 'BTC-USDT')",
    "SELECT trade_id FROM trades WHERE symbol <> 'BTC-USDT'",
    "SELECT trade_id FROM trades WHERE symbol NOT IN ('BTC-USDT')",
    "SELECT trade_id FROM trades WHERE NOT ts::DATE = '2023-11-16'",
    "SELECT trade_id FROM trades WHERE ts NOT BETWEEN '2023-11-15' AND '2023-11-16'",
    "SELECT trade_id FROM trades WHERE (symbol = 'BTC-USDT' AND ts < '2023-11-16') OR ts > '2023-11-17'",
    "SELECT trade_id FROM trades WHERE lower(symbol) = 'btc-usdt'",
    "SELECT trade_id FROM trades WHERE (symbol = 'BTC-USDT') IS NOT TRUE",
    "SELECT trade_id FROM trades WHERE coalesce(symbol = 'BTC-USDT', true)",
    "SELECT trade_id FROM trades WHERE symbol LIKE 'BTC%'",
    "SELECT t.trade_id FROM trades t LEFT JOIN (SELECT 1 AS k) q ON t.symbol = 'BTC-USDT'",
    "SELECT a.trade_id FROM trades a JOIN trades b USING (trade_id) WHERE a.symbol = 'BTC-USDT'",
    "SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT' UNION ALL SELECT trade_id FROM trades",
    "SELECT trade_id FROM trades WHERE symbol = 'BTC-USDT' AND ts > (SELECT min(ts) FROM trades)",
    "WITH trades AS (SELECT * FROM trades WHERE symbol = 'ETH-USDT') SELECT trade_id FROM trades WHERE exchange = 'X'",
    "SELECT trade_id FROM trades WHERE CASE WHEN symbol = 'BTC-USDT' THEN false ELSE true END",
    "SELECT count(*) OVER () AS n, trade_id FROM trades QUALIFY symbol = 'BTC-USDT'",
    "SELECT (SELECT count(*) FROM trades WHERE symbol = x.s) AS n FROM (SELECT 'BTC-USDT' AS s) x",
]


@pytest.mark.parametrize("sql, params, files", PRUNED)
def test_simple_conjuncts_prune_files_and_change_nothing(filled, sql, params, files):
    ours, theirs = rows_of(filled, reference(filled), sql, params)
    assert ours == theirs
    assert files_read(filled) == files


@pytest.mark.parametrize("sql", NOT_PRUNED)
def test_or_not_and_other_shapes_never_prune(filled, sql):
    ours, theirs = rows_of(filled, reference(filled), sql)
    assert ours == theirs
    assert files_read(filled) == 24


def test_explain_reports_partitions_pruned_by_exchange_symbol_and_date(filled):
    plan = filled.explain("SELECT count(*) FROM trades WHERE exchange = 'BINANCE' AND symbol = $s"
                          " AND ts::DATE = '2023-11-16'", {"s": "ETH-USDT"})
    scan = plan.scan("trades")
    assert scan.partitions_read == ("BINANCE/ETH-USDT/2023-11-16",)
    assert (scan.partitions_total, scan.partitions_pruned) == (12, 11)
    assert (scan.files_read, scan.files_total, scan.rows_read, scan.rows_total) == (2, 24, 6, 72)
    assert scan.live_rows == 16
    assert "exchange = 'BINANCE'" in scan.pruned_by and "symbol = 'ETH-USDT'" in scan.pruned_by
    text = str(plan)
    assert "1 of 12 partitions (11 pruned)" in text and "BINANCE/ETH-USDT/2023-11-16" in text
    assert "READ_PARQUET" in text  # DuckDB's own plan follows the summary
    assert "<table>" in plan._repr_html_()
    unfiltered = filled.explain("SELECT count(*) FROM trades WHERE price > 0").scan("trades")
    assert (unfiltered.partitions_pruned, unfiltered.files_read, unfiltered.pruned_by) == (0, 24, ())


def test_explain_of_history_or_live_only(filled):
    history = filled.explain("SELECT * FROM trades", source="history")
    assert history.scan("trades").live_rows == 0 and history.scan("trades").files_read == 24
    live = filled.explain("SELECT * FROM trades WHERE symbol = 'BTC-USDT'", source="live").scan("trades")
    assert (live.files_read, live.files_total, live.live_rows) == (0, 0, 16)
    assert "live only" in str(filled.explain("SELECT 1 AS x FROM trades", source="live"))


def test_explain_and_source_refuse_what_sql_refuses(filled):
    with pytest.raises(ForbiddenQueryError):
        filled.explain("DELETE FROM trades")
    with pytest.raises(ConfigError, match="source"):
        filled.sql("SELECT 1", source="future")


def _atom():
    boundaries = [f"2023-11-{d} {h:02d}:00:00.00012{k}" for d in (15, 16, 17, 18) for h in (0, 5, 11, 12, 23)
                  for k in (2, 3, 4, 7)]
    return st.one_of(
        st.sampled_from(SYMBOLS + ("XRP-USDT",)).map(lambda s: f"symbol = '{s}'"),
        st.sampled_from(EXCHANGES).map(lambda e: f"exchange = '{e}'"),
        st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=2).map(
            lambda v: "symbol IN (" + ", ".join(f"'{s}'" for s in v) + ")"),
        st.tuples(st.sampled_from(["<", "<=", ">", ">=", "="]), st.sampled_from(boundaries)).map(
            lambda p: f"ts {p[0]} '{p[1]}'"),
        st.tuples(st.sampled_from(["<", "<=", ">", ">=", "="]), st.sampled_from(["2023-11-15", "2023-11-16", "2023-11-18"])).map(
            lambda p: f"ts::DATE {p[0]} DATE '{p[1]}'"),
        st.tuples(st.sampled_from(boundaries), st.sampled_from(boundaries)).map(
            lambda p: f"ts BETWEEN TIMESTAMP '{min(p)}' AND TIMESTAMP '{max(p)}'"),
        st.integers(100, 112).map(lambda p: f"price > {p}"),
    )


def _filters():
    return st.recursive(
        _atom(),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda p: f"({p[0]} AND {p[1]})"),
            st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
            inner.map(lambda p: f"NOT ({p})"),
        ),
        max_leaves=5,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(_filters(), min_size=1, max_size=3).map(" AND ".join))
def test_any_filter_gives_the_unpruned_result(filled, where):
    ref = reference(filled)
    sql = f"SELECT trade_id FROM trades WHERE {where}"
    ours, theirs = rows_of(filled, ref, sql)
    assert ours == theirs, sql
