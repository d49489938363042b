"""vwap() and ohlc() against an independent pandas computation, across the flush boundary."""
from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptolake_nb import ConfigError, Lake, NoActiveLakeError, TradeLake, ohlc, vwap
from cryptolake_nb.analytics import parse_interval

T0 = 1_700_000_000.0


def put(lake, trades):
    cb = TradeLake(lake)

    async def go():
        for t in trades:
            await cb(t, T0 + 10_000)

    asyncio.run(go())


def market(make_trade, n=3000, seed=7, symbol="BTC-USDT", exchange="BINANCE"):
    rng = np.random.default_rng(seed)
    price = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, n))), 2)
    amount = np.round(rng.lognormal(-3, 1, n), 6) + 1e-6
    ts = T0 + np.cumsum(rng.exponential(0.5, n))
    trades = [make_trade(p, a, t, symbol=symbol, exchange=exchange, id=str(i)) for i, (p, a, t) in enumerate(zip(price, amount, ts))]
    frame = pd.DataFrame({"price": [float(t.price) for t in trades], "amount": [float(t.amount) for t in trades],
                          "ts": pd.to_datetime(np.round(ts * 1e6).astype("int64") * 1000, utc=True)})
    return trades, frame


def pandas_ohlc(frame, rule):
    g = frame.set_index("ts").sort_index().groupby(pd.Grouper(freq=rule))
    out = pd.DataFrame({
        "open": g["price"].first(), "high": g["price"].max(), "low": g["price"].min(), "close": g["price"].last(),
        "volume": g["amount"].sum(), "trades": g["price"].count(),
        "vwap": g.apply(lambda d: (d.price * d.amount).sum() / d.amount.sum() if len(d) else np.nan),
    })
    return out[out.trades > 0]


@pytest.fixture
def split_lake(lake, make_trade):
    """Two thirds of the trades in Parquet, the rest live, plus another symbol and exchange as noise."""
    trades, frame = market(make_trade)
    cut = len(trades) * 2 // 3
    put(lake, trades[:cut] + market(make_trade, 500, 1, symbol="ETH-USDT")[0] + market(make_trade, 500, 2, exchange="KRAKEN")[0])
    lake.flush()
    put(lake, trades[cut:])
    assert lake.status()["tables"]["trades"]["buffer_rows"] == len(trades) - cut
    return lake, frame


def test_vwap_equals_pandas_across_history_and_live(split_lake):
    lake, frame = split_lake
    expected = (frame.price * frame.amount).sum() / frame.amount.sum()
    assert vwap("BTC-USDT", exchange="BINANCE", lake=lake) == pytest.approx(expected, rel=1e-9)
    start, end = frame.ts.iloc[100], frame.ts.iloc[2500]
    sub = frame[(frame.ts >= start) & (frame.ts < end)]
    got = lake.vwap("BTC-USDT", exchange="BINANCE", start=start, end=end)
    assert got == pytest.approx((sub.price * sub.amount).sum() / sub.amount.sum(), rel=1e-9)


def test_vwap_per_interval(split_lake):
    lake, frame = split_lake
    got = lake.vwap("BTC-USDT", exchange="BINANCE", interval="5min")
    exp = pandas_ohlc(frame, "5min")
    assert list(got.columns) == ["ts", "vwap", "volume", "trades"]
    assert list(got.ts) == list(exp.index)
    np.testing.assert_allclose(got.vwap, exp.vwap, rtol=1e-9)
    np.testing.assert_array_equal(got.trades, exp.trades)


@pytest.mark.parametrize("interval, rule", [("1min", "1min"), ("30s", "30s"), ("1h", "1h")])
def test_ohlc_equals_pandas_across_history_and_live(split_lake, interval, rule):
    lake, frame = split_lake
    got = ohlc("BTC-USDT", interval, exchange="BINANCE", lake=lake)
    exp = pandas_ohlc(frame, rule)
    assert list(got.columns) == ["ts", "open", "high", "low", "close", "volume", "trades", "vwap", "coverage"]
    assert (got.coverage == 1.0).all()
    assert str(got.ts.dtype) == "datetime64[ns, UTC]"
    assert list(got.ts) == list(exp.index)
    for col in ("open", "high", "low", "close", "volume", "vwap"):
        np.testing.assert_allclose(got[col], exp[col], rtol=1e-9, err_msg=col)
    np.testing.assert_array_equal(got.trades, exp.trades)


def test_ohlc_to_polars_and_module_helpers_use_the_active_lake(split_lake):
    lake, _ = split_lake
    lake.activate()
    assert isinstance(ohlc("BTC-USDT", "1min", to="polars"), pl.DataFrame)
    assert vwap("BTC-USDT", exchange="BINANCE") == lake.vwap("BTC-USDT", exchange="BINANCE")


def test_no_active_lake_is_a_clear_error(tmp_path):
    Lake(tmp_path / "a", autoflush=False).activate().close()
    with pytest.raises(NoActiveLakeError):
        vwap("BTC-USDT")


@pytest.mark.parametrize("bad", ["1 fortnight", "0s", "", "min", -5])
def test_bad_interval(bad):
    with pytest.raises(ConfigError):
        parse_interval(bad)


prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
amounts = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


@given(st.lists(st.tuples(prices, amounts, st.floats(0, 3600)), min_size=1, max_size=60))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bar_properties(tmp_path_factory, make_trade, rows):
    with Lake(tmp_path_factory.mktemp("p"), autoflush=False) as lake:
        put(lake, [make_trade(p, a, T0 + dt) for p, a, dt in rows[: len(rows) // 2]])
        lake.flush()
        put(lake, [make_trade(p, a, T0 + dt) for p, a, dt in rows[len(rows) // 2:]])
        bars = lake.ohlc("BTC-USDT", "5min")
        assert bars.trades.sum() == len(rows)
        assert (bars.low <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars[["open", "close"]].max(axis=1) <= bars.high).all()
        assert ((bars.low <= bars.vwap * (1 + 1e-12)) & (bars.vwap <= bars.high * (1 + 1e-12))).all()
        v = lake.vwap("BTC-USDT")
        lo, hi = min(float(str(p)) for p, _, _ in rows), max(float(str(p)) for p, _, _ in rows)
        assert lo * (1 - 1e-12) <= v <= hi * (1 + 1e-12)


def test_helpers_prune_partitions_by_exchange_symbol_and_time(lake, make_trade):
    day = 86_400.0
    for d in range(3):
        for sym in ("BTC-USDT", "ETH-USDT"):
            for ex in ("BINANCE", "KRAKEN"):
                put(lake, [make_trade(100 + d, 1, T0 + d * day + i, symbol=sym, exchange=ex) for i in range(5)])
    lake.flush()
    assert lake.status()["tables"]["trades"]["files"] == 12
    lake.ohlc("BTC-USDT", "1h", exchange="KRAKEN")
    assert lake.queries[-1]["files"]["trades"] == 3
    bars = lake.ohlc("BTC-USDT", "1h", exchange="KRAKEN", start=pd.Timestamp(T0 + day, unit="s"),
                     end=pd.Timestamp(T0 + 2 * day, unit="s"))
    assert lake.queries[-1]["files"]["trades"] == 1 and bars.trades.sum() == 5 and (bars.open == 101).all()
    lake.sql("SELECT count(*) FROM trades")
    assert lake.queries[-1]["files"]["trades"] == 12


def test_bar_vwap_never_leaves_low_high_by_rounding(lake, make_trade):
    # 0.1 * 3 / 3 is 0.10000000000000002 in floating point: the exact VWAP is 0.1
    assert 0.1 * 3 / 3 > 0.1
    t0 = 1_700_000_000.0
    put(lake, [make_trade(0.1, 3, t0, symbol="A-USDT", id="1"), make_trade(0.1, 3, t0, symbol="B-USDT", id="2")])
    for stored in (False, True):  # live rows, then the same rows from files
        one = ohlc("A-USDT", "1min", exchange="BINANCE", lake=lake)  # one stream: the columnar path
        both = ohlc(["A-USDT", "B-USDT"], "1min", exchange="BINANCE", lake=lake)  # the SQL path
        for bars in (one, both):
            assert (bars.vwap == 0.1).all() and (bars.low == 0.1).all() and (bars.high == 0.1).all()
        if not stored:
            lake.flush()
