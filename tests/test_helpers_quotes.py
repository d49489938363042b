"""spread / mid (ticker and L2 book), trade_imbalance and volume_profile against pandas on the same
rows, across history and live, several symbols."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptolake_nb import ConfigError, mid, spread, trade_imbalance, volume_profile

from feeding import put
from helper_market import EXCHANGE, SYMBOLS, T0, build

SEC = 10**9


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    lake, ref = build(tmp_path_factory.mktemp("quotes") / "lake")
    yield lake, ref
    lake.close()


def last_quotes(frame: pd.DataFrame, step: int) -> pd.DataFrame:
    """Per symbol and bucket, the last bid and the last ask (each skipping missing values)."""
    f = frame.assign(b=frame.ts.astype("int64") // step * step).sort_values(["symbol", "ts"], kind="stable")
    g = f.groupby(["symbol", "b"], sort=True)
    out = pd.DataFrame({"bid": g.bid.last(), "ask": g.ask.last()}).reset_index()
    return out.assign(ts=pd.to_datetime(out.b, utc=True))


@pytest.mark.parametrize("source", ["ticker", "book"])
def test_spread_and_mid_equal_pandas(market, source):
    lake, ref = market
    quotes = ref["ticker"][ref["ticker"].exchange == EXCHANGE] if source == "ticker" else ref["book"]
    exp = last_quotes(quotes, 10 * SEC)
    got = spread(list(SYMBOLS), "10s", source=source, exchange=EXCHANGE, lake=lake)
    assert list(got.columns) == ["symbol", "ts", "bid", "ask", "spread", "spread_bps"]
    assert list(got.symbol) == list(exp.symbol) and list(got.ts) == list(exp.ts)
    np.testing.assert_allclose(got.bid, exp.bid, rtol=0)
    np.testing.assert_allclose(got.ask, exp.ask, rtol=0)
    np.testing.assert_allclose(got.spread, exp.ask - exp.bid, rtol=1e-12)
    np.testing.assert_allclose(got.spread_bps, (exp.ask - exp.bid) / ((exp.ask + exp.bid) / 2) * 1e4, rtol=1e-12)
    m = lake.mid("BTC-USDT", "10s", source=source, exchange=EXCHANGE)
    e = exp[exp.symbol == "BTC-USDT"]
    assert list(m.columns) == ["ts", "bid", "ask", "mid"]
    np.testing.assert_allclose(m.mid, (e.bid + e.ask) / 2, rtol=1e-12)
    if source == "ticker":
        assert got.bid.isna().sum() < len(got) // 10  # the last non-missing bid of the bucket, not the last row's


def test_spread_over_a_window_across_history_and_live(market):
    lake, ref = market
    t = ref["ticker"][(ref["ticker"].exchange == EXCHANGE) & (ref["ticker"].symbol == "ETH-USDT")]
    start, end = t.ts.iloc[300], t.ts.iloc[800]
    got = spread("ETH-USDT", "1min", exchange=EXCHANGE, start=start, end=end, lake=lake)
    exp = last_quotes(t[(t.ts >= start) & (t.ts < end)], 60 * SEC)
    np.testing.assert_allclose(got.spread, exp.ask - exp.bid, rtol=1e-12)


def test_quotes_of_several_exchanges_are_never_mixed(market):
    lake, _ = market
    with pytest.raises(ConfigError, match="several exchanges"):
        spread("BTC-USDT", "10s", lake=lake)
    with pytest.raises(ConfigError, match="source must be one of 'ticker', 'book'"):
        mid("BTC-USDT", source="l3", exchange=EXCHANGE, lake=lake)


def test_trade_imbalance_equals_pandas(market):
    lake, ref = market
    t = ref["trades"][ref["trades"].exchange == EXCHANGE]
    t = t.assign(b=pd.to_datetime(t.ts.astype("int64") // (5 * 60 * SEC) * (5 * 60 * SEC), utc=True))
    g = t.groupby(["symbol", "b"])
    buy = t.amount.where(t.side == "buy", 0.0).groupby([t.symbol, t.b]).sum()
    sell = t.amount.where(t.side == "sell", 0.0).groupby([t.symbol, t.b]).sum()
    got = trade_imbalance(list(SYMBOLS), "5min", exchange=EXCHANGE, lake=lake)
    assert list(got.columns) == ["symbol", "ts", "buy_volume", "sell_volume", "imbalance", "volume", "trades"]
    np.testing.assert_allclose(got.buy_volume, buy, rtol=1e-12)
    np.testing.assert_allclose(got.sell_volume, sell, rtol=1e-12)
    np.testing.assert_allclose(got.imbalance, (buy - sell) / (buy + sell), rtol=1e-12)
    np.testing.assert_allclose(got.volume, g.amount.sum(), rtol=1e-12)
    assert got.volume.sum() > got.buy_volume.sum() + got.sell_volume.sum()  # unsided trades count in volume only
    whole = lake.trade_imbalance("ETH-USDT", None, exchange=EXCHANGE)
    e = t[t.symbol == "ETH-USDT"]
    b, s = e.amount[e.side == "buy"].sum(), e.amount[e.side == "sell"].sum()
    assert list(whole.columns) == ["buy_volume", "sell_volume", "imbalance", "volume", "trades"]
    assert whole.imbalance[0] == pytest.approx((b - s) / (b + s), rel=1e-12)


@pytest.mark.parametrize("bin_, interval", [(25, None), (7.5, "30min")])
def test_volume_profile_equals_pandas(market, bin_, interval):
    lake, ref = market
    t = ref["trades"][ref["trades"].exchange == EXCHANGE]
    keys = ["symbol", "level"]
    t = t.assign(level=np.floor(np.round(t.price / bin_, 9)))
    if interval:
        t = t.assign(b=pd.to_datetime(t.ts.astype("int64") // (30 * 60 * SEC) * (30 * 60 * SEC), utc=True))
        keys = ["symbol", "b", "level"]
    g = t.groupby(keys)
    exp = pd.DataFrame({"volume": g.amount.sum(), "trades": g.size(),
                        "buy": t.amount.where(t.side == "buy", 0.0).groupby([t[k] for k in keys]).sum()}).reset_index()
    got = volume_profile(list(SYMBOLS), interval, bin=bin_, exchange=EXCHANGE, lake=lake)
    assert list(got.columns) == ["symbol", *(["ts"] if interval else []), "price", "volume", "buy_volume",
                                 "sell_volume", "trades"]
    np.testing.assert_allclose(got.price, exp.level * bin_, rtol=0)
    np.testing.assert_allclose(got.volume, exp.volume, rtol=1e-12)
    np.testing.assert_allclose(got.buy_volume, exp.buy, rtol=1e-12)
    np.testing.assert_array_equal(got.trades, exp.trades)
    assert got.volume.sum() == pytest.approx(t.amount.sum(), rel=1e-12)


def test_volume_profile_levels_are_not_fooled_by_binary_fractions(lake, make_trade):
    put(lake, [make_trade(0.3, 1, T0), make_trade(0.7, 2, T0 + 1), make_trade(0.69, 4, T0 + 2)])
    got = volume_profile("BTC-USDT", bin=0.1, lake=lake)
    np.testing.assert_allclose(got.price, [0.3, 0.6, 0.7], atol=1e-12)
    np.testing.assert_allclose(got.volume, [1, 4, 2])
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ConfigError, match="bin"):
            volume_profile("BTC-USDT", bin=bad, lake=lake)
