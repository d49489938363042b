"""Compaction (lossless, concurrent-safe, deferred deletion) and verification of committed files."""
from __future__ import annotations

import threading

import pytest

from cryptolake_nb import Lake
from feeding import put


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


def test_background_compaction_after_flushes(tmp_path, make_trade):
    with Lake(tmp_path / "lk", max_rows=20, flush_interval=3600, compact_min_files=5) as lake:
        for f in range(12):
            put(lake, [make_trade(100, 1, 1_700_000_000.0 + f * 20 + i, id=str(f * 20 + i)) for i in range(20)])
            import waiting

            assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["buffer_rows"] == 0, 10)
        assert waiting.wait_for(lambda: lake.status()["tables"]["trades"]["files"] < 5, 10)
        assert lake.sql("SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM trades").iloc[0].tolist() == [240, 240]


@pytest.mark.slow
def test_ten_thousand_small_files_become_a_handful(tmp_path, make_trade):
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    from cryptolake_nb.manifest import FileEntry
    from cryptolake_nb.partitions import new_file_name, partition_dir
    from cryptolake_nb.sink import file_crc32
    from cryptolake_nb.tables import TABLES

    with Lake(tmp_path / "lk", autoflush=False) as lake:
        schema = TABLES["trades"].schema
        key = ("BINANCE", "BTC-USDT", dt.date(2023, 11, 14))
        entries = []
        for f in range(10_000):
            ts = pa.array([1_700_000_000_000_000_000 + (f * 3 + i) * 1_000_000 for i in range(3)]).cast(schema.field("ts").type)
            rows = pa.table({"exchange": ["BINANCE"] * 3, "symbol": ["BTC-USDT"] * 3, "side": ["buy", "sell", "buy"],
                             "amount": [1.0, 2.0, 3.0], "price": [100.0 + f % 7, 101.0, 102.0],
                             "trade_id": [str(f * 3 + i) for i in range(3)], "type": [None] * 3, "ts": ts, "receipt_ts": ts})
            rows = pa.table({f_.name: rows.column(f_.name) if f_.name in rows.column_names else pa.nulls(3, f_.type)
                             for f_ in schema}, schema=schema)
            # written directly (no fsync per file): the test is about compaction, not publication
            rel = partition_dir("trades", *key) / new_file_name(f)
            (lake.root / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows, lake.root / rel)
            entries.append(FileEntry(rel.as_posix(), "trades", *key[:2], key[2].isoformat(), 3,
                                     (lake.root / rel).stat().st_size, ts[0].value, ts[2].value,
                                     file_crc32(lake.root / rel)))
        lake._manifest.commit(entries)
        before = lake.sql(SUMMARY)
        assert lake.status()["tables"]["trades"]["files"] == 10_000
        lake._retirer.grace_s = 0.0
        done = lake.compact()
        assert sum(c.files_in for c in done) == 10_000
        assert lake.status()["tables"]["trades"]["files"] <= 3
        assert lake.sql(SUMMARY).equals(before)
        assert len(list(lake.root.rglob("*.parquet"))) <= 3
