"""ohlc, vwap, twap, returns, realized_volatility against independent pandas computations on the same
rows (history and live, several symbols, another exchange as noise), and their properties."""
from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cryptolake_nb import (ConfigError, Lake, ohlc, realized_volatility, returns, twap, vwap)

from feeding import put
from helper_market import EXCHANGE, SYMBOLS, T0, build

MIN = 60 * 10**9


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    lake, ref = build(tmp_path_factory.mktemp("bars") / "lake")
    yield lake, ref["trades"]
    lake.close()


def binance(trades: pd.DataFrame, start=None, end=None) -> pd.DataFrame:
    t = trades[trades.exchange == EXCHANGE]
    if start is not None:
        t = t[t.ts >= start]
    if end is not None:
        t = t[t.ts < end]
    return t.sort_values(["symbol", "ts"], kind="stable")


def bucket(ts: pd.Series, step: int) -> pd.Series:
    return pd.to_datetime(ts.astype("int64") // step * step, utc=True)


def ref_bars(t: pd.DataFrame, step: int) -> pd.DataFrame:
    t = t.assign(b=bucket(t.ts, step), pa=t.price * t.amount)
    g = t.groupby(["symbol", "b"], sort=True)
    out = pd.DataFrame({"open": g.price.first(), "high": g.price.max(), "low": g.price.min(), "close": g.price.last(),
                        "volume": g.amount.sum(), "trades": g.price.size(), "vwap": g.pa.sum() / g.amount.sum()})
    return out.reset_index().rename(columns={"b": "ts"})


def ref_twap(t: pd.DataFrame, step: int | None, end_ns: int | None = None) -> pd.DataFrame:
    rows = []
    for sym, s in t.groupby("symbol", sort=True):
        ns = s.ts.astype("int64").to_numpy()
        b = ns // step * step if step else np.zeros(len(ns), np.int64)
        for key in np.unique(b):
            m = b == key
            times, prices = ns[m], s.price.to_numpy()[m]
            stop = (key + step if step else (end_ns if end_ns is not None else times[-1]))
            if step and end_ns is not None:
                stop = min(stop, end_ns)
            w = np.diff(np.r_[times, stop])
            rows.append({"symbol": sym, "ts": key, "twap": (prices * w).sum() / w.sum() if w.sum() else prices.mean(),
                         "trades": int(m.sum())})
    return pd.DataFrame(rows)


def test_ohlc_several_symbols_is_a_long_frame_equal_to_pandas(market):
    lake, trades = market
    got = ohlc(list(SYMBOLS), "5min", exchange=EXCHANGE, lake=lake)
    exp = ref_bars(binance(trades), 5 * MIN)
    assert list(got.columns) == ["symbol", "ts", "open", "high", "low", "close", "volume", "trades", "vwap", "coverage"]
    assert list(got.symbol) == list(exp.symbol) and list(got.ts) == list(exp.ts)
    for col in ("open", "high", "low", "close", "volume", "vwap"):
        np.testing.assert_allclose(got[col], exp[col], rtol=1e-12, err_msg=col)
    np.testing.assert_array_equal(got.trades, exp.trades)
    one = lake.ohlc("ETH-USDT", "5min", exchange=EXCHANGE)  # a str: the same rows, no symbol column
    pd.testing.assert_frame_equal(one, got[got.symbol == "ETH-USDT"].drop(columns="symbol").reset_index(drop=True))


def test_ohlc_of_a_one_element_list_keeps_the_symbol_column(market):
    lake, _ = market
    assert list(ohlc(["BTC-USDT"], lake=lake).columns)[:2] == ["symbol", "ts"]


def test_exchange_none_pools_every_exchange(market):
    lake, trades = market
    t = trades[trades.symbol == "BTC-USDT"]
    assert vwap("BTC-USDT", lake=lake) == pytest.approx((t.price * t.amount).sum() / t.amount.sum(), rel=1e-12)
    assert lake.ohlc("BTC-USDT", "1h").trades.sum() == len(t)


def test_vwap_scalar_and_per_bucket_for_several_symbols(market):
    lake, trades = market
    t = binance(trades)
    got = vwap(list(SYMBOLS), exchange=EXCHANGE, lake=lake)
    assert list(got.columns) == ["symbol", "vwap", "volume", "trades"]
    for sym, row in zip(got.symbol, got.itertuples()):
        s = t[t.symbol == sym]
        assert row.vwap == pytest.approx((s.price * s.amount).sum() / s.amount.sum(), rel=1e-12)
        assert row.trades == len(s)
    per = lake.vwap(list(SYMBOLS), "10min", exchange=EXCHANGE)
    exp = ref_bars(t, 10 * MIN)
    assert list(per.columns) == ["symbol", "ts", "vwap", "volume", "trades"]
    np.testing.assert_allclose(per.vwap, exp.vwap, rtol=1e-12)
    assert vwap("NOPE-USDT", lake=lake) is None


def test_twap_per_bucket_and_over_a_window_across_history_and_live(market):
    lake, trades = market
    t = binance(trades)
    got = twap(list(SYMBOLS), "3min", exchange=EXCHANGE, lake=lake)
    exp = ref_twap(t, 3 * MIN)
    assert list(got.columns) == ["symbol", "ts", "twap", "trades"]
    assert list(got.ts.astype("int64")) == list(exp.ts) and list(got.symbol) == list(exp.symbol)
    np.testing.assert_allclose(got.twap, exp.twap, rtol=1e-12)
    np.testing.assert_array_equal(got.trades, exp.trades)
    # a window from history into the live rows, ending mid-bucket: the last trade holds until `end`
    start, end = t.ts.iloc[200], t.ts.iloc[1300] + pd.Timedelta("7s")
    win = binance(trades, start, end)
    got = lake.twap("BTC-USDT", "3min", exchange=EXCHANGE, start=start, end=end)
    exp = ref_twap(win[win.symbol == "BTC-USDT"], 3 * MIN, end.value)
    np.testing.assert_allclose(got.twap, exp.twap, rtol=1e-12)
    whole = twap("BTC-USDT", exchange=EXCHANGE, start=start, end=end, lake=lake)
    assert whole == pytest.approx(ref_twap(win[win.symbol == "BTC-USDT"], None, end.value).twap[0], rel=1e-12)
    open_ended = twap(list(SYMBOLS), exchange=EXCHANGE, lake=lake)
    np.testing.assert_allclose(open_ended.twap, ref_twap(t, None).twap, rtol=1e-12)


@pytest.mark.parametrize("how", ["simple", "log"])
def test_returns_close_to_close(market, how):
    lake, trades = market
    got = returns(list(SYMBOLS), "2min", how=how, exchange=EXCHANGE, lake=lake)
    bars = ref_bars(binance(trades), 2 * MIN)
    prev = bars.groupby("symbol").close.shift()
    exp = bars.close / prev - 1 if how == "simple" else np.log(bars.close / prev)
    assert list(got.columns) == ["symbol", "ts", "close", "return"]
    np.testing.assert_allclose(got.close, bars.close, rtol=0)
    np.testing.assert_allclose(got["return"], exp, rtol=1e-12)
    assert got.groupby("symbol")["return"].apply(lambda r: r.isna().sum()).tolist() == [1, 1]


def test_realized_volatility_from_sample_bars(market):
    lake, trades = market
    t = binance(trades)
    bars = ref_bars(t, MIN)
    r = np.log(bars.close / bars.groupby("symbol").close.shift())
    bars = bars.assign(r=r, b=bucket(bars.ts, 15 * MIN)).dropna(subset=["r"])
    g = bars.groupby(["symbol", "b"]).r
    exp = g.agg(lambda x: np.sqrt((x * x).sum())).reset_index()
    got = realized_volatility(list(SYMBOLS), "15min", sample="1min", exchange=EXCHANGE, lake=lake)
    assert list(got.columns) == ["symbol", "ts", "realized_volatility", "returns"]
    assert list(got.ts) == list(exp.b)
    np.testing.assert_allclose(got.realized_volatility, exp.r, rtol=1e-12)
    np.testing.assert_array_equal(got.returns, g.size())
    one = lake.realized_volatility("ETH-USDT", sample="1min", exchange=EXCHANGE)
    eth = bars[bars.symbol == "ETH-USDT"]
    assert one == pytest.approx(np.sqrt((eth.r ** 2).sum()), rel=1e-12)
    assert isinstance(realized_volatility(["ETH-USDT"], exchange=EXCHANGE, lake=lake, to="polars"), pl.DataFrame)


def test_start_end_window_and_polars(market):
    lake, trades = market
    t = binance(trades)
    start, end = t.ts.iloc[500], t.ts.iloc[2800]
    got = ohlc(list(SYMBOLS), "1min", exchange=EXCHANGE, start=start, end=end, to="polars", lake=lake)
    assert isinstance(got, pl.DataFrame)
    exp = ref_bars(binance(trades, start, end), MIN)
    np.testing.assert_allclose(got["close"].to_numpy(), exp.close, rtol=0)
    assert got["trades"].sum() == len(binance(trades, start, end))


@pytest.mark.parametrize("call, match", [
    (lambda lk: ohlc([], lake=lk), "symbols"),
    (lambda lk: ohlc(["BTC-USDT", 5], lake=lk), "symbols"),
    (lambda lk: vwap(b"BTC-USDT", lake=lk), "symbols"),
    (lambda lk: returns("BTC-USDT", how="pct", lake=lk), "how"),
    (lambda lk: realized_volatility("BTC-USDT", "90s", sample="1min", lake=lk), "multiple of sample"),
    (lambda lk: twap("BTC-USDT", "1min", exchange=5, lake=lk), "exchange"),
    (lambda lk: vwap("BTC-USDT", to="excel", lake=lk), "to must be one of"),
    (lambda lk: ohlc("BTC-USDT", start="2024-01-02", end="2024-01-01", lake=lk), "end must be after start"),
    (lambda lk: ohlc("BTC-USDT", "1 fortnight", lake=lk), "interval"),
])
def test_bad_arguments_are_config_errors_naming_the_argument(market, call, match):
    with pytest.raises(ConfigError, match=match):
        call(market[0])


prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
amounts = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)


@given(st.lists(st.tuples(prices, amounts, st.integers(0, 3_600_000), st.sampled_from(SYMBOLS)), min_size=1, max_size=40))
@example(rows=[(460995.0, 1.0, 0, "BTC-USDT"), (0.015625, 1.0, 100000, "BTC-USDT")])  # close/prev ~ 3e-8
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bar_and_average_properties(tmp_path_factory, make_trade, rows):
    trades = [make_trade(p, a, T0 + ms / 1000, symbol=s) for p, a, ms, s in rows]
    with Lake(tmp_path_factory.mktemp("p"), autoflush=False) as lake:
        put(lake, trades[: len(trades) // 2])
        lake.flush()
        put(lake, trades[len(trades) // 2:])
        bars = lake.ohlc(list(SYMBOLS), "5min")
        assert bars.trades.sum() == len(rows)
        assert (bars.low <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars[["open", "close"]].max(axis=1) <= bars.high).all()
        tol = 1 + 1e-12
        assert ((bars.low <= bars.vwap * tol) & (bars.vwap <= bars.high * tol)).all()
        tw = lake.twap(list(SYMBOLS), "5min")
        assert ((bars.low.to_numpy() <= tw.twap.to_numpy() * tol) & (tw.twap.to_numpy() <= bars.high.to_numpy() * tol)).all()
        for sym in {s for *_, s in rows}:
            ps = [float(str(p)) for p, _, _, s in rows if s == sym]
            for value in (lake.vwap(sym), lake.twap(sym)):
                assert min(ps) / tol <= value <= max(ps) * tol
        ret = lake.returns(list(SYMBOLS), "5min")
        prev = ret.groupby("symbol").close.shift()
        # return = close / prev - 1 holds to rounding: 1 + return carries an absolute error of about one
        # ulp of 1.0, i.e. ~2e-16 * prev in the product (relative 1e-9 fails for close/prev ~ 1e-8)
        back = ((ret["return"] + 1) * prev).to_numpy()
        close = ret.close.where(prev.notna()).to_numpy()
        assert np.array_equal(np.isnan(back), np.isnan(close))
        ok = ~np.isnan(close)
        assert (np.abs(back - close)[ok] <= 1e-9 * np.abs(close[ok]) + 1e-15 * prev.to_numpy()[ok]).all()


HELPERS = ("asof_join", "mid", "ohlc", "realized_volatility", "resample", "returns", "spread", "trade_imbalance",
           "twap", "volume_profile", "vwap")


def test_every_helper_is_exported_documented_and_a_lake_method(market):
    import cryptolake_nb

    lake, _ = market
    for name in HELPERS:
        assert name in cryptolake_nb.__all__
        assert ">>>" in getattr(cryptolake_nb, name).__doc__, f"{name} has no example"
        assert callable(getattr(Lake, name))
    lake.activate()
    assert cryptolake_nb.twap("ETH-USDT", "1min").equals(lake.twap("ETH-USDT", "1min"))
    assert cryptolake_nb.resample("ticker", "1min").equals(lake.resample("ticker", "1min"))


def test_coverage_per_symbol_in_the_long_frame(lake, make_trade):
    put(lake, [make_trade(100, 1, T0 + 60 * i + 1, symbol=s, id=f"{s}{i}") for s in SYMBOLS for i in range(3)])
    step = 60 * 10**9
    b0 = int(T0 * 1e9) // step * step
    lake.gaps.record("silence", exchange=EXCHANGE, symbol="BTC-USDT", channel="trades", start_ns=b0, end_ns=b0 + step // 2)
    lake.gaps.record("reconnect", exchange=EXCHANGE, channel=None, start_ns=b0 + step, end_ns=b0 + step + step // 4)
    bars = lake.ohlc(list(SYMBOLS), "1min")
    got = {(s, t.value - b0): c for s, t, c in zip(bars.symbol, bars.ts, bars.coverage)}
    assert got == {("BTC-USDT", 0): 0.5, ("BTC-USDT", step): 0.75, ("BTC-USDT", 2 * step): 1.0,
                   ("ETH-USDT", 0): 1.0, ("ETH-USDT", step): 0.75, ("ETH-USDT", 2 * step): 1.0}
