"""An injection corpus against every string parameter of every helper: each call either raises a
ConfigError or returns what the honest call returns (never rows of another symbol), and afterwards
every table still has exactly the rows it had."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from cryptolake_nb import (ConfigError, asof_join, mid, ohlc, realized_volatility, resample, returns, spread,
                           trade_imbalance, twap, volume_profile, vwap)

from helper_market import EXCHANGE, build

TARGET = "BTC-USDT"
CORPUS = [
    "BTC-USDT'; DROP TABLE trades; --", "' OR 1=1 --", "$x", "$symbol_0", ")--", '"; SELECT 1; --', "trades",
    "ticker", "symbol", "ts", "__cl_t", "{where}", "*", "", "\\", "\x00", "BTC-USDT\x00", "BTC\u2011USDT", "ＢＴＣ-USDT",
    "🚀", "a" * 100_000, "1min; DROP TABLE trades", "read_parquet('/etc/passwd')", "BTC-USDT\n--",
]
COMMON = {"exchange": EXCHANGE, "start": "2023-11-14 22:00", "end": "2023-11-15 02:00", "to": "pandas"}
CASES: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "ohlc": (ohlc, {"symbols": TARGET, "interval": "1min"}),
    "vwap": (vwap, {"symbols": TARGET, "interval": None}),
    "twap": (twap, {"symbols": TARGET, "interval": "5min"}),
    "returns": (returns, {"symbols": TARGET, "interval": "1min", "how": "log"}),
    "realized_volatility": (realized_volatility, {"symbols": TARGET, "interval": "1h", "sample": "1min"}),
    "spread": (spread, {"symbols": TARGET, "interval": "10s", "source": "ticker"}),
    "mid": (mid, {"symbols": TARGET, "interval": "10s", "source": "book"}),
    "trade_imbalance": (trade_imbalance, {"symbols": TARGET, "interval": "5min"}),
    "volume_profile": (volume_profile, {"symbols": TARGET, "interval": None, "bin": 50.0}),
    "asof_join": (asof_join, {"left": "trades", "right": "ticker", "symbols": TARGET, "on": "ts", "by": "symbol",
                              "tolerance": "5s", "columns": "bid"}),
    "resample": (resample, {"data": "ticker", "interval": "1min", "fill": "previous", "symbols": TARGET, "on": "ts",
                            "by": "symbol"}),
}
# parameters that take a string (interval/bin as well: a string where a number or None is usual)
STRING_PARAMS = ("symbols", "exchange", "start", "end", "to", "interval", "sample", "how", "source", "bin", "left",
                 "right", "data", "on", "by", "columns", "tolerance", "fill")

# corpus entries that are real names where a name is expected
NAMES, LEGITIMATE = ("left", "right", "data", "on", "by", "columns", "source"), ("trades", "ticker", "symbol", "ts")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    lake, _ = build(tmp_path_factory.mktemp("inject") / "lake")
    yield lake
    lake.close()


def counts(lake) -> dict[str, Any]:
    rows = {t: lake.sql(f"SELECT count(*) AS n FROM {t}", to="arrow").column("n")[0].as_py()
            for t in ("trades", "ticker", "l2_book")}
    files = sorted(str(p.relative_to(lake.root)) for p in lake.root.rglob("*.parquet"))
    return {"rows": rows, "files": files}


def same(got: Any, honest: Any) -> bool:
    """Equal answers; floats to 1e-12 (one symbol of ohlc is summed in numpy, several in DuckDB)."""
    if isinstance(honest, pd.DataFrame):
        if not isinstance(got, pd.DataFrame):
            return False
        try:
            pd.testing.assert_frame_equal(got, honest, rtol=1e-12)
        except AssertionError:
            return False
        return True
    return got == honest or (got is None and honest is None)


def empty(got: Any) -> bool:
    return got is None or (isinstance(got, pd.DataFrame) and len(got) == 0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_string_parameter_resists_the_corpus(market, name):
    helper, base = CASES[name]
    kwargs = {**base, **COMMON}
    before = counts(market)
    honest = helper(**kwargs, lake=market)
    assert not empty(honest), "the honest call must return rows, or the checks below prove nothing"
    honest_list = helper(**{**kwargs, "symbols": [TARGET]}, lake=market)
    tried = 0
    for param in [p for p in STRING_PARAMS if p in kwargs]:
        for bad in CORPUS:
            forms = [bad, [TARGET, bad]] if param == "symbols" else [bad]
            for value in forms:
                tried += 1
                try:
                    got = helper(**{**kwargs, param: value}, lake=market)
                except ConfigError:
                    continue
                where = f"{name}({param}={value!r:.80})"
                if isinstance(got, pd.DataFrame) and "symbol" in got.columns:
                    others = set(got.symbol.dropna()) - {TARGET}
                    assert not others, f"{where} returned rows of {others}"
                if param in ("symbols", "exchange"):
                    expected = honest_list if isinstance(value, list) else None
                    assert (same(got, expected) if expected is not None else empty(got)), f"{where} returned rows"
                elif param in NAMES and bad in LEGITIMATE:
                    continue  # a real table, column or source name: a legitimate answer, symbols checked above
                else:
                    pytest.fail(f"{where} was accepted: {got!r:.200}")
    assert tried > 50
    assert counts(market) == before
    assert same(helper(**kwargs, lake=market), honest)  # the lake still answers the same


def test_frame_column_names_are_identifiers_never_sql(market):
    evil = ['k"; DROP TABLE trades; --', "v') OR 1=1 --", 't" , "x']
    times = pd.to_datetime([1, 2, 3], unit="s", utc=True)
    left = pd.DataFrame({evil[2]: times, evil[0]: ["a", "b", "a"]})
    right = pd.DataFrame({evil[2]: times - pd.Timedelta("500ms"), evil[0]: ["a", "a", "b"], evil[1]: [1.0, 2.0, 3.0]})
    before = counts(market)
    got = asof_join(left, right, on=evil[2], by=evil[0], columns=evil[1])
    assert list(got.columns) == [evil[2], evil[0], evil[1], "staleness"]
    np.testing.assert_array_equal(got[evil[1]], [1.0, np.nan, 2.0])  # b's only quote comes after its row
    grid = resample(right, "1s", "null", on=evil[2], by=evil[0])
    assert list(grid.columns) == [evil[2], evil[0], evil[1], "filled"]
    with pytest.raises(ConfigError, match="on must name a column"):
        asof_join(left, right, on='ts" --')
    assert counts(market) == before
