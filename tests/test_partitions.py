"""Partition values become safe paths and round-trip exactly through the lake."""
from __future__ import annotations

import datetime as dt
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolake_nb import SymbolError
from cryptolake_nb.partitions import check_value, decode, encode, partition_dir

printable = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=100
)


@given(printable)
@settings(max_examples=300)
def test_any_printable_symbol_round_trips_and_stays_one_component(symbol):
    enc = encode(symbol)
    if len(enc.encode()) > 240:  # too long for one path component: refused, never truncated
        with pytest.raises(SymbolError):
            check_value("symbol", symbol)
        return
    check_value("symbol", symbol)
    assert decode(enc) == symbol
    assert "/" not in enc and enc not in (".", "..") and not enc.startswith(".")
    path = partition_dir("trades", "BINANCE", symbol, dt.date(2024, 1, 2))
    assert len(path.parts) == 4 and all(p not in ("", ".", "..") for p in path.parts)


@pytest.mark.parametrize("symbol", ["BTC/USD", "XBT:USD", "../../etc", "..", ".", ".hidden", "a b%2F", "__HIVE_DEFAULT_PARTITION__"])
def test_awkward_symbols_stay_inside_the_root(tmp_path, symbol):
    path = tmp_path / partition_dir("trades", "X", symbol, dt.date(2024, 1, 2))
    assert os.path.commonpath([tmp_path, path.resolve()]) == str(tmp_path)


@pytest.mark.parametrize(
    "value, words",
    [("BTC\x00USD", "control"), ("BTC\nUSD", "control"), ("\x7f", "control"), ("", "empty"),
     ("X" * 101, "characters long"), ("😀" * 30, "too long once encoded"), (42, "must be a string")],
)
def test_bad_values_get_a_clear_error(value, words):
    with pytest.raises(SymbolError, match=words):
        check_value("symbol", value)
