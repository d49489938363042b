"""table_read reads the rows and types a SELECT over the lake's views gives (DuckDB, the same snapshot),
from Parquet by pyarrow: statistics decide only what they prove, a file of another schema goes to DuckDB."""
from __future__ import annotations

import itertools
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cryptolake_nb import Lake, QueryError, asof_join
from cryptolake_nb._sqlargs import filters
from cryptolake_nb.clock import SystemClock
from cryptolake_nb.manifest import FileEntry, Manifest, schema_fingerprint
from cryptolake_nb.schema import schema_for
from cryptolake_nb.sink import file_crc32
from cryptolake_nb.table_read import Read, read_each

DAY = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9 // DAY * DAY  # midnight
STREAMS = [(e, s) for e in ("BINANCE", "KRAKEN") for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT")]


def _trades(rng: np.random.Generator, exchange: str, symbol: str, n: int, t0: int, span: int, extra: bool,
            kind: int = 0) -> pa.Table:
    """`kind` of the `type` column: 0 all NULL, 1 all "limit", 2 "limit" or NULL."""
    schema = schema_for("trades")
    ts = np.sort(t0 + rng.integers(0, span, n))
    types = [[None] * n, ["limit"] * n, rng.choice(np.array(["limit", None], dtype=object), n).tolist()][kind]
    cols = {
        "exchange": [exchange] * n, "symbol": [symbol] * n,
        "side": rng.choice(np.array(["buy", "sell", None], dtype=object), n).tolist(),
        "amount": rng.random(n).tolist(), "price": (100 + rng.random(n)).tolist(),
        "trade_id": [f"{symbol}-{t}" for t in ts], "type": types,
        "extra": [f'{{"i":{i % 3}}}' if extra else None for i in range(n)],
        "ts": ts.tolist(), "receipt_ts": (ts + 5).tolist(),
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Three days of six streams flushed (files of several row groups), then live rows of each; string
    columns with one value in a file, only NULLs, one value and NULLs, many values."""
    rng = np.random.default_rng(7)
    lk = Lake(tmp_path_factory.mktemp("tr") / "lake", autoflush=False, autocompact=False, row_group_size=1000)
    for day in range(3):
        for i, (e, s) in enumerate(STREAMS):
            lk.buffer("trades").append_batch(_trades(rng, e, s, 2500, T0 + day * DAY, DAY, bool(i % 2), i % 3))
    lk.flush()
    for e, s in STREAMS:
        lk.buffer("trades").append_batch(_trades(rng, e, s, 300, T0 + 3 * DAY, DAY, extra=True))
    yield lk
    lk.close()


def _same_as_duckdb(lake: Lake, reads: list[Read], by_pyarrow: bool = True) -> list[pa.Table]:
    """read_each's tables (read by pyarrow or not, as its entries in the query log say), checked
    against the same SELECTs run by the lake's DuckDB (rows in any order); each column it calls
    steady over a stretch of rows has one value, not NULL, there."""
    rows = read_each(reads, lake)
    for r in rows:
        assert sum(n for n, _ in r.steady) == r.table.num_rows if r.steady else not by_pyarrow or not r.table.num_rows
        at = 0
        for n, same in r.steady:
            for c in same:
                assert pc.count_distinct(r.table.column(c).slice(at, n), mode="all").as_py() == 1
                assert r.table.column(c).slice(at, n).null_count == 0
            at += n
    got = [r.table for r in rows]
    logged = lake.queries.summary(len(reads))["recent"]
    assert all(q["sql"].startswith("-- read by pyarrow") == by_pyarrow for q in logged)
    params = {k: v for r in reads for k, v in r.filters.params.items()}
    want = lake.query_each([r.sql() for r in reads], params)
    for g, w in zip(got, want):
        assert g.schema == w.schema
        order = [(c, "ascending") for c in g.column_names]
        assert g.sort_by(order).equals(w.sort_by(order))
    return got


COLUMNS = tuple(schema_for("trades").names)


@pytest.mark.parametrize("syms, exchange, start, end", [
    (None, None, None, None),
    (("BTC-USDT",), "BINANCE", None, None),
    (("ETH-USDT", "SOL-USDT"), None, T0 + DAY // 3, T0 + 2 * DAY + DAY // 2),  # bounds inside files and row groups
    (("BTC-USDT",), "KRAKEN", T0 + 3 * DAY + 10, None),  # live rows only (and files the bound rules out)
    (("NOPE",), None, None, None),
])
def test_reads_the_rows_and_types_the_views_give(lake, syms, exchange, start, end):
    f = filters(syms, exchange, start, end, tag="a_")
    g = filters(syms, exchange, None if start is None else start - 10**9, end, tag="b_")
    reads = [Read("trades", COLUMNS, COLUMNS, f, "ts"),
             Read("trades", ("symbol", "price", "ts"), ("symbol", "__cl_c0", "__cl_t"), g, "ts", timed=True)]
    got = _same_as_duckdb(lake, reads)
    assert got[0].num_rows or syms == ("NOPE",)


def test_a_files_exchange_and_symbol_are_steady_and_live_rows_are_not(lake):
    """Each file is one stream: its stretch has exchange and symbol steady (never compared row by row
    downstream); the live rows, of several streams, have none."""
    [rows] = read_each([Read("trades", COLUMNS, COLUMNS, filters(None, None, None, None), "ts")], lake)
    *files, live = rows.steady
    assert len(files) == len(lake.committed_files("trades"))
    assert all({"exchange", "symbol"} <= same for _, same in files)
    assert live == (lake.buffer("trades").snapshot_table().num_rows, frozenset())


def test_one_valued_columns_share_their_buffers_across_files(lake):
    """A file's exchange and symbol are made, not decoded, and take no bytes per row: the files' pieces
    of such a column share one run of offsets per value length and one run of bytes per value, so
    together they hold about one file's worth, not one per file."""
    names = ("exchange", "symbol", "ts")
    [rows] = read_each([Read("trades", names, names, filters(None, None, None, None), "ts")], lake)
    *files, live = rows.steady
    in_files = sum(n for n, _ in files)
    assert len(files) == 18 and in_files == 18 * 2500
    for name in ("exchange", "symbol"):
        held: dict[int, int] = {}
        for chunk in rows.table.column(name).slice(0, in_files).chunks:
            for b in chunk.buffers():
                if b is not None:
                    held[b.address] = max(held.get(b.address, 0), b.size)
        assert sum(held.values()) < in_files * 8 / 4, name  # one offset per row would be 8 bytes a row


def test_rows_are_checked_where_a_file_has_no_statistics(tmp_path):
    """A file written without statistics: every filter is checked on its rows, no column is made."""
    rng = np.random.default_rng(1)
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        lk.buffer("trades").append_batch(_trades(rng, "BINANCE", "BTC-USDT", 50, T0, 3600 * 10**9, extra=False))
        lk.flush()
    rows = _trades(rng, "BINANCE", "BTC-USDT", 40, T0 + 3600 * 10**9, 3600 * 10**9, extra=False)
    _commit(tmp_path / "lk", rows, "nostats", write_statistics=False)
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        start = int(rows.column("ts")[10].value)
        f = filters(("BTC-USDT",), "BINANCE", start, None)
        [got] = _same_as_duckdb(lk, [Read("trades", COLUMNS, COLUMNS, f, "ts")])
        assert got.num_rows == 30 and got.column("extra").null_count == 30


def test_a_file_of_another_schema_is_read_through_duckdb(tmp_path):
    rng = np.random.default_rng(2)
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        lk.buffer("trades").append_batch(_trades(rng, "BINANCE", "BTC-USDT", 50, T0, 3600 * 10**9, extra=True))
        lk.flush()
    old = _trades(rng, "BINANCE", "BTC-USDT", 20, T0 + 3600 * 10**9, 3600 * 10**9, extra=True).drop_columns(["extra"])
    _commit(tmp_path / "lk", old, "old")
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        read = Read("trades", COLUMNS, COLUMNS, filters(None, None, None, None), "ts")
        [got] = _same_as_duckdb(lk, [read], by_pyarrow=False)
        assert got.num_rows == 70 and got.column("extra").null_count == 20


def test_files_of_an_older_version_read_and_compact_with_new_ones(tmp_path):
    """A file written before the sink hinted strings as large_string (its Arrow schema says string)
    and one written after, in one partition: read alike by pyarrow and DuckDB, merged losslessly
    into a file of the new kind, which verify accepts."""
    rng = np.random.default_rng(5)
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        lk.buffer("trades").append_batch(_trades(rng, "BINANCE", "BTC-USDT", 50, T0, 3600 * 10**9, extra=True, kind=2))
        lk.flush()
    _commit(tmp_path / "lk", _trades(rng, "BINANCE", "BTC-USDT", 30, T0 + 3600 * 10**9, 3600 * 10**9, extra=False,
                                     kind=1), "old")
    read = Read("trades", COLUMNS, COLUMNS, filters(None, None, None, None), "ts")
    order = [(c, "ascending") for c in COLUMNS]
    with Lake(tmp_path / "lk", autoflush=False, compact_min_files=2) as lk:
        hints = sorted(str(pq.read_schema(lk.root / e.path).field("trade_id").type) for e in lk.committed_files("trades"))
        assert hints == ["large_string", "string"]
        [before] = _same_as_duckdb(lk, [read])
        [done] = lk.compact()
        assert (done.files_in, done.rows) == (2, 80)
        [entry] = lk.committed_files("trades")
        assert pq.read_schema(lk.root / entry.path).field("trade_id").type == pa.large_string()
        [after] = _same_as_duckdb(lk, [read])
        assert after.sort_by(order).equals(before.sort_by(order))
        assert lk.verify().bad == []


def _commit(root, table: pa.Table, name: str, **write) -> None:
    """`table` (one stream, one day) written as a file of the lake and committed to its manifest."""
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    date = str(np.datetime64(min(ts), "ns").astype("datetime64[D]"))
    rel = f"trades/exchange=BINANCE/symbol=BTC-USDT/date={date}/part-{name}.parquet"
    path = root / rel
    pq.write_table(table, path, **write)
    Manifest(root).commit([FileEntry(
        path=rel, table="trades", exchange="BINANCE", symbol="BTC-USDT", date=date, rows=table.num_rows,
        bytes=path.stat().st_size, min_ts=min(ts), max_ts=max(ts), crc32=file_crc32(path),
        schema=schema_fingerprint(table.schema))])


def test_bounds_on_row_group_edges(lake):
    """A bound equal to a row group's first or last time: the row at `start` is in, the row at `end` out."""
    first = min((e for e in lake.committed_files("trades") if (e.exchange, e.symbol) == STREAMS[0]),
                key=lambda e: e.min_ts)
    meta = pq.ParquetFile(lake.root / first.path).metadata
    at = meta.schema.names.index("ts")
    edges = [(meta.row_group(i).column(at).statistics.min_raw, meta.row_group(i).column(at).statistics.max_raw)
             for i in range(meta.num_row_groups)]
    assert len(edges) >= 3
    (lo0, hi0), (lo1, hi1), (lo2, _) = edges[:3]
    for start, end in [(hi0, lo1), (hi0, hi1), (lo1, lo2), (lo0, hi0)]:
        f = filters((STREAMS[0][1],), STREAMS[0][0], start, end)
        [got] = _same_as_duckdb(lake, [Read("trades", ("ts",), ("ts",), f, "ts")])
        times = got.column("ts").cast(pa.int64()).to_pylist()
        assert start in times and end not in times


def _zero_pages(data: bytes) -> bytes:
    """The footer intact (its length is in the 4 bytes before the closing magic), the pages zeros."""
    kept = int.from_bytes(data[-8:-4], "little") + 8
    return data[:4] + bytes(len(data) - 4 - kept) + data[-kept:]


@pytest.mark.parametrize("damage", [lambda data: data[:100], _zero_pages], ids=["cut", "pages zeroed"])
def test_a_damaged_file_is_a_query_error(tmp_path, damage):
    rng = np.random.default_rng(3)
    with Lake(tmp_path / "lk", autoflush=False) as lk:
        lk.buffer("trades").append_batch(_trades(rng, "BINANCE", "BTC-USDT", 5_000, T0, 3600 * 10**9, extra=False))
        lk.flush()
        victim = lk.root / lk.committed_files("trades")[0].path
        victim.write_bytes(damage(victim.read_bytes()))
        if damage is _zero_pages:  # the footer still reads: the error comes from decoding the pages
            assert pq.ParquetFile(victim).metadata.num_rows == 5_000
        with pytest.raises(QueryError, match="lake.verify()"):
            read_each([Read("trades", COLUMNS, COLUMNS, filters(None, None, None, None), "ts")], lk)
        with pytest.raises(QueryError, match="lake.verify()"):
            asof_join("trades", "ticker", "BTC-USDT", lake=lk)


class _Hurried(SystemClock):
    """Real wall time, but a monotonic clock that jumps an hour each time it is read."""

    def __init__(self) -> None:
        self._hours = itertools.count()

    def monotonic(self) -> float:
        return 3600.0 * next(self._hours)


def test_reads_while_flushing_and_compacting_see_each_row_once(tmp_path):
    """A writer thread flushes and compacts while reads run, each compaction deleting the files it
    merged at once (its clock passes the retirement grace between any two readings) unless a read
    that started before still holds them: no read fails on a vanished file, none sees a row twice,
    none loses one a read before it saw."""
    rng = np.random.default_rng(4)
    batches = [_trades(rng, "BINANCE", "BTC-USDT", 200, T0 + i * 600 * 10**9, 600 * 10**9, extra=False)
               for i in range(24)]
    read = Read("trades", ("trade_id", "ts"), ("trade_id", "ts"), filters(("BTC-USDT",), "BINANCE", None, None), "ts")
    clock = _Hurried()
    with Lake(tmp_path / "lk", autoflush=False, autocompact=False, compact_min_files=2, clock=clock) as lk:
        done, failures = threading.Event(), []

        def write():
            try:
                for i, batch in enumerate(batches):
                    lk.buffer("trades").append_batch(batch)
                    lk.flush()
                    if i % 2:
                        lk.compact()
            except Exception as exc:  # reported below: the reads' assertions alone would hide it
                failures.append(exc)
            finally:
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        seen, reads = 0, 0
        while not done.is_set() or reads < 3:
            [rows] = [r.table for r in read_each([read], lk)]
            ids = rows.column("trade_id")
            assert len(pc.unique(ids)) == rows.num_rows >= seen
            seen, reads = rows.num_rows, reads + 1
        writer.join()
        assert not failures
        assert len(lk.committed_files("trades")) == 1  # the last compaction merged them all
        [rows] = [r.table for r in read_each([read], lk)]
        assert rows.num_rows == 24 * 200 == len(pc.unique(rows.column("trade_id")))
