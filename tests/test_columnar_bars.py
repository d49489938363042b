"""`ohlc`, `spread` and `mid` of one stream (exchange given) are computed over Arrow columns: they must
give exactly the answers of the SQL path (taken by leaving the exchange out with one exchange in the
lake, or by lowering MAX_ROWS), whatever the split between files and live rows, the file order, ties
on ts, NULL quotes, bounds and gaps."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptolake_nb import Lake, columnar_bars
from cryptolake_nb.schema import schema_for

T0_NS = 1_700_000_000 * 10**9
SYM, EX = "BTC-USDT", "BINANCE"


def rows(ts_ns: np.ndarray, first_id: int, seed: int, *, receipt_step: int = 1, exchange: str = EX,
         symbol: str = SYM) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ts_ns)
    schema = schema_for("trades")
    cols = {
        "exchange": [exchange] * n, "symbol": [symbol] * n, "side": ["buy"] * n,
        "amount": np.round(rng.lognormal(-2, 1, n), 6) + 1e-6, "price": np.round(30_000 + rng.normal(0, 50, n), 2),
        "trade_id": [str(first_id + i) for i in range(n)], "type": [None] * n, "extra": [None] * n,
        # (ts, receipt_ts) unique per row: with a full tie either row may open the bar, in SQL too
        "ts": ts_ns, "receipt_ts": ts_ns + 10**6 + (first_id + np.arange(n)) * receipt_step,
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def load(lake: Lake, name: str, table: pa.Table, order: np.ndarray, cut: int, chunks: int) -> None:
    """Rows `order[:cut]` committed in `chunks` flushes (each chunk sorted, as a flush writes it; late
    rows make files overlap in time), the rest left live in `order`'s order."""
    for part in np.array_split(order[:cut], chunks):
        if len(part):
            lake.buffer(name).append_batch(table.take(pa.array(np.sort(part))))
            lake.flush()
    if cut < len(order):
        lake.buffer(name).append_batch(table.take(pa.array(order[cut:])))


def both(lake: Lake, step: str, start=None, end=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    fast = lake.ohlc(SYM, step, exchange=EX, start=start, end=end)
    sql = lake.ohlc(SYM, step, start=start, end=end)  # no exchange: the SQL path
    return fast, sql


def assert_same(fast: pd.DataFrame, sql: pd.DataFrame) -> None:
    assert list(fast.columns) == list(sql.columns)
    assert fast.dtypes.to_dict() == sql.dtypes.to_dict()
    pd.testing.assert_frame_equal(fast.reset_index(drop=True), sql.reset_index(drop=True), rtol=1e-12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 400), chunks=st.integers(1, 4), live_share=st.floats(0, 1), shuffle=st.booleans(),
       tie_ms=st.integers(1, 2000), step=st.sampled_from(["1s", "7s", "1min"]), seed=st.integers(0, 10**6),
       bounds=st.sampled_from([None, (0.2, 0.7), (0.0, 0.5), (0.5, 2.0)]), distinct=st.booleans())
def test_columnar_bars_equal_sql_bars(tmp_path_factory, n, chunks, live_share, shuffle, tie_ms, step, seed, bounds,
                                      distinct):
    rng = np.random.default_rng(seed)
    ts = T0_NS + np.sort(rng.integers(0, 600, n)) * tie_ms * 10**5  # many equal timestamps
    if distinct:  # no ties: receipt_ts is read only if files or live rows arrive out of order
        ts = T0_NS + np.cumsum(rng.integers(1, tie_ms * 10**6, n))
    table = rows(ts, 0, seed)
    order = rng.permutation(n) if shuffle else np.arange(n)  # late rows: files overlap in time
    cut = int(n * (1 - live_share))
    with Lake(tmp_path_factory.mktemp("lk"), autoflush=False) as lake:
        load(lake, "trades", table, order, cut, chunks)
        span = int(ts[-1] - ts[0]) + 10**9
        start = end = None
        if bounds is not None:
            start = pd.Timestamp(int(ts[0] + bounds[0] * span), tz="UTC")
            end = pd.Timestamp(int(ts[0] + bounds[1] * span), tz="UTC")
        fast, sql = both(lake, step, start, end)
        assert_same(fast, sql)
        assert fast.trades.sum() == (n if bounds is None else int(((ts >= start.value) & (ts < end.value)).sum()))


def test_coverage_counts_the_streams_gaps_as_sql_does(tmp_path, monkeypatch):
    ts = T0_NS + np.arange(0, 600) * 10**9
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(rows(ts[:400], 0, 1))
        lake.flush()
        lake.buffer("trades").append_batch(rows(ts[400:], 400, 2))
        b0 = int(ts[0]) // 60_000_000_000 * 60_000_000_000
        lake.gaps.record("silence", exchange=EX, symbol=SYM, channel="trades", start_ns=b0 + 60 * 10**9,
                         end_ns=b0 + 90 * 10**9)
        lake.gaps.record("reconnect", exchange=EX, channel=None, start_ns=b0 + 85 * 10**9, end_ns=b0 + 135 * 10**9)
        lake.gaps.record("reconnect", exchange="KRAKEN", symbol=SYM, channel="trades", start_ns=b0, end_ns=b0 + 10**12)
        lake.gaps.record("silence", exchange=EX, symbol="ETH-USDT", channel="trades", start_ns=b0, end_ns=b0 + 10**12)
        fast = lake.ohlc(SYM, "1min", exchange=EX)
        assert "over Arrow columns" in lake.queries.summary()["recent"][0]["sql"]
        monkeypatch.setattr(columnar_bars, "MAX_ROWS", -1)  # the SQL path, same exchange
        assert_same(fast, lake.ohlc(SYM, "1min", exchange=EX))
        assert fast.coverage.tolist()[:4] == [1.0, 0.0, 0.75, 1.0]  # [60, 135) s after the first bar: one hole


def test_above_the_row_bound_the_sql_path_answers(tmp_path, monkeypatch):
    ts = T0_NS + np.arange(0, 300) * 10**9
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(rows(ts[:200], 0, 1))
        lake.flush()
        lake.buffer("trades").append_batch(rows(ts[200:], 200, 2))
        fast = lake.ohlc(SYM, "1min", exchange=EX)
        monkeypatch.setattr(columnar_bars, "MAX_ROWS", 100)
        lake.queries.clear()
        slow = lake.ohlc(SYM, "1min", exchange=EX)
        assert "over Arrow columns" not in lake.queries.summary()["recent"][0]["sql"]
        assert_same(fast, slow)


def test_empty_stream_gives_the_empty_frame_of_the_sql_path(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(rows(T0_NS + np.arange(5) * 10**9, 0, 1))
        fast = lake.ohlc(SYM, "1min", exchange=EX, start="2030-01-01")
        sql = lake.ohlc(SYM, "1min", start="2030-01-01")
        assert fast.empty and list(fast.columns) == list(sql.columns)
        assert fast.dtypes.to_dict() == sql.dtypes.to_dict()


@pytest.mark.parametrize("exchange", ["KRAKEN", EX])
def test_other_streams_rows_are_never_counted(tmp_path, exchange):
    ts = T0_NS + np.arange(0, 120) * 10**9
    sym = "ETH-USDT" if exchange == EX else SYM  # the other stream differs in symbol or in exchange
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(rows(ts, 0, 1))
        lake.buffer("trades").append_batch(rows(ts, 1000, 3, exchange=exchange, symbol=sym))
        lake.flush()
        lake.buffer("trades").append_batch(rows(ts + 120 * 10**9, 5000, 1))
        lake.buffer("trades").append_batch(rows(ts + 120 * 10**9, 9000, 3, exchange=exchange, symbol=sym))
        assert lake.ohlc(SYM, "1min", exchange=EX).trades.sum() == 240


def quotes(ts_ns: np.ndarray, seed: int, null_share: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ts_ns)
    schema = schema_for("ticker")
    bid = np.round(30_000 + rng.normal(0, 20, n), 2)
    ask = bid + np.round(rng.uniform(0.01, 2, n), 2)
    cols = {
        "exchange": [EX] * n, "symbol": [SYM] * n,
        "bid": pa.array(bid, mask=rng.random(n) < null_share), "ask": pa.array(ask, mask=rng.random(n) < null_share),
        "extra": [None] * n, "ts": ts_ns, "receipt_ts": ts_ns + 10**6 + np.arange(n) * 7 + seed * 10**5,
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 300), chunks=st.integers(1, 3), live_share=st.floats(0, 1), shuffle=st.booleans(),
       tie_ms=st.integers(1, 2000), step=st.sampled_from(["1s", "7s", "1min"]), seed=st.integers(0, 10**6),
       null_share=st.sampled_from([0.0, 0.3, 0.9]), bounded=st.booleans())
def test_last_quotes_over_columns_equal_the_sql_quotes(tmp_path_factory, n, chunks, live_share, shuffle, tie_ms,
                                                       step, seed, null_share, bounded):
    rng = np.random.default_rng(seed)
    ts = T0_NS + np.sort(rng.integers(0, 600, n)) * tie_ms * 10**5
    table = quotes(ts, seed, null_share)
    order = rng.permutation(n) if shuffle else np.arange(n)
    cut = int(n * (1 - live_share))
    with Lake(tmp_path_factory.mktemp("lk"), autoflush=False) as lake:
        load(lake, "ticker", table, order, cut, chunks)
        span = int(ts[-1] - ts[0]) + 10**9
        start, end = (pd.Timestamp(int(ts[0] + 0.3 * span), tz="UTC"), pd.Timestamp(int(ts[0] + 0.8 * span), tz="UTC")) \
            if bounded else (None, None)
        fast = lake.spread(SYM, step, exchange=EX, start=start, end=end)
        assert "over Arrow columns" in lake.queries.summary()["recent"][0]["sql"]
        with mock.patch.object(columnar_bars, "MAX_ROWS", -1):  # the SQL path
            sql = lake.spread(SYM, step, exchange=EX, start=start, end=end)
        assert "over Arrow columns" not in lake.queries.summary()["recent"][0]["sql"]
        assert_same(fast, sql)
