"""Aggregates computed below the live/history union give what the same statement gives over all
the rows at once (an independent DuckDB over the materialised table), with the same names and types;
shapes the rewrite does not cover still answer correctly, through the union view."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cryptolake_nb import Lake
from cryptolake_nb.schema import schema_for

T0_NS = 1_700_000_000 * 10**9


def rows(n: int, first_id: int, seed: int, exchange: str, symbol: str, t0: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    schema = schema_for("trades")
    cols = {
        "exchange": [exchange] * n, "symbol": [symbol] * n,
        "side": rng.choice(np.array(["buy", "sell", None], dtype=object), n).tolist(),
        "amount": np.round(rng.lognormal(-2, 1, n), 6) + 1e-6, "price": np.round(30_000 + rng.normal(0, 50, n), 2),
        "trade_id": [None if i % 7 == 0 else str(first_id + i) for i in range(n)],
        "type": [None if i % 3 else "liquidation" for i in range(n)], "extra": [None] * n,
        "ts": t0 + np.sort(rng.integers(0, 3 * 86_400 * 10**9, n)), "receipt_ts": t0 + np.arange(n) * 1000,
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    with Lake(tmp_path_factory.mktemp("lk"), autoflush=False) as lk:
        streams = [("BINANCE", "BTC-USDT"), ("BINANCE", "ETH-USDT"), ("KRAKEN", "BTC/USD")]
        for k, (ex, sym) in enumerate(streams):
            for part in range(2):  # two flushes: several files per stream
                lk.buffer("trades").append_batch(rows(400, 10_000 * k + 1000 * part, k * 10 + part, ex, sym, T0_NS))
                lk.flush()
            lk.buffer("trades").append_batch(rows(300, 10_000 * k + 5000, k * 10 + 9, ex, sym, T0_NS + 86_400 * 10**9))
        yield lk


def reference(lake: Lake, sql: str, params: dict) -> pa.Table:
    everything = lake.sql("SELECT * FROM trades", to="arrow")  # not an aggregate: the union view
    con = duckdb.connect(config={"arrow_large_buffer_size": True})  # strings as the lake returns them
    con.execute("SET TimeZone = 'UTC'")
    con.register("trades", everything)
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return con.sql(sql, params=used or None).to_arrow_table()


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.column_names == want.column_names
    assert [str(t) for t in got.schema.types] == [str(t).replace("Etc/UTC", "UTC") for t in want.schema.types]
    pd.testing.assert_frame_equal(got.to_pandas(), want.cast(got.schema).to_pandas(), rtol=1e-12)


PARAMS = {"p": 30_000.0, "s": "BTC-USDT", "k": 2.5}
PUSHED = [
    "SELECT count(*) FROM trades",
    "SELECT count() AS a, count(*) * 2 AS b, count(*) - 1 FROM trades",
    "SELECT count(*) AS n, count(trade_id), count(type) AS liq, sum(amount), min(price), max(price), min(ts), max(ts)"
    " FROM trades",
    "SELECT exchange, symbol, sum(price * amount) / sum(amount) AS vwap, count(*) AS trades FROM trades"
    " GROUP BY exchange, symbol ORDER BY exchange, symbol",
    "SELECT symbol, count(*) AS n, sum(amount) * $k AS scaled FROM trades WHERE price > $p AND symbol <> $s"
    " GROUP BY symbol ORDER BY symbol",
    "SELECT side, count(*) AS n, max(ts) AS last FROM trades GROUP BY side ORDER BY side NULLS FIRST",
    "SELECT round(sum(amount) * 2, 3) AS x, max(price) - min(price) AS spread, epoch_ns(max(ts)) AS last_ns,"
    " CAST(count(*) AS DOUBLE) / 3 AS third FROM trades WHERE symbol = $s",
    "SELECT exchange, count(*) AS n FROM trades GROUP BY exchange ORDER BY n DESC LIMIT 1",
    "SELECT count(*) AS n, sum(amount) AS s, min(ts) AS first FROM trades WHERE price < 0",
    "SELECT exchange, symbol, count(*) FROM trades WHERE price < 0 GROUP BY exchange, symbol",
]
NOT_PUSHED = [
    "SELECT avg(price) AS p FROM trades",
    "SELECT count(DISTINCT symbol) AS n FROM trades",
    "SELECT symbol, count(*) AS n FROM trades GROUP BY symbol HAVING count(*) > 700 ORDER BY symbol",
    "SELECT exchange, symbol, count(*) AS n FROM trades GROUP BY ROLLUP (exchange, symbol) ORDER BY ALL",
    "SELECT t.symbol, count(*) AS n FROM trades t GROUP BY t.symbol ORDER BY t.symbol",
    "SELECT symbol, sum(amount) FILTER (WHERE side = 'buy') AS bought FROM trades GROUP BY symbol ORDER BY symbol",
    "SELECT symbol, count(*) AS n FROM trades GROUP BY symbol ORDER BY count(*) DESC, symbol",
    "SELECT symbol, arg_max(price, ts) AS last FROM trades GROUP BY symbol ORDER BY symbol",
    "SELECT count(*) AS n FROM (SELECT * FROM trades WHERE price > $p)",
    "SELECT count(*) AS n FROM trades GROUP BY symbol ORDER BY symbol",  # ORDER BY a column not selected
    "SELECT symbol AS s, count(*) AS n FROM trades GROUP BY s ORDER BY s",  # GROUP BY an alias
    "SELECT symbol, count(*) AS n FROM trades GROUP BY 1 ORDER BY 1",
    "SELECT price, count(*) OVER () AS n FROM trades ORDER BY ts, receipt_ts LIMIT 3",
    "SELECT ts >= TIMESTAMPTZ '2023-11-15 00:00:00+00' AS late, count(*) AS n FROM trades GROUP BY ALL ORDER BY late",
]


@pytest.mark.parametrize("sql", PUSHED)
def test_pushed_down_aggregates_equal_the_whole_table(lake, sql):
    got = lake.sql(sql, PARAMS, to="arrow")
    assert lake.queries[-1]["pushdown"] is True, "the rewrite should apply to this shape"
    assert_same(got, reference(lake, sql, PARAMS))


@pytest.mark.parametrize("sql", NOT_PUSHED)
def test_other_shapes_answer_through_the_union(lake, sql):
    got = lake.sql(sql, PARAMS, to="arrow")
    assert lake.queries[-1]["pushdown"] is False
    assert_same(got, reference(lake, sql, PARAMS))


def test_without_live_rows_or_files_there_is_nothing_to_push_below(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        lk.buffer("trades").append_batch(rows(50, 0, 1, "BINANCE", "BTC-USDT", T0_NS))
        assert lk.sql("SELECT count(*) AS n FROM trades")["n"][0] == 50
        assert lk.queries[-1]["pushdown"] is False  # live rows only
        lk.flush()
        assert lk.sql("SELECT count(*) AS n FROM trades")["n"][0] == 50
        assert lk.queries[-1]["pushdown"] is False  # files only: the view has no union at all


def test_a_string_that_looks_like_our_names_is_left_alone(lake):
    sql = "SELECT count(*) AS n FROM trades WHERE symbol <> '__cl_parts'"
    assert lake.sql(sql)["n"][0] == 3 * (2 * 400 + 300)
    assert lake.queries[-1]["pushdown"] is False


@pytest.mark.parametrize("sql", [PUSHED[0], NOT_PUSHED[0]])
def test_explain_shows_the_plan_that_runs(lake, sql):
    plan = lake.explain(sql, PARAMS).plan
    lake.sql(sql, PARAMS)
    pushed = lake.queries[-1]["pushdown"]
    assert ("below the live/history union" in plan) is pushed
    assert pushed is (sql in PUSHED)


@pytest.mark.parametrize("sql, scanned", [
    ("SELECT count(*) AS n FROM trades", False),
    ("SELECT count(*) AS n, 2 * count() AS m FROM trades", False),
    ("SELECT count(*) AS n FROM trades WHERE price > 1", True),
    ("SELECT symbol, count(*) AS n FROM trades GROUP BY symbol ORDER BY symbol", True),
    ("SELECT count(*) AS n, count(trade_id) AS ids FROM trades", True),
])
def test_counting_every_live_row_does_not_scan_them(lake, sql, scanned):
    """The live rows' count is known (as Parquet's is from metadata): only a WHERE, a GROUP BY or an
    aggregate over values makes the live branch read them."""
    plan = lake.explain(sql, PARAMS).plan
    assert "below the live/history union" in plan
    assert ("ARROW_SCAN" in plan) is scanned
    assert_same(lake.sql(sql, PARAMS, to="arrow"), reference(lake, sql, PARAMS))
