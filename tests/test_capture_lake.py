"""Recorded captures replayed into a lake hold exactly the trades cryptofeed's own playback delivers.

For every capture cryptofeed 2.4.1 can play, `lake.replay` must store one `trades` row per trade
callback of cryptofeed's `playback()` (tests/cryptofeed_reference.py), with the same symbol, side,
price, amount, trade id and exchange time, both while the rows are live and once they are in
Parquet, and with the capture's recorded receipt times.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptofeed_reference import CAPTURES, exchange_names, playback_reference

from cryptolake_nb import Lake, ReplayError
from cryptolake_nb.replay import capture_sets

EXCHANGES = exchange_names(CAPTURES)

# cryptofeed 2.4.1's playback() fails on these captures, so there is nothing to compare against;
# the lake must refuse them cleanly instead.
CRYPTOFEED_CANNOT_PLAY = {
    "COINBASE": "recorded the old api.pro.coinbase.com/products list; 2.4.1 parses the v3 brokerage "
                "products list (playback: TypeError)",
    "BYBIT": "recorded the old v2/public/symbols list; 2.4.1 reads the v5 instruments-info lists "
             "(playback: KeyError 'result')",
}

_ROWS = ("SELECT symbol, side, price, amount, trade_id, epoch_ns(ts) AS ts_ns, epoch_ns(receipt_ts) AS receipt_ns "
         "FROM trades")


@pytest.fixture
def reference(captures: Path) -> dict[str, dict[str, Any]]:
    """cryptofeed's own playback of every capture: computed once per session, shared, read-only."""
    return playback_reference(captures)


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


def _expected(trades: list[list]) -> Counter:
    """cryptofeed's trade callbacks as lake rows: Decimal strings as floats, times to the µs, and
    deduplicated by the trades table's natural key (symbol, trade id; first delivery kept)."""
    seen, rows = set(), Counter()
    for symbol, side, price, amount, tid, ts, receipt in trades:
        tid = None if tid is None else str(tid)
        if tid is not None:
            if (symbol, tid) in seen:
                continue
            seen.add((symbol, tid))
        rows[(symbol, side, float(Decimal(price)), float(Decimal(amount)), tid, _us(ts), _us(receipt))] += 1
    return rows


def _stored(lake: Lake) -> Counter:
    rows = lake.sql(_ROWS, to="arrow").to_pylist()
    assert all(r["ts_ns"] % 1000 == 0 and r["receipt_ns"] % 1000 == 0 for r in rows), "times not whole µs"
    return Counter((r["symbol"], r["side"], r["price"], r["amount"], r["trade_id"], r["ts_ns"] // 1000,
                    r["receipt_ns"] // 1000) for r in rows)


def _recorded_receipts_us(files: list[Path]) -> set[int]:
    """Every receipt time the capture's websocket files recorded, in µs."""
    out = set()
    for path in files:
        if ".ws." in path.name:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    stamp, sep, _ = line.partition(": ")
                    if sep and not line.startswith(("wss", "htt")):
                        out.add(_us(float(stamp)))
    return out


def _trade_rows(lake: Lake) -> int:
    return lake.sql("SELECT count(*) AS n FROM trades", to="arrow").column("n")[0].as_py()


@pytest.mark.parametrize("name", EXCHANGES)
def test_lake_holds_exactly_cryptofeeds_trades(name: str, captures: Path, reference: dict, lake: Lake) -> None:
    files = capture_sets(captures)[name]
    theirs = reference[name]
    if name in CRYPTOFEED_CANNOT_PLAY:
        assert "error" in theirs, f"cryptofeed now plays {name}: drop it from CRYPTOFEED_CANNOT_PLAY"
        with pytest.raises(ReplayError, match=name):
            lake.replay(files)
        assert lake.flush() == [] and _trade_rows(lake) == 0 and lake.rejected().empty
        assert lake.status()["tables"]["trades"]["files"] == 0
        return
    assert "error" not in theirs, f"cryptofeed's playback failed on {name}: {theirs.get('error')}"
    expected = _expected(theirs["trades"])
    duplicates = theirs["callbacks"].get("trades", 0) - sum(expected.values())  # e.g. HITBTC: 4 connections

    assert lake.replay(files)["trades"] == sum(expected.values())  # other channels: test_capture_channels.py
    assert sum(n for (table, _), n in lake.dedup.dropped.items() if table == "trades") == duplicates
    assert lake.status()["tables"]["trades"]["files"] == 0  # every row is still in the live buffer
    assert _trade_rows(lake) == sum(expected.values())
    live = _stored(lake)
    assert live == expected, f"{name}: live rows differ from cryptofeed's trades"
    assert "trades" not in set(lake.rejected()["table"])

    lake.flush()
    tables = lake.status()["tables"]["trades"]  # now every row is in Parquet, none live
    assert tables["buffer_rows"] == 0 and tables["rows_committed"] == sum(expected.values())
    assert _trade_rows(lake) == sum(expected.values())
    assert _stored(lake) == live, f"{name}: rows changed on their way into Parquet"

    receipts = {row[6] for row in live}
    assert receipts <= _recorded_receipts_us(files), "receipt_ts not taken from the capture"
    assert all(r < _us(time.time()) - 86_400 * 10**6 for r in receipts), "receipt_ts looks like wall-clock time"


def test_replay_alongside_another_lakes_replay_gives_the_same_rows(captures: Path, reference: dict, lake: Lake,
                                                                      tmp_path: Path) -> None:
    """HITBTC into `lake` while another thread keeps replaying DYDX (the two largest trade sets)
    into a second lake: each lake holds what a replay on its own gives."""
    sets = capture_sets(captures)
    stop, first_round = threading.Event(), threading.Event()
    rounds: list[tuple[float, float]] = []  # (start, end) of each DYDX replay
    errors: list[BaseException] = []

    with Lake(tmp_path / "other", autoflush=False) as other:
        def keep_replaying() -> None:
            try:
                while not stop.is_set():
                    began = time.perf_counter()
                    other.replay(sets["DYDX"])
                    rounds.append((began, time.perf_counter()))
                    first_round.set()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                first_round.set()

        worker = threading.Thread(target=keep_replaying, name="replay-DYDX")
        worker.start()
        try:
            assert first_round.wait(timeout=60)
            began = time.perf_counter()
            lake.replay(sets["HITBTC"])
            ended = time.perf_counter()
        finally:
            stop.set()
            worker.join(timeout=60)
        assert not errors, errors
        assert any(b < ended and e > began for b, e in rounds), "the two replays never overlapped"
        assert _stored(lake) == _expected(reference["HITBTC"]["trades"])
        dydx = _expected(reference["DYDX"]["trades"])
        assert _stored(other) == Counter({row: n * len(rounds) for row, n in dydx.items()})
