"""The helper benchmark compares like with like: at a tiny size, every pandas baseline answer equals the
lake helper's (so a fast wrong answer cannot win), the comparison notices a difference, the data has
what the cases need (quotes, live rows after the history), and the targets are judged as stated."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.helpers_bench import build, cases, live_trades, quotes_for
from benchmarks.helpers_pandas import PandasHelpers
from benchmarks.helpers_report import disagreement, markdown, verdicts
from benchmarks.synth import DAY_NS, T0_NS, market

DAYS = 4
CASES = {c.name: c for c in cases(DAYS)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    """A tiny benchmark lake (history flushed, live rows buffered) and the pandas side over it."""
    lake, live = build(tmp_path_factory.mktemp("helpers") / "lake", 24_000, DAYS, 3_000)
    yield lake, PandasHelpers(lake.root, live), live
    lake.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_pandas_baseline_equals_the_lake_helper(bench, name: str) -> None:
    lake, base, _ = bench
    case = CASES[name]
    ours, theirs = case.lake(lake), case.pandas(base)
    assert disagreement(ours, theirs) is None
    if isinstance(ours, pd.DataFrame):
        assert len(ours) > 0  # an empty answer would agree with anything
    else:
        assert ours is not None and np.isfinite(ours)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c.floor is not None))
def test_the_floor_reads_the_rows_the_call_returns(bench, name: str) -> None:
    """asof_join's floor (its rows read, not joined) is those rows: same trades, same columns."""
    lake, _, _ = bench
    case = CASES[name]
    joined, read = case.lake(lake), case.floor(lake)
    assert len(read) == len(joined) > 0 and list(read.columns) == list(joined.columns[:len(read.columns)])
    keys = ["exchange", "symbol", "trade_id"]
    assert read.sort_values(keys, ignore_index=True).equals(
        joined[read.columns].sort_values(keys, ignore_index=True))


def test_live_rows_are_part_of_the_answers(bench) -> None:
    lake, base, live = bench
    live_start = pd.Timestamp(T0_NS + DAYS * DAY_NS, tz="UTC")
    assert live["trades"]["ts"].min() >= live_start
    assert live["trades"]["ts"].max() < live_start + pd.Timedelta("1h")
    bars = CASES["ohlc/recent"].lake(lake)
    assert (bars.ts >= live_start).any() and (bars.ts < live_start).any()  # history and live, one frame
    assert lake.sql("SELECT count(*) AS n FROM trades", source="live")["n"][0] == len(live["trades"])
    fills = CASES["asof_join/full"].pandas(base)
    matched = fills.dropna(subset=["bid"])
    assert (fills.ts >= live_start).any() and len(matched) > 0  # the tiny market is sparse: some, not most
    assert matched.staleness.between(pd.Timedelta(0), pd.Timedelta("1s")).all()


def test_disagreement_notices_every_kind_of_difference(bench) -> None:
    lake, _, _ = bench
    bars = CASES["ohlc/day"].lake(lake)
    assert disagreement(bars, bars.copy()) is None
    nudged = bars.copy()
    nudged.loc[3, "close"] *= 1 + 1e-7
    assert "close" in disagreement(bars, nudged)
    assert "rows" in disagreement(bars, bars.iloc[1:])
    assert "columns" in disagreement(bars, bars.drop(columns="coverage"))
    later = bars.copy()
    later.loc[0, "ts"] += pd.Timedelta("1ns")
    assert disagreement(bars, later) is not None
    assert disagreement(1.0, 1.0 + 1e-12) is None and disagreement(1.0, 1.0001) is not None
    assert disagreement(None, 1.0) is not None and disagreement(None, None) is None


def test_quotes_sit_between_consecutive_trades_of_a_stream() -> None:
    _, day = next(market(6_000, 2))
    quotes = quotes_for(day, seed=1).to_pandas()
    trades = day.to_pandas()
    assert 0.3 * len(trades) < len(quotes) < 0.7 * len(trades)
    assert quotes["ts"].is_monotonic_increasing and (quotes["bid"] < quotes["ask"]).all()
    for (ex, sym), q in quotes.groupby(["exchange", "symbol"]):
        t = trades[(trades.exchange == ex) & (trades.symbol == sym)]["ts"].to_numpy()
        pos = np.searchsorted(t, q["ts"].to_numpy())
        assert ((pos > 0) & (pos < len(t))).all()  # strictly after a trade, before the next one
        assert q["ts"].is_unique


def test_live_trades_follow_the_history_with_fresh_ids() -> None:
    table = live_trades(5_000, DAYS).to_pandas()
    assert 4_500 <= len(table) <= 5_500
    start = pd.Timestamp(T0_NS + DAYS * DAY_NS, tz="UTC")
    assert table["ts"].between(start, start + pd.Timedelta("1h"), inclusive="left").all()
    assert table.groupby(["exchange", "symbol"])["trade_id"].apply(lambda s: s.is_unique).all()
    assert (table["receipt_ts"] > table["ts"]).all()


def _case(helper: str, variant: str, lake_s: float, pandas_s: float, wrong: str | None = None) -> dict:
    t = lambda s: {"median_s": s, "min_s": s, "max_s": s, "runs": 1}  # noqa: E731
    return {"helper": helper, "variant": variant, "call": f"{helper}(...)", "rows_out": 1, "lake": t(lake_s),
            "pandas": t(pandas_s), "speedup": pandas_s / lake_s, "wrong": wrong}


def test_verdicts_name_every_miss() -> None:
    good = [_case("vwap", "day", 0.01, 0.02), _case("vwap", "multi", 0.1, 0.6)]
    assert all(t["met"] for t in verdicts(good))
    bad = good + [_case("twap", "full", 1.2, 4.0), _case("ohlc", "day", 0.05, 0.04, wrong="close differs")]
    got = {t["key"]: t for t in verdicts(bad)}
    assert not got["under_1s"]["met"] and "twap/full 1.20 s" in got["under_1s"]["detail"]
    assert not got["not_slower"]["met"] and "ohlc/day" in got["not_slower"]["detail"]
    assert not got["5x_large"]["met"] and "twap/full x3.3" in got["5x_large"]["detail"]
    assert not got["agree"]["met"] and "close differs" in got["agree"]["detail"]


def test_report_states_each_target_and_case(tmp_path: Path) -> None:
    cases_ = [_case("vwap", "multi", 0.1, 0.3)]
    result = {"machine": {"cpu": "cpu", "cpus": 2, "ram_gib": 8, "platform": "linux", "python": "3.11",
                          "versions": {"duckdb": "2"}, "load_avg_at_start": [0.1]},
              "data": {"trades": 110, "ticker": 55, "live_trades": 10, "live_quotes": 5, "files": 3},
              "sizes": {"days": 4, "repeat": 3}, "mode": "quick", "started": "now", "cases": cases_,
              "targets": verdicts(cases_)}
    text = markdown(result)
    assert "**not met**" in text and "| vwap | multi |" in text and "3.00x" in text
