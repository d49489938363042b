"""Deduplication by natural key: within a batch, across batches and flushes, and across restarts."""
from __future__ import annotations


from cryptolake_nb import Lake
from feeding import put


def ids(lake):
    return lake.sql("SELECT trade_id FROM trades ORDER BY ts")["trade_id"].tolist()


def test_duplicates_are_dropped_across_batches_flushes_and_restarts(tmp_path, make_trade):
    t0 = 1_700_000_000.0
    trade = lambda i, **kw: make_trade(100 + i, 1, t0 + i, id=str(i), **kw)  # noqa: E731
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        put(lake, [trade(0), trade(1), trade(1), trade(2)])  # a repeat within one batch
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [trade(2), trade(3)])  # a reconnect re-sends the last trade
        lake.flush()
        put(lake, [trade(3), trade(4)])  # across the buffer/history boundary
        put(lake, [trade(4, symbol="ETH-USDT")])  # same id, other symbol: not a duplicate
        assert ids(lake) == ["0", "1", "2", "3", "4", "4"]
        assert lake.dedup.dropped == {("trades", "BINANCE"): 3}
    with Lake(tmp_path / "lk", autoflush=False) as lake:  # a restart: the keys come from history
        put(lake, [trade(3), trade(4), trade(5)])
        assert ids(lake) == ["0", "1", "2", "3", "4", "4", "5"]
        assert lake.dedup.dropped == {("trades", "BINANCE"): 2}


def test_trades_without_an_id_are_never_deduplicated(lake, make_trade):
    same = [make_trade(100, 1, 1_700_000_000.0, id=None) for _ in range(3)]
    put(lake, same)
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 3


def test_keys_older_than_the_window_are_forgotten(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, dedup_window_s=60) as lake:
        put(lake, [make_trade(100, 1, 1_700_000_000.0, id="7")])
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [make_trade(100, 1, 1_700_000_500.0, id="8")])  # moves the window on
        lake.sql("SELECT count(*) FROM trades")  # seals the trades buffer
        put(lake, [make_trade(100, 1, 1_700_000_501.0, id="7")])  # an id reused much later is kept
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 3
