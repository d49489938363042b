"""The live rows DuckDB scans: key columns dictionary-encoded once per sealed batch, same answers."""
from __future__ import annotations

import duckdb
import pyarrow as pa

from cryptolake_nb import Lake
from cryptolake_nb.keyed import SCAN_ROWS, KeyedScan
from cryptolake_nb.schema import schema_for


def _trades(symbols, start=0):
    n = len(symbols)
    schema = schema_for("trades")
    rows = {f.name: [None] * n for f in schema}
    rows.update(exchange=["BINANCE" if i % 3 else "COINBASE" for i in range(n)], symbol=list(symbols),
                side=["buy", "sell"] * (n // 2) + ["buy"] * (n % 2), amount=[1.0 + i for i in range(n)],
                price=[100.0 + i for i in range(n)], trade_id=[str(start + i) for i in range(n)],
                ts=[1_700_000_000_000_000_000 + start + i for i in range(n)], receipt_ts=[1_700_000_000_000_000_000] * n)
    return pa.Table.from_pydict(rows, schema=schema)


def test_key_columns_are_encoded_once_and_the_rest_shared(tmp_path):
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        buf = lake.buffer("trades")
        buf.append_batch(_trades(["BTC-USDT", "ETH-USDT", "BTC-USDT", "SOL-USDT"]))
        keyed = KeyedScan(buf.schema)
        first = keyed.table(buf.snapshot())
        assert [str(t) for t in first.schema.types[:2]] == ["dictionary<values=string, indices=int32, ordered=0>"] * 2
        assert first.column("symbol").to_pylist() == ["BTC-USDT", "ETH-USDT", "BTC-USDT", "SOL-USDT"]
        (sealed,) = buf.snapshot()
        price = first.column("price").chunk(0)
        assert price.buffers()[1].address == sealed.batch.column("price").buffers()[1].address  # not copied
        buf.append_batch(_trades(["ETH-USDT"], start=4))
        second = keyed.table(buf.snapshot())
        assert second.num_rows == 5
        assert second.to_batches()[0].column(1).indices.buffers()[1].address == \
            first.to_batches()[0].column(1).indices.buffers()[1].address  # the first batch reused
        assert second.cast(buf.schema).equals(buf.snapshot_table())


def test_queries_over_encoded_live_rows_answer_as_over_plain_ones(tmp_path):
    symbols = ["BTC-USDT", "ETH-USDT", "BTC-USDT", "SOL-USDT", "BTC-USDT", "ETH-USDT"] * 50
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        lake.buffer("trades").append_batch(_trades(symbols[:120]))
        lake.flush()  # history and live rows: the union's two sides differ in encoding
        lake.buffer("trades").append_batch(_trades(symbols[120:], start=120))
        plain = pa.Table.from_batches([s.batch for s in lake.buffer("trades").snapshot()])
        con = duckdb.connect()
        con.register("t", pa.concat_tables([_trades(symbols[:120]), plain]))
        for sql in ("SELECT symbol, exchange, count(*) AS n, sum(price * amount) AS pv FROM {} GROUP BY ALL ORDER BY ALL",
                    "SELECT * FROM {} WHERE symbol = 'BTC-USDT' AND exchange = 'BINANCE' ORDER BY trade_id",
                    "SELECT symbol || '/' || exchange AS k, max(price) AS hi FROM {} WHERE symbol IN ('ETH-USDT', 'SOL-USDT') GROUP BY k ORDER BY k"):
            got = lake.query_arrow(sql.format("trades"))
            want = con.sql(sql.format("t")).to_arrow_table()
            assert got.column_names == want.column_names
            assert not any(pa.types.is_dictionary(t) for t in got.schema.types)  # VARCHAR out, as from plain rows
            assert got.to_pylist() == want.to_pylist()
        got = lake.sql("SELECT count(*) AS n FROM trades WHERE symbol = $s", {"s": "BTC-USDT"}, source="live")
        assert got["n"][0] == symbols[120:].count("BTC-USDT")


def test_a_large_batch_is_given_in_slices_both_threads_can_scan(tmp_path):
    n = 2 * SCAN_ROWS + 7
    with Lake(tmp_path / "lk", autoflush=False) as lake:
        buf = lake.buffer("trades")
        buf.append_batch(_trades(["BTC-USDT", "ETH-USDT"] * (n // 2) + ["SOL-USDT"]))
        assert len(buf.snapshot()) == 1  # one sealed batch, as loaded
        scanned = KeyedScan(buf.schema).table(buf.snapshot())
        assert [b.num_rows for b in scanned.to_batches()] == [SCAN_ROWS, SCAN_ROWS, 7]
        assert scanned.cast(buf.schema).equals(buf.snapshot_table())
        got = lake.sql("SELECT symbol, count(*) AS n FROM trades GROUP BY symbol ORDER BY symbol")
        assert got.values.tolist() == [["BTC-USDT", n // 2], ["ETH-USDT", n // 2], ["SOL-USDT", 1]]
