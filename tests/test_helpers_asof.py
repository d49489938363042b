"""asof_join and resample against pandas (merge_asof, a hand-made grid) on lake tables across history
and live and on frames; properties: an as-of match never looks ahead and respects the tolerance."""
from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from cryptofeed.types import Funding, Ticker
from hypothesis import strategies as st

from cryptolake_nb import ConfigError, Lake, asof_join, mid, resample
from cryptolake_nb.schema import schema_for

from feeding import put
from helper_market import EXCHANGE, SYMBOLS, T0, build

SEC = 10**9


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    lake, ref = build(tmp_path_factory.mktemp("asof") / "lake")
    yield lake, ref
    lake.close()


def on_binance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.exchange == EXCHANGE].sort_values(["ts", "exchange", "symbol"], kind="stable").reset_index(drop=True)


def merged(trades: pd.DataFrame, ticker: pd.DataFrame, tolerance: str | None) -> pd.DataFrame:
    """pandas' merge_asof by exchange and symbol, rows in the order asof_join gives a left table's:
    by exchange, symbol, then time."""
    right = ticker.assign(quote_ts=ticker.ts)[["ts", "exchange", "symbol", "bid", "ask", "quote_ts"]]
    out = pd.merge_asof(trades, right.sort_values("ts"), on="ts", by=["exchange", "symbol"], direction="backward",
                        tolerance=None if tolerance is None else pd.Timedelta(tolerance))
    out = out.sort_values(["exchange", "symbol", "ts"], kind="stable", ignore_index=True)
    return out.assign(staleness=out.ts - out.quote_ts)


def assert_same_join(got: pd.DataFrame, exp: pd.DataFrame, order: list[str]) -> None:
    """`got` is in `order` (the keys, NULL last, then the time) and holds the rows of `exp`, types
    included; rows tied on `order` may come in another order (a table's ties keep its files' order)."""
    assert got[order].equals(got.sort_values(order, kind="stable", na_position="last")[order].reset_index(drop=True))
    everything = [*order, *[c for c in got.columns if c not in order]]
    pd.testing.assert_frame_equal(got.sort_values(everything, kind="stable", ignore_index=True),
                                  exp.sort_values(everything, kind="stable", ignore_index=True))


@pytest.mark.parametrize("tolerance", ["3s", None])
def test_two_lake_tables_equal_merge_asof(market, tolerance):
    lake, ref = market
    got = asof_join("trades", "ticker", list(SYMBOLS), exchange=EXCHANGE, tolerance=tolerance,
                    columns=["bid", "ask"], lake=lake)
    exp = merged(on_binance(ref["trades"]), on_binance(ref["ticker"]), tolerance)
    assert list(got.columns) == ["exchange", "symbol", "side", "amount", "price", "trade_id", "type", "extra", "ts",
                                 "receipt_ts", "bid", "ask", "staleness"]
    assert list(got.ts) == list(exp.ts) and list(got.symbol) == list(exp.symbol)
    np.testing.assert_allclose(got.price, exp.price, rtol=0)
    np.testing.assert_allclose(got.bid, exp.bid, rtol=0)
    np.testing.assert_allclose(got.ask, exp.ask, rtol=0)
    assert (got.staleness.isna() == exp.staleness.isna()).all()
    assert (got.staleness.dropna() == exp.staleness.dropna()).all()
    assert (got.staleness.dropna() >= pd.Timedelta(0)).all()
    if tolerance:
        assert got.ask.isna().sum() > 100 and (got.staleness.dropna() <= pd.Timedelta(tolerance)).all()


def test_start_end_bound_the_left_rows_and_the_right_side_looks_back(market):
    lake, ref = market
    trades, ticker = on_binance(ref["trades"]), on_binance(ref["ticker"])
    start, end = trades.ts.iloc[1000], trades.ts.iloc[2500]
    got = lake.asof_join("trades", "ticker", "ETH-USDT", exchange=EXCHANGE, start=start, end=end, tolerance="1min")
    left = trades[(trades.ts >= start) & (trades.ts < end) & (trades.symbol == "ETH-USDT")]
    exp = merged(left, ticker, "1min")
    assert len(got) == len(exp) and got.ts.min() >= start
    np.testing.assert_allclose(got.ask, exp.ask, rtol=0)
    assert got.staleness.equals(exp.staleness)
    assert {"extra_right", "receipt_ts_right"} <= set(got.columns)  # colliding right columns are suffixed


def test_two_tables_give_the_frame_duckdbs_asof_gives_for_the_same_rows(market):
    """Two lake tables are read apart and matched by polars (one stream, or by key); the same rows
    given as Arrow frames go through DuckDB's ASOF JOIN: the two must come out equal, types included."""
    lake, _ = market
    trades = lake.sql("SELECT * FROM trades", to="arrow")
    ticker = lake.sql("SELECT * FROM ticker", to="arrow")
    for symbols, exchange in (("ETH-USDT", EXCHANGE), (list(SYMBOLS), None), (list(SYMBOLS), EXCHANGE), (None, None)):
        for columns in (None, []):  # []: only the staleness
            got = asof_join("trades", "ticker", symbols, exchange=exchange, tolerance="3s", columns=columns, lake=lake)
            exp = asof_join(trades, ticker, symbols, exchange=exchange, tolerance="3s", columns=columns)
            order = ["ts"] if isinstance(symbols, str) else ["exchange", "symbol", "ts"]
            assert_same_join(got, exp, order)
            # a lake table on the left and a frame on the right: DuckDB's ASOF, the table's order
            mixed = asof_join("trades", ticker, symbols, exchange=exchange, tolerance="3s", columns=columns, lake=lake)
            assert_same_join(mixed, exp, order)
        assert {"extra_right", "receipt_ts_right"} <= set(got.columns) or columns == []
    one = asof_join("trades", "ticker", "ETH-USDT", exchange=EXCHANGE, tolerance="3s", lake=lake)
    assert one.bid.isna().any() and one.bid.notna().any() and {"extra_right", "receipt_ts_right"} <= set(one.columns)
    for to in ("arrow", "polars"):
        pair = [asof_join("trades", "ticker", list(SYMBOLS), tolerance="3s", lake=lake, to=to),
                asof_join(trades, ticker, list(SYMBOLS), tolerance="3s", to=to)]
        assert pair[0].schema == pair[1].schema


def test_a_null_key_matches_nothing_between_two_tables(market):
    """`by` a nullable column (a trade's side): NULL = NULL is not true, as in DuckDB's ASOF."""
    lake, _ = market
    trades = lake.sql("SELECT * FROM trades", to="arrow")
    got = asof_join("trades", "trades", by=["exchange", "symbol", "side"], columns="price", lake=lake)
    exp = asof_join(trades, trades, by=["exchange", "symbol", "side"], columns="price")
    assert got.side.isna().sum() > 10 and got.price_right[got.side.isna()].isna().all()
    assert got.price_right[got.side.notna()].notna().all()  # each trade matches itself at least
    assert_same_join(got, exp, ["exchange", "symbol", "side", "ts"])


def test_the_tolerance_is_inclusive_to_the_nanosecond_on_one_stream(tmp_path, make_trade):
    with Lake(tmp_path, autoflush=False) as lake:
        put(lake, [make_trade(100, 1, T0 + s, id=str(i)) for i, s in enumerate([0.25, 1.0, 1.5])])
        cb = lake.callbacks(["ticker"])["ticker"]
        asyncio.run(cb(Ticker("BINANCE", "BTC-USDT", Decimal(1), Decimal(2), T0 + 0.5, raw=None), T0))
        for tolerance, matched in (("500ms", [False, True, False]), ("999999999ns", [False, True, False]),
                                   ("1s", [False, True, True]), (None, [False, True, True])):
            got = asof_join("trades", "ticker", "BTC-USDT", exchange="BINANCE", tolerance=tolerance, lake=lake)
            assert got.bid.notna().tolist() == matched, tolerance
            assert got.staleness.tolist()[1:] == [pd.Timedelta(s, "ms") if m else pd.NaT
                                                  for s, m in zip((500, 1000), matched[1:])]


def test_frames_keep_the_left_order_and_work_without_a_lake(market):
    lake, ref = market
    trades, ticker = on_binance(ref["trades"]), on_binance(ref["ticker"])
    left = trades.sample(frac=0.3, random_state=1)[["ts", "symbol", "price"]]  # shuffled on purpose
    right = ticker[["ts", "symbol", "bid", "ask"]]
    got = asof_join(left, pl.from_pandas(right), tolerance="10s")
    exp = pd.merge_asof(left.reset_index().sort_values("ts"), right.assign(rts=right.ts), on="ts", by="symbol",
                        tolerance=pd.Timedelta("10s")).set_index("index").loc[left.index]
    assert list(got.columns) == ["ts", "symbol", "price", "bid", "ask", "staleness"]
    assert list(got.ts) == list(left.ts)
    np.testing.assert_allclose(got.ask, exp.ask, rtol=0)
    assert got.staleness.equals((exp.ts - exp.rts).rename("staleness").reset_index(drop=True))
    # a frame against a lake table: the table part is read with its filters first
    mixed = asof_join(pa.Table.from_pandas(left, preserve_index=False), "ticker", exchange=EXCHANGE,
                      tolerance="10s", columns="ask", lake=lake, to="arrow")
    assert isinstance(mixed, pa.Table)
    np.testing.assert_array_equal(mixed.column("ask").to_numpy(zero_copy_only=False), got.ask)


def test_joining_bars_to_quotes_with_resample_fill(market):
    lake, _ = market
    quotes = mid("BTC-USDT", "10s", exchange=EXCHANGE, lake=lake)
    bars = lake.ohlc("BTC-USDT", "1min", exchange=EXCHANGE)
    grid = resample(quotes, "10s", "previous")
    got = asof_join(bars, grid, columns="mid", tolerance="10s")
    inside = (got.ts >= grid.ts.min()) & (got.ts <= grid.ts.max())
    assert inside.sum() > 50 and (got.staleness[inside] == pd.Timedelta(0)).all()
    np.testing.assert_array_equal(got.mid[inside], grid.set_index("ts").mid.loc[got.ts[inside]])
    assert got.mid[got.ts < grid.ts.min()].isna().all()
    assert got.mid[got.ts > grid.ts.max()].isna().all()  # beyond the tolerance of the last quote


@pytest.mark.parametrize("kwargs, match", [
    ({"left": "nope", "right": "ticker"}, "left must be a lake table"),
    ({"left": "trades", "right": 5}, "right must be a lake table name or a pandas"),
    ({"left": "trades", "right": "ticker", "on": "price"}, "on must name a column of table 'ticker'"),
    ({"left": "trades", "right": "ticker", "on": "amount"}, "on must name a column of table 'ticker'"),
    ({"left": "trades", "right": "trades", "on": "price"}, "on must name a timestamp column"),
    ({"left": "trades", "right": "ticker", "by": ["side"]}, "by must name a column of table 'ticker'"),
    ({"left": "trades", "right": "ticker", "columns": ["bid", "price; --"]}, "columns must name a column"),
    ({"left": "trades", "right": "ticker", "tolerance": "soon"}, "tolerance"),
    ({"left": "trades", "right": "ticker", "by": [1]}, "by must be a column name"),
    ({"left": pd.DataFrame({"ts": [], "__cl_t": []}), "right": "ticker"}, "starting with '__cl_'"),
    ({"left": pd.DataFrame({"ts": pd.to_datetime([0]), "staleness": [1]}), "right": "ticker"}, "staleness"),
])
def test_bad_asof_arguments(market, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        asof_join(lake=market[0], **kwargs)


def grid_reference(frame: pd.DataFrame, step: int, fill: str, keys: list[str], lo=None, hi=None) -> pd.DataFrame:
    """The last row per (keys, bucket), then every bucket of each group's span, filled by rows."""
    f = frame.assign(b=frame.ts.astype("int64") // step * step).sort_values([*keys, "ts"], kind="stable")
    last = f.drop_duplicates([*keys, "b"], keep="last")
    if fill == "none":
        return last.assign(ts=pd.to_datetime(last.b, utc=True), filled=False).drop(columns="b")
    parts = []
    for key, g in (last.groupby(keys, sort=True) if keys else [((), last)]):
        buckets = np.arange(g.b.min() if lo is None else lo, (g.b.max() if hi is None else hi) + step, step)
        have = pd.Series(g.b.to_numpy(), index=g.b.to_numpy())
        src = have.reindex(buckets)
        if fill == "previous":
            src = src.ffill()
        rows = g.set_index("b").reindex(src.to_numpy()).reset_index(drop=True)
        for k, v in zip(keys, key if isinstance(key, tuple) else (key,)):
            rows[k] = v
        rows["ts"] = pd.to_datetime(buckets, utc=True)
        rows["filled"] = (src.to_numpy() != buckets)
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)[[*frame.columns, "filled"]]


@pytest.mark.parametrize("fill", ["none", "null", "previous"])
def test_resample_a_lake_table_equals_pandas(market, fill):
    lake, ref = market
    ticker = ref["ticker"][ref["ticker"].exchange == EXCHANGE]
    got = resample("ticker", "30s", fill, symbols=list(SYMBOLS), exchange=EXCHANGE, lake=lake)
    exp = grid_reference(ticker, 30 * SEC, fill, ["exchange", "symbol"])
    assert list(got.columns) == ["exchange", "symbol", "bid", "ask", "extra", "ts", "receipt_ts", "filled"]
    assert list(got.ts) == list(exp.ts) and list(got.symbol) == list(exp.symbol)
    np.testing.assert_allclose(got.bid, exp.bid, rtol=0)  # the last row's bid, even when it is missing
    np.testing.assert_allclose(got.ask, exp.ask, rtol=0)
    assert list(got.filled) == list(exp.filled)
    assert (fill == "none") == (not got.filled.any())


def test_resample_a_frame_within_start_and_end(market):
    lake, _ = market
    bars = lake.ohlc(["BTC-USDT", "ETH-USDT"], "1min", exchange=EXCHANGE, to="polars")
    first = pd.Timestamp(bars["ts"].min())
    start, end = first - pd.Timedelta("3min"), first + pd.Timedelta("30min")
    got = resample(bars, "1min", "previous", start=start, end=end, to="polars")
    assert isinstance(got, pl.DataFrame) and got.height == 2 * 33
    exp = grid_reference(bars.to_pandas(), 60 * SEC, "previous", ["symbol"], lo=start.value,
                         hi=(end.value - 1) // (60 * SEC) * (60 * SEC))
    np.testing.assert_allclose(got["close"].to_numpy().astype(float), exp.close.to_numpy(), rtol=0)
    assert got["close"].head(3).null_count() == 3  # nothing before the first bar to carry
    with pytest.raises(ConfigError, match="buckets"):
        resample(bars, "1ns", "null")
    with pytest.raises(ConfigError, match="fill must be one of 'none', 'previous', 'null'"):
        resample(bars, "1min", "ffill")


settle = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
times = st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True)


@given(left=times, right=times, tol=st.one_of(st.none(), st.integers(1, 3000)),
       keys=st.lists(st.sampled_from("ab"), min_size=80, max_size=80))
@settle
def test_asof_never_looks_ahead_and_respects_the_tolerance(left, right, tol, keys):
    lf = pd.DataFrame({"ts": pd.to_datetime(left, unit="ms", utc=True), "k": keys[: len(left)]})
    rf = pd.DataFrame({"ts": pd.to_datetime(right, unit="ms", utc=True), "k": keys[40: 40 + len(right)],
                       "rt": right})
    got = asof_join(lf, rf, by="k", tolerance=None if tol is None else f"{tol}ms")
    for t, k, rt, stale in zip(left, lf.k, got.rt, got.staleness):
        seen = [r for r, rk in zip(right, rf.k) if rk == k and r <= t]
        best = max(seen, default=None)
        if best is not None and (tol is None or t - best <= tol):
            assert rt == best and stale == pd.Timedelta(t - best, "ms") and stale >= pd.Timedelta(0)
        else:
            assert pd.isna(rt) and pd.isna(stale)


@given(rows=st.lists(st.tuples(st.integers(0, 600_000), st.sampled_from(SYMBOLS)), min_size=1, max_size=30),
       quotes=st.lists(st.tuples(st.integers(0, 600_000), st.sampled_from(SYMBOLS)), min_size=1, max_size=30),
       tol=st.integers(1, 120_000), one=st.booleans())
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_asof_over_lake_tables_never_looks_ahead(tmp_path_factory, make_trade, rows, quotes, tol, one):
    """`one`: one symbol on one exchange, the one-stream path (constant key columns); else by key."""
    with Lake(tmp_path_factory.mktemp("a"), autoflush=False) as lake:
        put(lake, [make_trade(100, 1, T0 + ms / 1000, symbol=s, id=str(i)) for i, (ms, s) in enumerate(rows)])
        cb = lake.callbacks(["ticker"])["ticker"]
        quotes = sorted(set(quotes))

        async def go(part):
            for ms, s in part:
                await cb(Ticker("BINANCE", s, Decimal(ms + 1), Decimal(ms + 2), T0 + ms / 1000, raw=None), T0)
        asyncio.run(go(quotes[: len(quotes) // 2]))
        lake.flush()
        asyncio.run(go(quotes[len(quotes) // 2:]))
        symbols, exchange = (SYMBOLS[0], "BINANCE") if one else (list(SYMBOLS), None)
        got = asof_join("trades", "ticker", symbols, exchange=exchange, tolerance=f"{tol}ms", columns=["bid", "ts"],
                        lake=lake)
        assert len(got) == sum(1 for _, s in rows if not one or s == SYMBOLS[0])
        assert set(got.exchange) <= {"BINANCE"} and str(got.exchange.dtype) == str(got.symbol.dtype) == "str"
        matched = got.dropna(subset=["bid"])
        assert (matched.ts_right <= matched.ts).all() and (matched.staleness == matched.ts - matched.ts_right).all()
        assert (matched.staleness <= pd.Timedelta(tol, "ms")).all()
        for ts, sym, bid in zip(got.ts, got.symbol, got.bid):
            t = round((ts.value - int(T0 * 1e9)) / 1e6)
            seen = [ms for ms, s in quotes if s == sym and ms <= t]
            expected = max(seen) if seen and t - max(seen) <= tol else None
            assert np.isnan(bid) if expected is None else bid == expected + 1


@given(ms=st.lists(st.integers(0, 100_000), min_size=1, max_size=40, unique=True), step=st.integers(1, 20_000),
       fill=st.sampled_from(["none", "null", "previous"]))
@settle
def test_resample_never_uses_a_row_from_after_the_bucket(ms, step, fill):
    frame = pd.DataFrame({"ts": pd.to_datetime(ms, unit="ms", utc=True), "orig": ms})
    got = resample(frame, f"{step}ms", fill)
    start = (got.ts.astype("int64") // 10**6).to_numpy()
    for b, orig, filled in zip(start, got.orig, got.filled):
        before_end = [m for m in ms if m < b + step]
        if fill == "previous" or not filled:
            assert orig == max(before_end) and (filled == (orig < b))
        else:
            assert pd.isna(orig)
    assert got.filled.sum() == (0 if fill == "none" else len(got) - len({m // step for m in ms}))


def test_left_rows_without_a_time_match_nothing_and_come_last(tmp_path):
    """`on` may name a nullable timestamp (funding's next_funding_time): such left rows get no right
    row, on the one-stream path (one symbol on one exchange) as on the keyed one."""
    with Lake(tmp_path, autoflush=False) as lake:
        cb = lake.callbacks(["funding"])["funding"]

        async def go():
            for i, next_time in enumerate([T0 + 10, None, T0 + 30, None, T0 + 20]):
                await cb(Funding("BINANCE_FUTURES", "BTC-USDT-PERP", Decimal(1), Decimal(i), next_time, T0 + i), T0 + i)
        asyncio.run(go())
        one = asof_join("funding", "funding", "BTC-USDT-PERP", on="next_funding_time", columns="rate",
                        exchange="BINANCE_FUTURES", lake=lake)
        keyed = asof_join("funding", "funding", on="next_funding_time", columns="rate", lake=lake)  # by key
        for got in (one, keyed):  # by `on`; rows tied on it (here: both without one) in no set order
            assert list(got.rate[:3]) == [0, 4, 2] and sorted(got.rate[3:]) == [1, 3]
            assert got.next_funding_time.isna().tolist() == [False] * 3 + [True] * 2
            assert got.rate_right.tolist()[:3] == [0, 4, 2] and got.rate_right[3:].isna().all()
            assert got.staleness[:3].eq(pd.Timedelta(0)).all() and got.staleness[3:].isna().all()


def test_many_keys_of_many_values_still_match_exactly(market):
    """Three keys with thousands of values each: over 2**31 combinations, past which the numbering
    of key combinations is made dense before the next key is added (a plain product of many such
    keys would overflow int64); every trade still finds itself, as DuckDB's ASOF does for the same
    frames."""
    lake, _ = market
    by = ["trade_id", "price", "amount"]
    trades = lake.sql("SELECT * FROM trades", to="arrow")
    got = asof_join("trades", "trades", by=by, columns=["ts", "side"], lake=lake)
    assert (got.ts_right == got.ts).all() and (got.side_right.isna() == got.side.isna()).all()
    assert got.trade_id.nunique() * got.price.nunique() * got.amount.nunique() > 2**31
    assert_same_join(got, asof_join(trades, trades, by=by, columns=["ts", "side"]), [*by, "ts"])


def rows(table: str, t_ms: np.ndarray, symbols: Any, exchanges: Any = "BINANCE", **values: Any) -> pa.Table:
    """Rows of a lake table at `T0 + t_ms` milliseconds; columns not given are NULL."""
    schema = schema_for(table)
    ts = pa.array((T0 * 1000 + np.asarray(t_ms)).astype(np.int64) * 10**6).cast(schema.field("ts").type)
    n = len(ts)
    cols = {"exchange": pa.array(np.broadcast_to(np.asarray(exchanges, object), n)),
            "symbol": pa.array(np.broadcast_to(np.asarray(symbols, object), n)), "ts": ts, "receipt_ts": ts,
            **{k: pa.array(np.broadcast_to(np.asarray(v), n)) for k, v in values.items()}}
    return pa.table([cols.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)


def test_a_key_combination_the_left_lacks_matches_nothing(tmp_path):
    """Quotes of BINANCE ETH-USDT and COINBASE BTC-USDT, trades of the other two combinations: every
    exchange and every symbol has quotes, no trade's (exchange, symbol) does; none matches."""
    with Lake(tmp_path, autoflush=False) as lake:
        t = np.arange(0, 20_000, 10)
        for exchange, symbol in (("BINANCE", "BTC-USDT"), ("COINBASE", "ETH-USDT")):
            lake.buffer("trades").append_batch(rows("trades", t + 5, symbol, exchange, amount=1.0, price=2.0,
                                                    trade_id=[f"{exchange}{i}" for i in t]))
        for exchange, symbol in (("BINANCE", "ETH-USDT"), ("COINBASE", "BTC-USDT")):
            lake.buffer("ticker").append_batch(rows("ticker", t, symbol, exchange, bid=1.0, ask=3.0))
        for tolerance in (None, "1s"):
            got = asof_join("trades", "ticker", ["BTC-USDT", "ETH-USDT"], tolerance=tolerance, lake=lake)
            assert len(got) == 4000 and got.bid.isna().all() and got.staleness.isna().all()


def test_long_history_runs_and_interleaved_live_rows_come_out_by_key_then_time(tmp_path):
    """Each stream's history is a run of over 4096 rows (sliced, not copied, into the output); live
    rows of both streams come interleaved, some older than the history (gathered, sorted in): the
    same rows, in (exchange, symbol, ts) order, as DuckDB's ASOF gives for them as frames."""
    rng = np.random.default_rng(7)

    def trades(t_ms: np.ndarray, first_id: int) -> pa.Table:
        n = len(t_ms)
        return rows("trades", t_ms, rng.choice(SYMBOLS[:2], n), amount=np.ones(n), price=rng.uniform(1, 2, n),
                    trade_id=np.arange(first_id, first_id + n).astype(str), side=rng.choice(["buy", "sell"], n))

    def quotes(t_ms: np.ndarray) -> pa.Table:
        return rows("ticker", t_ms, rng.choice(SYMBOLS[:2], len(t_ms)), bid=t_ms.astype(float),
                    ask=t_ms.astype(float) + 1)

    with Lake(tmp_path, autoflush=False) as lake:
        lake.buffer("trades").append_batch(trades(np.sort(rng.integers(0, 60_000, 12_000)), 0))
        lake.buffer("ticker").append_batch(quotes(np.sort(rng.integers(0, 60_000, 3_000))))
        lake.flush()
        late = rng.integers(0, 500, 40)  # older than most of the history: placed early, the runs stay long
        lake.buffer("trades").append_batch(trades(np.concatenate([np.sort(rng.integers(60_000, 70_000, 3_000)), late]), 12_000))
        lake.buffer("ticker").append_batch(quotes(np.concatenate([np.sort(rng.integers(60_000, 70_000, 800)), late])))
        got = asof_join("trades", "ticker", list(SYMBOLS[:2]), tolerance="2s", columns=["bid"], lake=lake)
        exp = asof_join(lake.sql("SELECT * FROM trades", to="arrow"), lake.sql("SELECT * FROM ticker", to="arrow"),
                        list(SYMBOLS[:2]), tolerance="2s", columns=["bid"])
        assert len(got) == 15_040 and got.bid.notna().sum() > 10_000
        assert_same_join(got, exp, ["exchange", "symbol", "ts"])


def test_keys_over_years_of_rows_match_by_key_as_duckdb_does(tmp_path):
    """300 key values over three years: group and time no longer fold into one int64 (the match then
    goes by key, `by`), and every trade still gets the quote DuckDB's ASOF gives the same frames."""
    rng = np.random.default_rng(3)
    years = 3 * 365 * 86_400_000
    with Lake(tmp_path, autoflush=False) as lake:
        lake.buffer("trades").append_batch(rows("trades", np.sort(rng.integers(0, years, 3_000)), "BTC-USDT",
                                                amount=1.0, price=2.0, trade_id=np.arange(3_000).astype(str),
                                                extra=rng.integers(0, 300, 3_000).astype(str)))
        lake.buffer("ticker").append_batch(rows("ticker", np.sort(rng.integers(0, years, 3_000)), "BTC-USDT",
                                                bid=np.arange(3_000.0), extra=rng.integers(0, 300, 3_000).astype(str)))
        lake.flush()
        got = asof_join("trades", "ticker", by="extra", columns=["bid", "ts"], lake=lake)
        exp = asof_join(lake.sql("SELECT * FROM trades", to="arrow"), lake.sql("SELECT * FROM ticker", to="arrow"),
                        by="extra", columns=["bid", "ts"])
        assert len(got) == 3_000 and 2_000 < got.bid.notna().sum() < 3_000 and (got.staleness.dropna() >= pd.Timedelta(0)).all()
        assert_same_join(got, exp, ["extra", "ts"])


def test_resample_keeps_rows_with_a_null_key_in_one_group():
    """As GROUP BY does: the NULL key is one group, gridded and filled like any other."""
    frame = pd.DataFrame({"ts": pd.to_datetime([0, 1000, 3000, 500], unit="ms", utc=True),
                          "venue": [None, None, None, "X"], "px": [1.0, 2.0, 3.0, 9.0]})
    got = resample(frame, "1s", "previous", by="venue")
    nulls = got[got.venue.isna()]
    assert nulls.px.tolist() == [1.0, 2.0, 2.0, 3.0] and nulls.filled.tolist() == [False, False, True, False]
    assert got[got.venue == "X"].px.tolist() == [9.0]
