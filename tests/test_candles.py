"""compare_candles: the exchange's candles against bars built from the lake's own trades.

On real captures holding both candles and trades (BINANCE, BINANCE_US, BINANCE_FUTURES,
BINANCE_DELIVERY, HITBTC, GATEIO) and on small synthetic cases for the window and tolerance rules.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from cryptofeed.types import Candle, Trade

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.candles import compare_candles
from cryptolake_nb.replay import capture_sets

REAL = ("BINANCE", "BINANCE_US", "BINANCE_FUTURES", "BINANCE_DELIVERY", "HITBTC", "GATEIO")
MINUTE = pd.Timedelta("1min")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """One lake holding the six captures that have both candles and trades."""
    from cryptofeed_reference import CAPTURES

    if not CAPTURES.is_dir():
        pytest.fail(f"recorded captures not found at {CAPTURES}")
    sets = capture_sets(CAPTURES)
    with Lake(tmp_path_factory.mktemp("candles") / "lake", autoflush=False) as lake:
        for name in REAL:
            lake.replay(sets[name])
        yield lake


@pytest.fixture(scope="module")
def compared(real: Lake) -> pd.DataFrame:
    """compare_candles of every (exchange, symbol) with candles in `real`, concatenated."""
    symbols = real.sql("SELECT DISTINCT exchange, symbol FROM candles ORDER BY 1, 2")
    return pd.concat([compare_candles(s, exchange=e, lake=real)
                      for e, s in zip(symbols["exchange"], symbols["symbol"])], ignore_index=True)


def _row(df: pd.DataFrame, exchange: str, symbol: str, start: str) -> pd.Series:
    (i,) = df.index[(df.exchange == exchange) & (df.symbol == symbol) & (df.start == pd.Timestamp(start, tz="UTC"))]
    return df.loc[i]


# -- real captures ----------------------------------------------------------------------------------

def test_one_row_per_candle_with_its_latest_update(real: Lake, compared: pd.DataFrame) -> None:
    df = compared
    latest = real.sql("SELECT exchange, symbol, interval, start, count(*) AS updates, max(ts) AS ts "
                      "FROM candles GROUP BY ALL ORDER BY ALL")
    assert len(df) == len(latest) == 1000 + 10 + 2 + 2 + 8 + 7  # HITBTC, GATEIO, BINANCE, _US, _FUTURES, _DELIVERY
    merged = df.merge(latest, on=["exchange", "symbol", "interval", "start"], suffixes=("", "_sql"))
    assert len(merged) == len(df)
    assert (merged.updates == merged.updates_sql).all() and (merged.ts == merged.ts_sql).all()
    assert (df.window_end - df.start == MINUTE).all()  # every capture's candles are 1m


def test_trade_bars_equal_an_independent_computation(real: Lake, compared: pd.DataFrame) -> None:
    """The trade_* columns against pandas over the same windows: [start, start + 1 min), cut at the
    candle's last update (inclusive) while it is not closed."""
    df = compared
    trades = real.sql("SELECT exchange, symbol, price, amount, ts, receipt_ts FROM trades")
    checked_open = 0
    for _, c in df.iterrows():
        until = c.window_end if c.closed else min(c.window_end, c.ts + pd.Timedelta(1, "ns"))
        t = trades[(trades.exchange == c.exchange) & (trades.symbol == c.symbol)
                   & (trades.ts >= c.start) & (trades.ts < until)].sort_values(["ts", "receipt_ts"])
        assert c.trade_count == len(t) and c.no_trades == t.empty
        assert c.trade_volume == pytest.approx(t.amount.sum(), rel=1e-12)
        assert c.trade_notional == pytest.approx((t.price * t.amount).sum(), rel=1e-12)
        if t.empty:
            assert pd.isna(c.trade_open) and pd.isna(c.trade_high)
            continue
        assert (c.trade_high, c.trade_low) == (t.price.max(), t.price.min())
        keys = list(zip(t.ts, t.receipt_ts))
        if keys.count(keys[0]) == 1 and keys.count(keys[-1]) == 1:  # first/last trade unambiguous
            assert (c.trade_open, c.trade_close) == (t.price.iloc[0], t.price.iloc[-1])
            checked_open += 1
    assert checked_open >= 20


def test_windows_the_capture_covers_match(compared: pd.DataFrame) -> None:
    df = compared
    lrc = _row(df, "BINANCE", "LRC-BTC", "2021-10-12 00:28")
    assert lrc.mismatch == "" and lrc.trades == lrc.trade_count == 1 and lrc.volume == lrc.trade_volume == 177
    omg = _row(df, "BINANCE_US", "OMG-BUSD", "2021-10-12 00:25")
    assert omg.mismatch == "" and not omg.closed and omg.trade_count == 2
    # BINANCE_FUTURES streams aggregated trades: OHLCV agree, the trade count cannot
    for symbol in ("CTK-USDT-PERP", "KEEP-USDT-PERP", "SUSHI-USDT-PERP"):
        row = _row(df, "BINANCE_FUTURES", symbol, "2021-07-22 22:26")
        assert row.mismatch == "trades" and 0 < row.trade_count < row.trades, symbol


def test_windows_opened_before_the_capture_are_flagged(compared: pd.DataFrame) -> None:
    df = compared
    omg = _row(df, "BINANCE_US", "OMG-BUSD", "2021-10-12 00:24")
    assert omg.closed and {"open", "volume", "trades"} <= set(omg.mismatch.split(","))
    assert omg.trade_volume < omg.volume and omg.trade_count < omg.trades
    delivery = df[df.exchange == "BINANCE_DELIVERY"]
    assert len(delivery) == 7 and (delivery.trade_volume < delivery.volume).all()
    assert delivery.mismatch.str.contains("volume").all()


def test_hitbtc_duplicate_connections_are_deduplicated_and_candles_agree(real: Lake, compared: pd.DataFrame) -> None:
    """HITBTC's capture ran four connections with the same subscriptions: each trade arrives four
    times. Deduplication by trade id keeps one, so the trades' volume equals the candle's in every
    window but the one where each symbol's stored trades begin (HITBTC sends the last 100 trades on
    subscribing)."""
    df = compared
    hit = df[df.exchange == "HITBTC"]
    assert len(hit) == 1000 and (hit.updates == 4).all() and hit.trades.isna().all()
    assert real.dedup.dropped[("trades", "HITBTC")] == 3000
    first = real.sql("SELECT symbol, min(ts) AS first FROM trades WHERE exchange = 'HITBTC' GROUP BY 1")
    begins = {(s, t.floor("min")) for s, t in zip(first.symbol, first.first)}
    traded = hit[~hit.no_trades]
    assert 400 < len(traded) < 500
    same = (traded.trade_volume - traded.volume).abs() <= 1e-9 * traded.trade_volume
    assert (traded[same].mismatch == "").all()
    others = traded[~same]  # windows that opened before the first stored trade
    assert 0 < len(others) <= 10 and {(s, t) for s, t in zip(others.symbol, others.start)} <= begins
    assert others.mismatch.str.contains("open").all()
    empty = hit[hit.no_trades]
    assert (empty.trade_count == 0).all() and empty.trade_open.isna().all() and (empty.trade_volume == 0).all()
    assert (empty.mismatch == "volume").all()  # the exchange has volume, the lake no trades
    assert (hit.mismatch.str.split(",").explode().isin({"", "open", "high", "low", "close", "volume"})).all()


def test_gateio_counts_candle_volume_in_the_quote_currency(compared: pd.DataFrame) -> None:
    df = compared
    gate = df[df.exchange == "GATEIO"].set_index("symbol")
    for symbol in ("DIS-USDT", "NEO-BTC", "ZKS-ETH"):
        row = gate.loc[symbol]
        assert row.volume == pytest.approx(row.trade_notional, rel=1e-9) and row.mismatch == "volume", symbol
    quiet = gate[gate.no_trades & (gate.volume == 0)]
    assert len(quiet) >= 4 and (quiet.mismatch == "").all()  # nothing traded, nothing claimed


def test_filters_outputs_and_history(real: Lake) -> None:
    every = compare_candles("CRDT-ETH", lake=real)
    some = compare_candles("CRDT-ETH", exchange="HITBTC", interval="1m", start="2021-07-11", end="2021-07-12",
                           lake=real)
    expected = every[(every.start >= pd.Timestamp("2021-07-11", tz="UTC"))
                     & (every.start < pd.Timestamp("2021-07-12", tz="UTC"))]
    assert 0 < len(some) < len(every)
    pd.testing.assert_frame_equal(some, expected.reset_index(drop=True), rtol=1e-12)
    assert compare_candles("CRDT-ETH", interval="5m", lake=real).empty
    assert compare_candles("CRDT-ETH", exchange="BINANCE", lake=real).empty
    assert isinstance(compare_candles("CRDT-ETH", to="polars", lake=real), pl.DataFrame)
    arrow = compare_candles("CRDT-ETH", to="arrow", lake=real)
    assert arrow.schema.field("window_end").type == pa.timestamp("ns", tz="UTC")
    assert arrow.schema.field("mismatch").type == pa.large_string()
    real.flush()  # from Parquet history, with manifest pruning, the same answer
    assert real.status()["tables"]["candles"]["buffer_rows"] == 0
    pd.testing.assert_frame_equal(compare_candles("CRDT-ETH", lake=real), every, rtol=1e-12)


# -- synthetic: window and tolerance rules ----------------------------------------------------------

T0 = 1_700_000_040.0  # a minute boundary


def _candle(o, h, lo, c, volume, trades=3, closed=True, ts=T0 + 59.9, interval="1m", stop=T0 + 59.999):
    return Candle("BINANCE", "BTC-USDT", T0, stop, interval, trades, *(Decimal(str(v)) for v in (o, c, h, lo, volume)),
                  closed, ts)


def _trades(lake: Lake) -> None:
    cb = lake.callbacks(["trades"])["trades"]
    for offset, price, amount in ((1, 100, 1), (30, 105, 2), (59.9, 99, 0.5), (60, 200, 9)):
        asyncio.run(cb(Trade("BINANCE", "BTC-USDT", "buy", Decimal(str(amount)), Decimal(str(price)), T0 + offset),
                       T0 + offset + 0.01))


def _one(lake: Lake, candle: Candle, **kwargs) -> pd.Series:
    asyncio.run(lake.callbacks(["candles"])["candles"](candle, T0 + 70))
    (row,) = compare_candles("BTC-USDT", lake=lake, **kwargs).itertuples(index=False)
    return pd.Series(row._asdict())


def test_closed_candle_over_its_whole_window(lake: Lake) -> None:
    _trades(lake)
    row = _one(lake, _candle(100, 105, 99, 99, 3.5))
    assert row.mismatch == "" and row.trade_count == 3 and row.trade_volume == 3.5  # the T0+60 trade is next window
    assert row.window_end == pd.Timestamp(int((T0 + 60) * 1e9), tz="UTC")


def test_open_candle_counts_trades_up_to_its_update(lake: Lake) -> None:
    _trades(lake)
    row = _one(lake, _candle(100, 105, 100, 105, 3, trades=2, closed=False, ts=T0 + 30))
    assert row.mismatch == "" and row.trade_count == 2 and row.trade_close == 105


@pytest.mark.parametrize("high, rtol, differs", [(105 * (1 + 1e-12), None, False), (105 * (1 + 1e-6), None, True),
                                                 (105 * (1 + 1e-6), 1e-5, False)])
def test_tolerance(lake: Lake, high: float, rtol, differs: bool) -> None:
    _trades(lake)
    row = _one(lake, _candle(100, high, 99, 99, 3.5), **({} if rtol is None else {"rtol": rtol}))
    assert row.mismatch == ("high" if differs else "")


def test_every_field_can_be_named(lake: Lake) -> None:
    _trades(lake)
    row = _one(lake, _candle(101, 106, 98, 98.5, 4, trades=5))
    assert row.mismatch == "open,high,low,close,volume,trades"


def test_unknown_counts_and_odd_intervals(lake: Lake) -> None:
    _trades(lake)
    month = _one(lake, _candle(100, 105, 99, 99, 3.5, trades=None, interval="1M", stop=T0 + 59.95))
    assert month.mismatch == "" and month.trade_count == 3  # window ends just after stop
    assert month.window_end == pd.Timestamp(int(T0 * 1e9) + 59_950_000_001, tz="UTC")


def test_windows_without_trades(lake: Lake) -> None:
    row = _one(lake, _candle(100, 105, 99, 99, 0, trades=0))
    assert row.no_trades and row.trade_count == 0 and pd.isna(row.trade_open) and row.mismatch == ""


def test_bad_arguments(lake: Lake) -> None:
    with pytest.raises(ConfigError):
        compare_candles(["BTC-USDT"], lake=lake)
    with pytest.raises(ConfigError):
        compare_candles("BTC-USDT", rtol=-1, lake=lake)
    with pytest.raises(ConfigError):
        compare_candles("BTC-USDT", start="not a time", lake=lake)
    with pytest.raises(ConfigError):
        compare_candles("BTC-USDT", to="excel", lake=lake)
