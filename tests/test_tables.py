"""The channel tables beyond trades (ticker, candles, funding, open_interest, liquidations, index), the
`extra` column every table carries, and docs/tables.md, with real cryptofeed 2.4.1 objects."""
from __future__ import annotations

import asyncio
import inspect
import json
import math
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptofeed import defines
from cryptofeed.types import Candle, Funding, Index, Liquidation, OpenInterest, Ticker

from cryptolake_nb import Lake
from cryptolake_nb import records
from cryptolake_nb.records import extra_array
from cryptolake_nb.schema import TS, schema_for
from cryptolake_nb.tables import TABLES, doc

T0 = 1_700_000_000.0
MINE = ("ticker", "candles", "funding", "open_interest", "liquidations", "index")
D = Decimal


def ticker(bid="100.5", ask="100.6", ts=T0, symbol="BTC-USDT", exchange="BINANCE"):
    return Ticker(exchange, symbol, None if bid is None else D(bid), None if ask is None else D(ask), ts)


def candle(o="10", h="12", lo="9", c="11", volume="5.5", trades=7, closed=True, start=T0, stop=T0 + 59.999,
           interval="1m", ts=T0 + 30, symbol="BTC-USDT", exchange="BINANCE"):
    dec = [None if v is None else D(v) for v in (o, c, h, lo, volume)]
    return Candle(exchange, symbol, start, stop, interval, trades, dec[0], dec[1], dec[2], dec[3], dec[4], closed, ts)


def funding(mark="30000.1", rate="-0.0001", next_time=T0 + 3600, predicted=None, ts=T0, symbol="BTC-USDT-PERP"):
    return Funding("BINANCE_FUTURES", symbol, None if mark is None else D(mark), None if rate is None else D(rate),
                   next_time, ts, predicted_rate=None if predicted is None else D(predicted))


def open_interest(value="1234.5", ts=T0):
    return OpenInterest("BITMEX", "BTC-USD-PERP", None if value is None else D(value), ts)


def liquidation(qty="2", price="29999.5", id=None, status="filled", side="sell", ts=T0):
    return Liquidation("BINANCE_FUTURES", "BTC-USDT-PERP", side, None if qty is None else D(qty),
                       None if price is None else D(price), id, status, ts)


def index(price="30001.25", ts=T0):
    return Index("BYBIT", "BTC-USD-PERP", None if price is None else D(price), ts)


def _rows(lake: Lake, table: str) -> list[dict]:
    return lake.sql(f'SELECT * FROM "{table}" ORDER BY ts, receipt_ts', to="arrow").to_pylist()


def _ns(seconds: float) -> int:
    return round(seconds * 1e6) * 1000


def _put(lake: Lake, table: str, objs: list, receipt: float = T0 + 0.25) -> None:
    callback = lake.callbacks([table])[table]  # the same callback cryptofeed calls
    for obj in objs:
        asyncio.run(callback(obj, receipt))


# -- registry and schemas ----------------------------------------------------------------------------

def test_tables_are_named_after_cryptofeed_channels() -> None:
    channels = {defines.TRADES, defines.TICKER, defines.CANDLES, defines.FUNDING, defines.OPEN_INTEREST,
                defines.LIQUIDATIONS, defines.INDEX}
    assert channels <= set(TABLES)
    for name in channels:
        assert TABLES[name].schema.metadata[b"cryptolake.table"].decode() == name


def test_schemas_are_explicit() -> None:
    expected = {
        "trades": ["side", "amount", "price", "trade_id", "type"],
        "ticker": ["bid", "ask"],
        "candles": ["start", "stop", "interval", "trades", "open", "high", "low", "close", "volume", "closed"],
        "funding": ["mark_price", "rate", "next_funding_time", "predicted_rate"],
        "open_interest": ["open_interest"],
        "liquidations": ["side", "quantity", "price", "liquidation_id", "status"],
        "index": ["price"],
    }
    for table, own in expected.items():
        schema = schema_for(table)
        assert schema.names == ["exchange", "symbol", *own, "extra", "ts", "receipt_ts"], table
        assert schema.field("extra").type == pa.string() and schema.field("extra").nullable
        assert schema.field("ts").type == TS == schema.field("receipt_ts").type
        spec = TABLES[table]
        assert set(spec.dictionary_columns) <= set(schema.names) and set(spec.delta_columns) <= set(schema.names)
        for f in schema:
            if pa.types.is_timestamp(f.type):
                assert f.type == TS, f"{table}.{f.name}"
    assert schema_for("candles").field("trades").type == pa.int64()
    assert schema_for("candles").field("closed").type == pa.bool_()
    assert schema_for("funding").field("next_funding_time").type == TS


def test_subscribe_and_callbacks_accept_every_table(lake: Lake) -> None:
    spec = lake.subscribe("BINANCE_FUTURES", ["BTC-USDT-PERP"],
                          channels=["ticker", "candles", "funding", "open_interest", "liquidations"])
    assert len(spec.channels) == 5 and set(lake.callbacks(MINE)) == set(MINE)


# -- values in, values out ----------------------------------------------------------------------------

def test_rows_round_trip_live_and_in_parquet(lake: Lake) -> None:
    _put(lake, "ticker", [ticker(), ticker(bid=None, ask="7")])
    _put(lake, "candles", [candle(), candle(trades=None, volume=None, closed=None, ts=None)])
    _put(lake, "funding", [funding(), funding(mark=None, rate="0", next_time=None, predicted="0.0003")])
    _put(lake, "open_interest", [open_interest(), open_interest("0")])
    _put(lake, "liquidations", [liquidation(id="abc")])
    _put(lake, "index", [index()])
    live = {t: _rows(lake, t) for t in MINE}
    lake.flush()
    assert all(lake.status()["tables"][t]["files"] >= 1 for t in MINE)
    assert {t: _rows(lake, t) for t in MINE} == live

    t0, r0 = pa.scalar(_ns(T0), pa.int64()).cast(TS).as_py(), pa.scalar(_ns(T0 + 0.25), pa.int64()).cast(TS).as_py()
    assert live["ticker"][0] == {"exchange": "BINANCE", "symbol": "BTC-USDT", "bid": 100.5, "ask": 100.6,
                                      "extra": None, "ts": t0, "receipt_ts": r0}
    assert live["ticker"][1]["bid"] is None and live["ticker"][1]["ask"] == 7.0  # NULL, never 0
    full, sparse = sorted(live["candles"], key=lambda r: r["trades"] is None)
    assert (full["open"], full["high"], full["low"], full["close"], full["volume"], full["trades"], full["closed"]) == \
        (10.0, 12.0, 9.0, 11.0, 5.5, 7, True)
    assert full["interval"] == "1m" and full["start"] == t0
    assert full["stop"].value == _ns(T0 + 59.999)
    assert (sparse["trades"], sparse["volume"]) == (None, None)
    assert sparse["closed"] is False  # cryptofeed 2.4.1's Candle turns closed=None into False
    assert sparse["ts"] == sparse["receipt_ts"] == r0  # no exchange time: the receipt time
    f1, f2 = live["funding"]
    assert (f1["mark_price"], f1["rate"], f1["predicted_rate"]) == (30000.1, -0.0001, None)
    assert f1["next_funding_time"].value == _ns(T0 + 3600)
    assert (f2["mark_price"], f2["rate"], f2["next_funding_time"], f2["predicted_rate"]) == (None, 0.0, None, 0.0003)
    assert sorted(r["open_interest"] for r in live["open_interest"]) == [0.0, 1234.5]
    assert {k: live["liquidations"][0][k] for k in ("side", "quantity", "price", "liquidation_id", "status")} == \
        {"side": "sell", "quantity": 2.0, "price": 29999.5, "liquidation_id": "abc", "status": "filled"}
    assert live["index"][0]["price"] == 30001.25
    assert lake.rejected().empty


def test_nulls_and_zero_rates_survive_parquet(lake: Lake) -> None:
    _put(lake, "funding", [funding(mark=None, rate="0", next_time=None)])
    lake.flush()
    (path,) = (lake.root / "funding").rglob("*.parquet")
    table = pq.read_table(path)
    assert table.column("mark_price").null_count == 1 and table.column("next_funding_time").null_count == 1
    assert table.column("rate").to_pylist() == [0.0]


def test_missing_receipt_time_falls_back_to_the_exchange_time(lake: Lake) -> None:
    lake.buffer("index").append(index(ts=T0), None)
    (row,) = _rows(lake, "index")
    assert row["ts"] == row["receipt_ts"]


# -- validation ---------------------------------------------------------------------------------------

INVALID = [
    ("ticker", ticker(bid="NaN"), "bid must be a finite positive number"),
    ("ticker", ticker(ask="Infinity"), "ask must be a finite positive number"),
    ("ticker", ticker(bid="0"), "bid must be a finite positive number, got 0.0"),
    ("ticker", ticker(ask="-1"), "ask must be a finite positive number"),
    ("ticker", ticker(bid=None, ask=None), "neither bid nor ask"),
    ("ticker", ticker(ts=None, symbol=""), "symbol"),
    ("candles", candle(o="0"), "open must be a finite positive number"),
    ("candles", candle(h="NaN"), "high is missing or not a finite number"),
    ("candles", candle(c=None), "close is missing"),
    ("candles", candle(volume="-1"), "volume must be a finite number >= 0"),
    ("candles", candle(trades=-3), "trades must be a finite number >= 0"),
    ("candles", candle(lo="11.5"), "do not bound open"),
    ("candles", candle(h="10.5"), "do not bound open"),
    ("candles", candle(stop=T0 - 1), "stop is before its start"),
    ("candles", candle(start=math.nan), "start is missing"),
    ("candles", candle(trades="many"), "trades must be a finite number >= 0"),
    ("candles", candle(trades=2.5), "trades must be a whole number"),
    ("candles", candle(interval=None), "without an interval"),
    ("funding", funding(mark="0"), "mark_price must be a finite positive number"),
    ("funding", funding(rate="NaN"), "rate must be a finite number"),
    ("funding", funding(predicted="-Infinity"), "predicted_rate must be a finite number"),
    ("funding", funding(mark=None, rate=None, predicted=None), "none of mark_price, rate, predicted_rate"),
    ("funding", funding(next_time="soon"), "next_funding_time is not a finite number"),
    ("open_interest", open_interest("-1"), "open_interest must be a finite number >= 0"),
    ("open_interest", open_interest("NaN"), "open_interest is missing or not a finite number"),
    ("open_interest", open_interest(None), "open_interest is missing"),
    ("liquidations", liquidation(qty="0"), "quantity must be a finite positive number"),
    ("liquidations", liquidation(price="Infinity"), "price is missing or not a finite number"),
    ("liquidations", liquidation(price="-2"), "price must be a finite positive number"),
    ("liquidations", liquidation(price=None), "price is missing"),
    ("index", index("0"), "price must be a finite positive number"),
    ("index", index("-5"), "price must be a finite positive number"),
    ("index", index("NaN"), "price is missing or not a finite number"),
]


@pytest.mark.parametrize("table, obj, reason", INVALID, ids=[f"{t}-{r[:30]}" for t, _, r in INVALID])
def test_impossible_values_are_kept_aside(lake: Lake, table: str, obj, reason: str) -> None:
    good = {"ticker": ticker, "candles": candle, "funding": funding, "open_interest": open_interest,
            "liquidations": liquidation, "index": index}[table]()
    _put(lake, table, [good, obj, good])
    assert len(_rows(lake, table)) == 2, "the bad row was stored"
    rejected = lake.rejected()
    assert list(rejected["table"]) == [table]
    assert reason in rejected["reason"][0], rejected["reason"][0]
    values = rejected["values"][0]
    assert values["exchange"] == obj.exchange and "receipt_timestamp" in values
    assert lake.status()["rejected"] == {f"{table}/{obj.exchange}": 1}


def test_negative_zero_rates_and_zero_open_interest_are_valid(lake: Lake) -> None:
    _put(lake, "funding", [funding(rate="-0.00375", predicted="-0.0001"), funding(rate="0", predicted="0")])
    _put(lake, "open_interest", [open_interest("0")])
    _put(lake, "candles", [candle(volume="0", trades=0)])
    assert lake.rejected().empty
    assert sorted(r["rate"] for r in _rows(lake, "funding")) == [-0.00375, 0.0]


def test_objects_of_another_type_are_rejected_not_raised(lake: Lake, make_trade) -> None:
    _put(lake, "ticker", [make_trade(1, 1, T0), ticker()])
    assert len(_rows(lake, "ticker")) == 1
    assert lake.rejected()["reason"][0].startswith("not a ticker object")


# -- extra --------------------------------------------------------------------------------------------

class FutureTicker(Ticker):
    """What a later cryptofeed might hand over: more public attributes than the table maps."""

    venue = "spot"                        # a class-level attribute
    nothing = None                        # None values are left out

    @property
    def mid(self) -> Decimal:             # a computed attribute
        return (self.bid + self.ask) / 2

    @property
    def broken(self) -> Decimal:          # an attribute that raises is skipped
        raise RuntimeError("no")

    def method(self) -> int:              # methods are not data
        return 1


def test_unmapped_attributes_land_in_extra(lake: Lake) -> None:
    t = FutureTicker("BINANCE", "BTC-USDT", D("100"), D("101"), T0, raw={"big": "message"})
    t.sequence = 42                       # an instance attribute
    t.weird = {"nested": [D("1.5"), math.nan, object]}
    _put(lake, "ticker", [t, ticker()])
    rows = _rows(lake, "ticker")
    extras = [r["extra"] for r in rows]
    assert extras.count(None) == 1
    stored = json.loads(next(e for e in extras if e))
    assert stored == {"mid": "100.5", "sequence": 42, "venue": "spot",
                      "weird": {"nested": ["1.5", "nan", str(object)]}}
    assert lake.sql("SELECT extra->>'$.mid' AS mid FROM ticker WHERE extra IS NOT NULL")["mid"][0] == "100.5"
    lake.flush()
    assert [r["extra"] for r in _rows(lake, "ticker")] == extras


def test_cryptofeed_241_objects_have_no_extra(lake: Lake, make_trade) -> None:
    _put(lake, "trades", [make_trade(1, 2, T0)])
    for table, obj in [("ticker", ticker()), ("candles", candle()), ("funding", funding()),
                       ("open_interest", open_interest()), ("liquidations", liquidation()), ("index", index())]:
        _put(lake, table, [obj])
    for table in ("trades", *MINE):
        assert [r["extra"] for r in _rows(lake, table)] == [None], table


def test_extra_plan_is_computed_once_per_type(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = inspect.getattr_static
    monkeypatch.setattr(records.inspect, "getattr_static", lambda *a: calls.append(a[1]) or real(*a))
    mapped = frozenset({"exchange", "symbol", "bid", "ask", "timestamp"})
    monkeypatch.setattr(records, "_PLANS", {})
    objs = [ticker() for _ in range(500)]
    assert extra_array(objs, mapped).null_count == 500
    first = len(calls)
    assert 0 < first < 20                     # one look at the type's attributes, not one per row
    extra_array(objs * 3, mapped)
    extra_array([FutureTicker("X", "Y", D(1), D(2), T0)] * 200, mapped)
    assert len(calls) - first < 30            # the new type once; Ticker not again
    assert len(records._PLANS) == 2


# -- storage hints and docs -------------------------------------------------------------------------

def test_parquet_files_use_the_tables_encodings(lake: Lake) -> None:
    _put(lake, "candles", [candle(start=T0 + 60 * i, stop=T0 + 60 * i + 59.999, ts=T0 + 60 * i + 5)
                           for i in range(50)])
    lake.flush()
    (path,) = (lake.root / "candles").rglob("*.parquet")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: set(meta.column(i).encodings) for i in range(meta.num_columns)}
    for column in ("start", "stop", "ts", "receipt_ts"):
        assert "DELTA_BINARY_PACKED" in encodings[column], column
    for column in ("exchange", "symbol", "interval", "open"):
        assert encodings[column] & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}, column
    assert not encodings["volume"] & {"RLE_DICTIONARY", "PLAIN_DICTIONARY"}


def test_tables_doc_is_current() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "tables.md"
    assert path.read_text(encoding="utf-8") == doc.markdown(), f"docs/tables.md is out of date: run `{doc.COMMAND}`"


def test_every_column_is_documented() -> None:
    text = doc.markdown()
    for table in ("trades", *MINE):
        section = text.split(f"## `{table}`", 1)[1].split("\n## ", 1)[0]
        for f in schema_for(table):
            (line,) = [x for x in section.splitlines() if x.startswith(f"| `{f.name}` |")]
            meaning, null = [c.strip() for c in line.rstrip(" |").split(" | ")[2:4]]
            assert meaning and "(undocumented)" not in meaning, f"{table}.{f.name}"
            assert (null == "never") == (not f.nullable) and "(not stated)" not in null, f"{table}.{f.name}"


def test_column_comments_are_read_from_the_source() -> None:
    source = '''S = make_schema("t", [
    pa.field("a", pa.int64()),   # first; NULL when absent
    pa.field("b", pa.string(),
             nullable=False),    # not on the field's line: ignored
    pa.field("c", pa.float64()),  # third, which goes on
    #                               over two lines
    x,                           # not a field
])
'''
    assert doc.column_comments(source) == {"a": "first; NULL when absent", "b": "", "c": "third, which goes on over two lines"}


def test_closed_flags_other_than_booleans_are_rejected() -> None:
    reasons: dict[int, str] = {}
    arr = records.bools_to_array([True, None, "yes", False], "closed", reasons)
    assert arr.to_pylist() == [True, None, None, False] and list(reasons) == [2]
