"""`resample` of one stream of a lake table (over Arrow columns) answers as the SQL path does, which
several streams take: bucket, last row by (ts, receipt_ts), fill; rows split across files and live,
out of order, tied on time."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptolake_nb import Lake, resample
from cryptolake_nb.schema import schema_for

from helper_market import EXCHANGE, SYMBOLS, build

SEC = 10**9
T0 = 1_700_000_000 * SEC


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    lake, ref = build(tmp_path_factory.mktemp("rs") / "lake")
    yield lake, ref
    lake.close()


def _by_pyarrow(lake: Lake) -> bool:
    return lake.queries.summary(1)["recent"][0]["sql"].startswith("-- read by pyarrow")


def _same_as_sql(lake: Lake, symbol: str, other: str, interval: str, fill: str, **kw) -> pd.DataFrame:
    """The one-stream call, checked against the same stream out of a two-stream call (the SQL path)."""
    got = resample("ticker", interval, fill, symbols=symbol, exchange=EXCHANGE, lake=lake, **kw)
    assert _by_pyarrow(lake)
    both = resample("ticker", interval, fill, symbols=[symbol, other], exchange=EXCHANGE, lake=lake, **kw)
    assert not _by_pyarrow(lake)
    want = both[both.symbol == symbol].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)
    return got


@pytest.mark.parametrize("fill", ["none", "null", "previous"])
@pytest.mark.parametrize("bounds", [{}, {"start": "2023-11-14 22:20", "end": "2023-11-14 23:05"}])
def test_one_stream_equals_the_sql_path(market, fill, bounds):
    lake, _ = market
    got = _same_as_sql(lake, SYMBOLS[0], SYMBOLS[1], "30s", fill, **bounds)
    assert len(got) > 10 and got.filled.any() == (fill != "none")


def _ticker(rows: list[tuple[int, int, float]], symbol: str) -> pa.Table:
    """(ts offset ns, receipt offset ns, bid) rows of one BINANCE stream."""
    schema = schema_for("ticker")
    cols = {"exchange": [EXCHANGE] * len(rows), "symbol": [symbol] * len(rows), "bid": [b for _, _, b in rows],
            "ask": [b + 1 for _, _, b in rows], "extra": [None] * len(rows),
            "ts": [T0 + t for t, _, _ in rows], "receipt_ts": [T0 + t + r for t, r, _ in rows]}
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def test_ties_on_time_go_to_the_later_receipt_and_late_live_rows_sort_in(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("ticker").append_batch(_ticker([(0, 5, 1.0), (0, 9, 2.0), (0, 7, 3.0), (SEC + 1, 1, 4.0)], "A-B"))
        lake.buffer("ticker").append_batch(_ticker([(0, 1, 9.0)], "C-D"))
        lake.flush()
        # live: a row older than the history's last one, and a tie with a later receipt
        lake.buffer("ticker").append_batch(_ticker([(SEC // 2, 1, 5.0), (SEC + 1, 3, 6.0), (SEC + 1, 2, 7.0)], "A-B"))
        got = _same_as_sql(lake, "A-B", "C-D", "1s", "none")
        assert got.bid.tolist() == [5.0, 6.0]  # bucket 0: the live row at 0.5 s; bucket 1: the latest receipt
        # times in order, receipts of a tie not: still the latest receipt
        lake.buffer("ticker").append_batch(_ticker([(0, 1, 1.0), (SEC, 8, 2.0), (SEC, 3, 3.0)], "E-F"))
        assert _same_as_sql(lake, "E-F", "C-D", "1s", "none").bid.tolist() == [1.0, 2.0]


settle = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settle
@given(rows=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 100)), min_size=1, max_size=40),
       cut=st.integers(0, 40), fill=st.sampled_from(["none", "null", "previous"]))
def test_any_split_and_order_equals_the_sql_path(tmp_path_factory, rows, cut, fill):
    """Times on a coarse grid (ties), receipts that tie too, any part flushed and the rest live."""
    rows = [(t * SEC // 4, r, float(b)) for t, r, b in rows]
    with Lake(tmp_path_factory.mktemp("p") / "lk", autoflush=False) as lake:
        lake.buffer("ticker").append_batch(_ticker([(0, 0, 0.0)], "C-D"))
        if rows[:cut]:
            lake.buffer("ticker").append_batch(_ticker(rows[:cut], "A-B"))
            lake.flush()
        if rows[cut:]:
            lake.buffer("ticker").append_batch(_ticker(rows[cut:], "A-B"))
        got = resample("ticker", "1s", fill, symbols="A-B", exchange=EXCHANGE, lake=lake)
        want = resample("ticker", "1s", fill, symbols=["A-B", "C-D"], exchange=EXCHANGE, lake=lake)
        want = want[want.symbol == "A-B"].reset_index(drop=True)
        keyed = ["ts", "filled"]  # a tie on (ts, receipt) may take either row: compare what is determined
        pd.testing.assert_frame_equal(got[keyed], want[keyed])
        unique = {(t, r) for t, r, _ in rows}
        if len(unique) == len(rows):
            pd.testing.assert_frame_equal(got, want)
