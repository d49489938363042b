"""Flush policy and protocol: ZSTD Parquet in Hive partitions, atomic publication, manifest commits."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cryptolake_nb import ConfigError, Lake, StorageError, TradeLake
from cryptolake_nb.clock import ManualClock
from cryptolake_nb.flush import FlushPolicy
from cryptolake_nb.manifest import Manifest
from cryptolake_nb.schema import schema_for


def put(lake, trades, receipt=1_700_000_100.0):
    cb = TradeLake(lake)

    async def go():
        for t in trades:
            await cb(t, receipt)

    asyncio.run(go())


def test_flush_writes_zstd_hive_partitions_with_the_explicit_schema(lake, make_trade):
    day1, day2 = 1_700_000_000.0, 1_700_000_000.0 + 86_400
    put(lake, [make_trade(1, 1, day1, symbol="BTC/USD"), make_trade(2, 1, day2, symbol="BTC/USD"),
               make_trade(3, 1, day1, symbol="ETH-USDT", exchange="KRAKEN")])
    entries = lake.flush()
    paths = sorted(e.path for e in entries)
    assert [p.rsplit("/", 1)[0] for p in paths] == [
        "trades/exchange=BINANCE/symbol=BTC%2FUSD/date=2023-11-14",
        "trades/exchange=BINANCE/symbol=BTC%2FUSD/date=2023-11-15",
        "trades/exchange=KRAKEN/symbol=ETH-USDT/date=2023-11-14",
    ]
    for e in entries:
        f = pq.ParquetFile(lake.root / e.path)
        # strings hinted large_string for Arrow readers (the type queries return), but for the
        # partition keys (string, as hive discovery infers them); the Parquet columns are the same
        stored = [(x.name, pa.large_string() if x.type == pa.string() and x.name not in ("exchange", "symbol")
                   else x.type) for x in schema_for("trades")]
        assert [(x.name, x.type) for x in f.schema_arrow] == stored
        assert [x.nullable for x in f.schema_arrow] == [x.nullable for x in schema_for("trades")]
        assert f.metadata.row_group(0).column(0).compression == "ZSTD"
        assert f.schema_arrow.metadata[b"cryptolake.schema_version"] == b"1"
        assert e.rows == f.metadata.num_rows == 1
    assert not list(lake.root.rglob("*.inprogress"))
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 3
    assert lake.status()["tables"]["trades"]["buffer_rows"] == 0


def test_reopened_lake_reads_the_manifest_not_the_directory(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        put(lake, [make_trade(1, 1, 1_700_000_000.0, id=str(i)) for i in range(10)])
        lake.flush()
    # litter that a glob would pick up: a stray parquet file and a torn temp
    stray = tmp_path / "lk/trades/exchange=BINANCE/symbol=BTC-USDT/date=2023-11-14"
    pq.write_table(pa.table({"x": [1]}), stray / "stray.parquet")
    (stray / "part-x.parquet.inprogress").write_bytes(b"PAR1 torn")
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 10
        assert lake.swept == {"temp_files": 1, "orphans": 1}  # cleaned at start, orphan kept aside
    assert not list(stray.glob("*.inprogress")) and not (stray / "stray.parquet").exists()
    assert (tmp_path / "lk/_quarantine/orphans" / stray.relative_to(tmp_path / "lk") / "stray.parquet").exists()


def test_torn_manifest_tail_is_cut_and_committed_files_survive(tmp_path, make_trade):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        put(lake, [make_trade(1, 1, 1_700_000_000.0)])
        lake.flush()
    log = tmp_path / "lk/_manifest/log.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'0badc0de {"seq":2,"add":[{"pa')
    assert len(Manifest(tmp_path / "lk").files("trades")) == 1
    assert log.read_bytes() == good


def test_write_failure_keeps_rows_in_the_buffer_and_resumes(lake, make_trade):
    put(lake, [make_trade(1, 1, 1_700_000_000.0)])
    blocker = lake.root / "trades"
    blocker.write_text("a file where a directory must go")
    with pytest.raises(StorageError):
        lake.flush()
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1
    assert not list(lake.root.rglob("*.parquet*"))
    blocker.unlink()
    assert len(lake.flush()) == 1
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1


def test_policy_rows_bytes_and_age_with_an_injected_clock(tmp_path, make_trade):
    clock = ManualClock()
    with Lake(tmp_path / "lk", autoflush=False, clock=clock, max_rows=5, flush_interval=30) as lake:
        flusher = lake._flusher
        put(lake, [make_trade(1, 1, 1_700_000_000.0)])
        assert flusher.due() == []
        clock.advance(31)
        assert flusher.due() == ["trades"]
        lake.flush()
        put(lake, [make_trade(1, 1, 1_700_000_000.0)] * 5)
        assert flusher.due() == ["trades"]
    assert FlushPolicy(max_bytes=10).due({"rows": 1, "bytes": 11, "age_s": 0}) == "bytes"


def test_background_flusher_flushes_by_size(tmp_path, make_trade):
    with Lake(tmp_path / "lk", max_rows=100, flush_interval=3600) as lake:
        put(lake, [make_trade(1, 1, 1_700_000_000.0 + i) for i in range(250)])
        for _ in range(200):
            if lake.status()["tables"]["trades"]["rows_committed"] >= 200:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert lake.status()["tables"]["trades"]["rows_committed"] >= 100
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 250


def test_close_flushes(tmp_path, make_trade):
    lake = Lake(tmp_path / "lk")
    put(lake, [make_trade(1, 1, 1_700_000_000.0)])
    lake.close()
    assert Manifest(tmp_path / "lk").files("trades")[0].rows == 1


def test_interpreter_exit_flushes(tmp_path):
    import subprocess, sys, textwrap

    code = textwrap.dedent(f"""
        import asyncio
        from decimal import Decimal
        from cryptofeed.types import Trade
        from cryptolake_nb import Lake, TradeLake
        lake = Lake({str(tmp_path / 'lk')!r}, flush_interval=3600)
        cb = TradeLake(lake)
        asyncio.run(cb(Trade('BINANCE', 'BTC-USDT', 'buy', Decimal(1), Decimal(2), 1.7e9), 1.7e9))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert Manifest(tmp_path / "lk").files("trades")[0].rows == 1


@pytest.mark.parametrize("bad", [{"max_rows": 0}, {"flush_interval": -1}, {"max_bytes": "big"}, {"nonsense": 1}])
def test_bad_settings_are_refused(tmp_path, bad):
    with pytest.raises(ConfigError):
        Lake(tmp_path / "lk", **bad)


def test_small_sealed_batches_are_merged_and_every_row_stays_once(tmp_path, make_trade):
    root = tmp_path / "lk"
    with Lake(root, autoflush=False) as lake:
        buf = lake.buffer("trades")
        for i in range(40):  # a query per trade: 40 sealed batches of one row
            put(lake, [make_trade(100 + i, 1, 1_700_000_000.0 + i, id=str(i))])
            assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == i + 1
        assert len(buf.snapshot()) == 40
        assert buf.consolidate() == 39
        (merged,) = buf.snapshot()
        assert merged.batch.num_rows == 40 and len(merged.jseqs) == 40
        assert buf.stats()["rows"] == 40
        got = lake.sql("SELECT count(*) AS n, count(DISTINCT trade_id) AS d, sum(price) AS p FROM trades")
        assert (got["n"][0], got["d"][0], got["p"][0]) == (40, 40, sum(100 + i for i in range(40)))
        put(lake, [make_trade(1, 1, 1_700_000_100.0, id="40")])
        assert buf.consolidate() == 0  # one small batch after a merged one: nothing to merge
        lake.flush()
    with Lake(root, autoflush=False) as lake:  # the journal was released for every merged entry
        assert lake.recovered.get("trades", 0) == 0
        assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 41
