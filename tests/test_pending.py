"""The live buffer's lock-free intake: a trade is stored as its fields and let go at once, every row
keeps its own receipt under concurrent appenders, and whatever does not fit is kept aside as itself."""
from __future__ import annotations

import json
import sys
import threading
from decimal import Decimal

from cryptofeed.types import Trade

from cryptolake_nb import TradeLake
from tests.test_ingest import feed

T0 = 1_700_000_000.0


class VenueTrade(Trade):
    """A Trade with an attribute the trades table does not map (a later cryptofeed might add one)."""


class Quirky:
    """Has exactly the trade fields, but one of them fails when read."""

    exchange, symbol, side, amount, price, type, timestamp = "BINANCE", "BTC-USDT", "buy", Decimal(1), Decimal(2), None, T0

    @property
    def id(self) -> str:
        raise RuntimeError("id not decoded")


def test_a_trade_is_not_kept_alive_by_the_buffer(lake, make_trade):
    trade = make_trade(100, 1, T0, id="1")
    before = sys.getrefcount(trade)
    append = lake.buffer("trades").appender()
    append(trade, T0 + 0.5)
    assert sys.getrefcount(trade) == before  # its fields are stored, not the object
    row = lake.sql("SELECT trade_id, price, amount, epoch(receipt_ts) AS r FROM trades").to_dict("records")
    assert row == [{"trade_id": "1", "price": 100.0, "amount": 1.0, "r": T0 + 0.5}]


def test_concurrent_appenders_keep_each_row_with_its_own_receipt(lake, make_trade):
    buffer, per_thread, stop = lake.buffer("trades"), 20_000, threading.Event()

    def produce(k: int) -> None:
        append = buffer.appender()
        for i in range(per_thread):
            n = k * per_thread + i
            append(make_trade(100 + k, 1, T0 + i * 1e-3, id=str(n)), T0 + n)  # receipt encodes the id

    def seal() -> None:
        while not stop.is_set():
            buffer.seal()

    sealer = threading.Thread(target=seal)
    producers = [threading.Thread(target=produce, args=(k,)) for k in range(2)]
    sealer.start()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    stop.set()
    sealer.join()
    got = lake.sql("SELECT trade_id, epoch(receipt_ts) - 1700000000 AS r, price FROM trades")
    assert len(got) == 2 * per_thread and got["trade_id"].nunique() == 2 * per_thread
    assert (got["trade_id"].astype(int) == got["r"].round().astype(int)).all()
    assert (got["price"] == 100 + got["trade_id"].astype(int) // per_thread).all()
    assert buffer.appended == 2 * per_thread


def test_a_tuple_given_as_a_trade_is_kept_aside_as_itself(lake, make_trade):
    fake = ("BINANCE", "BTC-USDT", "buy", Decimal(1), Decimal(2), "9", None, T0)  # the fields, in order
    cb = TradeLake(lake)
    feed(cb, [(fake, T0), (make_trade(100, 1, T0, id="1"), T0)])
    assert cb.errors == 0 and lake.sql("SELECT trade_id FROM trades")["trade_id"].tolist() == ["1"]
    rejected = lake.rejected()
    assert rejected["reason"].tolist() == ["not a trades object: tuple ('tuple' object has no attribute 'exchange')"]
    assert rejected["values"][0]["object"] == repr(fake)


def test_objects_of_other_types_keep_arrival_order_and_their_extra(lake, make_trade):
    venue = VenueTrade("BINANCE", "BTC-USDT", "sell", Decimal("0.5"), Decimal(101), T0 + 1, id="2", type=None, raw=None)
    venue.venue_seq = 77
    trades = [make_trade(100, 1, T0, id="1"), venue, make_trade(102, 1, T0 + 2, id="3")]
    feed(TradeLake(lake), [(t, T0 + 5) for t in trades])
    rows = lake.sql("SELECT trade_id, side, price, extra FROM trades", to="arrow").to_pylist()
    assert [r["trade_id"] for r in rows] == ["1", "2", "3"]
    assert [r["price"] for r in rows] == [100.0, 101.0, 102.0] and rows[1]["side"] == "sell"
    assert [r["extra"] for r in rows[::2]] == [None, None] and json.loads(rows[1]["extra"]) == {"venue_seq": 77}


def test_an_object_whose_field_fails_to_read_is_kept_aside_with_the_reason(lake, make_trade):
    cb = TradeLake(lake)
    feed(cb, [(Quirky(), T0), (Quirky(), T0), (make_trade(100, 1, T0, id="1"), T0)])
    assert cb.errors == 0 and cb.calls == 3
    assert lake.sql("SELECT count(*) AS n FROM trades")["n"][0] == 1
    reasons = lake.rejected()["reason"].tolist()
    assert reasons == ["not a trades object: Quirky (id not decoded)"] * 2
