"""Gap accounting: silent streams and quarantined rows become rows of the `gaps` table."""
from __future__ import annotations

import asyncio

from cryptolake_nb import Lake, TradeLake


def put(lake, pairs):
    cb = TradeLake(lake)

    async def go():
        for t, receipt in pairs:
            await cb(t, receipt)

    asyncio.run(go())


def test_silence_longer_than_the_threshold_is_a_gap(tmp_path, make_trade):
    t0 = 1_700_000_000.0
    with Lake(tmp_path / "lk", autoflush=False, silence_s=30) as lake:
        times = [0, 1, 2, 100, 101] + [102 + i for i in range(3)]
        put(lake, [(make_trade(100, 1, t0 + s), t0 + s) for s in times[:5]])
        lake.flush()  # the next hole spans the buffer/history boundary
        put(lake, [(make_trade(100, 1, t0 + 200 + s), t0 + 200 + s) for s in range(3)])
        put(lake, [(make_trade(100, 1, t0 + 10, symbol="ETH-USDT"), t0 + 10)])
        gaps = lake.sql("SELECT cause, symbol, channel, epoch_ns(start_ts) AS a, epoch_ns(end_ts) AS b FROM gaps ORDER BY a")
        assert gaps.to_dict("records") == [
            {"cause": "silence", "symbol": "BTC-USDT", "channel": "trades", "a": int((t0 + 2) * 1e9), "b": int((t0 + 100) * 1e9)},
            {"cause": "silence", "symbol": "BTC-USDT", "channel": "trades", "a": int((t0 + 101) * 1e9), "b": int((t0 + 200) * 1e9)},
        ]
    with Lake(tmp_path / "lk", autoflush=False) as lake:  # gaps persist
        assert lake.sql("SELECT count(*) AS n FROM gaps")["n"][0] == 2


def test_quarantined_rows_are_accounted_as_gaps(lake, make_trade):
    put(lake, [(make_trade("NaN", 1, 1_700_000_000.0), 1_700_000_000.0), (make_trade(1, -1, 1_700_000_005.0), 1_700_000_005.0)])
    lake.sql("SELECT 1")
    row = lake.sql("SELECT cause, exchange, symbol, channel, count FROM gaps").to_dict("records")
    assert row == [{"cause": "quarantined", "exchange": "BINANCE", "symbol": "BTC-USDT", "channel": "trades", "count": 2}]


def test_ohlc_coverage_is_the_share_of_a_bucket_outside_gaps(lake, make_trade):
    t0 = 1_700_000_040.0  # a minute boundary
    put(lake, [(make_trade(100, 1, t0 + s), t0 + s) for s in (1, 2, 3)])
    lake.gaps.record("reconnect", exchange="BINANCE", symbol="BTC-USDT", channel="trades",
                     start_ns=int((t0 + 30) * 1e9), end_ns=int((t0 + 75) * 1e9))
    lake.gaps.record("reconnect", exchange="BINANCE", symbol="ETH-USDT", channel="trades",
                     start_ns=int(t0 * 1e9), end_ns=int((t0 + 60) * 1e9))  # another symbol: no effect
    put(lake, [(make_trade(100, 1, t0 + 61), t0 + 61), (make_trade(100, 1, t0 + 125), t0 + 125)])
    bars = lake.ohlc("BTC-USDT", "1min", exchange="BINANCE")
    # bucket 1: the reconnect [30, 75) and the silence [61, 125) overlap: merged, [60, 120) is all gap
    assert bars.coverage.tolist() == [0.5, 0.0, 1 - 5 / 60]
    assert lake.sql("SELECT cause FROM gaps WHERE cause = 'silence'")["cause"].tolist() == ["silence"]


def test_a_sealed_batch_writes_its_gaps_in_one_append_and_one_warning(tmp_path, make_trade, caplog):
    t0 = 1_700_000_000.0
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        # every other id missing: a sequence break after each trade, as a mislisted exchange would show
        put(lake, [(make_trade(100, 1, t0 + i, id=str(2 * i)), t0 + i) for i in range(500)])
        with caplog.at_level("WARNING", logger="cryptolake_nb.gaps"):
            lake.sql("SELECT count(*) FROM trades")  # seals: the gaps are found and recorded
        breaks = lake.sql("SELECT count(*) AS n FROM gaps WHERE cause = 'sequence_break'")["n"][0]
        assert breaks >= 490  # the last ranges wait for the grace period
        lines = (tmp_path / "lk" / "_gaps" / "gaps.jsonl").read_text().splitlines()
        assert len(lines) == breaks
        warnings = [r for r in caplog.records if "sequence_break" in r.getMessage()]
        assert len(warnings) == 1 and f"and {breaks - 1} more" in warnings[0].getMessage()
    with Lake(tmp_path / "lk", autoflush=False) as lake:  # recorded for good
        assert lake.sql("SELECT count(*) AS n FROM gaps WHERE cause = 'sequence_break'")["n"][0] >= breaks
