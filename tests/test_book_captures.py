"""Recorded captures with order books, replayed into a lake, give back cryptofeed's own books.

Each capture is replayed once through cryptofeed's parsers (cryptolake_nb.replay.replay_capture)
into the lake's l2_book/l3_book callbacks; at every callback the test also copies cryptofeed's
OrderBook to the stored depth: the reference. The lake is flushed after a third and two thirds of the
callbacks, the rest stays live. Then:
- book_at() equals the reference book at >= 100 random instants per capture, some in live rows;
- every committed file, read alone with pyarrow, starts with the full book of its instant;
- one stored update per cryptofeed callback (cryptofeed's own playback() counts them), none rejected;
- the l3_book rows rebuild cryptofeed's order-level books (INDEPENDENT_RESERVE).
"""
from __future__ import annotations

import bisect
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from cryptofeed_reference import CAPTURES, exchange_names, playback_reference

from cryptolake_nb import Lake, ReplayError
from cryptolake_nb.books import book_at
from cryptolake_nb.replay import capture_sets, load_capture, replay_capture

DEPTH = 10        # book_depth of the test lakes: small, so the horizon checkpoints happen
INTERVAL = 2.0    # book_snapshot_interval: the captures last about 30 s
INSTANTS = 100    # book_at() checks per capture
BOOKS = ("l2_book", "l3_book")
CRYPTOFEED_CANNOT_PLAY = ("BYBIT", "COINBASE")  # see tests/test_capture_lake.py


def _book_exchanges() -> list[str]:
    if not CAPTURES.is_dir():
        return exchange_names(CAPTURES)
    return [n for n, files in capture_sets(CAPTURES).items() if set(BOOKS) & set(load_capture(files).config)]


EXCHANGES = _book_exchanges()


@dataclass
class Entry:
    """cryptofeed's book right after one callback, to DEPTH levels a side."""

    t: int      # ns: the exchange's time, else the receipt time, to the µs (the lake's policy)
    seq: int    # callback number in the replay
    bids: list  # L2: [(price, size)]; L3: [(price, ((order id, size), ...))], best first
    asks: list


@dataclass
class Replayed:
    lake: Lake
    entries: dict[tuple[str, str, str], list[Entry]] = field(default_factory=lambda: defaultdict(list))
    live_from: int = 0  # first callback number after the last flush
    callbacks: dict[str, int] = field(default_factory=dict)


def _copy(side: Any, l3: bool) -> list:
    if l3:
        return [(float(p), tuple(sorted((str(o), float(s)) for o, s in side[p].items()))) for p in side.keys()[:DEPTH]]
    return [(float(p), float(side[p])) for p in side.keys()[:DEPTH]]


def _replay(name: str, files: list[Path], root: Path, total: int) -> Replayed:
    lake = Lake(root, autoflush=False, book_depth=DEPTH, book_snapshot_interval=INTERVAL)
    out = Replayed(lake)
    flush_at = {total // 3, 2 * total // 3}
    count = [0]

    def tap(table: str):
        store = lake.callbacks([table])[table]

        async def callback(book: Any, receipt: float) -> None:
            await store(book, receipt)
            ts = book.timestamp if book.timestamp is not None else receipt
            count[0] += 1
            out.entries[(table, book.exchange, book.symbol)].append(
                Entry(round(ts * 1e6) * 1000, count[0], _copy(book.book.bids, table == "l3_book"),
                      _copy(book.book.asks, table == "l3_book")))
            if count[0] in flush_at:
                lake.flush()
                out.live_from = count[0] + 1
        return callback

    result = replay_capture(files, {t: tap(t) for t in BOOKS})
    out.callbacks = {t: result.callbacks.get(t, 0) for t in BOOKS}
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """name -> the capture replayed into its own lake (computed on first use, closed at the end)."""
    cache: dict[str, Replayed] = {}
    reference = playback_reference(CAPTURES) if CAPTURES.is_dir() else {}

    def get(name: str) -> Replayed:
        if name not in cache:
            total = sum(reference[name]["callbacks"].get(t, 0) for t in BOOKS)
            cache[name] = _replay(name, capture_sets(CAPTURES)[name], tmp_path_factory.mktemp(name), total)
        return cache[name]

    yield get
    for r in cache.values():
        r.lake.close()


def _playable(name: str, captures: Path) -> bool:
    """False for a capture cryptofeed 2.4.1 cannot play, after checking that it is refused cleanly."""
    if name in CRYPTOFEED_CANNOT_PLAY:
        with pytest.raises(ReplayError, match=name):
            replay_capture(capture_sets(captures)[name], {})
        return False
    return True


def _expected(entries: list[Entry], t: int) -> Entry | None:
    """The book after the last callback (in arrival order) whose time is at or before `t`."""
    found = None
    for e in entries:
        if e.t <= t:
            found = e
    return found


@pytest.mark.parametrize("name", EXCHANGES)
def test_rows_parity_with_cryptofeed_playback(name: str, captures: Path, replayed) -> None:
    if not _playable(name, captures):
        return  # refused with ReplayError: what there is to check for it
    r = replayed(name)
    theirs = playback_reference(captures)[name]["callbacks"]
    for table in BOOKS:
        updates = r.lake.sql(f"SELECT count(DISTINCT update_id) AS n FROM {table} WHERE kind <> 'checkpoint'",
                             to="arrow").column("n")[0].as_py()
        assert updates == r.callbacks[table] == theirs.get(table, 0), f"{name} {table}: one update per callback"
    assert r.lake.rejected().empty, f"{name}: book rows rejected"


@pytest.mark.parametrize("name", EXCHANGES)
def test_book_at_matches_cryptofeeds_book(name: str, captures: Path, replayed) -> None:
    if not _playable(name, captures):
        return  # refused with ReplayError: what there is to check for it
    r = replayed(name)
    keys = sorted(k for k in r.entries if k[0] == "l2_book")
    if not keys:
        assert playback_reference(captures)[name]["callbacks"].get("l2_book", 0) == 0, f"{name}: L2 not stored"
        return  # the capture has no L2 book (e.g. INDEPENDENT_RESERVE: L3 only)
    assert r.lake.status()["tables"]["l2_book"]["files"] > 0 and r.lake.status()["tables"]["l2_book"]["buffer_rows"] > 0
    rng = random.Random(name)
    live = [(k, e) for k in keys for e in r.entries[k] if e.seq >= r.live_from]
    instants = []
    for i in range(INSTANTS):
        if i % 3 == 0 and live:
            key, entry = rng.choice(live)
        else:
            key = rng.choice(keys)
            entry = rng.choice(r.entries[key])
        instants.append((key, entry.t + rng.choice([0, 0, 1, 999, 250_000_000, -1])))
    checked_live = 0
    for (_, exchange, symbol), t in instants:
        want = _expected(r.entries[("l2_book", exchange, symbol)], t)
        got = book_at(symbol, t, depth=DEPTH, exchange=exchange, to="arrow", lake=r.lake).to_pylist()
        bids = [(g["price"], g["size"]) for g in got if g["side"] == "bid"]
        asks = [(g["price"], g["size"]) for g in got if g["side"] == "ask"]
        assert [g["level"] for g in got] == list(range(1, len(bids) + 1)) + list(range(1, len(asks) + 1))
        if want is None:
            assert got == [], f"{name} {symbol} at {t}: a book before the first update"
            continue
        checked_live += want.seq >= r.live_from
        assert (bids, asks) == (want.bids, want.asks), f"{name} {symbol} at {t} (callback {want.seq})"
    assert checked_live >= (INSTANTS // 4 if live else 0)


def _real_ids(lake: Lake, table: str) -> dict[tuple[str, str], list[int]]:
    rows = lake.sql(f"SELECT DISTINCT exchange, symbol, update_id FROM {table} WHERE kind <> 'checkpoint'",
                    to="arrow").to_pylist()
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        out[(row["exchange"], row["symbol"])].append(row["update_id"])
    return {k: sorted(v) for k, v in out.items()}


def _head_book(rows: list[dict], l3: bool) -> tuple[list, list]:
    """The full book the first group of a file's rows holds, to DEPTH levels."""
    first = rows[0]["update_id"]
    head = [r for r in rows if r["update_id"] == first and r["kind"] != "delta" and r["side"] is not None]
    assert any(r["update_id"] == first and r["kind"] != "delta" for r in rows), "file does not start with a full book"
    return _levels(head, l3)


def _levels(rows: list[dict], l3: bool) -> tuple[list, list]:
    sides: dict[str, dict] = {"bid": defaultdict(dict), "ask": defaultdict(dict)}
    for r in rows:
        if r["size"] > 0:
            sides[r["side"]][r["price"]][r.get("order_id")] = r["size"]
    out = []
    for side in ("bid", "ask"):
        prices = sorted(sides[side], reverse=side == "bid")[:DEPTH]
        out.append([(p, tuple(sorted(sides[side][p].items()))) if l3 else (p, sides[side][p][None]) for p in prices])
    return out[0], out[1]


@pytest.mark.parametrize("name", EXCHANGES)
def test_each_file_alone_starts_with_the_full_book(name: str, captures: Path, replayed) -> None:
    if not _playable(name, captures):
        return  # refused with ReplayError: what there is to check for it
    r = replayed(name)
    for table in BOOKS:
        ids = _real_ids(r.lake, table)
        files = r.lake._manifest.files(table)
        assert len(files) >= min(len(ids), 1), f"{name} {table}: nothing flushed"
        for entry in files:
            rows = pq.read_table(r.lake.root / entry.path).to_pylist()
            uids = [row["update_id"] for row in rows]
            assert uids == sorted(uids), f"{entry.path}: rows not in update order"
            k = bisect.bisect_right(ids[(entry.exchange, entry.symbol)], uids[0])
            want = r.entries[(table, entry.exchange, entry.symbol)][k - 1]
            assert _head_book(rows, table == "l3_book") == (want.bids, want.asks), f"{name} {entry.path}"


@pytest.mark.parametrize("name", [n for n in EXCHANGES if n == "INDEPENDENT_RESERVE"])
def test_l3_rows_rebuild_cryptofeeds_order_book(name: str, captures: Path, replayed) -> None:
    r = replayed(name)
    rows = r.lake.sql("SELECT *, epoch_ns(ts) AS t FROM l3_book ORDER BY update_id", to="arrow").to_pylist()
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        by_key[(row["exchange"], row["symbol"])].append(row)
    keys = sorted(k for k in r.entries if k[0] == "l3_book")
    rng = random.Random(name)
    for _ in range(INSTANTS):
        key = rng.choice(keys)
        entry = rng.choice(r.entries[key])
        mine = by_key[key[1:]]
        u = max(x["update_id"] for x in mine if x["kind"] != "checkpoint" and x["t"] <= entry.t)
        want = _expected(r.entries[key], entry.t)
        base = max(x["update_id"] for x in mine if x["kind"] != "delta" and x["update_id"] <= u)
        orders: dict[tuple, dict] = {}
        for x in mine:
            if x["side"] is not None and ((x["kind"] != "delta" and x["update_id"] == base)
                                          or (x["kind"] == "delta" and base < x["update_id"] <= u)):
                orders[(x["side"], x["order_id"])] = x
        assert _levels(list(orders.values()), True) == (want.bids, want.asks), f"{key} callback {want.seq}"
