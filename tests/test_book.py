"""Order books: capture, validation, checkpoints in the stream and at the start of every file, reopening,
and book_at / top_of_book / depth against books kept independently from cryptofeed's own OrderBook.

`Exchange` below plays an exchange parser: it keeps real cryptofeed OrderBook objects, mutates them
in place as cryptofeed does, sets `delta`/`timestamp`, and awaits the lake's own callback; after each
callback it copies the book (the reference).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest
from cryptofeed.types import OrderBook, Ticker

from cryptolake_nb import ConfigError, Lake
from cryptolake_nb.books import book_at, depth, top_of_book
from cryptolake_nb.tables import TABLES

DEPTH = 5
T0 = 1_700_006_280.0  # 2023-11-14 23:58:00 UTC: the stream crosses midnight
TICK = Decimal("0.5")


class Exchange:
    """Real cryptofeed OrderBooks, updated in place and handed to the lake's callback."""

    def __init__(self, lake: Lake, table: str = "l2_book") -> None:
        self.callback = lake.callbacks([table])[table]
        self.l3 = table == "l3_book"
        self.books: dict[tuple[str, str], OrderBook] = {}
        self.ref: dict[tuple[str, str], list[tuple[int, list, list]]] = defaultdict(list)

    def snapshot(self, key: tuple[str, str], bids: dict, asks: dict, ts: float | None, receipt: float) -> None:
        self.books[key] = book = OrderBook(key[0], key[1], bids=bids, asks=asks)
        self._send(book, None, ts, receipt)

    def update(self, key: tuple[str, str], entries: list[tuple[str, Decimal, Decimal]], ts: float | None,
               receipt: float, apply: bool = True) -> None:
        book = self.books[key]
        delta: dict[str, list] = {"bid": [], "ask": []}
        for side, price, size in entries:
            levels = book.book.bids if side == "bid" else book.book.asks
            if apply and size == 0:
                if price in levels:
                    del levels[price]
            elif apply:
                levels[price] = size
            delta[side].append((price, size))
        self._send(book, delta, ts, receipt)

    def _send(self, book: OrderBook, delta: Any, ts: float | None, receipt: float) -> None:
        book.delta, book.timestamp, book.sequence_number, book.checksum = delta, ts, None, None
        asyncio.run(self.callback(book, receipt))
        t = round((ts if ts is not None else receipt) * 1e6) * 1000
        self.ref[(book.exchange, book.symbol)].append((t, _top(book.book.bids, self.l3), _top(book.book.asks, self.l3)))


def _top(side: Any, l3: bool = False) -> list:
    if l3:
        return [(float(p), sorted((o, float(s)) for o, s in side[p].items())) for p in side.keys()[:DEPTH]]
    return [(float(p), float(side[p])) for p in side.keys()[:DEPTH]]


def _ladder(mid: Decimal, rng: random.Random, n: int = 20) -> tuple[dict, dict]:
    bids = {mid - TICK * k: Decimal(rng.randint(1, 90)) / 10 for k in range(1, n + 1)}
    asks = {mid + TICK * k: Decimal(rng.randint(1, 90)) / 10 for k in range(1, n + 1)}
    return bids, asks


def play(ex: Exchange, rng: random.Random, n: int, keys: list[tuple[str, str]], t: float,
         on_step: Any = None) -> float:
    """A random but plausible stream: size changes, removals, new levels, sweeps of the top levels
    (so deeper levels surface), rare new snapshots, some updates without an exchange time."""
    for key in keys:
        ex.snapshot(key, *_ladder(Decimal(1000), rng), t, t + 0.01)
    for i in range(n):
        key = rng.choice(keys)
        book = ex.books[key].book
        t += rng.uniform(0.05, 1.5)
        if rng.random() < 0.01:
            ex.snapshot(key, *_ladder((book.bids.index(0)[0] + book.asks.index(0)[0]) / 2 // TICK * TICK, rng), None, t)
            continue
        entries = []
        for _ in range(rng.randint(1, 3)):
            side = rng.choice(("bid", "ask"))
            levels, other = (book.bids, book.asks) if side == "bid" else (book.asks, book.bids)
            sign = -1 if side == "bid" else 1
            roll = rng.random()
            if roll < 0.05 and len(levels) > 4:
                entries += [(side, levels.index(k)[0], Decimal(0)) for k in range(3)]
            elif roll < 0.3 and len(levels) > 1:
                entries.append((side, levels.index(rng.randrange(min(8, len(levels))))[0], Decimal(0)))
            else:
                price = levels.index(0)[0] + sign * TICK * rng.randint(-1, 12)
                if len(other) and (price >= other.index(0)[0] if side == "bid" else price <= other.index(0)[0]):
                    continue
                entries.append((side, price, Decimal(rng.randint(1, 90)) / 10))
        ex.update(key, entries, None if rng.random() < 0.1 else t, t + 0.002)
        if on_step is not None:
            on_step(i)
    return t


def _book(rows: list[dict]) -> tuple[list, list]:
    return ([(r["price"], r["size"]) for r in rows if r["side"] == "bid"],
            [(r["price"], r["size"]) for r in rows if r["side"] == "ask"])


def _expected(ref: list, t: int) -> tuple[list, list]:
    found = ([], [])
    for when, bids, asks in ref:
        if when <= t:
            found = (bids, asks)
    return found


def check_book_at(lake: Lake, ex: Exchange, rng: random.Random, instants: int, live_after: int = 0) -> int:
    """book_at() against the reference at random instants; returns how many were in live rows."""
    live = 0
    keys = sorted(ex.ref)
    for i in range(instants):
        key = rng.choice(keys)
        ref = ex.ref[key]
        k = rng.randrange(live_after if i % 3 == 0 and live_after < len(ref) else 0, len(ref))
        t = ref[k][0] + rng.choice([0, 1, -1, 40_000_000])
        got = book_at(key[1], t, depth=DEPTH, exchange=key[0], to="arrow", lake=lake).to_pylist()
        assert _book(got) == _expected(ref, t), f"{key} at {t}"
        live += k >= live_after
    return live


def check_files_alone(lake: Lake, ex: Exchange, table: str = "l2_book") -> int:
    """Every committed file, read alone, starts with the book of the update it follows."""
    real = defaultdict(list)
    for r in lake.sql(f"SELECT DISTINCT exchange, symbol, update_id FROM {table} WHERE kind <> 'checkpoint'",
                      to="arrow").to_pylist():
        real[(r["exchange"], r["symbol"])].append(r["update_id"])
    files = lake._manifest.files(table)
    for e in files:
        rows = pq.read_table(lake.root / e.path).to_pylist()
        first = rows[0]["update_id"]
        head = [r for r in rows if r["update_id"] == first and r["kind"] != "delta"]
        assert head, f"{e.path} does not start with a full book"
        k = sum(u <= first for u in real[(e.exchange, e.symbol)])
        levels = {(r["side"], r["price"]): r["size"] for r in head if r["side"] is not None and r["size"] > 0}
        bids = sorted(((p, s) for (side, p), s in levels.items() if side == "bid"), reverse=True)[:DEPTH]
        asks = sorted((p, s) for (side, p), s in levels.items() if side == "ask")[:DEPTH]
        _, want_bids, want_asks = ex.ref[(e.exchange, e.symbol)][k - 1]
        assert (bids, asks) == (want_bids, want_asks), e.path
    return len(files)


@pytest.fixture
def book_lake(tmp_path: Path):
    with Lake(tmp_path / "lake", autoflush=False, book_depth=DEPTH, book_snapshot_interval=5.0) as lake:
        yield lake


def test_book_tables_are_registered() -> None:
    for name in ("l2_book", "l3_book"):
        names = TABLES[name].schema.names
        assert names[:2] == ["exchange", "symbol"] and names[-2:] == ["ts", "receipt_ts"]
        assert {"update_id", "kind", "side", "price", "size", "sequence_number", "checksum"} <= set(names)
    assert "order_id" in TABLES["l3_book"].schema.names


def test_capture_copies_what_cryptofeed_mutates_afterwards(book_lake: Lake) -> None:
    ex = Exchange(book_lake)
    key = ("BINANCE", "BTC-USDT")
    ex.snapshot(key, {Decimal(99): Decimal(1)}, {Decimal(101): Decimal(2)}, T0, T0)
    ex.update(key, [("bid", Decimal(100), Decimal(3))], T0 + 1, T0 + 1)
    book = ex.books[key]
    book.book.bids[Decimal(98)] = Decimal(7)  # cryptofeed reuses the object for the next message
    book.delta["bid"].append((Decimal(98), Decimal(7)))
    rows = book_lake.sql("SELECT kind, side, price, size FROM l2_book ORDER BY update_id, kind, side, price",
                         to="arrow").to_pylist()
    assert [(r["kind"], r["side"], r["price"], r["size"]) for r in rows] == [
        ("snapshot", "ask", 101.0, 2.0), ("snapshot", "bid", 99.0, 1.0), ("delta", "bid", 100.0, 3.0)]


def test_random_stream_book_at_files_and_partitions(book_lake: Lake) -> None:
    """Two symbols, ~4 minutes across midnight, flushed at three points, the tail live."""
    ex = Exchange(book_lake)
    rng = random.Random(7)
    keys = [("BINANCE", "BTC-USDT"), ("BINANCE", "ETH-USDT")]
    steps = 700
    play(ex, rng, steps, keys, T0, on_step=lambda i: book_lake.flush() if i in (150, 330, 500) else None)
    kinds = {r["kind"] for r in book_lake.sql("SELECT DISTINCT kind FROM l2_book", to="arrow").to_pylist()}
    assert kinds == {"snapshot", "delta", "checkpoint"}
    dates = {e.date for e in book_lake._manifest.files("l2_book")}
    assert dates == {"2023-11-14", "2023-11-15"}
    assert check_files_alone(book_lake, ex) >= 6
    live_after = min(len(ex.ref[k]) for k in keys) * 3 // 4
    assert check_book_at(book_lake, ex, random.Random(1), 60, live_after) >= 12
    assert book_at("BTC-USDT", int(T0 * 1e9) - 1, depth=DEPTH, exchange="BINANCE", lake=book_lake).empty


def test_horizon_and_interval_checkpoints(book_lake: Lake) -> None:
    ex = Exchange(book_lake)
    key = ("BINANCE", "BTC-USDT")
    t = T0 + 3600  # no day change from here
    ex.snapshot(key, *_ladder(Decimal(1000), random.Random(0), n=15), t, t)  # stores 2 * DEPTH = 10 a side
    for i in range(1, 8):  # the best bids go one by one: after the 6th, 4 stored ones are left, and the
        # 5th best is a level the stored rows never had: a checkpoint at the 6th, none before
        ex.update(key, [("bid", Decimal(1000) - TICK * i, Decimal(0))], t + 0.1 * i, t + 0.1 * i)
    ex.update(key, [("ask", Decimal(1001), Decimal(4))], t + 5.6, t + 5.6)  # 5 s of data time after it
    groups = book_lake.sql("SELECT update_id, list(DISTINCT kind ORDER BY kind) AS kinds FROM l2_book "
                           "GROUP BY update_id ORDER BY update_id", to="arrow").column("kinds").to_pylist()
    assert groups == [["snapshot"]] + [["delta"]] * 5 + [["checkpoint", "delta"], ["delta"], ["checkpoint", "delta"]]
    assert book_lake.sql("SELECT count(*) AS n FROM l2_book WHERE kind = 'snapshot' AND side = 'bid'",
                         to="arrow").column("n")[0].as_py() == 2 * DEPTH
    assert check_book_at(book_lake, ex, random.Random(2), 20) == 20


def test_bad_values_are_rejected_with_reasons_and_counted(book_lake: Lake, caplog) -> None:
    ex = Exchange(book_lake)
    for exchange in ("BINANCE", "KRAKEN"):
        key = (exchange, "BTC-USDT")
        ex.snapshot(key, {Decimal(99): Decimal(1), Decimal(-1): Decimal(1)}, {Decimal(101): Decimal(1)}, T0 + 9000, T0)
        ex.update(key, [("bid", Decimal(-5), Decimal(1)), ("bid", Decimal("Infinity"), Decimal(1)),
                        ("bid", Decimal("NaN"), Decimal(1)),
                        ("ask", Decimal(0), Decimal(1)), ("ask", Decimal(102), Decimal(-1)),
                        ("ask", Decimal(103), Decimal("NaN")), ("bid", Decimal(98), Decimal(2))],
                  T0 + 9001, T0 + 9001, apply=False)
    with caplog.at_level(logging.WARNING):
        stored = book_lake.sql("SELECT exchange, price, size FROM l2_book WHERE kind = 'delta'", to="arrow").to_pylist()
    assert sorted((r["exchange"], r["price"], r["size"]) for r in stored) == [("BINANCE", 98.0, 2.0), ("KRAKEN", 98.0, 2.0)]
    rejected = book_lake.rejected()
    assert book_lake.rejects.by_source[("l2_book", "BINANCE")] == book_lake.rejects.by_source[("l2_book", "KRAKEN")] == 7
    reasons = sorted(set(rejected["reason"]))
    assert reasons == ["price must be a finite positive number, got -1.0",
                       "price must be a finite positive number, got -5.0", "price must be a finite positive number, got 0.0",
                       "price must be a finite positive number, got inf", "price must be a finite positive number, got nan",
                       "size must be a finite number >= 0, got -1.0", "size must be a finite number >= 0, got nan"]
    assert book_lake.status()["rejected"]["l2_book/KRAKEN"] == 7
    assert book_lake.sql("SELECT count(*) AS n FROM l2_book WHERE price < 0 OR isnan(price) OR isinf(price) "
                         "OR size < 0 OR isnan(size)", to="arrow").column("n")[0].as_py() == 0


def test_crossed_snapshot_is_kept_and_flagged(book_lake: Lake, caplog) -> None:
    ex = Exchange(book_lake)
    key = ("BINANCE", "BTC-USDT")
    with caplog.at_level(logging.WARNING):
        ex.snapshot(key, {Decimal(101): Decimal(1)}, {Decimal(100): Decimal(2)}, T0 + 9000, T0 + 9000)
        book_lake.flush()
    assert "crossed l2_book book" in caplog.text
    top = top_of_book("BTC-USDT", "1s", exchange="BINANCE", source="l2_book", lake=book_lake)
    assert top[["bid", "ask", "crossed", "derived"]].values.tolist() == [[101.0, 100.0, True, True]]
    assert book_lake.rejected().empty


def test_reopened_lake_continues_ids_checkpoints_and_files(tmp_path: Path) -> None:
    root, rng = tmp_path / "lake", random.Random(3)
    keys = [("BINANCE", "BTC-USDT"), ("KRAKEN", "BTC-USDT")]
    with Lake(root, autoflush=False, book_depth=DEPTH, book_snapshot_interval=5.0) as first:
        ex = Exchange(first)
        t = play(ex, rng, 250, keys, T0 + 7200)
        first.flush()
        last_id = first.sql("SELECT max(update_id) AS m FROM l2_book", to="arrow").column("m")[0].as_py()
    with Lake(root, autoflush=False, book_depth=DEPTH, book_snapshot_interval=5.0) as second:
        ex.callback = second.callbacks(["l2_book"])["l2_book"]  # the same cryptofeed books go on
        for i in range(150):
            key = keys[i % 2]
            price = ex.books[key].book.bids.index(0)[0] - TICK * rng.randint(0, 6)
            t += 0.3
            ex.update(key, [("bid", price, Decimal(rng.randint(0, 5)))], t, t)
            if i == 100:
                second.flush()
        first_new = second.sql("SELECT min(update_id) AS m FROM l2_book WHERE update_id > $last",
                               {"last": last_id}, to="arrow").column("m")[0].as_py()
        assert first_new > last_id
        assert check_files_alone(second, ex) >= 4
        assert check_book_at(second, ex, random.Random(4), 40, live_after=len(ex.ref[keys[0]]) - 20) >= 8
    with Lake(root, autoflush=False, book_depth=DEPTH) as third:  # a delta loaded without the capture:
        schema = TABLES["l2_book"].schema                           # the state comes from the history
        row = {"exchange": "KRAKEN", "symbol": "BTC-USDT", "update_id": time.time_ns(), "kind": "delta",
               "side": "ask", "price": 5000.0, "size": 1.0, "sequence_number": None, "checksum": None,
               "ts": int((t + 1) * 1e9), "receipt_ts": int((t + 1) * 1e9)}
        third.buffer("l2_book").append_batch(pa.Table.from_pylist([row], schema=schema))
        third.flush()
        head = pq.read_table(third.root / third._manifest.files("l2_book")[-1].path).to_pylist()
        assert [r["kind"] for r in head[:-1]] == ["checkpoint"] * (len(head) - 1) and head[-1]["price"] == 5000.0
        _, bids, asks = ex.ref[("KRAKEN", "BTC-USDT")][-1]
        levels = [(r["price"], r["size"]) for r in head[:-1]]
        assert levels[:DEPTH] == bids and [x for x in levels if x[0] > bids[0][0]][:DEPTH] == asks


def test_top_of_book_from_l2_and_ticker(book_lake: Lake) -> None:
    ex = Exchange(book_lake)
    rng = random.Random(5)
    key = ("BINANCE", "BTC-USDT")
    play(ex, rng, 300, [key], T0 + 3600)
    book_lake.flush()
    table = top_of_book("BTC-USDT", "10s", exchange="BINANCE", source="l2_book", to="arrow", lake=book_lake)
    top = table.to_pylist()
    buckets: dict[int, tuple] = {}
    for t, bids, asks in ex.ref[key]:
        buckets[t // 10**10 * 10**10] = (bids[0], asks[0])
    got = zip(table.column("ts").cast(pa.int64()).to_pylist(), top)
    assert [(t, r["bid"], r["bid_size"], r["ask"], r["ask_size"]) for t, r in got] == [
        (b, *buckets[b][0], *buckets[b][1]) for b in sorted(buckets)]
    assert all(r["derived"] and r["mid"] == (r["bid"] + r["ask"]) / 2 for r in top)
    ticker = book_lake.callbacks(["ticker"])["ticker"]
    asyncio.run(ticker(Ticker("BINANCE", "BTC-USDT", Decimal(999), Decimal(1001), T0 + 3601, raw=None), T0 + 3601))
    both = top_of_book("BTC-USDT", "10s", exchange="BINANCE", lake=book_lake)
    assert both.loc[~both.derived, ["source", "bid", "ask", "spread"]].values.tolist() == [["ticker", 999.0, 1001.0, 2.0]]
    window = top_of_book("BTC-USDT", "10s", exchange="BINANCE", start=top[3]["ts"], end=top[6]["ts"],
                         source="l2_book", to="arrow", lake=book_lake).to_pylist()
    assert window == top[3:6]


def test_top_of_book_without_a_ticker_table(book_lake: Lake, monkeypatch) -> None:
    ex = Exchange(book_lake)
    play(ex, random.Random(6), 20, [("BINANCE", "BTC-USDT")], T0 + 3600)
    monkeypatch.delitem(TABLES, "ticker")  # a lake built without the ticker table
    assert set(top_of_book("BTC-USDT", exchange="BINANCE", lake=book_lake)["source"]) == {"l2_book"}
    with pytest.raises(ConfigError, match="ticker"):
        top_of_book("BTC-USDT", exchange="BINANCE", source="ticker", lake=book_lake)


def test_depth_within_pct_of_mid(book_lake: Lake) -> None:
    ex = Exchange(book_lake)
    key = ("BINANCE", "BTC-USDT")
    ex.snapshot(key, {Decimal(99): Decimal(1), Decimal(98): Decimal(2), Decimal(90): Decimal(5)},
                {Decimal(101): Decimal(3), Decimal(103): Decimal(4)}, T0 + 3600, T0 + 3600)
    out = depth("BTC-USDT", int((T0 + 3601) * 1e9), pct=3.5, exchange="BINANCE", lake=book_lake).iloc[0]
    assert (out.mid, out.bid_size, out.bid_levels, out.ask_size, out.ask_levels) == (100.0, 3.0, 2, 7.0, 2)
    assert out.bid_notional == 99 + 196 and out.complete


def test_bad_arguments_raise_config_errors(book_lake: Lake) -> None:
    ex = Exchange(book_lake)
    for exchange in ("BINANCE", "KRAKEN"):
        ex.snapshot((exchange, "BTC-USDT"), {Decimal(99): Decimal(1)}, {Decimal(101): Decimal(1)}, T0, T0)
    for call in (lambda: book_at("BTC-USDT", T0 * 1e9, depth=0, exchange="BINANCE", lake=book_lake),
                 lambda: book_at("BTC-USDT", int(T0 * 1e9), depth=DEPTH + 1, exchange="BINANCE", lake=book_lake),
                 lambda: book_at("BTC-USDT", None, lake=book_lake),
                 lambda: book_at("BTC-USDT", "not a time", lake=book_lake),
                 lambda: book_at(42, int(T0 * 1e9), lake=book_lake),
                 lambda: book_at("BTC-USDT", int(T0 * 1e9) + 1, lake=book_lake),  # on two exchanges
                 lambda: top_of_book("BTC-USDT", "fortnight", lake=book_lake),
                 lambda: top_of_book("BTC-USDT", source="trades", lake=book_lake),
                 lambda: depth("BTC-USDT", int(T0 * 1e9) + 1, pct=0, exchange="BINANCE", lake=book_lake)):
        with pytest.raises(ConfigError):
            call()


def test_l3_orders_capture_flush_and_rebuild(book_lake: Lake) -> None:
    ex = Exchange(book_lake, "l3_book")
    key = ("INDEPENDENT_RESERVE", "ETH-AUD")
    book = OrderBook(*key)
    book.book.bids[Decimal(10)] = {"a": Decimal(1), "b": Decimal(2)}
    book.book.asks[Decimal(11)] = {"c": Decimal(3)}
    ex.books[key] = book
    ex._send(book, None, None, T0 + 3600)
    del book.book.bids[Decimal(10)]["a"]
    ex._send(book, {"bid": [("a", Decimal(10), Decimal(0))], "ask": []}, T0 + 3601, T0 + 3601)
    book_lake.flush()
    book.book.asks[Decimal(12)] = {"d": Decimal(1)}
    ex._send(book, {"bid": [], "ask": [("d", Decimal(12), Decimal(1))]}, T0 + 3602, T0 + 3602)
    book_lake.flush()
    files = book_lake._manifest.files("l3_book")
    head = pq.read_table(book_lake.root / files[-1].path).to_pylist()
    assert [(r["kind"], r["side"], r["order_id"], r["price"], r["size"]) for r in head] == [
        ("checkpoint", "bid", "b", 10.0, 2.0), ("checkpoint", "ask", "c", 11.0, 3.0), ("delta", "ask", "d", 12.0, 1.0)]


def test_objects_the_capture_did_not_make_are_rejected(book_lake: Lake) -> None:
    buffer = book_lake.buffer("l2_book")
    buffer.append("not a book", T0)
    buffer.append((1, "BINANCE", "BTC-USDT", T0, None, None, 1, ((Decimal(1),),), (), None, None), T0)  # a 1-column row
    Exchange(book_lake).snapshot(("BINANCE", "BTC-USDT"), {Decimal(99): Decimal(1)}, {Decimal(101): Decimal(1)},
                                 T0 + 9000, T0 + 9000)
    assert book_lake.sql("SELECT count(*) AS n FROM l2_book", to="arrow").column("n")[0].as_py() == 2
    reasons = book_lake.rejected()["reason"].tolist()
    assert len(reasons) == 2 and all(r.startswith("not a captured l2_book update") for r in reasons)


def test_a_flush_that_comes_again_after_a_failure_writes_the_same_rows(book_lake: Lake, tmp_path: Path) -> None:
    from cryptolake_nb.tables import l2_book
    from cryptolake_nb.tables._book_flush import FlushCheckpoints, fold

    ex = Exchange(book_lake)
    play(ex, random.Random(8), 120, [("BINANCE", "BTC-USDT")], T0 + 3600)
    rows = book_lake.buffer("l2_book").snapshot_table().sort_by("update_id")
    kinds = defaultdict(set)
    for uid, kind in zip(rows.column("update_id").to_pylist(), rows.column("kind").to_pylist()):
        kinds[uid].add(kind)
    cut = next(u for u in sorted(kinds)[len(kinds) * 2 // 3:] if kinds[u] == {"delta"})  # a plain delta
    first = rows.filter(pa.compute.less(rows.column("update_id"), cut))
    second = rows.filter(pa.compute.greater_equal(rows.column("update_id"), cut))
    assert second.column("kind")[0].as_py() == "delta"
    transform = FlushCheckpoints(tmp_path / "elsewhere", l2_book.LAYOUT)  # no history there
    key = ("BINANCE", "BTC-USDT", None)
    written = transform(key, first)
    once = transform(key, second)
    again = transform(key, second)  # its write failed: the same rows come again
    assert once.equals(again)
    head = once.filter(pa.compute.equal(once.column("update_id"), once.column("update_id")[0]))
    assert set(head.column("kind").to_pylist()) == {"checkpoint"}
    assert head.column("update_id")[0].as_py() == first.column("update_id")[-1].as_py()
    want = fold(l2_book.LAYOUT, written).sort_by([("side", "ascending"), ("price", "ascending")])
    assert head.select(["side", "price", "size"]).sort_by([("side", "ascending"), ("price", "ascending")]).equals(want)
