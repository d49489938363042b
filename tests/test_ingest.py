"""cryptofeed callbacks buffer rows cheaply, never raise, and keep invalid rows aside with a reason."""
from __future__ import annotations

import asyncio
import pyarrow as pa

from cryptolake_nb import TradeLake
from cryptolake_nb.schema import schema_for


def feed(cb, items):
    async def go():
        for obj, receipt in items:
            await cb(obj, receipt)

    asyncio.run(go())


def test_trades_land_with_exact_values_and_ns_timestamps(lake, make_trade):
    cb = TradeLake(lake)
    feed(cb, [(make_trade("65000.123456789", "0.00012345", 1_700_000_000.123456, id="7"), 1_700_000_000.5)])
    table = lake.sql("SELECT * FROM trades", to="arrow")
    assert table.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    row = table.to_pylist()[0]
    assert row["price"] == 65000.123456789 and row["amount"] == 0.00012345
    assert row["trade_id"] == "7" and row["side"] == "buy" and row["type"] is None
    assert table.column("ts").cast(pa.int64())[0].as_py() == 1_700_000_000_123_456_000
    assert table.column("receipt_ts").cast(pa.int64())[0].as_py() == 1_700_000_000_500_000_000


def test_invalid_rows_are_counted_and_kept_with_reason(lake, make_trade):
    cb = TradeLake(lake)
    good = make_trade(100, 1, 1_700_000_000.0, id="1")
    bad = [
        make_trade("NaN", 1, 1_700_000_001.0, id="2"),
        make_trade(100, -1, 1_700_000_002.0, id="3"),
        make_trade(100, 1, 1_700_000_003.0, id="4", symbol="BTC\x00USD"),
        make_trade(0, 1, 1_700_000_004.0, id="5"),
    ]
    feed(cb, [(t, 1_700_000_010.0) for t in [good, *bad]])
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1
    rejected = lake.rejected()
    assert len(rejected) == 4 and lake.status()["tables"]["trades"]["rejected"] == 4
    assert lake.status()["rejected"] == {"trades/BINANCE": 4}
    reasons = " | ".join(rejected["reason"])
    assert "price" in reasons and "amount" in reasons and "control character" in reasons
    assert sorted(v["id"] for v in rejected["values"]) == ["2", "3", "4", "5"]
    lake.flush()  # the rejects are not retried into history
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1
    q = lake.sql("SELECT exchange, count(*) AS n FROM quarantine WHERE \"table\" = 'trades' GROUP BY ALL")
    assert q.to_dict("records") == [{"exchange": "BINANCE", "n": 4}]


def test_callback_never_raises_and_garbage_is_kept_aside(lake, make_trade):
    cb = TradeLake(lake)
    feed(cb, [(object(), 1.0), (None, None), (make_trade(100, 1, 1_700_000_000.0), 1_700_000_000.0)])
    assert cb.calls == 3 and cb.errors == 0
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1
    assert lake.rejected()["reason"].str.startswith("not a trades object").sum() == 2


def test_schema_is_explicit():
    names = schema_for("trades").names
    assert names == ["exchange", "symbol", "side", "amount", "price", "trade_id", "type", "extra", "ts", "receipt_ts"]


def test_bulk_arrow_rows_are_schema_checked(lake):
    import pytest
    from cryptolake_nb import SchemaError

    good = pa.table({f.name: pa.array([], f.type) for f in schema_for("trades")}, schema=schema_for("trades"))
    lake.buffer("trades").append_batch(good)
    with pytest.raises(SchemaError, match="trades"):
        lake.buffer("trades").append_batch(pa.table({"price": [1.0]}))
