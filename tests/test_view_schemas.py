"""The unified view reads files by recorded schema: files with the live schema in one plain scan,
files of any other or unknown schema reconciled by column name (a missing column reads as NULL)."""
from __future__ import annotations

import json
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

from cryptolake_nb import Lake
from cryptolake_nb.manifest import FileEntry, Manifest, schema_fingerprint
from cryptolake_nb.schema import schema_for
from cryptolake_nb.sink import file_crc32

T0 = 1_700_000_000.0
COUNT = "SELECT count(*) AS n, count(extra) AS with_extra, sum(price) AS p FROM trades"


def _trades(n: int, first: int, t0_ns: int) -> pa.Table:
    schema = schema_for("trades")
    cols = {
        "exchange": ["BINANCE"] * n, "symbol": ["BTC-USDT"] * n, "side": ["buy"] * n,
        "amount": [1.0] * n, "price": [float(first + i) for i in range(n)],
        "trade_id": [str(first + i) for i in range(n)], "type": [None] * n, "extra": ['{"k":1}'] * n,
        "ts": [t0_ns + i for i in range(n)], "receipt_ts": [t0_ns + i for i in range(n)],
    }
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in schema}, schema=schema)


def _lake_with_history(root) -> None:
    with Lake(root, autoflush=False) as lake:
        lake.buffer("trades").append_batch(_trades(5, 100, int(T0 * 1e9)))
        lake.flush()


def test_committed_files_record_the_schema_they_were_written_with(tmp_path):
    _lake_with_history(tmp_path / "lk")
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        [entry] = lake.committed_files("trades")
        assert entry.schema == schema_fingerprint(schema_for("trades"))
        assert entry.schema == schema_fingerprint(pq.read_schema(lake.root / entry.path))


def test_manifest_without_fingerprints_reads_the_same_rows(tmp_path):
    """A manifest written before fingerprints were recorded: its files take the reconciling scan."""
    _lake_with_history(tmp_path / "lk")
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(_trades(3, 200, int((T0 + 60) * 1e9)))
        want = lake.sql(COUNT).to_dict("records")
    log = tmp_path / "lk/_manifest/log.jsonl"
    lines = []
    for line in log.read_text().splitlines():
        doc = json.loads(line.split(" ", 1)[1])
        for e in doc["add"]:
            e.pop("schema")
        body = json.dumps(doc, separators=(",", ":"))
        lines.append(f"{zlib.crc32(body.encode()):08x} {body}\n")
    log.write_text("".join(lines))
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        assert [e.schema for e in lake.committed_files("trades")] == ["", ""]
        assert lake.sql(COUNT).to_dict("records") == want == [{"n": 8, "with_extra": 8, "p": 510.0 + 603.0}]


def test_file_of_an_older_schema_reads_its_missing_column_as_null(tmp_path):
    _lake_with_history(tmp_path / "lk")
    old = _trades(4, 300, int((T0 + 3600) * 1e9)).drop_columns(["extra"])
    rel = "trades/exchange=BINANCE/symbol=BTC-USDT/date=2023-11-14/part-old.parquet"
    pq.write_table(old, tmp_path / "lk" / rel)
    path = tmp_path / "lk" / rel
    ts = old.column("ts").cast(pa.int64()).to_pylist()
    Manifest(tmp_path / "lk").commit([FileEntry(
        path=rel, table="trades", exchange="BINANCE", symbol="BTC-USDT", date="2023-11-14", rows=4,
        bytes=path.stat().st_size, min_ts=min(ts), max_ts=max(ts), crc32=file_crc32(path),
        schema=schema_fingerprint(old.schema))])
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(_trades(2, 400, int((T0 + 7200) * 1e9)))
        got = lake.sql(COUNT).to_dict("records")
        assert got == [{"n": 11, "with_extra": 7, "p": 510.0 + 1206.0 + 801.0}]
        rows = lake.sql("SELECT price, extra FROM trades WHERE price >= 300 AND price < 400 ORDER BY price")
        assert rows["price"].tolist() == [300.0, 301.0, 302.0, 303.0] and rows["extra"].isna().all()


def test_partition_values_read_exactly_whatever_the_path_encoding(tmp_path):
    """Files whose partition directories hold the values as written are read with exchange/symbol
    taken from the path (constants per file); encoded ones (and a root whose name looks like a
    partition) must give the stored values all the same."""
    root = tmp_path / "x=1%2F lake"
    symbols = ["BTC-USDT", "BTC/USD", ".hidden", "100", "ÉTH€", "a%2Fb"]
    with Lake(root, autoflush=False) as lake:
        for i, sym in enumerate(symbols):
            t = _trades(3, 1000 * i, int((T0 + i) * 1e9))
            lake.buffer("trades").append_batch(t.set_column(1, t.schema.field("symbol"), pa.array([sym] * 3)))
        lake.flush()
        lake.buffer("trades").append_batch(_trades(2, 9000, int((T0 + 99) * 1e9)))
        got = lake.sql("SELECT exchange, symbol, count(*) AS n FROM trades GROUP BY ALL ORDER BY symbol")
        assert got.to_dict("records") == sorted(
            [{"exchange": "BINANCE", "symbol": s, "n": 3 + (2 if s == "BTC-USDT" else 0)} for s in symbols],
            key=lambda r: r["symbol"])
        one = lake.sql("SELECT count(*) AS n FROM trades WHERE symbol = $s", {"s": "a%2Fb"})
        assert one["n"][0] == 3
