"""Compaction (lossless, concurrent-safe, deferred deletion) and verification of committed files."""
from __future__ import annotations

import asyncio
import threading

import pytest

from cryptolake_nb import Lake, TradeLake


def put(lake, trades):
    cb = TradeLake(lake)

    async def go():
        for t in trades:
            await cb(t, 1_700_000_100.0)

    asyncio.run(go())


SUMMARY = ("SELECT count(*) AS n, sum(amount) AS a, count(DISTINCT trade_id) AS d, min(ts) AS lo, max(ts) AS hi,"
           " sum(hash(exchange, symbol, side, price, amount, trade_id, ts)) AS h FROM trades")


def many_files(lake, make_trade, files=40, per=25):
    for f in range(files):
        put(lake, [make_trade(100 + (f * per + i) % 13, 1 + i % 3, 1_700_000_000.0 + f * per + i, id=str(f * per + i))
                   for i in range(per)])
        lake.flush()


def test_compaction_merges_small_files_losslessly(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, compact_min_files=8) as lake:
        many_files(lake, make_trade)
        put(lake, [make_trade(1, 1, 1_700_000_999.0, id="live")])
        before = lake.sql(SUMMARY)
        assert lake.status()["tables"]["trades"]["files"] == 40
        done = lake.compact()
        assert len(done) == 1 and done[0].files_in == 40 and done[0].rows == 1000
        assert lake.status()["tables"]["trades"]["files"] == 1
        assert lake.sql(SUMMARY).equals(before)
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1001
    with Lake(tmp_path / "lk", autoflush=False) as lake:  # after restart: the merged file + the live row's
        assert lake.status()["tables"]["trades"]["files"] == 2
        assert len(list((tmp_path / "lk" / "trades").rglob("*.parquet"))) == 2  # inputs deleted at close
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1001


def test_queries_during_compaction_never_fail_or_double_count(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, compact_min_files=4) as lake:
        many_files(lake, make_trade, files=60, per=10)
        expected = lake.sql(SUMMARY)
        stop, errors, runs = threading.Event(), [], [0]

        def reader():
            while not stop.is_set():
                try:
                    got = lake.sql(SUMMARY)
                    if not got.equals(expected):
                        errors.append(got.to_dict("records"))
                except Exception as exc:  # a deleted file under a running query would land here
                    errors.append(repr(exc))
                runs[0] += 1

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        lake._compactor.target_rows = 40  # many small merges while the readers run
        lake._retirer.grace_s = 0.0
        while lake.compact():
            pass
        stop.set()
        for t in threads:
            t.join()
        assert errors == [] and runs[0] > 10
        assert lake.status()["tables"]["trades"]["files"] < 60


def test_retired_files_wait_for_running_queries(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False, compact_min_files=2) as lake:
        many_files(lake, make_trade, files=4, per=5)
        lake._retirer.grace_s = 0.0
        ticket = lake._retirer.begin_query()  # a query that started before the compaction
        lake.compact()
        assert len(list(lake.root.rglob("*.parquet"))) == 5  # inputs still on disk
        lake._retirer.end_query(ticket)
        lake._retirer.purge()
        assert len(list(lake.root.rglob("*.parquet"))) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_verify_moves_bad_files_out_of_the_query_path(tmp_path, make_trade, damage):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        many_files(lake, make_trade, files=3, per=50)
        assert lake.verify().ok
        victim = lake.root / lake._manifest.files("trades")[1].path
        data = bytearray(victim.read_bytes())
        if damage == "flip":
            data[len(data) // 3] ^= 0x40
            victim.write_bytes(bytes(data))
        elif damage == "truncate":
            victim.write_bytes(bytes(data[: len(data) // 2]))
        else:
            victim.unlink()
        report = lake.verify()
        assert [p for p, _ in report.bad] == [str(victim.relative_to(lake.root))]
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 100
        if damage != "delete":
            assert (lake.root / report.quarantined[0]).exists() and not victim.exists()
        assert lake.verify().ok
