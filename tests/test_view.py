"""The unified view: exactly-once under concurrent flushes, parameters, and a locked-down engine."""
from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from cryptolake_nb import ForbiddenQueryError, Lake, QueryError, TradeLake, vwap
from cryptolake_nb.view import used_parameters
from feeding import put


def test_exactly_once_while_ingest_runs_and_100_flushes_commit(tmp_path, make_trade):
    """Rows carry ids 0..n-1 in arrival order: any duplicate or hole shows in the invariants (small
    sealed batches are merged between flushes, as the background flusher does, while readers run)."""
    lake = Lake(tmp_path / "lk", autoflush=False)
    stop = threading.Event()
    results: list[tuple] = []
    failures: list[str] = []
    flushes = merged = 0

    def ingest():
        cb = TradeLake(lake)
        loop = asyncio.new_event_loop()
        i = 0
        while not stop.is_set():
            for _ in range(50):
                loop.run_until_complete(cb(make_trade(100 + i % 7, 1, 1_700_000_000.0 + i * 0.001, id=str(i)), 0.0))
                i += 1
        loop.close()

    def flush():  # as the flusher thread does: merge small sealed batches between flushes
        nonlocal flushes, merged
        deadline = time.monotonic() + 240
        while (flushes < 110 or len(results) < 200) and time.monotonic() < deadline:
            time.sleep(0.02)  # the readers seal a batch per query meanwhile
            merged += lake.buffer("trades").consolidate(min_run=2)
            if lake.flush():
                flushes += 1

    def query():
        last = 0
        while not stop.is_set():
            n, total, distinct, top = _row(lake)
            if not (n == total == distinct == (top + 1 if top is not None else 0)) or n < last:
                failures.append(f"count={n} sum={total} distinct={distinct} max_id={top} previous={last}")
            last = n
            results.append((n,))

    threads = [threading.Thread(target=ingest), threading.Thread(target=query), threading.Thread(target=query)]
    for t in threads:
        t.start()
    flusher = threading.Thread(target=flush)
    flusher.start()
    flusher.join(300)
    stop.set()
    for t in threads:
        t.join(30)
    assert flushes >= 100
    assert merged > 0, "no small sealed batches were merged while readers ran"
    assert len(results) >= 100, "readers ran too few queries to mean anything"
    assert failures == []
    assert _row(lake)[0] == lake.status()["tables"]["trades"]["buffer_appended"]
    lake.close()


def _row(lake):
    t = lake.sql(
        "SELECT count(*) AS n, sum(amount) AS s, count(DISTINCT trade_id) AS d,"
        " max(CAST(trade_id AS BIGINT)) AS m FROM trades", to="arrow").to_pylist()[0]
    return t["n"], t["s"] or 0, t["d"], t["m"]


def test_parameters_are_bound_never_pasted(lake, make_trade):
    put(lake, [make_trade(100, 2, 1_700_000_000.0, symbol="BTC-USDT"), make_trade(50, 1, 1_700_000_001.0, symbol="ETH-USDT")])
    lake.flush()
    hostile = "x' OR '1'='1"
    assert vwap(hostile, lake=lake) is None
    assert lake.sql("SELECT count(*) AS n FROM trades WHERE symbol = $sym", {"sym": hostile, "unused": 1})["n"][0] == 0
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 2
    assert used_parameters("SELECT '$not' AS a, $yes -- $comment\n FROM t") == ["yes"]
    with pytest.raises(QueryError, match=r"\$sym"):
        lake.sql("SELECT * FROM trades WHERE symbol = $sym")


@pytest.mark.parametrize(
    "query, message",
    [
        ("COPY (SELECT 1 AS x) TO '{root}/trades/evil.parquet'", "only SELECT"),
        ("SELECT * FROM read_text('/etc/passwd')", "disabled"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
        ("ATTACH '{root}/x.db' AS x", "only SELECT"),
        ("INSTALL httpfs", "only SELECT"),
        ("SET enable_external_access = true", "only SELECT"),
        ("SELECT 1; DROP VIEW trades", "one SELECT"),
        ("DELETE FROM trades", "only SELECT"),
        ("CREATE TABLE t AS SELECT 1", "only SELECT"),
    ],
)
def test_user_sql_cannot_write_or_read_outside_the_lake(lake, make_trade, query, message):
    put(lake, [make_trade(100, 2, 1_700_000_000.0)])
    lake.flush()
    before = sorted(p.relative_to(lake.root) for p in lake.root.rglob("*"))
    with pytest.raises(ForbiddenQueryError, match=message):
        lake.sql(query.format(root=lake.root))
    assert sorted(p.relative_to(lake.root) for p in lake.root.rglob("*")) == before
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1


def test_errors_are_one_clear_line(lake):
    with pytest.raises(QueryError) as err:
        lake.sql("SELECT no_such_column FROM trades")
    assert "no_such_column" in str(err.value) and "\n" not in str(err.value)


def test_results_as_pandas_polars_arrow(lake, make_trade):
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    put(lake, [make_trade(100, 2, 1_700_000_000.0)])
    assert isinstance(lake.sql("SELECT * FROM trades"), pd.DataFrame)
    assert isinstance(lake.sql("SELECT * FROM trades", to="polars"), pl.DataFrame)
    assert isinstance(lake.sql("SELECT * FROM trades", to="arrow"), pa.Table)


def test_string_columns_reach_pandas_without_a_copy(lake, make_trade):
    import pyarrow as pa

    put(lake, [make_trade(100, 2, 1_700_000_000.0 + i, symbol=f"S{i % 3}-USDT") for i in range(50)])
    lake.flush()
    put(lake, [make_trade(101, 1, 1_700_000_100.0, symbol="S9-USDT")])
    table = lake.sql("SELECT symbol, price FROM trades ORDER BY ts", to="arrow")
    assert table.schema.field("symbol").type == pa.large_string()  # pandas' own layout for str
    frame = table.to_pandas()
    assert frame["symbol"].tolist() == [f"S{i % 3}-USDT" for i in range(50)] + ["S9-USDT"]
    # pandas keeps the Arrow strings as they are: its column's character data is the result's buffer
    stored = frame["symbol"].array.__arrow_array__()
    assert {c.buffers()[2].address for c in stored.chunks} <= {c.buffers()[2].address for c in table.column("symbol").chunks}


def test_history_and_live_sources_split_the_rows_exactly_once(lake, make_trade):
    put(lake, [make_trade(100, 1, 1_700_000_000.0 + i, id=str(i)) for i in range(5)])
    lake.flush()
    put(lake, [make_trade(100, 1, 1_700_000_100.0 + i, id=str(10 + i)) for i in range(3)])
    ids = {s: sorted(lake.sql("SELECT trade_id FROM trades", source=s)["trade_id"]) for s in ("all", "history", "live")}
    assert ids["history"] == [str(i) for i in range(5)] and ids["live"] == ["10", "11", "12"]
    assert sorted(ids["history"] + ids["live"]) == ids["all"]
    table, record = lake.query_timed("SELECT count(*) AS n FROM trades", source="live")
    assert table.column("n")[0].as_py() == 3
    assert record["files"]["trades"] == 0 and record["source"] == "live" and 0 <= record["duckdb_ms"] <= record["ms"]
    assert lake.queries[-1] is record


def test_queries_run_in_utc_with_the_footer_cache_whatever_the_machines_time_zone(tmp_path):
    """Each query runs on its own DuckDB cursor: settings must reach it (a session SET did not)."""
    code = (
        "import sys\n"
        "from cryptolake_nb import Lake\n"
        "with Lake(sys.argv[1], autoflush=False) as lake:\n"
        "    row = lake.sql(\"SELECT current_setting('TimeZone') AS tz, current_setting('parquet_metadata_cache') AS c,\"\n"
        "                   \" epoch_ns(date_trunc('day', TIMESTAMPTZ '2024-01-01 03:00:00+00')) AS d\").iloc[0]\n"
        "    print(row.tz, row.c, row.d)\n"
    )
    env = {**os.environ, "TZ": "America/New_York"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lk")], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["UTC", "True", str(1_704_067_200 * 10**9)]


def _trades(lake, n, first_id=0):
    schema = lake.buffer("trades").schema
    ids = np.arange(first_id, first_id + n)
    ts = pa.array(1_700_000_000_000_000_000 + ids * 1_000_000, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    return pa.table({"exchange": ["BINANCE"] * n, "symbol": ["BTC-USDT"] * n, "side": ["buy"] * n,
                     "amount": np.ones(n), "price": 100.0 + ids % 7, "trade_id": ids.astype(str),
                     "type": pa.nulls(n, pa.string()), "extra": pa.nulls(n, pa.string()), "ts": ts, "receipt_ts": ts},
                    schema=schema)


def _left_after_flush(root, query):
    """Arrow bytes still allocated once 200k live rows are flushed (with or without queries before)."""
    with Lake(root, autoflush=False) as lake:
        lake.buffer("trades").append_batch(_trades(lake, 1_000))
        lake.flush()
        gc.collect()  # garbage of earlier tests must not be freed between the two readings
        base = pa.total_allocated_bytes()
        lake.buffer("trades").append_batch(_trades(lake, 200_000, first_id=1_000))
        held = pa.total_allocated_bytes() - base
        if query:  # an aggregate below the union, and the union view itself: both register the live rows
            assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 201_000
            assert lake.sql("SELECT count(DISTINCT trade_id) AS n FROM trades")["n"][0] == 201_000
        lake.flush()  # the live rows leave the buffer (the dedup keys of course stay)
        gc.collect()
        left = pa.total_allocated_bytes() - base
        if query:  # the same statements on the same thread see the new commit (views follow the files)
            lake.buffer("trades").append_batch(_trades(lake, 10, first_id=201_000))
            assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 201_010
            assert lake.sql("SELECT count(DISTINCT trade_id) AS n FROM trades")["n"][0] == 201_010
    with pytest.raises(QueryError, match="closed"):
        lake.sql("SELECT count(*) AS n FROM trades")
    return held, left


def test_a_thread_reuses_its_views_yet_keeps_no_snapshot_after_a_query(tmp_path):
    held, quiet = _left_after_flush(tmp_path / "a", query=False)
    _, queried = _left_after_flush(tmp_path / "b", query=True)
    assert queried - quiet < held / 10


def test_query_each_runs_every_statement_over_one_snapshot(tmp_path):
    """While rows keep arriving and flushing, statements run by one `query_each` see the same rows."""
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        stop = threading.Event()

        def write():
            at = 0
            while not stop.is_set():
                lake.buffer("trades").append_batch(_trades(lake, 500, at))
                at += 500
                if at % 2000 == 0:
                    lake.flush()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            seen, deadline = set(), time.monotonic() + 60
            while len(seen) < 6:  # until the rows did change between calls several times
                assert time.monotonic() < deadline, f"the writer made too little progress: {sorted(seen)}"
                a, b = lake.query_each(["SELECT count(*) AS n FROM trades",
                                        "SELECT count(*) AS n, max(CAST(trade_id AS BIGINT)) + 1 AS m FROM trades"])
                n, (n2, m) = a.column("n")[0].as_py(), b.to_pylist()[0].values()
                assert n == n2 == (m or 0)
                seen.add(n)
                time.sleep(0.005)  # let the writer run (a loaded machine starved it of the GIL)
        finally:
            stop.set()
            writer.join()
        assert [lake.queries[i]["sql"] for i in (-2, -1)] == ["SELECT count(*) AS n FROM trades",
                                                         "SELECT count(*) AS n, max(CAST(trade_id AS BIGINT)) + 1 AS m FROM trades"]
        with pytest.raises(ForbiddenQueryError):
            lake.query_each(["SELECT 1", "DROP TABLE trades"])
